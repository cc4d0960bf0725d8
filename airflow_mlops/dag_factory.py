"""Build the ready-made DAGs from one YAML config per model.

One DAG file per model, ``dags/<model>.py`` next to ``dags/configs/<model>.yaml``::

    from airflow_mlops.dag_factory import dags_for_file
    globals().update(dags_for_file(__file__))

(``python -m airflow_mlops.cli scaffold-dag dags/configs/<model>.yaml`` writes it.) For every config this
yields:

* ``<model>_training``: wait_for_data -> validate -> train -> promote -> notify; scheduled nightly by cron and by
  the model's retraining-request asset (emitted by drift monitoring).
* ``<model>_batch_scoring``: daily, ``catchup=True`` (backfillable): wait_for_data -> validate -> score,
  scoring each day with the champion *as of that day*; updates the predictions asset.
* ``<model>_monitoring``: daily: wait_for_predictions -> drift; a drift share over the threshold emits
  the retraining request that schedules ``<model>_training``.

With a ``segments`` section (one model per segment value, :mod:`airflow_mlops.segments.flows`), training is
``... -> list_segments -> segment.train[i] -> segment.promote[i] -> segment.notify[i]`` (a task group
mapped over the values) and scoring ``... -> plan_segments -> score[i] -> merge`` (mapped over the
segments, or segment x input file with ``segments.map_files``).

A bad config fails the parse of *its* DAG file with an error naming the config file and the field, so it
shows up in ``airflow dags list-import-errors`` instead of failing at run time, and the other models'
DAGs keep loading. Parsing never reads data: the checks of the config against the data (missing
key/target/feature columns, dtypes, a task that does not fit the target) run in the first task of each
run (``validate``) on that run's partition, so a bad partition fails the run of its date only. Every
location (input, scoring input, ground truth, predictions) comes from
:class:`~airflow_mlops.config.locations.Locations`, so ``data.uri`` is honoured by every task and sensor.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
from typing import TYPE_CHECKING, Any

from airflow_mlops.assets import (
    data_asset,
    model_version_asset,
    predictions_asset,
    retrain_alias_name,
    retrain_request_asset,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_mlops.config.model import ModelConfig

log = logging.getLogger(__name__)

def _model_dag(config: ModelConfig, suffix: str, tag: str, *, description: str, schedule: Any, doc_md: str,
               catchup: bool = False, max_active_runs: int = 1) -> DAG:
    """``<model>_<suffix>``: the settings every ready-made Dag of a model shares (start date, owner and
    retries, tags ``mlops``, the model and ``tag``)."""
    from airflow.sdk import DAG

    return DAG(dag_id=f"{config.name}_{suffix}", description=description, schedule=schedule,
               start_date=_start(config), catchup=catchup, max_active_runs=max_active_runs,
               default_args=_default_args(config), tags=["mlops", config.name, tag], doc_md=doc_md)


def _default_args(config: ModelConfig) -> dict[str, Any]:
    return {"owner": config.owner, "retries": 1, "retry_delay": dt.timedelta(minutes=2)}


def training_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_training``: wait_for_data -> validate -> train -> promote -> notify."""
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from airflow_mlops.operators import DataValidationOperator, PromoteModelOperator, TrainModelOperator
    from airflow_mlops.operators.registry import NotifyPromotionOperator
    from airflow_mlops.sensors.data import DataPartitionSensor

    request = retrain_request_asset(config.name)
    cron = config.schedules.nightly_retraining or config.schedules.training
    schedule: Any = (AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[request])
                     if cron else [request])
    common = {"config_path": config_path, "storage_uri": storage_uri}
    with _model_dag(
        config, "training", "training",
        description=f"Validate, train, register and promote {config.name} ({config.task})",
        schedule=schedule,
        doc_md=f"Training pipeline of **{config.name}** built from `{os.path.basename(config_path)}`. "
               f"Owner: {config.owner}. Runs nightly (`{cron}`) and on `{request.uri}` events.",
    ) as dag:
        wait = DataPartitionSensor(task_id="wait_for_data", config_path=config_path, storage_uri=storage_uri,
                                   poke_interval=60, timeout=6 * 3600, mode="reschedule")
        _seed_example_data(config, wait, "training", common)
        data = data_asset(config, storage_uri)
        validate = DataValidationOperator(task_id="validate", with_target=True, retries=0, inlets=[data], **common)
        if config.segments is not None:
            _segmented_training(config, config_path, storage_uri, wait >> validate, data)
            return dag
        train = TrainModelOperator(task_id="train", inlets=[data], outlets=[model_version_asset(config.name)],
                                   **common)
        promote = PromoteModelOperator(task_id="promote", candidate_task_id="train", **common)
        notify = NotifyPromotionOperator(task_id="notify", promote_task_id="promote", **common)
        wait >> validate >> train >> promote >> notify
        if config.promotion.require_approval:
            from airflow_mlops.sensors.registry import ModelApprovalSensor

            version = "{{ ti.xcom_pull(task_ids='train')['version'] }}"
            # waits only when the gate left the version awaiting approval (skipped otherwise)
            approval = ModelApprovalSensor(task_id="wait_for_approval", model=config.name, version=version,
                                           promote_task_id="promote", **_approval_wait(config, storage_uri))
            promote >> approval >> PromoteModelOperator(task_id="promote_approved", version=version, **common) \
                >> NotifyPromotionOperator(task_id="notify_approved", promote_task_id="promote_approved", **common)
    return dag


