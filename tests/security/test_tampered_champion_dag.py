"""The batch scoring Dag on a champion whose model file was tampered with (sha256 rewritten in metadata.json):
the run fails in the score task before any row is scored, the predictions and the registry stay byte-for-byte
as they were, and the failure alert (check ``integrity``) names the version. Real Airflow (``dag.test()`` in a
fresh Airflow home), the real DAG factory and the real webhook route."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import REPO, AirflowHome
from test_registry_attacks import _rewrite_hashes, craft, snapshot

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e


def test_tampered_champion_fails_the_scoring_run_before_any_row_and_alerts_naming_the_version(
        tmp_path, webhook_server):
    configs = tmp_path / "configs"
    configs.mkdir()
    raw = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    raw["data"].pop("example_rows")  # no seeding: the test writes the data itself
    raw["alerts"] = {"webhook": webhook_server.url}
    (configs / "churn.yaml").write_text(yaml.safe_dump(raw))
    af = AirflowHome(tmp_path, configs=configs)
    store = ArtifactStore(af.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2023-12-27", 8):
        data.write(day, churn_day(day, rows=400))
    cfg = load_model_config(configs / "churn.yaml")
    trained = train_and_register(cfg, store, "2024-01-02", {"dag_id": "churn_training", "triggered_by": "alice"})
    version = trained["version"]
    assert promote_candidate(cfg, store, version, run_info={"logical_date": "2024-01-01T00:00:00+00:00",
                                                             "triggered_by": "alice"})["alias"] == "champion"
    assert ModelRegistry(store).get_metadata("churn", version)["registered_by"] == "alice"
    marker = tmp_path / "pwned"
    _rewrite_hashes(store, version, "model.skops",
                    craft("builtins", "exec", (f"open({str(marker)!r}, 'w').write('pwned')",)))
    before = snapshot(store)

    code = textwrap.dedent("""
        import datetime as dt
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder=DAGS).dags["churn_batch_scoring"]
        run = dag.test(logical_date=dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc))
        print("RUN", run.state, {ti.task_id: ti.state for ti in run.get_task_instances()})
    """).replace("DAGS", repr(str(REPO / "dags")))
    proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RUN ")), "")
    assert line.startswith("RUN failed"), out[-4000:]
    # the first task that reads the champion refuses it (validation infers its suite from the champion's
    # signed reference); scoring never starts
    assert "'validate': 'failed'" in line and "'score': 'upstream_failed'" in line, line
    assert not marker.exists(), "the payload ran"
    # nothing scored, nothing changed (the validation report of the day is the only new output)
    after = snapshot(store)
    assert not [k for k in after if k.startswith("predictions/")]
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith("alerts/churn/integrity/") for k in set(after) - set(before)), \
        sorted(set(after) - set(before))
    # one alert, check "integrity", naming the version and what failed
    alerts = [r["json"] for r in webhook_server.delivered]
    assert len(alerts) == 1, alerts
    text = json.dumps(alerts[0])
    assert "integrity" in text and f"churn v{version}" in text and "signature does not verify" in text, text
