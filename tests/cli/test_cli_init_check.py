"""`cli init` (a commented config + Dag file inferred from a dataset) and `cli check` (exit codes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.cli import main
from airflow_mlops.config.parser import load_model_config
from airflow_mlops.dag_factory import DAG_FILE_TEMPLATE
from airflow_mlops.demo.data import churn_day

DAYS = ["2024-01-01", "2024-01-02"]


def write_partitions(root: Path, make, days=DAYS, fmt="parquet") -> str:
    for i, d in enumerate(days):
        part = root / f"ds={d}"
        part.mkdir(parents=True)
        df = make(i)
        if fmt == "csv":
            df.to_csv(part / "part-0.csv", index=False)
        else:
            df.to_parquet(part / "part-0.parquet", index=False)
    return "file://" + str(root)


def penguins(i: int, n: int = 300) -> pd.DataFrame:
    """Multiclass string target, string categoricals with missing values, an integer-coded category."""
    rng = np.random.default_rng(i)
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], n)
    island = rng.choice(["Biscoe", "Dream", "Torgersen", None], n, p=[0.4, 0.3, 0.25, 0.05]).astype(object)
    flipper = rng.normal(200, 10, n) + (species == "Gentoo") * 20
    flipper[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "penguin_id": np.arange(i * n, (i + 1) * n),
        "island": island,
        "flipper_length_mm": flipper,
        "year_code": rng.integers(0, 3, n),  # integer-coded category
        "species": species,
    })


def houses(i: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(10 + i)
    rooms = rng.integers(1, 8, n)
    return pd.DataFrame({"house_id": [f"h{i}-{k}" for k in range(n)], "rooms": rooms,
                         "area": rng.normal(100, 20, n), "when": pd.Timestamp("2024-01-01"),
                         "price": rooms * 50_000 + rng.normal(0, 1e4, n)})


def ratings(i: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(20 + i)
    return pd.DataFrame({"review_id": np.arange(n), "length": rng.integers(10, 500, n),
                         "stars": rng.integers(1, 6, n)})


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def init(capsys, tmp_path: Path, data: str, target: str, *extra: str):
    return run(capsys, "init", "--data", data, "--target", target, "--dags-folder", str(tmp_path / "dags"), *extra)


def assert_checks(capsys, config: str) -> None:
    code, out, err = run(capsys, "check", config, "--data")
    assert code == 0, err
    assert out["valid"] is True and out["data"]["partitions"] >= 1


def test_init_binary_writes_commented_config_and_dag_file(tmp_path, capsys):
    data = write_partitions(tmp_path / "data" / "customers", lambda i: churn_day(DAYS[i], 300))
    code, out, err = init(capsys, tmp_path, data, "churned")
    assert code == 0, err
    cfg_path = tmp_path / "dags" / "configs" / "customers.yaml"
    assert out["config"] == str(cfg_path) and out["task"] == "binary" and out["keys"] == ["customer_id"]
    assert set(out["categorical_features"]) == {"contract", "region"}
    assert "churned" not in out["features"] and "customer_id" not in out["features"]
    text = cfg_path.read_text()
    for line in text.splitlines():  # every key line carries a comment
        if line and not line.startswith("#") and not line.endswith(":"):
            assert "#" in line, line
    assert "example_rows:" not in text
    assert "support_calls" in text and "category codes" in text  # few-valued int column explained
    config = load_model_config(cfg_path)
    assert config.task == "binary" and config.data.uri == data and config.keys == ("customer_id",)
    assert config.data.example_rows is None
    dag = tmp_path / "dags" / "customers.py"
    assert dag.read_text() == DAG_FILE_TEMPLATE.format(stem="customers")
    assert_checks(capsys, str(cfg_path))


def test_init_multiclass_strings_missing_values_and_codes(tmp_path, capsys):
    data = write_partitions(tmp_path / "penguins", penguins)
    code, out, err = init(capsys, tmp_path, data, "species", "--name", "penguin_species")
    assert code == 0, err
    assert out["model"] == "penguin_species" and out["task"] == "multiclass"
    assert out["keys"] == ["penguin_id"]
    assert out["features"] == ["island", "flipper_length_mm", "year_code"]
    assert out["categorical_features"] == ["island"]
    text = Path(out["config"]).read_text()
    assert "missing (imputed)" in text and "year_code" in text and "category codes" in text
    config = load_model_config(out["config"])
    assert config.task == "multiclass" and config.metrics.primary == "f1_macro"
    assert_checks(capsys, out["config"])


def test_init_regression_excludes_unusable_dtypes(tmp_path, capsys):
    data = write_partitions(tmp_path / "houses", houses)
    code, out, err = init(capsys, tmp_path, data, "price")
    assert code == 0, err
    assert out["task"] == "regression" and out["keys"] == ["house_id"]
    assert "when" in out["excluded"] and "when" not in out["features"]
    config = load_model_config(out["config"])
    assert config.estimator.class_path.endswith("HistGradientBoostingRegressor")
    assert_checks(capsys, out["config"])


def test_init_csv_single_file_inside_a_partition(tmp_path, capsys):
    data = write_partitions(tmp_path / "customers", lambda i: churn_day(DAYS[i], 200), fmt="csv")
    path = str(tmp_path / "customers" / f"ds={DAYS[0]}" / "part-0.csv")
    code, out, err = init(capsys, tmp_path, path, "churned")
    assert code == 0, err
    config = load_model_config(out["config"])
    assert config.data.format == "csv" and config.data.uri == data and config.name == "customers"
    assert_checks(capsys, out["config"])
    code, out, err = init(capsys, tmp_path, data, "churned", "--name", "customers_csv")  # the folder of CSVs
    assert code == 0, err
    assert load_model_config(out["config"]).data.format == "csv"
    assert_checks(capsys, out["config"])


def test_ambiguous_integer_target_asks_for_task(tmp_path, capsys):
    data = write_partitions(tmp_path / "reviews", ratings)
    code, out, err = init(capsys, tmp_path, data, "stars")
    assert code == 2 and out is None
    assert "multiclass or regression? pass --task" in err
    assert not (tmp_path / "dags").exists()
    code, out, err = init(capsys, tmp_path, data, "stars", "--task", "multiclass")
    assert code == 0, err
    assert load_model_config(out["config"]).task == "multiclass"
    assert_checks(capsys, out["config"])


def test_no_key_candidate_asks_for_keys(tmp_path, capsys):
    data = write_partitions(tmp_path / "nokey", lambda i: churn_day(DAYS[i], 100).drop(columns="customer_id"))
    code, _, err = init(capsys, tmp_path, data, "churned")
    assert code == 2 and "no unique key candidate" in err and "pass --keys" in err
    code, _, err = init(capsys, tmp_path, data, "churned", "--keys", "nope")
    assert code == 2 and "nope" in err and "columns:" in err
    code, out, err = init(capsys, tmp_path, data, "churned", "--keys", "tenure_months")
    assert code == 0, err
    assert out["keys"] == ["tenure_months"] and "tenure_months" not in out["features"]


def test_several_key_candidates_ask_for_keys(tmp_path, capsys):
    data = write_partitions(tmp_path / "two", lambda i: churn_day(DAYS[i], 100).assign(order_id=range(100)))
    code, _, err = init(capsys, tmp_path, data, "churned")
    assert code == 2 and "several key candidates" in err and "--keys" in err


def test_missing_target_lists_columns(tmp_path, capsys):
    data = write_partitions(tmp_path / "customers", lambda i: churn_day(DAYS[i], 100))
    code, _, err = init(capsys, tmp_path, data, "churn")
    assert code == 2
    assert "'churn'" in err and "columns: customer_id, tenure_months" in err and "churned" in err


def test_single_valued_target_and_unreadable_data(tmp_path, capsys):
    data = write_partitions(tmp_path / "const", lambda i: churn_day(DAYS[i], 100).assign(churned=1))
    code, _, err = init(capsys, tmp_path, data, "churned")
    assert code == 2 and "single value" in err
    (tmp_path / "empty").mkdir()
    code, _, err = init(capsys, tmp_path, "file://" + str(tmp_path / "empty"), "churned")
    assert code == 4 and "no ds=YYYY-MM-DD partitions" in err


def test_init_never_overwrites_without_force(tmp_path, capsys):
    data = write_partitions(tmp_path / "customers", lambda i: churn_day(DAYS[i], 100))
    code, out, err = init(capsys, tmp_path, data, "churned")
    assert code == 0, err
    cfg = Path(out["config"])
    cfg.write_text(cfg.read_text() + "# my edit\n")
    code, _, err = init(capsys, tmp_path, data, "churned")
    assert code == 2 and "not overwriting" in err and "--force" in err
    assert cfg.read_text().endswith("# my edit\n")
    # a hand-edited Dag file is protected too, even when the config is gone
    cfg.unlink()
    dag = tmp_path / "dags" / "customers.py"
    dag.write_text("# mine\n")
    code, _, err = init(capsys, tmp_path, data, "churned")
    assert code == 2 and str(dag) in err and not cfg.exists()
    code, out, err = init(capsys, tmp_path, data, "churned", "--force")
    assert code == 0, err
    assert dag.read_text() == DAG_FILE_TEMPLATE.format(stem="customers")
    assert "# my edit" not in cfg.read_text()


def test_check_exit_codes(tmp_path, capsys):
    data = write_partitions(tmp_path / "customers", lambda i: churn_day(DAYS[i], 100))
    code, out, err = init(capsys, tmp_path, data, "churned")
    assert code == 0, err
    good = Path(out["config"])
    code, out, err = run(capsys, "check", str(good))
    assert code == 0 and out["valid"] is True and "data" not in out

    bad = tmp_path / "bad.yaml"  # invalid config: exit 2, the field on stderr
    bad.write_text(good.read_text().replace("threshold: 0.5", "threshold: 1.5"))
    code, out, err = run(capsys, "check", str(bad))
    assert code == 2 and out is None and "drift.threshold" in err and str(bad) in err

    typo = tmp_path / "typo.yaml"
    typo.write_text(good.read_text().replace("cv_folds:", "cv_fold:"))
    code, _, err = run(capsys, "check", str(typo))
    assert code == 2 and "training.cv_fold" in err

    # valid config that does not fit the data: exit 2 with --data only, naming file and column
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(good.read_text().replace("target: churned", "target: churn"))
    assert run(capsys, "check", str(wrong))[0] == 0
    code, _, err = run(capsys, "check", str(wrong), "--data")
    assert code == 2
    assert f"ds={DAYS[-1]}/part-0.parquet" in err and "target" in err and "churn" in err

    dtype = tmp_path / "dtype.yaml"  # regression on a string column: fine alone, incompatible with the data
    dtype.write_text(f"name: d\nowner: x\ndata: {{dataset: customers, uri: '{data}'}}\nkeys: [customer_id]\n"
                     f"target: contract\ntask: regression\n")
    assert run(capsys, "check", str(dtype))[0] == 0
    code, _, err = run(capsys, "check", str(dtype), "--data")
    assert code == 2 and "task" in err and "contract" in err and "part-0.parquet" in err

    moved = tmp_path / "moved.yaml"  # data not there: exit 4
    moved.write_text(good.read_text().replace(data, data + "_moved"))
    code, _, err = run(capsys, "check", str(moved), "--data")
    assert code == 4 and "no ds=YYYY-MM-DD partitions" in err

    (Path(data[len("file://"):]) / "ds=2024-01-03").mkdir()
    pd.DataFrame({c: pd.Series([], dtype=t) for c, t in churn_day(DAYS[0], 5).dtypes.items()}).to_parquet(
        Path(data[len("file://"):]) / "ds=2024-01-03" / "part-0.parquet")
    code, _, err = run(capsys, "check", str(good), "--data")
    assert code == 4 and "ds=2024-01-03" in err and "empty" in err

    code, _, err = run(capsys, "check", str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml" in err


def test_init_and_check_on_s3(s3_root, tmp_path):
    """In real processes: stdout holds only the JSON answer even when the S3 hook logs."""
    import subprocess
    import sys

    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    root = s3_root + "/data/customers"
    dataset = Dataset(ArtifactStore(root), "", "parquet")
    for d in DAYS:
        dataset.write(d, churn_day(d, 200))

    def cli(*argv: str) -> tuple[int, str, str]:
        p = subprocess.run([sys.executable, "-m", "airflow_mlops.cli", *argv], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "AIRFLOW_HOME": str(tmp_path / "home")})
        return p.returncode, p.stdout, p.stderr

    code, out, err = cli("init", "--data", root, "--target", "churned", "--dags-folder", str(tmp_path / "dags"))
    assert code == 0, err
    out = json.loads(out)
    assert out["task"] == "binary" and out["sample"]["source"] == f"{root}/ds={DAYS[-1]}"
    assert load_model_config(out["config"]).data.uri == root
    code, checked, err = cli("check", out["config"], "--data")
    assert code == 0, err
    assert json.loads(checked)["data"]["partitions"] == 2


def test_key_names_and_target_kinds(tmp_path, capsys):
    from airflow_mlops.config.infer import DataSample, InitError, _looks_like_id, propose_config

    assert all(map(_looks_like_id, ["id", "ID", "customer_id", "customerId", "orderID", "row-id", "id_row",
                                    "session_key", "uuid"]))
    assert not any(map(_looks_like_id, ["paid", "valid", "turkey", "idle", "width", "monkey", "video"]))

    def sample(df):
        return DataSample(frame=df, schema={c: str(t) for c, t in df.dtypes.items()}, source="mem",
                          data_uri="file:///x/things", fmt="parquet", partitions=["2024-01-01"])

    n = 200
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"thing_id": np.arange(n), "paid": rng.integers(0, 1000, n), "x": rng.normal(size=n)})
    p = propose_config(sample(base.assign(ok=rng.random(n) < 0.3)), target="ok")
    assert p.task == "binary" and p.keys == ["thing_id"] and p.name == "things"
    p = propose_config(sample(base.assign(y=np.where(rng.random(n) < 0.5, 0.0, 1.0))), target="y")
    assert p.task == "binary"  # a 0/1 float column (ints with NaN become floats)
    with pytest.raises(InitError, match="more than 50 classes"):
        propose_config(sample(base.assign(city=[f"c{i % 60}" for i in range(n)])), target="city")
    with pytest.raises(InitError, match="multiclass or regression"):
        propose_config(sample(base.assign(y=rng.integers(0, 4, n).astype(float))), target="y")
    p = propose_config(sample(base.assign(y=rng.integers(0, 4, n))), target="y", task="regression")
    assert p.task == "regression"
    with pytest.raises(InitError, match="--task binary needs exactly 2"):
        propose_config(sample(base.assign(y=rng.integers(0, 4, n))), target="y", task="binary")
    with pytest.raises(InitError, match="--name"):
        propose_config(sample(base.assign(ok=rng.random(n) < 0.3)), target="ok", name="Bad-Name")
