"""ReproduceModelOperator: retrain a registered version from its metadata and check the metrics match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.governance.reproduce import ReproduceXCom


class ReproduceModelOperator(MLOpsBaseOperator):
    """Reproducibility check of a registered version
    (logic: :func:`airflow_mlops.governance.reproduce.reproduce_version`).

    Re-reads the exact partitions recorded in the version's ``metadata.json`` (``training_data``),
    checks their fingerprint, retrains with the recorded config snapshot and seed, and compares every
    recorded metric (recorded, reproduced, absolute difference) within ``tolerance`` plus the stored
    holdout predictions. The reproduced model is not registered. The report JSON is attached to the
    version as ``reports/reproduce-<timestamp>.json``; XCom carries the short summary.

    Verdicts: ``reproduced``; ``mismatch`` (same data, metrics differ: the report names every
    library whose version differs from the recorded one); ``data_changed`` (the input data is no
    longer what the version was trained on: "data changed: fingerprint X recorded, Y now").

    :param version: the version to reproduce (templated); default: the ``champion``.
    :param model: model name; default the config's ``name``. (templated)
    :param tolerance: absolute tolerance per metric (default ``1e-9``).
    :param fail_on: verdicts that fail the task (no retry), default ``("mismatch",)``; add
        ``"data_changed"`` to fail on changed data too.

    Example::

        ReproduceModelOperator(task_id="reproduce", config_path="dags/configs/churn.yaml", version=3)

    XCom: :class:`~airflow_mlops.governance.reproduce.ReproduceXCom` (``{"model", "version", "verdict",
    "summary", "tolerance", "max_abs_diff", "report_uri", "metrics_off", "libraries_differing", "data_changed"}``).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "version", "model")
    ui_color = "#e0f0e8"

    def __init__(self, *, version: int | str | None = None, model: str | None = None,
                 tolerance: float = 1e-9, fail_on: Sequence[str] = ("mismatch",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.model = model
        self.tolerance = tolerance
        self.fail_on = tuple(fail_on)

    def execute(self, context: Context) -> ReproduceXCom:
        from airflow_mlops.config.model import ConfigError
        from airflow_mlops.governance.reproduce import ReproduceError, reproduce_version, summary_for_xcom
        from airflow_mlops.operators.base import fail
        from airflow_mlops.registry.model_registry import RegistryError
        from airflow_mlops.store.datasets import DataError
        from airflow_mlops.trust.identity import run_identity

        name = self.model or self.config.name
        try:
            version = self.registry.resolve(name, version=self.version if self.version not in (None, "") else None)
            # the config file is only a fallback for versions registered without a config snapshot
            fallback = None if self.registry.get_metadata(name, version).get("config") else self.config
            report = reproduce_version(self.registry, name, version, tolerance=float(self.tolerance),
                                       config=fallback, actor=run_identity(context))
        except (RegistryError, ReproduceError, DataError, ConfigError) as e:
            fail(f"reproducing {name} v{self.version or 'champion'} failed: {e}")
            raise
        data = report["data"]
        self.set_lineage(inputs=[f"{data['uri'].rstrip('/')}/ds={d}" for d in data.get("partitions") or []]
                         or [data["uri"]], outputs=[report["report_uri"]] if report.get("report_uri") else [],
                         model=name, version=version, model_role="input")
        out = summary_for_xcom(report)
        if report["verdict"] in self.fail_on:
            fail(f"{report['summary']} (report: {report.get('report_uri')})")
        self.log.info("%s", report["summary"])
        return out
