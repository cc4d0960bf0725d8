"""Build the ready-made DAGs from one YAML config per model.

In a DAG file::

    from airflow_mlops.dag_factory import build_dags
    globals().update(build_dags("/path/to/dags/configs"))

For every ``<model>.yaml`` this yields:

* ``<model>_training``: wait_for_data -> validate -> train -> promote; scheduled nightly by cron and by
  the model's retraining-request asset (emitted by drift monitoring).
* ``<model>_batch_scoring``: daily, ``catchup=True`` (backfillable): wait_for_data -> validate -> score,
  scoring each day with the champion *as of that day*; updates the predictions asset.
* ``<model>_monitoring``: daily: wait_for_predictions -> drift; a drift share over the threshold emits
  the retraining request that schedules ``<model>_training``.

A bad config fails the DAG file's parse with an error naming the file and the field, so it shows
up in ``airflow dags list-import-errors`` instead of failing at run time. When data for the model
already exists, the config is also checked against the latest partition's schema (missing
key/target/feature columns, a task that does not fit the target).
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_mlops.ml.config import ModelConfig

log = logging.getLogger(__name__)

def retrain_request_asset(model: str):
    """The asset whose events ask for ``<model>_training`` to run (drift, new data, manual)."""
    from airflow.sdk import Asset

    return Asset(name=f"mlops.{model}.retrain_request", uri=f"mlops://{model}/retrain-request", group="mlops")


def model_version_asset(model: str):
    """The asset updated whenever ``<model>`` gets a new registered version."""
    from airflow.sdk import Asset

    return Asset(name=f"mlops.{model}.versions", uri=f"mlops://{model}/versions", group="mlops")


def predictions_asset(model: str):
    """The asset updated by every scoring run of ``<model>`` (the prediction log)."""
    from airflow.sdk import Asset

    return Asset(name=f"mlops.{model}.predictions", uri=f"mlops://{model}/predictions", group="mlops")


def check_against_data(config: ModelConfig, storage_uri: str | None = None) -> None:
    """Parse-time check of the config against the latest partition's schema, when data exists."""
    from airflow_mlops.hooks.datasets import Dataset
    from airflow_mlops.hooks.storage import ArtifactStore, StorageError
    from airflow_mlops.ml.config import check_config_against_data

    try:
        dataset = Dataset.from_config(config, ArtifactStore(storage_uri))
        schema = dataset.schema()
    except StorageError as e:  # storage unreachable at parse time: leave it to the tasks
        log.warning("could not read the schema of %s at parse time: %s", config.name, e)
        return
    if schema is None:
        return
    target_values = None
    if config.target in schema:
        target_values = dataset.read_table(dataset.partitions()[-1], columns=[config.target]).column(0).to_pandas()
    check_config_against_data(config, schema, target_values)


def _default_args(config: ModelConfig) -> dict[str, Any]:
    return {"owner": config.owner, "retries": 1, "retry_delay": dt.timedelta(minutes=2)}


