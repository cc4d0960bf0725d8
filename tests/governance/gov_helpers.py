"""Helpers of the governance tests: a small churn config and a week of partitions."""

from __future__ import annotations

from airflow_mlops.config.model import ModelConfig
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import date_range

DAYS = date_range("2023-12-27", 7)
DS = "2024-01-02"


def churn_config(**overrides) -> ModelConfig:
    raw = {
        "name": "churn", "owner": "ml-platform@example.com",
        "description": "Probability that a customer cancels within 30 days.",
        "intended_use": "Rank customers for retention offers.", "limitations": "Synthetic data.",
        "data": {"dataset": "churn", "training_window_days": 7},
        "keys": ["customer_id"], "target": "churned",
        "features": ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region"],
        "task": "binary",
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 40}},
        "training": {"test_size": 0.25, "cv_folds": 3, "seed": 42, "reference_sample_size": 500},
        "metrics": {"primary": "roc_auc"},
    }
    for k, v in overrides.items():
        raw[k] = v
    return parse_model_config(raw)
