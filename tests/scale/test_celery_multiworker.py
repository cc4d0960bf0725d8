"""The multi-worker scale-out script runs for real in CI: CeleryExecutor with one then two workers on
this machine (private Postgres, Redis, moto S3), the mapped scoring DAG checked byte for byte against
the embedded default. Smaller files than ``make scale-demo`` (the point here is correctness, the
speedup is printed, not asserted: on a shared 2-core machine it is noise)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from airflow_env import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_two_celery_workers_share_the_mapped_tasks_and_match_the_reference():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "celery_multiworker.py"), "--files", "8",
         "--rows-per-file", "20000"],
        cwd=REPO, capture_output=True, text=True, timeout=1400)
    out = proc.stdout + proc.stderr
    print(out[-4000:])
    assert proc.returncode == 0, out[-6000:]
    assert "OK: both workers ran mapped tasks and the output equals the reference." in out
    two = re.search(r"2 worker\(s\):.*", out)
    assert two and "worker1" in two.group(0) and "worker2" in two.group(0), out[-3000:]
    assert re.search(r"output equal to the dag\.test reference \(SQLite \+ file://\): (True|yes)", out, re.I), \
        out[-3000:]
    assert re.search(r"speedup \(1 worker / 2 workers\): [0-9.]+x", out)
