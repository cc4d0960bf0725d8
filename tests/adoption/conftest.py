"""The adoption suite's shared state: one Airflow home (one ``db migrate``) for the whole module, every
dataset's config written by ``cli init``, the ready-made Dags run with ``dag.test()`` in two subprocesses
(the clean loop of every model, then the corrupt days), and the results table printed at the end."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from adoption_datasets import CORRUPT_DAY, DATASETS, SCORE_DAY, TABLE_KEY, TRAIN_DAYS, Spec

HERE = Path(__file__).resolve().parent


@dataclass
class Adoption:
    root: Path
    store_root: Path  # the artifact store ([mlops] storage_uri), a folder
    dags: Path
    data: dict[str, str]  # model -> dataset location (file://)
    init: dict[str, dict] = field(default_factory=dict)  # model -> init's JSON answer
    refusals: dict[str, str] = field(default_factory=dict)  # model -> init's message without --task
    runs: dict[tuple[str, str], dict] = field(default_factory=dict)  # (dag_id, ds) -> result
    logs: dict[tuple[str, str], str] = field(default_factory=dict)  # (dag_id, ds) -> that run's log
    import_errors: list[dict] = field(default_factory=list)
    hashes_before: dict[str, str] = field(default_factory=dict)
    hashes_after: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def sha256_tree(root: Path, *subdirs: str) -> dict[str, str]:
    out = {}
    for sub in subdirs:
        base = root / sub
        for path in sorted(base.rglob("*")) if base.exists() else []:
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _write(location: Path, day: str, df) -> None:
    part = location / f"ds={day}"
    part.mkdir(parents=True, exist_ok=True)
    df.to_parquet(part / "part-0.parquet", index=False)


def _init(spec: Spec, data_uri: str, dags: Path, *extra: str) -> tuple[int, str, str]:
    from airflow_mlops.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["init", "--data", data_uri, "--target", spec.target, "--dags-folder", str(dags), *extra])
    return code, out.getvalue(), err.getvalue()


def _run_plan(env: dict, dags: Path, plan: list[tuple[str, str]], workdir: Path, adoption: Adoption,
              label: str) -> None:
    plan_file = workdir / f"plan-{label}.json"
    plan_file.write_text(json.dumps(plan))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE / "run_dags.py"), str(dags), str(plan_file)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, cwd=workdir)
    adoption.seconds[f"subprocess_{label}"] = round(time.monotonic() - start, 1)
    (workdir / f"dags-test-{label}.log").write_text(proc.stdout)
    current, lines = None, []
    for line in proc.stdout.splitlines():
        if line.startswith("ADOPTION-IMPORT-ERRORS "):
            errors = json.loads(line.split(" ", 1)[1])
            if errors:
                adoption.import_errors.append(errors)
        elif line.startswith("ADOPTION-BEGIN "):
            current, lines = tuple(line.split()[1:3]), []
        elif line.startswith("ADOPTION-RESULT "):
            result = json.loads(line.split(" ", 1)[1])
            adoption.runs[(result["dag_id"], result["ds"])] = result
            adoption.logs[(result["dag_id"], result["ds"])] = "\n".join(lines)
            current = None
        elif current is not None:
            lines.append(line)
    missing = [p for p in plan if tuple(p) not in adoption.runs]
    assert proc.returncode == 0 and not missing, \
        f"dags test subprocess {label} ({proc.returncode}) did not run {missing}:\n{proc.stdout[-6000:]}"


@pytest.fixture(scope="module")
def adoption(tmp_path_factory) -> Adoption:
    from airflow_env import AirflowHome

    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("adoption")
    dags = root / "dags"
    (dags / "configs").mkdir(parents=True)
    af = AirflowHome(root, configs=dags / "configs", extra_env={
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        # HistGradientBoosting's OpenMP threads on a loaded 2-core machine: 30x slower fits (digits: 126 s
        # instead of ~4 s for one training run); one thread per process is the right setting for CI
        "OMP_NUM_THREADS": "1",
    })
    adoption = Adoption(root=root, store_root=af.home / "mlops", dags=dags, data={})
    adoption.seconds["db_migrate"] = round(time.monotonic() - t0, 1)
    partitions = {}
    for spec in DATASETS:
        location = root / "data" / spec.name  # each dataset at its own location, away from the store root
        parts = partitions[spec.name] = spec.partitions()
        for day in TRAIN_DAYS + [SCORE_DAY]:
            _write(location, day, parts[day])
        data_uri = adoption.data[spec.name] = "file://" + str(location)
        code, out, err = _init(spec, data_uri, dags)
        if code != 0:  # init refused to guess; pass exactly what it asked for
            adoption.refusals[spec.name] = err
            assert spec.init_args, f"init refused {spec.name} unexpectedly: {err}"
            code, out, err = _init(spec, data_uri, dags, *spec.init_args)
        assert code == 0, f"init {spec.name}: {err}"
        adoption.init[spec.name] = json.loads(out)
    # 1. the clean loop of every model: train on the first days, score and monitor a later clean day
    plan = []
    for spec in DATASETS:
        plan += [(f"{spec.name}_training", TRAIN_DAYS[-1]), (f"{spec.name}_batch_scoring", SCORE_DAY),
                 (f"{spec.name}_monitoring", SCORE_DAY)]
    _run_plan(af.env, dags, plan, root, adoption, "clean")
    # 2. a corrupt later day per dataset family: its scoring run fails cleanly, nothing is lost
    adoption.hashes_before = sha256_tree(adoption.store_root, "registry", "predictions")
    corrupt = [spec for spec in DATASETS if spec.corrupt]
    for spec in corrupt:
        _write(root / "data" / spec.name, CORRUPT_DAY, spec.corrupt_day(partitions[spec.name][SCORE_DAY]))
    _run_plan(af.env, dags, [(f"{spec.name}_batch_scoring", CORRUPT_DAY) for spec in corrupt], root, adoption,
              "corrupt")
    adoption.hashes_after = sha256_tree(adoption.store_root, "registry", "predictions")
    adoption.seconds["total"] = round(time.monotonic() - t0, 1)
    return adoption


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = config.stash.get(TABLE_KEY, None)
    if not table:
        return
    terminalreporter.section("adoption: training -> batch scoring -> monitoring under dag.test()")
    for line in table["lines"]:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(JSON: {table['path']})")
