"""``<model>_mapped_scoring``: one logical date's batch scoring fanned out over its input files.

The DAG that ``scripts/celery_multiworker.py`` (``make scale-demo``) runs on CeleryExecutor workers
and, as the reference, with ``dag.test()`` on the embedded default (SQLite + ``file://``):

    plan  ->  score[0..n-1]  ->  merge

* ``plan``: the model version that scores the date (the champion as of the end of the logical day,
  resolved once so every part uses the same model) and the keys of the input partition's files;
* ``score``: :class:`BatchInferenceOperator` mapped over the files (``.partial(...).expand_kwargs(plan())``),
  one committed part per file under ``predictions/<model>/_parts/ds=<ds>/``;
* ``merge``: :class:`MergePredictionPartsOperator` commits ``predictions/<model>/ds=<ds>/`` atomically
  from the parts (refusing parts from different versions, overlaps, or missing files).

The model config is ``$MLOPS_SCALE_CONFIG`` (default ``dags/configs/churn.yaml`` of this repository);
the artifact store is ``[mlops] storage_uri``. Triggered only (``schedule=None``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.dag_factory import predictions_asset
from airflow_mlops.operators.inference import BatchInferenceOperator, MergePredictionPartsOperator

CONFIG = os.environ.get("MLOPS_SCALE_CONFIG") or str(Path(__file__).resolve().parents[2] / "dags" / "configs"
                                                         / "churn.yaml")
MODEL = load_model_config(CONFIG).name

with DAG(
    dag_id=f"{MODEL}_mapped_scoring",
    description=f"Batch scoring of {MODEL} mapped over the input files of the logical date",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["mlops", MODEL, "scoring", "mapped"],
    doc_md=__doc__,
) as dag:

    @task
    def plan(ds: str | None = None) -> list[dict]:
        """One ``{"files", "version"}`` per input file of ``ds``; the version is the champion as of
        the end of the logical day, resolved once for all parts."""
        from airflow_mlops.registry.model_registry import ModelRegistry
        from airflow_mlops.scoring.batch import partition_input_files
        from airflow_mlops.scoring.selection import select_model
        from airflow_mlops.store.artifacts import ArtifactStore

        config = load_model_config(CONFIG)
        store = ArtifactStore()
        chosen = select_model(ModelRegistry(store), config.name, ds, as_of_logical_date=True)
        files = partition_input_files(config, store, ds)
        return [{"files": f, "version": chosen["version"]} for f in files]

    parts = BatchInferenceOperator.partial(task_id="score", config_path=CONFIG).expand_kwargs(plan())
    parts >> MergePredictionPartsOperator(task_id="merge", config_path=CONFIG, parts_task_id="score",
                                          outlets=[predictions_asset(MODEL)])
