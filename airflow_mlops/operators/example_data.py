"""SeedExampleDataOperator: the example model's synthetic partitions, written when missing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.demo.data import ExampleDataXCom


class SeedExampleDataOperator(MLOpsBaseOperator):
    """Write the package's seeded synthetic churn partitions that are missing, so the shipped example
    model (``data.example_rows`` set in its config) runs end to end on a fresh install, e.g.
    ``airflow dags test churn_training 2024-01-02`` with an empty store.

    Only days without a partition are written (existing data, real or generated, is never touched), so
    reruns and backfills change nothing. A config without ``data.example_rows`` is refused: real
    models never get synthetic data.

    :param which: ``training`` (the config's ``data.dataset``) or ``scoring`` (``data.scoring_dataset``,
        else the training dataset).
    :param days: how many days ending at the logical date to cover; default the config's
        ``data.training_window_days`` for ``training``, 1 for ``scoring``. (templated)

    Example::

        SeedExampleDataOperator(task_id="seed_example_data", config_path="dags/configs/churn.yaml",
                                which="scoring")

    XCom: ``{"dataset_uri", "written": [days], "present": [days], "rows_per_day"}``
    (:class:`~airflow_mlops.demo.data.ExampleDataXCom`).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "days")
    ui_color = "#e0f0e0"

    def __init__(self, *, which: str = "training", days: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if which not in ("training", "scoring"):
            raise ValueError(f"which must be 'training' or 'scoring', got {which!r}")
        self.which = which
        self.days = days

    def execute(self, context: Context) -> ExampleDataXCom:
        from airflow_mlops.config.locations import Locations
        from airflow_mlops.demo.data import seed_missing_partitions
        from airflow_mlops.store.dates import days_from as date_range

        config = self.config
        rows = config.data.example_rows
        if not rows:
            raise ValueError(f"{config.source}: data.example_rows is not set; SeedExampleDataOperator only "
                             "writes synthetic data for the example model")
        training = self.which == "training"
        days = int(self.days or (config.data.training_window_days if training else 1))
        end = dt.date.fromisoformat(self.logical_ds(context))
        where = Locations(config, self.store)  # data.uri and data.scoring_dataset honoured like every task
        dataset = where.input if training else where.scoring
        out = seed_missing_partitions(dataset, date_range(end - dt.timedelta(days=days - 1), days), int(rows))
        self.log.info("example data %s: wrote %d missing partition(s) of %d rows, %d already present",
                      dataset.uri(), len(out["written"]), rows, len(out["present"]))
        return {"dataset_uri": dataset.uri(), **out}
