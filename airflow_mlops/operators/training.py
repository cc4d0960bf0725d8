"""TrainModelOperator: train from the model config and register the result as a new version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.registry.lifecycle import TrainingSummary
    from airflow_mlops.segments.flows import SegmentTrainingSkipped, SegmentTrainingSummary


class TrainModelOperator(MLOpsBaseOperator):
    """Train the model described by a config on the partitions ending at the logical date, and
    register it in the model registry.

    The sklearn Pipeline (ColumnTransformer for numeric and categorical columns + the configured
    estimator) is fit on a seeded split with K-fold CV, optional randomized / successive-halving
    search, held-out metrics, a naive (Dummy) baseline and permutation importance. The new version
    carries ``model.skops``, ``reference.parquet`` (drift baseline), ``holdout.parquet``, an evaluation
    report and ``metadata.json`` with the data fingerprint, params, CV scheme, seed, library versions
    and the dag/run/task ids. It does not move any alias: see :class:`PromoteModelOperator`.

    Before the version is committed, the staged model is loaded in a fresh Python process (hash-verified
    skops loading) and must reproduce the training-time predictions on the held-back sample; its
    resource profile (latency per 1k/10k rows, model size, peak RSS) goes to ``metadata.json``
    ``profile``. A mismatch fails the task without retry and no version becomes visible. With
    ``sensitive_features`` the fairlearn group metrics go to ``metadata.json`` ``fairness``. A model card
    (``reports/model_card.md``/``.html``) is written; the "Model card" extra link opens it.

    Example::

        TrainModelOperator(task_id="train", config_path="dags/configs/churn.yaml")

    XCom: :class:`~airflow_mlops.registry.lifecycle.TrainingSummary` (``{"model", "version", "uri",
    "primary_metric", "holdout", "baseline", "rows", "fingerprint", "evaluation_report", "model_card",
    "profile"}``, + ``"fairness"`` with sensitive features).

    :param segment: with a config's ``segments`` section, train the model of this segment value on its
        rows only (``<model>__<slug>``; see :mod:`airflow_mlops.segments.flows`; XCom
        :class:`~airflow_mlops.segments.flows.SegmentTrainingSummary`); a segment with fewer than
        ``segments.min_rows`` rows is not trained (XCom ``{"segment", "model", "skipped", "rows"}``,
        :class:`~airflow_mlops.segments.flows.SegmentTrainingSkipped`).
        Mapped over the values with ``.partial(...).expand(segment=...)``. (templated)
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "segment")
    ui_color = "#d9f2d9"

    def __init__(self, *, segment: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segment = segment

    def execute(self, context: Context) -> TrainingSummary | SegmentTrainingSummary | SegmentTrainingSkipped:
        from airflow_mlops.config.model import ConfigError
        from airflow_mlops.operators.base import fail
        from airflow_mlops.registry.lifecycle import train_and_register
        from airflow_mlops.registry.smoke import SmokeTestError
        from airflow_mlops.store.datasets import DataError
        from airflow_mlops.training.fairness import FairnessError

        try:
            if self.segment not in (None, ""):
                from airflow_mlops.segments.flows import train_segment

                return train_segment(self.config, self.store, self.logical_ds(context), self.segment,
                                     self.run_info(context))
            from airflow_mlops.registry.smoke import SmokeProcess

            # the smoke test's fresh interpreter imports its libraries while this one parses the config
            with SmokeProcess() as smoke:
                return train_and_register(self.config, self.store, self.logical_ds(context), self.run_info(context),
                                          smoke=smoke)
        except (DataError, ConfigError, FairnessError) as e:
            fail(f"training data problem: {e}")
            raise
        except SmokeTestError as e:  # the artifact itself is wrong: retrying cannot help
            fail(str(e))
            raise


class RegisterExternalModelOperator(MLOpsBaseOperator):
    """Register a model trained elsewhere (a notebook, another pipeline, a team's MLflow) as the next version
    of the config's model, through the same door as :class:`TrainModelOperator`: evaluated on the holdout the
    config's split takes from the data window ending at the logical date, beside the naive baseline; smoke-tested
    in a fresh process before the version is committed; its metadata records where it came from (``origin``:
    the MLflow URI, run id, registered model and version, or the file and its sha256). Like training, it moves
    no alias: chain :class:`~airflow_mlops.operators.registry.PromoteModelOperator` for the promotion gate,
    approvals and the audit log.

    Accepted (nothing from outside runs as code; see :mod:`airflow_mlops.registry.external`): an MLflow model
    ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<logged model id>`` or
    ``runs:/<run id>/<path>`` of flavor ``sklearn``
    or ``lightgbm`` saved with ``serialization_format="skops"``, or of flavor ``xgboost`` / ``catboost`` (the
    library's own file format); a ``.skops`` file (path, ``file://`` or ``s3://``). Its types must be trusted by
    the config (``estimator.class``, ``estimator.trusted_types``). MLflow models need the MLflow connection
    (``[mlops] mlflow_conn_id``). A refused or broken model fails the task without retry and writes nothing.

    Example::

        register = RegisterExternalModelOperator(task_id="register", config_path="dags/configs/churn.yaml",
                                                 source="models:/churn_notebook/{{ params.version }}")
        register >> PromoteModelOperator(task_id="promote", config_path="dags/configs/churn.yaml",
                                         candidate_task_id="register")

    XCom: :class:`~airflow_mlops.registry.lifecycle.TrainingSummary`, as :class:`TrainModelOperator`.

    :param source: the model's URI or path (templated).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "source")
    ui_color = "#d9f2d9"

    def __init__(self, *, source: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source

    def execute(self, context: Context) -> TrainingSummary:
        from airflow_mlops.config.model import ConfigError
        from airflow_mlops.operators.base import fail
        from airflow_mlops.registry.errors import UntrustedModelError
        from airflow_mlops.registry.external import ExternalModelError, register_external
        from airflow_mlops.registry.smoke import SmokeTestError
        from airflow_mlops.store.datasets import DataError

        try:
            summary = register_external(self.config, self.store, str(self.source), self.logical_ds(context),
                                        self.run_info(context))
        except (ExternalModelError, UntrustedModelError, ConfigError, DataError, SmokeTestError) as e:
            fail(f"{self.source} cannot be registered: {e}")
            raise
        return summary
