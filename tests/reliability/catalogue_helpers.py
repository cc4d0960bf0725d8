"""Helpers of the reliability catalogue: the small churn setup, state snapshots and invariants,
and child processes that can be SIGKILLed at a chosen point."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import SUCCESS_MANIFEST, ArtifactStore, join

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG_PATH = REPO / "dags" / "configs" / "churn.yaml"

TRAIN_DAYS = ["2024-01-01", "2024-01-02"]
DS = "2024-01-03"     # scored in the template (2 input files, 500 rows)
NEXT = "2024-01-04"   # input present in the template, not scored yet
KEY = "customer_id"
OWNER = "ml-platform@example.com"
LOG_TAIL = ["shadow_prediction", "shadow_model_version", "model_name", "model_version", "scored_by",
            "logical_date", "scored_at", "run_id"]
PREDICTION_COLUMNS = [KEY, "prediction", "proba_0", "proba_1", *LOG_TAIL]


def small_config(**promotion: Any):
    """dags/configs/churn.yaml with a 2-day window and a small reference sample."""
    cfg = load_model_config(CONFIG_PATH)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, training_window_days=2),
        training=dataclasses.replace(cfg.training, reference_sample_size=200),
    )
    if promotion:
        cfg = dataclasses.replace(cfg, promotion=dataclasses.replace(cfg.promotion, **promotion))
    return cfg


def input_frames(ds: str) -> list[pd.DataFrame]:
    """Two input files per partition (300 + 200 rows, disjoint keys)."""
    a = churn_day(ds, rows=300)
    b = churn_day(ds, rows=200, seed=7)
    b[KEY] += 500
    return [a, b]


# ---------------------------------------------------------------------------------------------
# state snapshots
# ---------------------------------------------------------------------------------------------
def snapshot(store: ArtifactStore, prefix: str = "") -> dict[str, str]:
    """key -> sha256 of every object below ``prefix`` (what a reader of the store can see)."""
    return {k: hashlib.sha256(store.read_bytes(k)).hexdigest() for k in store.list(prefix)}


def assert_unchanged(store: ArtifactStore, before: dict[str, str], prefix: str = "") -> None:
    after = snapshot(store, prefix)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"store changed: added={added} removed={removed} changed={changed}"


def no_staging_left(store: ArtifactStore, prefix: str) -> bool:
    """No hidden ``.staging-*``/``.tmp-*`` leftovers of a *finished* attempt (file:// only)."""
    if not store.is_local or not os.path.isdir(store.local_path(prefix)):
        return True
    for _dirpath, dirnames, filenames in os.walk(store.local_path(prefix)):
        if any(n.startswith((".staging-", ".tmp-", ".trash-")) for n in [*dirnames, *filenames]):
            return False
    return True


def assert_partition_complete(store: ArtifactStore, key: str, rows: int, keys: tuple[str, ...] = (KEY,),
                              columns: list[str] | None = None) -> pd.DataFrame:
    """A committed partition: manifest present, every listed file readable, no other data file
    under the prefix (no orphan of another attempt), ``rows`` rows, no duplicate keys."""
    manifest = store.read_manifest(key)
    assert manifest is not None, f"{store.uri(key)} has no {SUCCESS_MANIFEST}"
    listed = sorted(join(key, f) for f in manifest["files"])
    present = sorted(k for k in store.list(key) if k.rsplit("/", 1)[-1] != SUCCESS_MANIFEST)
    assert present == listed, f"files not in the manifest under {store.uri(key)}: {sorted(set(present) - set(listed))}"
    df = store.read_table(key).to_pandas()
    assert len(df) == rows == manifest["rows"], (len(df), rows, manifest["rows"])
    if keys:
        dupes = int(df.duplicated(list(keys)).sum())
        assert dupes == 0, f"{dupes} duplicate key(s) in {store.uri(key)}"
    if columns is not None:
        assert list(df.columns) == columns
    return df


def assert_registry_consistent(registry: ModelRegistry, name: str) -> list[int]:
    """Every visible version is complete (all artifacts verify against metadata.json) and has
    exactly one ``register`` audit event; the audit log is gap-free; every alias change chains
    from the previous one and aliases point to visible versions."""
    versions = registry.list_versions(name)
    st = registry.state(name)
    audit = st["audit"]
    assert [e["seq"] for e in audit] == list(range(1, len(audit) + 1)), "audit log has gaps or duplicates"
    registered = sorted(e["version"] for e in audit if e["action"] == "register")
    assert registered == versions, f"register events {registered} != visible versions {versions}"
    for v in versions:
        meta = registry.get_metadata(name, v)
        assert meta["version"] == v
        for rel in meta["artifacts"]:
            registry.read_artifact(name, v, rel)  # raises IntegrityError on a mismatch
    for alias, v in st["aliases"].items():
        assert v in versions, f"alias {alias} -> {v}, not a visible version"
    for alias in {e["alias"] for e in audit if e.get("alias")}:
        events = [e for e in audit if e.get("alias") == alias]
        for prev, cur in zip(events, events[1:]):
            assert cur["from"] == prev["to"], f"alias {alias}: event {cur['seq']} does not chain from {prev['seq']}"
        assert events[-1]["to"] == st["aliases"].get(alias)
    return versions


def copy_store(src: ArtifactStore, dst: ArtifactStore) -> None:
    for key in src.list(""):
        dst.write_bytes(key, src.read_bytes(key))


# ---------------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------------
def child_script(body: str) -> str:
    """A Python program run in a fresh interpreter, with this directory importable."""
    return textwrap.dedent(f"""
        import json, os, sys, time
        sys.path.insert(0, {str(HERE)!r})
        sys.path.insert(0, {str(REPO)!r})
        import warnings; warnings.simplefilter("ignore")
    """) + textwrap.dedent(body)


class Child:
    """A child interpreter running ``body``; stdout/stderr go to files (no pipe can fill up)."""

    def __init__(self, body: str, workdir: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        self._fo, self._fe = open(self.out, "w"), open(self.err, "w")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-c", child_script(body)], cwd=str(REPO),
                                     stdout=self._fo, stderr=self._fe,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})

    def stderr_tail(self) -> str:
        return self.err.read_text()[-3000:]

    def wait_for(self, marker: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited ({self.proc.returncode}) before {marker.name}:\n"
                                     f"{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child did not reach {marker.name} in {timeout} s:\n{self.stderr_tail()}")
            time.sleep(0.01)

    def kill(self) -> int:
        """SIGKILL this child (by its pid) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait(30)
        self._fo.close()
        self._fe.close()
        return rc

    def result(self, timeout: float = 180) -> Any:
        """Wait for a normal exit; the child's last stdout line, parsed as JSON."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._fo.close()
        self._fe.close()
        assert rc == 0, f"child failed ({rc}):\n{self.stderr_tail()}"
        lines = [ln for ln in self.out.read_text().splitlines() if ln.strip()]
        return json.loads(lines[-1])