def _approval_wait(config: ModelConfig, storage_uri: str | None) -> dict[str, Any]:
    """How the training DAGs wait for an approval: in the triggerer, every ``promotion.approval_poke_seconds``
    (10 minutes), for ``promotion.approval_timeout_hours`` (a week)."""
    p = config.promotion
    return {"storage_uri": storage_uri, "deferrable": True, "poke_interval": p.approval_poke_seconds,
            "timeout": p.approval_timeout_hours * 3600}


def _segmented_training(config: ModelConfig, config_path: str, storage_uri: str | None, upstream: Any,
                        data: Any) -> None:
    """list_segments -> a task group (train -> promote -> notify) mapped over the segment values of the
    training window: ``segment.train[i] -> segment.promote[i] -> segment.notify[i]``."""
    from airflow.sdk import get_current_context, task, task_group

    from airflow_mlops.operators import PromoteModelOperator, TrainModelOperator
    from airflow_mlops.operators.registry import NotifyPromotionOperator

    common = {"config_path": config_path, "storage_uri": storage_uri}

    @task(task_id="list_segments")
    def list_segments() -> list[str]:
        """The segment values of the training window with at least ``segments.min_rows`` rows (the
        mapped list); the skipped ones with their row counts go to the XCom key ``skipped``, the row
        counts of every value to ``rows``."""
        from airflow_mlops.config.parser import load_model_config
        from airflow_mlops.operators.base import context_ds
        from airflow_mlops.segments.flows import list_training_segments
        from airflow_mlops.store.artifacts import ArtifactStore

        context = get_current_context()
        out = list_training_segments(load_model_config(config_path), ArtifactStore(storage_uri), context_ds(context))
        context["ti"].xcom_push(key="skipped", value=out["skipped"])
        context["ti"].xcom_push(key="rows", value=out["rows"])
        segments: list[str] = out["segments"]
        return segments

    @task_group(group_id="segment")
    def per_segment(segment: Any) -> None:
        """train -> promote -> notify of one segment: a failure stays in its segment. With
        ``promotion.require_approval``: promote -> wait_for_approval -> promote_approved -> notify_approved
        (the wait is skipped unless the gate left that segment's version awaiting approval)."""
        train = TrainModelOperator(task_id="train", segment=segment, inlets=[data],
                                   outlets=[model_version_asset(config.name)], **common)
        promote = PromoteModelOperator(task_id="promote", candidate_task_id="segment.train", segment=segment,
                                       **common)
        notify = NotifyPromotionOperator(task_id="notify", promote_task_id="segment.promote", segment=segment,
                                         **common)
        train >> promote >> notify
        if config.promotion.require_approval:
            from airflow_mlops.sensors.registry import ModelApprovalSensor

            approval = ModelApprovalSensor(task_id="wait_for_approval", promote_task_id="segment.promote",
                                           **_approval_wait(config, storage_uri))
            version = "{{ ti.xcom_pull(task_ids='segment.wait_for_approval', map_indexes=ti.map_index)['version'] }}"
            promote >> approval >> PromoteModelOperator(task_id="promote_approved", version=version, segment=segment,
                                                        **common) \
                >> NotifyPromotionOperator(task_id="notify_approved", promote_task_id="segment.promote_approved",
                                           segment=segment, **common)

    segments = list_segments()
    upstream >> segments >> per_segment.expand(segment=segments)


