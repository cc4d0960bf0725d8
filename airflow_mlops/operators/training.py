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
