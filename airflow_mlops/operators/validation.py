"""DataValidationOperator: a Great Expectations 1.x gate on one input partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator, fail

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.validation.run import ValidationSummary


class DataValidationOperator(MLOpsBaseOperator):
    """Validate the model's input partition for the logical date with Great Expectations 1.x.

    First the partition is checked against the config (key, target and feature columns, dtypes, a
    target that fits the task; :func:`airflow_mlops.validation.partition.check_partition`): a missing, empty
    or unfit partition fails the run of that date without retries, naming the file and the column.
    The partition is the model's input (``with_target=True``) or its scoring input
    (``data.scoring_dataset`` when set), as :class:`~airflow_mlops.config.locations.Locations` resolves them.

    The suite comes from the model config's ``validation.suite``: a JSON/YAML suite file, or
    ``infer`` (derived from the champion's training reference: columns, dtypes, ranges, null rates,
    categories; before the first champion, a structural check of the required columns).
    The result JSON and an HTML report go to ``<root>/validation/<model>/ds=<ds>/``. When the suite
    fails, the failing rows (or the whole batch for batch-level failures such as a missing column)
    are written to ``<root>/quarantine/<dataset>/ds=<ds>/`` and the task fails **without retries**,
    so nothing downstream runs.

    :param with_target: the partition must carry the target column (training data: True;
        scoring input: False).

    Example::

        DataValidationOperator(task_id="validate", config_path="dags/configs/churn.yaml")

    XCom: :class:`~airflow_mlops.validation.run.ValidationSummary` (``{"success", "rows", "evaluated", "failed",
    "result_uri", "report_uri", "suite"}``, + ``quarantine_removed``; ``{"success", "skipped", "rows"}`` without
    a suite).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields,)
    ui_color = "#fff3c4"
    openlineage_default_inputs: Sequence[str] = ("config_data",)

    def __init__(self, *, with_target: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_target = with_target

    def execute(self, context: Context) -> ValidationSummary:
        from airflow_mlops.config.locations import Locations
        from airflow_mlops.operators.base import integrity_check
        from airflow_mlops.registry.lifecycle import GateFailed, validate_partition
        from airflow_mlops.registry.model_registry import RegistryError
        from airflow_mlops.store.datasets import DataError
        from airflow_mlops.validation.partition import check_partition

        ds = self.logical_ds(context)
        where = Locations(self.config, self.store)
        dataset = where.input if self.with_target else where.scoring
        try:  # the checks against the data run here, never while the DAG file is parsed
            check_partition(self.config, dataset, ds, with_target=self.with_target)
        except DataError as e:
            fail(f"{self.config.name} {ds}: {e}")
        try:
            return validate_partition(self.config, self.store, ds, with_target=self.with_target, dataset=dataset)
        except GateFailed as e:
            fail(str(e))
        except RegistryError as e:  # the champion whose reference infers the suite cannot be trusted
            check = integrity_check(e)
            if check is None:
                raise
            fail(f"validation of {self.config.name} for {ds} refused the champion: {e}",
                 check=check)
