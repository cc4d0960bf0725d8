"""Dag files never read data at parse time: the checks against the data run in the first task of a run.

An empty partition (right schema, zero rows) or a broken one (a renamed feature column) must not make
the model's Dag file fail to import; the run of that date fails naming the file and the column, and the
run of a good date is not affected.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
import yaml
from airflow_env import REPO, AirflowHome

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import DataError, Dataset
from airflow_mlops.validation.partition import check_partition

GOOD, EMPTY, BROKEN = "2024-01-01", "2024-01-02", "2024-01-03"


def _write_partitions(data: Dataset) -> None:
    good = churn_day(GOOD, rows=200)
    data.write(GOOD, good)
    data.write(EMPTY, pa.Table.from_pandas(good.iloc[:0], preserve_index=False))  # right schema, 0 rows
    data.write(BROKEN, churn_day(BROKEN, rows=200).rename(columns={"tenure_months": "tenure"}))


def _config(tmp_path):
    cfg = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    cfg["data"].pop("example_rows", None)  # real data: no seeding of missing days
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "churn.yaml").write_text(yaml.safe_dump(cfg))
    return configs


def test_check_partition_names_the_file_and_the_column(tmp_path):
    config = load_model_config(_config(tmp_path) / "churn.yaml")
    store = ArtifactStore("file://" + str(tmp_path / "store"))
    data = Locations(config, store).input
    _write_partitions(data)
    check_partition(config, data, GOOD)
    with pytest.raises(DataError, match=r"ds=2024-01-02.* is empty \(0 rows"):
        check_partition(config, data, EMPTY)
    with pytest.raises(DataError) as e:
        check_partition(config, data, BROKEN)
    assert data.files(BROKEN)[0].rsplit("/", 1)[-1] in str(e.value) and "tenure_months" in str(e.value)
    with pytest.raises(DataError, match="customer_id"):  # scoring input: keys and features only
        check_partition(config, _renamed(data, store), GOOD, with_target=False)


def test_a_task_that_does_not_fit_the_target_fails_the_run_not_the_parse(tmp_path):
    configs = _config(tmp_path)
    cfg = yaml.safe_load((configs / "churn.yaml").read_text())
    cfg.update({"task": "multiclass", "metrics": {"primary": "f1_macro"}})
    (configs / "churn.yaml").write_text(yaml.safe_dump(cfg))
    config = load_model_config(configs / "churn.yaml")  # the config alone is valid
    data = Locations(config, ArtifactStore("file://" + str(tmp_path / "store"))).input
    _write_partitions(data)
    with pytest.raises(DataError, match=r"ds=2024-01-01/.*\(task\).*churned"):
        check_partition(config, data, GOOD)


def _renamed(data: Dataset, store: ArtifactStore) -> Dataset:
    other = Dataset(store, "data/renamed")
    other.write(GOOD, data.read(GOOD).rename(columns={"customer_id": "id"}))
    return other


@pytest.mark.e2e
def test_bad_partitions_do_not_break_the_parse_and_fail_only_their_run(tmp_path):
    af = AirflowHome(tmp_path, configs=_config(tmp_path))
    config = load_model_config(af.configs / "churn.yaml")
    _write_partitions(Locations(config, ArtifactStore(af.storage_uri)).input)
    code = textwrap.dedent(f"""
        import datetime as dt
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / 'dags' / 'churn.py')!r})
        print("DAGS", sorted(bag.dag_ids))
        print("ERRORS", dict(bag.import_errors))
        dag = bag.dags["churn_training"].partial_subset(["validate"], include_upstream=True)
        for ds in {[GOOD, EMPTY, BROKEN]!r}:
            run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
            print("RUN", ds, run.state)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert "DAGS ['churn_batch_scoring', 'churn_monitoring', 'churn_training']" in proc.stdout, out[-4000:]
    assert "ERRORS {}" in proc.stdout, out[-4000:]
    runs = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert runs == [[GOOD, "success"], [EMPTY, "failed"], [BROKEN, "failed"]], out[-4000:]
    assert "ds=2024-01-02 is empty (0 rows" in out, out[-4000:]
    assert "ds=2024-01-03/" in out and "tenure_months" in out, out[-4000:]
