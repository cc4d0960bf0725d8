"""Fresh-process smoke test and resource profile of a staged (not yet visible) model version.

At registration the registry writes a version's artifacts, then calls ``before_commit`` before it
writes ``metadata.json`` (the commit point). :func:`smoke_check` builds that callback: it starts a
*fresh Python process* (``python -m airflow_mlops.registry.smoke SPEC RESULT``) which

1. reads ``model.skops`` and ``holdout.parquet`` of the staged version from the artifact store,
   checks each against the sha256 recorded for it and loads the model with the registry's skops
   loader (:func:`airflow_mlops.registry.model_registry.load_skops_bytes`: trusted types only, never pickle);
2. scores the held-back sample saved by training and compares it with the predictions the
   training process made before the model was serialized: predicted labels must be equal,
   probabilities equal within :data:`PROBA_TOLERANCE` (regression predictions: relative and
   absolute tolerance :data:`PROBA_TOLERANCE`);
3. measures a resource profile: scoring latency per batch size (:data:`BATCH_SIZES` rows, the
   sample tiled to size; after an untimed warm-up run of every size, :data:`LATENCY_REPEATS` rounds that
   each time every size, the median per size), the model file
   size and the process's peak resident memory.

A mismatch, a crash or an unreadable artifact raises :class:`SmokeTestError` (which rows differ,
how many, the largest difference and what to check) inside ``before_commit``, so ``metadata.json``
is never written and no version becomes visible. On success the profile is stored under the
``profile`` key of ``metadata.json``. Profile keys (all numbers):

``latency_ms``
    ``{"1000": ms, "10000": ms}``: wall time to score one batch of that many rows (labels and
    probabilities, the prediction-log columns).
``latency_ms_per_1k_rows``, ``latency_ms_per_10k_rows``
    the same, per 1 000 / 10 000 rows (gateable with ``metrics.ceilings``).
``model_bytes``, ``model_size_bytes``, ``model_size_mb``
    size of ``model.skops`` (``model_size_mb`` in MiB = 2**20 bytes).
``peak_rss_mb``
    **absolute** peak resident set size of the child process while it loads the model and scores
    (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: interpreter, libraries, model, sample and the
    largest batch) — what a scoring worker needs. The child imports the libraries first, then resets
    the kernel's high-water mark (Linux ``/proc/self/clear_refs``), so one-off import-time peaks are
    not counted; where the reset is unavailable the lifetime peak is reported
    (``peak_rss_scope``: ``"load+score"`` or ``"process lifetime"``).
``peak_rss_delta_mb``
    ``peak_rss_mb`` minus ``rss_baseline_mb`` (the RSS after the imports, before loading the model):
    what the model and scoring add on top of the libraries.
``rss_baseline_mb``, ``load_seconds``, ``rows_checked``, ``max_abs_proba_diff``, ``python``.

The child inherits the parent's environment and ``sys.path`` (so a trusted custom type importable
by the training process is importable in the child) and ``OMP_NUM_THREADS`` and friends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from airflow_mlops.registry.model_registry import ModelVersion
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

#: Column of the holdout sample holding the training process's predicted label.
TRAINING_PREDICTION = "_training_prediction"
#: Prefix of the holdout columns holding the training process's class probabilities.
TRAINING_PROBA_PREFIX = "_training_proba_"
#: Largest allowed absolute difference between training-time and reloaded probabilities.
PROBA_TOLERANCE = 1e-12
#: Batch sizes (rows) whose scoring latency is profiled.
BATCH_SIZES: tuple[int, ...] = (1000, 10000)
LATENCY_REPEATS = 3
#: At most this many held-back rows (the first ones, a fixed choice) must reproduce the training-time
#: predictions; enough to catch a transform that differs at load time, without re-scoring a big holdout.
MAX_CHECK_ROWS = 10000
#: How many differing row positions an error message lists.
SHOWN_ROWS = 10
DEFAULT_TIMEOUT = 900.0


class SmokeTestError(Exception):
    """The staged model does not reproduce the training-time predictions in a fresh process, or could
    not be loaded there. Not retryable: the artifact itself is wrong."""


# ------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------
def training_columns(pred: Any, proba: Any, classes: Sequence[Any] | None) -> dict[str, Any]:
    """The columns to add to the saved holdout: ``_training_prediction`` and, for classifiers with
    probabilities, ``_training_proba_<class>`` (same labels as the prediction log's ``proba_<class>``)."""
    from airflow_mlops.training.steps import category_label

    out: dict[str, Any] = {TRAINING_PREDICTION: pred}
    if proba is not None and classes is not None:
        for j, c in enumerate(classes):
            out[f"{TRAINING_PROBA_PREFIX}{category_label(c)}"] = proba[:, j]
    return out


def child_env() -> dict[str, str]:
    """The parent's environment with its ``sys.path`` prepended to ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class SmokeProcess:
    """A fresh interpreter started ahead of time: it imports the scoring libraries while training runs
    (on another core), then waits for its one spec on stdin. It never sees the training process's
    state: it is a new interpreter that loads the model from the store like any scoring worker.

    Use as a context manager (the process is killed if it was never used)::

        with SmokeProcess() as proc:
            ...train...
            run_smoke_test(spec, process=proc)
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-smoke-")
        self.result_path = os.path.join(self._tmp.name, "result.json")
        # output to a file, not a pipe: the parent does other work while the child runs and reads nothing
        self._output = open(os.path.join(self._tmp.name, "output.txt"), "w+")  # noqa: SIM115 (closed in close())
        self.proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-m", "airflow_mlops.registry.smoke", "--stdin", self.result_path], env=child_env(),
            stdin=subprocess.PIPE, stdout=self._output, stderr=subprocess.STDOUT, text=True)
        self._started = False

    def start(self, spec: dict[str, Any]) -> None:
        """Send ``spec`` and return at once; :meth:`wait` collects the result."""
        if self.proc is None or self._started:
            raise RuntimeError("a SmokeProcess runs one spec only")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.close()
        except BrokenPipeError:  # the child died while importing: wait() reports its exit code and output
            pass
        self._started = True

    def wait(self, timeout: float) -> tuple[int, str, dict[str, Any] | None]:
        """Wait for the child started by :meth:`start`; ``(returncode, output tail, result or None)``."""
        if self.proc is None or not self._started:
            raise RuntimeError("wait() needs a SmokeProcess started with start()")
        proc, self.proc = self.proc, None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        self._output.seek(0)
        tail = self._output.read()[-5000:]
        result = None
        if os.path.exists(self.result_path):
            with open(self.result_path) as f:
                result = json.load(f)
            result["finished_at"] = os.path.getmtime(self.result_path)  # when the child wrote it (epoch s)
        return proc.returncode, tail, result

    def run(self, spec: dict[str, Any], timeout: float) -> tuple[int, str, dict[str, Any] | None]:
        """Send ``spec``; wait; ``(returncode, output tail, result or None)``."""
        self.start(spec)
        return self.wait(timeout)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc = None
        self._output.close()
        self._tmp.cleanup()

    def __enter__(self) -> SmokeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_smoke_test(spec: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                   process: SmokeProcess | None = None,
                   while_running: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Run :func:`profile_staged` on ``spec`` in a fresh interpreter; return the profile.

    ``spec``: ``store_root``, ``conn_id``, ``model_key``, ``model_sha256``, ``sample_key``,
    ``sample_sha256``, ``features``, ``task``, ``classes``, ``trusted_types``, ``batch_sizes``, ``label``.
    ``process``: a :class:`SmokeProcess` started earlier (its imports already done); default: a new one.
    ``while_running``: called in this process while the child works (if it raises, the child is
    stopped and the error propagates).
    Raises :class:`SmokeTestError` on a mismatch or when the child fails.
    """
    label = spec.get("label", spec.get("model_key"))
    started = time.time()
    own = process is None
    process = process or SmokeProcess()
    try:
        process.start(spec)
        if while_running is not None:
            while_running()
        returncode, tail, result = process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise SmokeTestError(f"smoke test of {label}: the fresh scoring process did not finish within "
                             f"{timeout:.0f} s; check the model size and the batch sizes") from None
    except BaseException:
        process.close()  # stop the child; a started process runs one spec only
        raise
    finally:
        if own:
            process.close()
    if result is None or returncode not in (0, 3):
        tail = tail.strip()[-2500:]
        raise SmokeTestError(
            f"smoke test of {label}: the fresh process could not load or score the staged model "
            f"(exit code {returncode}). Its last output:\n{tail}\n"
            "Check that every custom type in the pipeline is importable in a new interpreter and listed "
            "as trusted, and that the artifacts were not modified after they were written."
        )
    if not result.get("ok"):
        raise SmokeTestError(result.get("error") or f"smoke test of {label} failed")
    profile = dict(result["profile"])
    # from sending the spec to the child's result (this process may have been busy with other work meanwhile)
    profile["smoke_test_seconds"] = round(max(result["finished_at"] - started, 0.0), 3)
    return profile


def smoke_check(
    store: ArtifactStore,
    *,
    features: Sequence[str],
    task: str,
    classes: Sequence[Any] | None,
    trusted_types: Iterable[str] = (),
    model_file: str = "model.skops",
    sample_file: str = "holdout.parquet",
    batch_sizes: Sequence[int] = BATCH_SIZES,
    timeout: float = DEFAULT_TIMEOUT,
    process: SmokeProcess | None = None,
    while_running: Callable[[ModelVersion], dict[str, bytes] | None] | None = None,
) -> Callable[[ModelVersion], dict[str, bytes] | None]:
    """A ``before_commit`` callback for :meth:`ModelRegistry.register`: smoke-test the staged
    version in a fresh process and put its profile under ``metadata["profile"]``.

    ``sample_file`` must hold the feature columns plus :data:`TRAINING_PREDICTION` (and
    ``_training_proba_<class>`` for classifiers), see :func:`training_columns`.

    ``while_running(mv)``: work for this process while the child loads and scores (e.g. the parts of the
    metadata and reports that the smoke test does not need); it may update ``mv.metadata`` and return
    more artifacts, which the callback returns for the registry to add before the commit.
    """

    def check(mv: ModelVersion) -> dict[str, bytes] | None:
        artifacts = mv.metadata.get("artifacts") or {}
        for rel in (model_file, sample_file):
            if rel not in artifacts:
                raise SmokeTestError(f"smoke test of {mv.name} v{mv.version}: the staged version has no "
                                     f"{rel} (artifacts: {sorted(artifacts)})")
        base = store.key_of(mv.uri)
        spec = {
            "label": f"{mv.name} v{mv.version} (staged at {mv.uri})",
            "store_root": store.root, "conn_id": store.conn_id,
            "model_key": f"{base}/{model_file}", "model_sha256": artifacts[model_file]["sha256"],
            "sample_key": f"{base}/{sample_file}", "sample_sha256": artifacts[sample_file]["sha256"],
            "features": list(features), "task": task,
            "classes": list(classes) if classes is not None else None,
            "trusted_types": sorted(set(trusted_types)), "batch_sizes": [int(b) for b in batch_sizes],
        }
        extra: dict[str, bytes] = {}

        def work() -> None:
            if while_running is not None:  # work is passed only then
                extra.update(while_running(mv) or {})

        profile = run_smoke_test(spec, timeout=timeout, process=process,
                                 while_running=work if while_running is not None else None)
        mv.metadata["profile"] = profile
        log.info("smoke test of %s v%d passed in a fresh process: %d rows reproduced, "
                 "%.1f ms per 10k rows, model %d bytes, peak RSS %.1f MB", mv.name, mv.version,
                 profile["rows_checked"], profile.get("latency_ms_per_10k_rows", float("nan")),
                 profile["model_bytes"], profile["peak_rss_mb"])
        return extra or None

    return check


# ------------------------------------------------------------------------------------------
# child side
# ------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _read_verified(store: ArtifactStore, key: str, expected: str, what: str) -> bytes:
    from airflow_mlops.registry.model_registry import IntegrityError

    data = store.read_bytes(key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(f"{what} {store.uri(key)} has sha256 {actual}, but the registration recorded "
                             f"{expected}: it changed after it was written; register the model again")
    return data


def compare_predictions(sample: pd.DataFrame, scored: pd.DataFrame, task: str, label: str,
                        tolerance: float = PROBA_TOLERANCE) -> dict[str, Any]:
    """Compare scored prediction-log columns with the training columns of ``sample``.

    Returns ``{"rows_checked", "max_abs_proba_diff", "mismatched_rows", "mismatch": message|None}``;
    row numbers are positions in the sample (no row values).
    """
    import numpy as np

    n = len(sample)
    expected = sample[TRAINING_PREDICTION].to_numpy()
    got = scored["prediction"].to_numpy()
    if task == "regression":
        exp_f, got_f = expected.astype("float64"), got.astype("float64")
        pred_bad = ~np.isclose(got_f, exp_f, rtol=tolerance, atol=tolerance, equal_nan=True)
        pred_diff = float(np.nanmax(np.abs(got_f - exp_f))) if n else 0.0
    else:
        pred_bad = np.array([str(a) != str(b) for a, b in zip(got.tolist(), expected.tolist())], dtype=bool)
        pred_diff = None
    proba_cols = [c for c in sample.columns if c.startswith(TRAINING_PROBA_PREFIX)]
    proba_bad = np.zeros(n, dtype=bool)
    max_proba = 0.0
    missing_cols = []
    for col in proba_cols:
        out_col = "proba_" + col[len(TRAINING_PROBA_PREFIX):]
        if out_col not in scored.columns:
            missing_cols.append(out_col)
            continue
        diff = np.abs(scored[out_col].to_numpy(dtype="float64") - sample[col].to_numpy(dtype="float64"))
        diff = np.where(np.isnan(diff), np.inf, diff)
        if n:
            max_proba = max(max_proba, float(diff.max()))
        proba_bad |= diff > tolerance
    bad = pred_bad | proba_bad
    rows = np.flatnonzero(bad)
    out: dict[str, Any] = {"rows_checked": int(n), "max_abs_proba_diff": max_proba,
                           "mismatched_rows": int(len(rows)), "mismatch": None}
    if task == "regression":
        out["max_abs_prediction_diff"] = pred_diff
    if missing_cols or len(rows):
        shown = ", ".join(str(int(r)) for r in rows[:SHOWN_ROWS]) + (", ..." if len(rows) > SHOWN_ROWS else "")
        parts = [f"smoke test of {label} FAILED: the model loaded in a fresh process does not reproduce the "
                 f"training-time predictions on the {n}-row held-back sample."]
        if missing_cols:
            parts.append(f"The reloaded model produces no {', '.join(missing_cols)} (it lost predict_proba).")
        if len(rows):
            what = (f"{int(pred_bad.sum())} predicted label(s) differ" if task != "regression"
                    else f"{int(pred_bad.sum())} prediction(s) differ (max abs diff {pred_diff:.6g})")
            parts.append(f"{len(rows)} of {n} rows differ ({what}; {int(proba_bad.sum())} row(s) with a probability "
                         f"off by more than {tolerance:g}; max abs probability diff {max_proba:.6g}). "
                         f"Row positions in holdout.parquet: {shown}.")
        parts.append("What to check: state a custom transformer or estimator keeps outside what skops "
                     "persists (a __getstate__ that drops attributes, module-level caches, globals, random "
                     "state drawn at predict time), input dtype handling that differs between the training "
                     "frame and the parquet round trip, and library versions. No version was registered.")
        out["mismatch"] = " ".join(parts)
    return out


def _batch(sample: pd.DataFrame, rows: int) -> pd.DataFrame:
    import numpy as np

    idx = np.resize(np.arange(len(sample)), rows)
    return sample.iloc[idx].reset_index(drop=True)


def _preload() -> None:
    """The imports :func:`profile_staged` needs, done before the spec arrives."""
    import pyarrow.parquet  # noqa: F401
    import sklearn.compose  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import skops.io  # noqa: F401

    import airflow_mlops.registry.model_registry  # noqa: F401
    import airflow_mlops.training.trainer  # noqa: F401


def profile_staged(spec: dict[str, Any]) -> dict[str, Any]:
    """The child's work (see the module docstring). Returns ``{"ok": bool, "profile"|"error": ...}``."""
    import platform
    import statistics

    import pyarrow as pa
    import pyarrow.parquet as pq
    import sklearn.compose  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import skops.io  # noqa: F401  (libraries first: the RSS baseline includes them)

    from airflow_mlops.registry.model_registry import load_skops_bytes
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.training.predict import predict_frame

    label = spec.get("label", spec["model_key"])
    reset = _reset_peak_rss()
    baseline = _rss_mb()
    store = ArtifactStore(spec["store_root"], conn_id=spec.get("conn_id"))
    t0 = time.perf_counter()
    model_bytes = _read_verified(store, spec["model_key"], spec["model_sha256"], "model")
    model = load_skops_bytes(model_bytes, trusted_types=spec.get("trusted_types") or (),
                             source=store.uri(spec["model_key"]))
    load_seconds = time.perf_counter() - t0
    sample = pq.read_table(pa.BufferReader(
        _read_verified(store, spec["sample_key"], spec["sample_sha256"], "held-back sample")))
    sample = sample.slice(0, int(spec.get("max_check_rows") or MAX_CHECK_ROWS)).to_pandas()
    features, task, classes = spec["features"], spec["task"], spec.get("classes")
    missing = [c for c in [*features, TRAINING_PREDICTION] if c not in sample.columns]
    if missing:
        return {"ok": False, "error": f"smoke test of {label}: the held-back sample lacks columns {missing}; "
                                      "it must be the holdout saved by training with its predictions"}
    scored = predict_frame(model, sample, features, task, classes)
    comparison = compare_predictions(sample, scored, task, label)
    if comparison["mismatch"]:
        return {"ok": False, "error": comparison["mismatch"], "comparison": comparison}

    latency: dict[str, float] = {}
    if len(sample):
        sizes = sorted({int(r) for r in (spec.get("batch_sizes") or BATCH_SIZES)})
        batches = {rows: _batch(sample, rows) for rows in sizes}
        # warm-up: one untimed run of every batch size (first-call costs: lazy imports, thread pools,
        # buffers sized to the batch), so no size pays them inside its timing
        for batch in batches.values():
            predict_frame(model, batch, features, task, classes)
        # rounds interleave the sizes: a transient load (e.g. the parent still computing importance) hits
        # every size alike instead of only the first one timed; the median of the rounds is reported
        times: dict[int, list[float]] = {rows: [] for rows in sizes}
        for _ in range(LATENCY_REPEATS):
            for rows, batch in batches.items():
                t = time.perf_counter()
                predict_frame(model, batch, features, task, classes)
                times[rows].append((time.perf_counter() - t) * 1000.0)
        latency = {str(rows): round(statistics.median(times[rows]), 3) for rows in sizes}
    peak = _rss_mb()
    profile: dict[str, Any] = {
        "latency_ms": latency,
        "model_bytes": len(model_bytes),
        "model_size_bytes": len(model_bytes),
        "model_size_mb": round(len(model_bytes) / 2**20, 6),
        "peak_rss_mb": round(peak, 2),
        "peak_rss_delta_mb": round(max(peak - baseline, 0.0), 2),
        "rss_baseline_mb": round(baseline, 2),
        "peak_rss_scope": "load+score" if reset else "process lifetime",
        "load_seconds": round(load_seconds, 4),
        "rows_checked": comparison["rows_checked"],
        "max_abs_proba_diff": comparison["max_abs_proba_diff"],
        "predictions_equal": True,
        "python": platform.python_version(),
        "pid": os.getpid(),
    }
    for per, size in (("latency_ms_per_1k_rows", 1000), ("latency_ms_per_10k_rows", 10000)):
        if latency:
            # from the batch of that size when profiled, else scaled from the largest batch
            if str(size) in latency:
                profile[per] = latency[str(size)]
            else:
                biggest = max(latency, key=int)
                profile[per] = round(latency[biggest] * size / int(biggest), 3)
    return {"ok": True, "profile": profile}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_mlops.registry.smoke SPEC.json RESULT.json``: exit 0 on success, 3 on a mismatch."""
    import warnings

    warnings.simplefilter("ignore")
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m airflow_mlops.registry.smoke SPEC.json|--stdin RESULT.json", file=sys.stderr)
        return 2
    if args[0] == "--stdin":  # started ahead of time: import first, then wait for the spec
        _preload()
        line = sys.stdin.readline()
        if not line.strip():
            return 2  # the parent closed the pipe without a spec (training failed): nothing to do
        spec = json.loads(line)
    else:
        with open(args[0]) as f:
            spec = json.load(f)
    result = profile_staged(spec)
    with open(args[1], "w") as f:
        json.dump(result, f, default=str)
    return 0 if result.get("ok") else 3


if __name__ == "__main__":  # pragma: no cover - exercised through run_smoke_test
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # the result file is written and closed: skip the interpreter's teardown of scikit-learn, pandas and
    # pyarrow (~0.4 s), which the parent would otherwise wait for before it can commit the version
    os._exit(code)