def _segmented_scoring(config: ModelConfig, config_path: str, storage_uri: str | None, upstream: Any) -> None:
    """plan_segments -> score mapped over the segments (or segment x input file) -> merge."""
    from airflow.sdk import get_current_context, task

    from airflow_mlops.operators.inference import BatchInferenceOperator, MergePredictionPartsOperator

    common = {"config_path": config_path, "storage_uri": storage_uri}

    @task(task_id="plan_segments", retries=0)
    def plan_segments() -> list[dict[str, Any]]:
        """One scoring task per segment value of the partition (per value and file with
        ``segments.map_files``); fails listing the segments without a champion as of the logical date.
        Each segment's champion version goes to the XCom key ``versions``."""
        from airflow_mlops.config.parser import load_model_config
        from airflow_mlops.operators.base import context_ds
        from airflow_mlops.segments.flows import plan_segment_scoring
        from airflow_mlops.store.artifacts import ArtifactStore

        context = get_current_context()
        out = plan_segment_scoring(load_model_config(config_path), ArtifactStore(storage_uri), context_ds(context))
        context["ti"].xcom_push(key="versions", value=out["versions"])
        context["ti"].xcom_push(key="rows", value=out["rows"])
        tasks: list[dict[str, Any]] = out["tasks"]
        return tasks

    plan = plan_segments()
    score = BatchInferenceOperator.partial(
        task_id="score", alias="champion", as_of_logical_date=True,
        inlets=[data_asset(config, storage_uri, config.data.scoring)], **common).expand_kwargs(plan)
    merge = MergePredictionPartsOperator(task_id="merge", parts_task_id="score", segments=True,
                                         outlets=[predictions_asset(config.name)], **common)
    upstream >> plan >> score >> merge


def _seed_example_data(config: ModelConfig, wait: Any, which: str, common: dict[str, Any]) -> None:
    """The example model only (``data.example_rows``): seed_example_data -> wait_for_data, writing the
    missing synthetic partitions so its DAGs run on a fresh install."""
    if not config.data.example_rows:
        return
    from airflow_mlops.operators.example_data import SeedExampleDataOperator

    SeedExampleDataOperator(task_id="seed_example_data", which=which, **common) >> wait


