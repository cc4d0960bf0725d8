"""Run real Airflow commands (db migrate, dags test) in an isolated AIRFLOW_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class AirflowHome:
    def __init__(self, root: Path, configs: Path | None = None, extra_env: dict | None = None) -> None:
        self.root = root
        self.home = root / "airflow"
        self.home.mkdir(parents=True, exist_ok=True)
        self.configs = root / "configs"
        if configs is None:
            shutil.copytree(REPO / "dags" / "configs", self.configs, dirs_exist_ok=True)
        else:
            self.configs = configs
        self.storage_uri = "file://" + str(self.home / "mlops")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        from airflow_mlops.trust.signing import default_key_file

        self.env.update({
            "AIRFLOW_HOME": str(self.home),
            # one deployment, one signing key: versions the test registers load in the Airflow processes
            "AIRFLOW__MLOPS__SIGNING_KEY_FILE": default_key_file(),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__MLOPS__STORAGE_URI": self.storage_uri,
            "MLOPS_CONFIGS_DIR": str(self.configs),
            **(extra_env or {}),
        })
        self.run("db", "migrate")

    def run(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)
        if check and proc.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                                 f"{proc.stderr[-4000:]}")
        return proc

    def dags_test(self, dag_id: str, ds: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("dags", "test", dag_id, ds, check=check)

    def dags_test_in_one_process(self, runs: list[tuple[str, str]], timeout: int = 900) -> list[str]:
        """``dag.test()`` of each ``(dag_id, ds)`` in order, in one Airflow process (the Dag folder parsed once:
        one interpreter start instead of one per run, as ``airflow dags test`` would); the final state of each
        run. Raises with the output when the process fails."""
        code = ("import datetime as dt, os\nfrom airflow.dag_processing.dagbag import DagBag\n"
                "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER'])\n"
                f"for dag_id, ds in {runs!r}:\n"
                "    when = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc)\n"
                "    print('RUN', dag_id, ds, bag.dags[dag_id].test(logical_date=when).state, flush=True)\n")
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)
        states = [line.split()[3] for line in proc.stdout.splitlines() if line.startswith("RUN ")]
        if proc.returncode != 0 or len(states) != len(runs):
            raise AssertionError(f"dag.test of {runs} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                                 f"{proc.stderr[-4000:]}")
        self.last_output = proc.stdout + proc.stderr
        return states

    def task_states(self, dag_id: str, run_output: str) -> dict[str, str]:
        """task_id -> final state, read from a `dags test` output."""
        import re

        states: dict[str, str] = {}
        for m in re.finditer(r"task_id=(\w+).*?(?:new_state|state)=(\w+)", run_output):
            states[m.group(1)] = m.group(2)
        return states
