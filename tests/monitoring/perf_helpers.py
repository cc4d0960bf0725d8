"""Helpers of the monitoring tests: the test model config, example data, ground-truth scenarios and a
real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
import socket

from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day, churn_ground_truth, date_range, with_segment
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

ROWS = 1000
SCORED_DAYS = date_range("2024-01-01", 21)
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region", "segment"]


def base_config(**overrides):
    raw = {
        "name": "churn", "owner": "ml@example.com",
        "data": {"dataset": "churn", "training_window_days": 7, "ground_truth_dataset": "churn_labels"},
        "keys": ["customer_id"], "target": "churned", "features": FEATURES, "task": "binary",
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 40}},
        "training": {"cv_folds": 2, "seed": 42, "reference_sample_size": 5000},
        "metrics": {"primary": "roc_auc", "floors": {"roc_auc": 0.6}},
        "validation": {"suite": None},
        "slices": ["region", "segment"],
        "monitoring": {"min_slice_size": 200, "performance_window_days": 7, "max_relative_change": 0.25},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_model_config(raw)


def day_input(day: str, drift: float = 0.0):
    return with_segment(churn_day(day, rows=ROWS, drift=drift))


def build_scored_store(root: str):
    """Write the input data, train and register the model, score ``SCORED_DAYS`` with it into the
    prediction log; returns ``(config, version)``."""
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.scoring.batch import score_partition

    store = ArtifactStore(root)
    cfg = base_config()
    data = Dataset.for_name(store, "churn")
    for day in date_range("2023-12-26", 7) + SCORED_DAYS:
        data.write(day, day_input(day))
    version = train_and_register(cfg, store, "2024-01-01")["version"]
    ModelRegistry(store).set_alias("churn", "champion", version, actor="test")
    for day in SCORED_DAYS:
        score_partition(cfg, store, day, version=version, run_id=f"test__{day}")
    return cfg, version


def write_truth(store: ArtifactStore, dataset: str, days, **kw) -> None:
    """Ground truth of ``days`` (``churn_ground_truth`` with ``kw``) into ``data/<dataset>``."""
    truth = Dataset.for_name(store, dataset)
    for day in days:
        truth.write(day, churn_ground_truth(day, rows=ROWS, **kw))


def with_truth(cfg, dataset: str, **overrides):
    """``cfg`` reading its ground truth from ``data/<dataset>``, other fields replaced by ``overrides``."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, ground_truth_dataset=dataset), **overrides)


class Inbox:
    """Messages received by a real local SMTP server (aiosmtpd)."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        import email
        from email import policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def texts(self) -> list[str]:
        out = []
        for m in self.messages:
            body = m.get_body(("html", "plain"))
            out.append(f"{m['Subject']}\n{body.get_content() if body else ''}")
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp() -> tuple[Inbox, object, str]:
    """Start a real SMTP server on 127.0.0.1: ``(inbox, controller, connection JSON)``."""
    import json

    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    conn = json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
        "extra": {"from_email": "mlops@example.com", "disable_tls": True, "disable_ssl": True, "timeout": 10,
                  "retry_limit": 0}})
    return inbox, controller, conn


def alerting(cfg):
    """``cfg`` sending alerts by e-mail through the ``smtp_monitoring`` connection."""
    from airflow_mlops.config.model import AlertsConfig

    return dataclasses.replace(cfg, alerts=AlertsConfig(email=("oncall@example.com",),
                                                        smtp_conn_id="smtp_monitoring"))