def training_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_training``: wait_for_data -> validate -> train -> promote."""
    from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable

    from airflow_mlops.operators import DataValidationOperator, PromoteModelOperator, TrainModelOperator
    from airflow_mlops.sensors.data import DataPartitionSensor

    request = retrain_request_asset(config.name)
    cron = config.schedules.nightly_retraining or config.schedules.training
    schedule: Any = (AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[request])
                     if cron else [request])
    common = {"config_path": config_path, "storage_uri": storage_uri}
    with DAG(
        dag_id=f"{config.name}_training",
        description=f"Validate, train, register and promote {config.name} ({config.task})",
        schedule=schedule,
        start_date=_start(config),
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(config),
        tags=["mlops", config.name, "training"],
        doc_md=f"Training pipeline of **{config.name}** built from `{os.path.basename(config_path)}`. "
               f"Owner: {config.owner}. Runs nightly (`{cron}`) and on `{request.uri}` events.",
    ) as dag:
        wait = DataPartitionSensor(task_id="wait_for_data", config_path=config_path, storage_uri=storage_uri,
                                   poke_interval=60, timeout=6 * 3600, mode="reschedule")
        validate = DataValidationOperator(task_id="validate", with_target=True, retries=0, **common)
        train = TrainModelOperator(task_id="train", outlets=[model_version_asset(config.name)], **common)
        promote = PromoteModelOperator(task_id="promote", candidate_task_id="train", **common)
        wait >> validate >> train >> promote
        if config.promotion.require_approval:
            from airflow_mlops.sensors.registry import ModelApprovalSensor

            version = "{{ ti.xcom_pull(task_ids='train')['version'] }}"
            approval = ModelApprovalSensor(task_id="wait_for_approval", model=config.name, version=version,
                                           storage_uri=storage_uri, deferrable=True, poke_interval=600,
                                           timeout=7 * 24 * 3600)
            promote >> approval >> PromoteModelOperator(task_id="promote_approved", version=version, **common)
    return dag


def _start(config: ModelConfig) -> dt.datetime:
    d = dt.date.fromisoformat(config.schedules.start_date)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)


def batch_scoring_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_batch_scoring``: wait_for_data -> validate -> score (champion as of the logical date)."""
    from airflow.sdk import DAG

    from airflow_mlops.operators import DataValidationOperator
    from airflow_mlops.operators.inference import BatchInferenceOperator
    from airflow_mlops.sensors.data import DataPartitionSensor

    common = {"config_path": config_path, "storage_uri": storage_uri}
    with DAG(
        dag_id=f"{config.name}_batch_scoring",
        description=f"Daily batch scoring of {config.name} with the champion of each day",
        schedule=config.schedules.scoring,
        start_date=_start(config),
        catchup=True,
        max_active_runs=config.schedules.max_active_runs,
        default_args=_default_args(config),
        tags=["mlops", config.name, "scoring"],
        doc_md=f"Scores `{config.data.scoring}` daily with **{config.name}**'s champion as of each logical date, "
               "so backfills (`airflow backfill create`) reproduce what production scored that day.",
    ) as dag:
        wait = DataPartitionSensor(task_id="wait_for_data", dataset=config.data.scoring, fmt=config.data.format,
                                   storage_uri=storage_uri, poke_interval=60, timeout=6 * 3600, mode="reschedule")
        validate = DataValidationOperator(task_id="validate", with_target=False, retries=0, **common)
        score = BatchInferenceOperator(task_id="score", alias="champion", as_of_logical_date=True,
                                       outlets=[predictions_asset(config.name)], **common)
        wait >> validate >> score
    return dag


def monitoring_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_monitoring``: wait_for_predictions -> drift (emits the retraining request on drift)."""
    from airflow.sdk import DAG, AssetAlias

    from airflow_mlops.operators.monitoring import DriftDetectionOperator, retrain_alias_name
    from airflow_mlops.sensors.data import DataPartitionSensor

    with DAG(
        dag_id=f"{config.name}_monitoring",
        description=f"Daily drift monitoring of {config.name}; drift requests retraining",
        schedule=config.schedules.monitoring,
        start_date=_start(config),
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(config),
        tags=["mlops", config.name, "monitoring"],
        doc_md=f"Drift of the scored data against the reference of the version that scored it. A drift share "
               f">= {config.drift.threshold} emits `mlops://{config.name}/retrain-request`, which schedules "
               f"`{config.name}_training`.",
    ) as dag:
        wait = DataPartitionSensor(task_id="wait_for_predictions", prefix=f"predictions/{config.name}",
                                   storage_uri=storage_uri, poke_interval=60, timeout=6 * 3600, mode="reschedule")
        drift = DriftDetectionOperator(task_id="drift", config_path=config_path, storage_uri=storage_uri,
                                       outlets=[AssetAlias(retrain_alias_name(config.name))])
        wait >> drift
    return dag


def build_dags(configs_dir: str, *, storage_uri: str | None = None, check_data: bool = True) -> dict[str, DAG]:
    """All ready-made DAGs for every ``*.yaml``/``*.yml`` config in ``configs_dir``."""
    from airflow_mlops.ml.config import load_model_config

    dags: dict[str, DAG] = {}
    paths = sorted(glob.glob(os.path.join(configs_dir, "*.yaml")) + glob.glob(os.path.join(configs_dir, "*.yml")))
    for path in paths:
        config = load_model_config(path)
        if check_data:
            check_against_data(config, storage_uri)
        path = os.path.abspath(path)
        for factory in (training_dag, batch_scoring_dag, monitoring_dag):
            dag = factory(config, path, storage_uri=storage_uri)
            dags[dag.dag_id] = dag
    return dags
