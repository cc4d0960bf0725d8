"""OpenLineage reporting of the operators, checked with the real apache-airflow-providers-openlineage
classes: the provider's ExtractorManager picks our ``get_openlineage_facets_on_complete`` (the
DefaultExtractor path the OpenLineage listener takes after a successful task), and the returned
``OperatorLineage`` names the input/output datasets and the model version.

Operators are constructed and their ``execute`` is run with a task context carrying the task
instance identifiers (what Airflow's task runner passes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import yaml
from gov_helpers import DAYS, DS, churn_config

from airflow_mlops.demo.data import churn_day
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytest.importorskip("airflow.providers.openlineage")


def _context(task_id: str) -> dict:
    ti = SimpleNamespace(dag_id="churn_training", run_id="manual__2024-01-02", task_id=task_id, try_number=1)
    return {"ti": ti, "run_id": ti.run_id, "logical_date": None}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ol")
    store = ArtifactStore("file://" + str(root / "store"))
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=300))
    cfg_path = root / "churn.yaml"
    cfg_path.write_text(yaml.safe_dump(churn_config().to_dict()))
    return store, data, str(cfg_path)


def _extract(op):
    """What the OpenLineage listener gets for a completed task: the provider's extractor for the operator."""
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    assert ExtractorManager().get_extractor_class(op) is DefaultExtractor
    lineage = DefaultExtractor(op).extract_on_complete(None)
    assert lineage is not None, "the extractor swallowed an exception from get_openlineage_facets_on_complete"
    return lineage


def _names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


@pytest.fixture(scope="module")
def trained(env):
    from airflow_mlops.operators.training import TrainModelOperator

    store, data, cfg = env
    op = TrainModelOperator(task_id="train", config_path=cfg, storage_uri=store.root, ds=DS)
    out = op.execute(_context("train"))
    return op, out


def test_training_reports_data_in_and_model_version_out(env, trained):
    from airflow.providers.common.compat.openlineage.facet import Dataset as OLDataset
    from airflow.providers.common.compat.openlineage.facet import RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    store, data, _ = env
    op, out = trained
    lineage = _extract(op)
    assert isinstance(lineage, OperatorLineage)
    base = store.root.removeprefix("file://")
    assert _names(lineage.inputs) == [("file", f"{base}/data/churn")]
    assert _names(lineage.outputs) == [("file", f"{base}/registry/churn/versions/{out['version']}")]
    assert all(isinstance(d, OLDataset) for d in [*lineage.inputs, *lineage.outputs])
    facet = lineage.run_facets["mlops_model_version"]
    assert isinstance(facet, RunFacet)
    assert (facet.name, facet.version, facet.role) == ("churn", out["version"], "output")
    assert facet.training_data_fingerprint == out["fingerprint"]
    assert facet.partitions == {f"file://{base}/data/churn": DAYS}  # the 7-day window ending DS
    # the facet serializes like any OpenLineage facet (what a transport sends)
    from openlineage.client.serde import Serde

    as_dict = Serde.to_dict(facet)
    assert as_dict["version"] == out["version"] and as_dict["_schemaURL"].endswith("MLOpsModelVersionRunFacet.json")


def test_validation_reports_its_partition_as_input(env, trained):
    from airflow_mlops.operators.validation import DataValidationOperator

    store, _, cfg = env
    op = DataValidationOperator(task_id="validate", config_path=cfg, storage_uri=store.root, ds=DS)
    assert op.execute(_context("validate"))["success"]
    lineage = _extract(op)
    base = store.root.removeprefix("file://")
    assert _names(lineage.inputs) == [("file", f"{base}/data/churn")]
    assert lineage.outputs == [] and lineage.run_facets == {}


def test_reproduce_reports_data_and_model_version_as_inputs(env, trained):
    from airflow_mlops.operators.reproduce import ReproduceModelOperator

    store, _, cfg = env
    _, out = trained
    op = ReproduceModelOperator(task_id="reproduce", config_path=cfg, storage_uri=store.root, version=out["version"])
    assert op.execute(_context("reproduce"))["verdict"] == "reproduced"
    lineage = _extract(op)
    base = store.root.removeprefix("file://")
    assert _names(lineage.inputs) == [("file", f"{base}/data/churn"),
                                      ("file", f"{base}/registry/churn/versions/{out['version']}")]
    [(ns, name)] = _names(lineage.outputs)  # the report it wrote
    assert ns == "file" and name.startswith(f"{base}/registry/churn/versions/{out['version']}/reports/reproduce-")
    assert lineage.run_facets["mlops_model_version"].role == "input"


def test_scoring_reports_input_predictions_and_model_version(env, trained):
    from airflow_mlops.operators.inference import BatchInferenceOperator

    store, _, cfg = env
    _, out = trained
    op = BatchInferenceOperator(task_id="score", config_path=cfg, storage_uri=store.root, ds=DS,
                                version=out["version"])
    os.environ["AIRFLOW_VAR_MLOPS_CHURN_DISABLED"] = ""
    try:
        scored = op.execute(_context("score"))
    finally:
        os.environ.pop("AIRFLOW_VAR_MLOPS_CHURN_DISABLED", None)
    lineage = _extract(op)
    base = store.root.removeprefix("file://")
    assert ("file", f"{base}/data/churn") in _names(lineage.inputs)
    assert ("file", f"{base}/registry/churn/versions/{out['version']}") in _names(lineage.inputs)
    assert _names(lineage.outputs) == [("file", f"{base}/predictions/churn")]
    facet = lineage.run_facets["mlops_model_version"]
    assert (facet.name, facet.version, facet.role) == ("churn", scored["version"], "input")
    assert facet.partitions[f"file://{base}/predictions/churn"] == [DS]


