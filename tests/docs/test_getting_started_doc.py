"""docs/getting-started.md: every command in its bash blocks runs, in order, in a fresh directory and
AIRFLOW_HOME (one `airflow dags test` of the training Dag on three small partitions)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
SKIP = "<!-- not run by tests:"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<body>.*?)\n```", re.DOTALL)


def blocks() -> tuple[list[str], list[str]]:
    """(blocks to run, blocks marked as not run)."""
    run, skipped = [], []
    for m in BLOCK.finditer(DOC.read_text()):
        (skipped if m.group("before").startswith(SKIP) else run).append(m.group("body"))
    return run, skipped


def test_install_block_names_the_installed_distribution():
    run, skipped = blocks()
    assert len(skipped) == 1 and "pip install" in skipped[0]
    assert not any("pip install" in b for b in run)
    assert importlib.metadata.version("airflow-mlops")  # the distribution the block installs
    assert "airflow-mlops" in skipped[0]


def test_doc_says_one_dag_file_per_model():
    text = DOC.read_text()
    assert "picks up every config" not in text
    assert "One Dag file per model" in text


def test_every_command_runs(tmp_path):
    run, _ = blocks()
    script = "set -euo pipefail\n" + "\n".join(run) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's python/airflow
    env["HOME"] = str(tmp_path)  # nothing from the user's ~/airflow
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    home = tmp_path / "airflow-home"
    assert (home / "airflow.db").exists()
    assert (home / "dags" / "customers.py").exists() and (home / "dags" / "configs" / "customers.yaml").exists()
    assert "example_rows:" not in (home / "dags" / "configs" / "customers.yaml").read_text()
    assert '"valid": true' in proc.stdout  # check --data
    for dag_id in ("customers_training", "customers_batch_scoring", "customers_monitoring"):
        assert dag_id in proc.stdout  # airflow dags list after reserialize
    assert "example_bash_operator" not in proc.stdout  # LOAD_EXAMPLES=False
    assert re.search(r"DagRun Finished: dag_id=customers_training, logical_date=2024-01-03.*state=success", out), \
        out[-4000:]
    assert "customers v1 -> champion" in out  # what the page says the first run does