def _start(config: ModelConfig) -> dt.datetime:
    d = dt.date.fromisoformat(config.schedules.start_date)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def batch_scoring_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_batch_scoring``: wait_for_data -> validate -> score (champion as of the logical date)."""

    from airflow_mlops.operators import DataValidationOperator
    from airflow_mlops.operators.inference import BatchInferenceOperator
    from airflow_mlops.sensors.data import DataPartitionSensor

    common: dict[str, Any] = {"config_path": config_path, "storage_uri": storage_uri}
    with _model_dag(
        config, "batch_scoring", "scoring",
        description=f"Daily batch scoring of {config.name} with the champion of each day",
        schedule=config.schedules.scoring,
        catchup=config.schedules.scoring_catchup,
        max_active_runs=config.schedules.max_active_runs,
        doc_md=f"Scores `{config.data.scoring}` daily with **{config.name}**'s champion as of each logical date, "
               "so backfills (`airflow backfill create`) reproduce what production scored that day.",
    ) as dag:
        wait = DataPartitionSensor(task_id="wait_for_data", config_path=config_path, location="scoring",
                                   storage_uri=storage_uri, poke_interval=60, timeout=6 * 3600, mode="reschedule")
        _seed_example_data(config, wait, "scoring", common)
        from airflow_mlops.notifications.mlops import alert_notifier

        # a refused model (tampered, untrusted, forbidden by the promotion policy) -> an ``integrity`` alert
        # naming the version; other failures (a validation gate) -> a ``gate`` alert
        validate = DataValidationOperator(task_id="validate", with_target=False, retries=0,
                                          on_failure_callback=alert_notifier(config, storage_uri=storage_uri), **common)
        if config.segments is not None:
            _segmented_scoring(config, config_path, storage_uri, wait >> validate)
            return dag
        score = BatchInferenceOperator(task_id="score", alias="champion", as_of_logical_date=True,
                                       inlets=[data_asset(config, storage_uri, config.data.scoring),
                                               model_version_asset(config.name)],
                                       outlets=[predictions_asset(config.name)],
                                       on_failure_callback=alert_notifier(config, storage_uri=storage_uri), **common)
        wait >> validate >> score
    return dag


def monitoring_dag(config: ModelConfig, config_path: str, *, storage_uri: str | None = None) -> DAG:
    """``<model>_monitoring``: wait_for_predictions -> drift (emits the retraining request on drift)."""
    from airflow.sdk import AssetAlias

    from airflow_mlops.operators.monitoring import DriftDetectionOperator
    from airflow_mlops.sensors.data import DataPartitionSensor

    with _model_dag(
        config, "monitoring", "monitoring",
        description=f"Daily drift monitoring of {config.name}; drift requests retraining",
        schedule=config.schedules.monitoring,
        doc_md=f"Drift of the scored data against the reference of the version that scored it. A drift share "
               f">= {config.drift.threshold} emits `mlops://{config.name}/retrain-request`, which schedules "
               f"`{config.name}_training`.",
    ) as dag:
        from airflow_mlops.config.locations import Locations
        from airflow_mlops.notifications.mlops import alert_notifier
        from airflow_mlops.operators.data_quality import DataQualityMonitorOperator

        on_failure = alert_notifier(config, storage_uri=storage_uri)  # failures/timeouts -> routed, deduped alert
        predictions = Locations.of(config, storage_uri).predictions()
        wait = DataPartitionSensor(task_id="wait_for_predictions", prefix=predictions.prefix,
                                   storage_uri=storage_uri, poke_interval=60, timeout=6 * 3600, mode="reschedule",
                                   on_failure_callback=on_failure)
        # data quality of the day's input: freshness deadline (alert), then volume and duplicate checks
        deadline = config.monitoring.freshness_deadline_hours
        wait_data = DataPartitionSensor(task_id="wait_for_data", config_path=config_path, location="scoring",
                                        storage_uri=storage_uri, poke_interval=300,
                                        timeout=(24 + deadline + 1) * 3600, mode="reschedule",
                                        deadline_hours=deadline, alert_config_path=config_path,
                                        on_failure_callback=on_failure)
        wait_data >> DataQualityMonitorOperator(task_id="data_quality", config_path=config_path,
                                                storage_uri=storage_uri)
        drift = DriftDetectionOperator(task_id="drift", config_path=config_path, storage_uri=storage_uri,
                                       inlets=[predictions_asset(config.name)],
                                       outlets=[AssetAlias(retrain_alias_name(config.name))])
        wait >> drift
        if config.data.has_ground_truth:  # performance on late-arriving labels, per slice, with alerts
            from airflow_mlops.operators.monitoring import PerformanceMonitorOperator

            wait >> PerformanceMonitorOperator(task_id="performance", config_path=config_path,
                                               storage_uri=storage_uri)
    return dag


def build_dags_for_config(config_path: str, *, storage_uri: str | None = None) -> dict[str, DAG]:
    """The ready-made DAGs (training, batch scoring, monitoring) of one model config file.

    Reads no data: the checks against the data run in each run's ``validate`` task
    (:func:`airflow_mlops.validation.partition.check_partition`).

    Raises:
        ConfigError: the config is invalid (the message names the file and the field).
    """
    from airflow_mlops.config.parser import load_model_config

    # structure only: importing the estimator's library (scikit-learn: ~1 s) is left to the tasks
    config = load_model_config(config_path, check_estimator=False)
    path = os.path.abspath(config_path)
    dags: dict[str, DAG] = {}
    for factory in (training_dag, batch_scoring_dag, monitoring_dag):
        dag = factory(config, path, storage_uri=storage_uri)
        dags[dag.dag_id] = dag
    return dags


def configs_dir_for(dag_file: str) -> str:
    """Where DAG files look for model configs: ``$MLOPS_CONFIGS_DIR``, else ``configs/`` next to the DAG file."""
    return os.environ.get("MLOPS_CONFIGS_DIR") or os.path.join(os.path.dirname(os.path.abspath(dag_file)), "configs")


def config_path_for(dag_file: str, configs_dir: str | None = None) -> str:
    """The config of a per-model DAG file: ``<configs>/<stem>.yaml`` (or ``.yml``) for ``<stem>.py``."""
    from airflow_mlops.config.model import ConfigError

    configs_dir = configs_dir or configs_dir_for(dag_file)
    stem = os.path.splitext(os.path.basename(dag_file))[0]
    for ext in (".yaml", ".yml"):
        candidate = os.path.join(configs_dir, stem + ext)
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError(f"no model config {stem}.yaml in {configs_dir}: the DAG file {os.path.basename(dag_file)} "
                      f"loads the config with the same name; add {stem}.yaml there or rename the DAG file",
                      source=os.path.abspath(dag_file))


def dags_for_file(dag_file: str, *, configs_dir: str | None = None,
                  storage_uri: str | None = None) -> dict[str, DAG]:
    """The DAGs of the model whose config has the DAG file's name (``churn.py`` -> ``configs/churn.yaml``).

    One small DAG file per model keeps models isolated: a broken config is an Airflow import error
    of *its* DAG file only, and every other model's DAGs keep loading. In ``dags/<model>.py``::

        from airflow_mlops.dag_factory import dags_for_file
        globals().update(dags_for_file(__file__))

    Configs in the folder without a DAG file of their own are logged as a warning (they would
    otherwise be silently ignored).
    """
    configs_dir = configs_dir or configs_dir_for(dag_file)
    path = config_path_for(dag_file, configs_dir)
    _warn_orphan_configs(os.path.dirname(os.path.abspath(dag_file)), configs_dir)
    return build_dags_for_config(path, storage_uri=storage_uri)


def _warn_orphan_configs(dags_dir: str, configs_dir: str) -> None:
    for cfg in sorted(glob.glob(os.path.join(configs_dir, "*.yaml")) + glob.glob(os.path.join(configs_dir, "*.yml"))):
        stem = os.path.splitext(os.path.basename(cfg))[0]
        if not os.path.exists(os.path.join(dags_dir, stem + ".py")):
            log.warning("model config %s has no DAG file %s.py in %s, so it yields no DAGs; create it with "
                        "`python -m airflow_mlops.cli scaffold-dag %s --dags-folder %s`", cfg, stem, dags_dir, cfg,
                        dags_dir)


def write_dag_file(config_path: str, dags_folder: str) -> str:
    """Create the per-model DAG file ``<dags_folder>/<model>.py`` for ``config_path`` (idempotent)."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    target = os.path.join(dags_folder, stem + ".py")
    text = DAG_FILE_TEMPLATE.format(stem=stem)
    if os.path.exists(target):
        with open(target, encoding="utf-8") as fh:
            if fh.read() == text:
                return target
        raise FileExistsError(f"{target} exists with other content; not overwriting it")
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    return target


DAG_FILE_TEMPLATE = '''"""Ready-made airflow-mlops DAGs of the {stem} model, from configs/{stem}.yaml.

Yields {stem}_training, {stem}_batch_scoring and {stem}_monitoring. A broken config shows up as an
import error of this file only. Set MLOPS_CONFIGS_DIR to read the config from another folder.
"""

from airflow_mlops.dag_factory import dags_for_file

globals().update(dags_for_file(__file__))
'''


def build_dags(configs_dir: str, *, storage_uri: str | None = None) -> dict[str, DAG]:
    """All ready-made DAGs for every ``*.yaml``/``*.yml`` config in ``configs_dir`` (fails on the first
    bad config; for per-model isolation in a DAG folder use one :func:`dags_for_file` file per model)."""
    dags: dict[str, DAG] = {}
    paths = sorted(glob.glob(os.path.join(configs_dir, "*.yaml")) + glob.glob(os.path.join(configs_dir, "*.yml")))
    for path in paths:
        dags.update(build_dags_for_config(path, storage_uri=storage_uri))
    return dags
