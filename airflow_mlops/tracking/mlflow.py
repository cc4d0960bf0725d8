"""Training runs logged to a team's MLflow tracking server.

When the Airflow connection ``[mlops] mlflow_conn_id`` (default ``mlflow_default``) exists, every registered
training version is logged as one MLflow run in the experiment named like the model (created when missing):

* **parameters**: the estimator class and its parameters (``estimator.*``), the best search parameters
  (``best.*``), the training settings (``training.*``) and the data window (``data.*``);
* **metrics**: holdout (``holdout.<metric>``), naive baseline (``baseline.<metric>``) and cross-validation
  (``cv.<metric>.mean`` / ``.std``);
* **tags**: model, registry version and URI, data fingerprint, logical date, ``dag_id`` / ``run_id`` /
  ``task_id`` of the Airflow run, who registered it (``mlops.*``);
* **artifacts**: the evaluation report and the model card;
* **child runs**: one per search trial (its parameters and CV score), tagged ``mlflow.parentRunId``.

The registry stays the source of truth; MLflow is a view for teams that use its UI. The connection: host (with
its scheme, ``http://mlflow.internal``, or ``conn_type`` ``http``/``https``), port, and for a server behind basic
auth the login and password (handed to the client through its own environment variables for the calls only,
never logged or stored).

**Faults never fail training** (unless ``[mlops] mlflow_strict = True``): an unreachable or failing server costs
one warning line in the task log, with a short timeout and no retries; the version stays registered. The missed
run is recorded in the store (``registry/<model>/_mlflow/pending/<version>.json``) for a later catch-up.

Plain Python: the MLflow client (``mlflow-skinny``, extra ``airflow-mlops[mlflow]``) is imported inside the
functions; the connection comes through :mod:`airflow_mlops.platform`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_mlops import platform

log = logging.getLogger(__name__)

__all__ = ["MlflowTarget", "TrackingError", "log_training_run", "mlflow_target", "track_registration"]

DEFAULT_CONN_ID = "mlflow_default"
#: seconds an MLflow HTTP call may take before the server counts as unreachable
HTTP_TIMEOUT_SECONDS = 5
#: MLflow caps a batch at 1000 metrics and 100 params; a param value at 6000 characters
_MAX_PARAMS, _MAX_PARAM_CHARS = 100, 6000


class TrackingError(RuntimeError):
    """MLflow could not be written (raised only with ``[mlops] mlflow_strict``)."""


@dataclass(frozen=True)
class MlflowTarget:
    """Where to log: the tracking URI and the basic-auth credentials of the connection (never printed)."""

    conn_id: str
    tracking_uri: str
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # no credentials in reprs, logs or tracebacks
        return f"MlflowTarget(conn_id={self.conn_id!r}, tracking_uri={self.tracking_uri!r})"


def mlflow_target() -> MlflowTarget | None:
    """The tracking server of ``[mlops] mlflow_conn_id``; ``None`` when that connection does not exist.

    In a process that has not imported Airflow (a script, a benchmark) and with the option unset, only the
    environment (``AIRFLOW_CONN_MLFLOW_DEFAULT``) is looked at: asking Airflow for a connection that is not
    there would import it (about 1.5 s) on every training. Setting the option, or running inside Airflow, looks
    the connection up wherever Airflow keeps connections."""
    explicit = platform.setting("mlops", "mlflow_conn_id")
    conn_id = explicit or DEFAULT_CONN_ID
    if not explicit and "airflow" not in sys.modules and not os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return None
    try:
        conn = platform.connection(conn_id)
    except platform.ConnectionNotFoundError:
        return None
    host = (conn.host or "").rstrip("/")
    if not host:
        return None
    if "://" not in host:
        scheme = getattr(conn, "conn_type", None) or "http"
        host = f"{scheme if scheme in ('http', 'https') else 'http'}://{host}"
    uri = f"{host}:{conn.port}" if conn.port else host
    if conn.schema:
        uri = f"{uri}/{conn.schema.strip('/')}"
    return MlflowTarget(conn_id, uri, conn.login or None, conn.password or None)


def strict() -> bool:
    return platform.setting_bool("mlops", "mlflow_strict", fallback=False)


@contextlib.contextmanager
def _client_env(target: MlflowTarget) -> Iterator[None]:
    """The client's settings for the duration of the calls: credentials, a short timeout, no retries."""
    values = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(HTTP_TIMEOUT_SECONDS), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    if target.username:
        values["MLFLOW_TRACKING_USERNAME"] = target.username
    if target.password:
        values["MLFLOW_TRACKING_PASSWORD"] = target.password
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_training_run(target: MlflowTarget, model: str, version: int, meta: Mapping[str, Any],
                     artifacts: Mapping[str, bytes] | None = None, *, version_uri: str | None = None) -> str:
    """Log version ``version`` of ``model`` (its registry ``metadata.json`` content ``meta``) as one MLflow run,
    with a child run per search trial; returns the run id. Raises what the client raises."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    started = time.perf_counter()
    with _client_env(target):
        client = MlflowClient(tracking_uri=target.tracking_uri)
        experiment = client.get_experiment_by_name(model)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(model)
        now = int(time.time() * 1000)
        run = client.create_run(experiment_id, run_name=f"{model} v{version}", tags=_tags(model, version, meta,
                                                                                           version_uri))
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in _params(meta).items()]
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(meta).items()]
        for i in range(0, max(len(params), 1), _MAX_PARAMS):
            client.log_batch(run_id, metrics=metrics if i == 0 else (), params=params[i:i + _MAX_PARAMS])
        with tempfile.TemporaryDirectory(prefix="mlops-mlflow-") as tmp:
            for name, data in (artifacts or {}).items():
                path = os.path.join(tmp, os.path.basename(name))
                with open(path, "wb") as f:
                    f.write(data)
                client.log_artifact(run_id, path, artifact_path=os.path.dirname(name) or None)
        for trial in ((meta.get("search") or {}).get("trials") or []):
            child = client.create_run(experiment_id, run_name=f"{model} v{version} trial {trial.get('trial')}",
                                      tags={"mlflow.parentRunId": run_id, "mlops.model": model,
                                            "mlops.version": str(version), "mlops.trial": str(trial.get("trial"))})
            trial_params = [Param(str(k)[:250], _param_value(v)) for k, v in (trial.get("params") or {}).items()]
            trial_metrics = [Metric(f"cv.{k.removeprefix('cv_')}", float(trial[k]), now, 0)
                             for k in ("cv_mean", "cv_std", "fit_seconds") if trial.get(k) is not None]
            client.log_batch(child.info.run_id, metrics=trial_metrics, params=trial_params[:_MAX_PARAMS],
                             tags=[RunTag("mlops.rank", str(trial.get("rank")))])
            client.set_terminated(child.info.run_id, "FINISHED" if trial.get("cv_mean") is not None else "FAILED")
        client.set_terminated(run_id, "FINISHED")
    log.info("MLflow: logged %s v%d as run %s in experiment %r at %s (%d params, %d metrics, %d trial run(s)) "
             "in %.2f s", model, version, run_id, model, target.tracking_uri, len(params), len(metrics),
             len((meta.get("search") or {}).get("trials") or []), time.perf_counter() - started)
    return str(run_id)


def track_registration(model: str, version: int, meta: Mapping[str, Any],
                       artifacts: Callable[[], Mapping[str, bytes]] | None = None, *, version_uri: str | None = None,
                       pending: Callable[[str, int, str], Any] | None = None) -> str | None:
    """:func:`log_training_run` when a server is configured, with the fault policy of the module docstring.
    ``artifacts()`` gives the files to attach (called only when a server is configured); ``pending(model,
    version, reason)`` records a missed run (the registry's catch-up list). Returns the run id, ``None`` when
    nothing was logged."""
    target = mlflow_target()
    if target is None:
        return None
    try:
        files = artifacts() if artifacts is not None else {}
        return log_training_run(target, model, version, meta, files, version_uri=version_uri)
    except Exception as e:  # noqa: BLE001 - the server, the network or the client: never the registration
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if pending is not None:
            with contextlib.suppress(Exception):
                pending(model, version, reason)
        if strict():
            raise TrackingError(f"MLflow at {target.tracking_uri} (connection {target.conn_id!r}) could not log "
                                f"{model} v{version}: {reason}") from None
        log.warning("MLflow at %s (connection %r) could not log %s v%d (%s); the version is registered, the run "
                    "is recorded as pending for a later catch-up", target.tracking_uri, target.conn_id, model,
                    version, reason)
        return None


# ------------------------------------------------------------------------------------------------
def _tags(model: str, version: int, meta: Mapping[str, Any], version_uri: str | None) -> dict[str, str]:
    td = meta.get("training_data") or {}
    tags = {
        "mlops.model": model, "mlops.version": str(version),
        "mlops.fingerprint": str((td.get("fingerprint") or {}).get("content_hash") or ""),
        "mlops.training_data": str(td.get("uri") or ""), "mlops.window_end": str(td.get("window_end") or ""),
        "mlops.registered_by": str(meta.get("registered_by") or ""),
        "mlops.estimator": str(meta.get("estimator") or ""),
    }
    if version_uri:
        tags["mlops.version_uri"] = version_uri
    for key in ("dag_id", "run_id", "task_id", "logical_date"):
        if meta.get(key):
            tags[f"airflow.{key}"] = str(meta[key])
    return {k: v for k, v in tags.items() if v}


def _params(meta: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {"estimator.class": str(meta.get("estimator") or "")}
    for prefix, values in (("estimator", meta.get("params")), ("best", meta.get("best_params"))):
        for k, v in (values or {}).items():
            out[f"{prefix}.{k}"] = _param_value(v)
    config = meta.get("config") or {}
    for k, v in (config.get("training") or {}).items():
        out[f"training.{k}"] = _param_value(v)
    td = meta.get("training_data") or {}
    out["data.partitions"] = str(len(td.get("partitions") or []))
    out["data.rows"] = str(meta.get("n_rows", ""))
    out["task"] = str(meta.get("task", ""))
    out["primary_metric"] = str(meta.get("primary_metric", ""))
    return {k[:250]: v for k, v in out.items() if v != ""}


def _param_value(value: Any) -> str:
    return str(value)[:_MAX_PARAM_CHARS]


def _metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    import math

    out: dict[str, float] = {}
    metrics = meta.get("metrics") or {}
    for part in ("holdout", "baseline"):
        for k, v in (metrics.get(part) or {}).items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"{part}.{k}"] = float(v)
    for k, stats in (metrics.get("cv") or {}).items():
        for stat in ("mean", "std"):
            v = (stats or {}).get(stat)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"cv.{k}.{stat}"] = float(v)
    return out