def test_s3_naming_follows_the_openlineage_spec():
    from airflow_mlops.operators.base import openlineage_dataset

    d = openlineage_dataset("s3://ml-artifacts/mlops/data/churn")
    assert (d.namespace, d.name) == ("s3://ml-artifacts", "mlops/data/churn")
    d = openlineage_dataset("file:///srv/mlops/data/churn")
    assert (d.namespace, d.name) == ("file", "/srv/mlops/data/churn")


def test_operators_work_without_the_openlineage_provider(env):
    """The provider is an optional extra: with it unimportable, operators import, run their lineage
    bookkeeping, and only the OpenLineage method itself needs it."""
    store, _, cfg = env
    code = textwrap.dedent(f"""
        import sys
        from airflow.providers_manager import ProvidersManager
        ProvidersManager().initialize_providers_configuration()  # discovery reads installed providers' info
        for m in [m for m in sys.modules if m.startswith(("airflow.providers.openlineage", "openlineage"))]:
            del sys.modules[m]
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.startswith(("airflow.providers.openlineage", "openlineage")):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from airflow_mlops.operators.validation import DataValidationOperator
        from airflow_mlops.operators.reproduce import ReproduceModelOperator
        op = DataValidationOperator(task_id="v", config_path={cfg!r}, storage_uri={store.root!r}, ds={DS!r})
        op._lineage_ds = {DS!r}
        print(op.lineage_info()["inputs"])
        try:
            op.get_openlineage_facets_on_complete(None)
        except ImportError as e:
            print("ImportError", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert f"{store.root}/data/churn" in out.stdout and "ImportError blocked" in out.stdout


def test_ready_made_dags_declare_data_and_model_assets(env):
    """Inlets/outlets of the factory DAGs: data -> validate/train -> model versions -> score -> predictions -> drift."""
    from airflow_mlops.dag_factory import build_dags_for_config

    store, _, cfg = env
    dags = build_dags_for_config(cfg, storage_uri=store.root)

    def uris(dag_id, task_id, what):
        return [getattr(a, "uri", None) or a.name for a in getattr(dags[dag_id].get_task(task_id), what)]

    data = f"{store.root}/data/churn"
    assert uris("churn_training", "validate", "inlets") == [data]
    assert uris("churn_training", "train", "inlets") == [data]
    assert uris("churn_training", "train", "outlets") == ["mlops://churn/versions"]
    assert uris("churn_batch_scoring", "score", "inlets") == [data, "mlops://churn/versions"]
    assert uris("churn_batch_scoring", "score", "outlets") == ["mlops://churn/predictions"]
    assert uris("churn_monitoring", "drift", "inlets") == ["mlops://churn/predictions"]


DAG_FILE = '''
import datetime as dt
import os

from airflow.sdk import DAG

from airflow_mlops.operators.reproduce import ReproduceModelOperator
from airflow_mlops.operators.training import TrainModelOperator

CFG = os.environ["MLOPS_TEST_CONFIG"]
with DAG("ol_lineage", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), catchup=False):
    train = TrainModelOperator(task_id="train", config_path=CFG)
    reproduce = ReproduceModelOperator(task_id="reproduce", config_path=CFG,
                                       version="{{ ti.xcom_pull(task_ids='train')['version'] }}")
    train >> reproduce
'''


@pytest.mark.e2e
def test_openlineage_listener_emits_our_lineage_under_real_airflow(tmp_path):
    """`airflow dags test` with the OpenLineage file transport: the listener's COMPLETE events carry
    our datasets and the model version facet (train: data -> version; reproduce: data + version in)."""
    import json

    from airflow_env import REPO, AirflowHome

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ol_lineage.py").write_text(DAG_FILE)
    events = tmp_path / "ol.jsonl"
    home = AirflowHome(tmp_path, extra_env={
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "MLOPS_TEST_CONFIG": str(REPO / "dags/configs/churn.yaml"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events),
                                                        "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "mlops-test",
    })
    store = ArtifactStore(home.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        data.write(day, churn_day(day, rows=400))
    home.dags_test("ol_lineage", "2024-01-03")
    complete = {}
    for line in events.read_text().splitlines():
        ev = json.loads(line)
        if ev["eventType"] == "COMPLETE":
            complete[ev["job"]["name"]] = ev
    base = home.storage_uri.removeprefix("file://")
    version_dir = ("file", f"{base}/registry/churn/versions/1")
    train = complete["ol_lineage.train"]
    assert [(d["namespace"], d["name"]) for d in train["inputs"]] == [("file", f"{base}/data/churn")]
    assert [(d["namespace"], d["name"]) for d in train["outputs"]] == [version_dir]
    facet = train["run"]["facets"]["mlops_model_version"]
    assert (facet["name"], facet["version"], facet["role"]) == ("churn", 1, "output")
    assert facet["partitions"] == {f"file://{base}/data/churn": ["2024-01-01", "2024-01-02", "2024-01-03"]}
    rep = complete["ol_lineage.reproduce"]
    assert [(d["namespace"], d["name"]) for d in rep["inputs"]] == [("file", f"{base}/data/churn"), version_dir]
    assert rep["run"]["facets"]["mlops_model_version"]["role"] == "input"
    reports = [k for k in store.list("registry/churn/versions/1/reports") if "reproduce-" in k]
    assert len(reports) == 1 and store.read_json(reports[0])["verdict"] == "reproduced"
