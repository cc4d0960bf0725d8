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

__all__ = ["MlflowTarget", "ModelToMirror", "TrackingError", "follow_aliases", "log_training_run", "mirror_aliases",
           "mirror_model", "mlflow_target", "track_registration"]

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
    except Exception as e:  # noqa: BLE001 - a secrets backend or metadata DB that cannot answer: no tracking
        log.warning("MLflow: connection %r cannot be read (%s: %s); nothing is logged to MLflow", conn_id,
                    type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
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
                     artifacts: Mapping[str, bytes] | None = None, *, version_uri: str | None = None,
                     fitted: ModelToMirror | None = None) -> str:
    """Log version ``version`` of ``model`` (its registry ``metadata.json`` content ``meta``) as one MLflow run,
    with a child run per search trial, and with ``fitted`` the model itself as an MLflow model version (see
    :func:`mirror_model`); returns the run id. Raises what the client raises."""
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
        if fitted is not None:
            mirror_model(client, model, version, run_id, fitted)
        client.set_terminated(run_id, "FINISHED")
    log.info("MLflow: logged %s v%d as run %s in experiment %r at %s (%d params, %d metrics, %d trial run(s)) "
             "in %.2f s", model, version, run_id, model, target.tracking_uri, len(params), len(metrics),
             len((meta.get("search") or {}).get("trials") or []), time.perf_counter() - started)
    return str(run_id)


def track_registration(model: str, version: int, meta: Mapping[str, Any],
                       artifacts: Callable[[], Mapping[str, bytes]] | None = None, *, version_uri: str | None = None,
                       pending: Callable[[str, int, str], Any] | None = None,
                       fitted: Callable[[], ModelToMirror] | None = None) -> str | None:
    """:func:`log_training_run` when a server is configured, with the fault policy of the module docstring.
    ``artifacts()`` gives the files to attach and ``fitted()`` the model to mirror (both called only when a
    server is configured); ``pending(model, version, reason)`` records a missed run (the registry's catch-up
    list). Returns the run id, ``None`` when nothing was logged."""
    target = mlflow_target()
    if target is None:
        return None
    try:
        files = artifacts() if artifacts is not None else {}
        return log_training_run(target, model, version, meta, files, version_uri=version_uri,
                                fitted=fitted() if fitted is not None else None)
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
# the registry mirror: versions as MLflow model versions, aliases following ours
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelToMirror:
    """A registered version's fitted pipeline with what MLflow needs to log and load it safely."""

    pipeline: Any
    #: the types outside skops' defaults that the version's registered skops file holds, each one our own loads
    #: of this version trust (the MLflow model trusts exactly these)
    trusted_types: tuple[str, ...]
    #: a few input rows (the features): the signature and the input example
    example: Any
    #: our registry's root URI: one MLflow server may mirror several registries (tag ``mlops.registry``)
    registry_uri: str = ""


def mirror_model(client: Any, model: str, version: int, run_id: str, fitted: ModelToMirror) -> str:
    """The pipeline logged under the run as an MLflow ``sklearn`` model in the **skops** format (never pickle;
    loading trusts exactly the types our registry trusts for this version) with its signature and input example,
    registered as a version of the MLflow registered model ``<model>`` tagged ``mlops.version``. Returns the MLflow
    version number. A pipeline of xgboost, LightGBM or CatBoost steps is still a scikit-learn pipeline: the
    ``sklearn`` flavor loads all of them."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory(prefix="mlops-mlflow-model-") as tmp:
        path = os.path.join(tmp, "model")
        example = fitted.example
        signature = infer_signature(example, fitted.pipeline.predict(example))
        mlflow.sklearn.save_model(fitted.pipeline, path, serialization_format="skops",
                                  skops_trusted_types=list(fitted.trusted_types), signature=signature,
                                  input_example=example, pip_requirements=_requirements(fitted.pipeline))
        client.log_artifacts(run_id, path, artifact_path="model")
    try:
        client.get_registered_model(model)
    except Exception as e:
        if not _does_not_exist(e):
            raise
        client.create_registered_model(model, tags={"mlops.source_of_truth": "airflow-mlops registry"},
                                       description=f"Mirror of the airflow-mlops registry's model {model!r}; "
                                                   "aliases follow it.")
    existing = _mlflow_version(client, model, version, fitted.registry_uri)
    if existing is not None:  # a retry: the same version is not registered twice
        return existing
    mv = client.create_model_version(model, source=f"runs:/{run_id}/model", run_id=run_id,
                                     tags={"mlops.version": str(version), "mlops.registry": fitted.registry_uri},
                                     await_creation_for=60)
    return str(mv.version)


def _does_not_exist(e: BaseException) -> bool:
    """MLflow's "no such registered model" (not a server or network failure)."""
    return getattr(e, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _requirements(pipeline: Any) -> list[str]:
    """Pinned requirements of the libraries the pipeline's steps come from (no environment scan: fast)."""
    from importlib import metadata

    names = {"scikit-learn", "skops", "pandas", "numpy"}
    for step in getattr(pipeline, "steps", [(None, pipeline)]):
        top = type(step[1]).__module__.split(".")[0]
        names.add({"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm",
                   "catboost": "catboost"}.get(top, top))
    out = []
    for name in sorted(names):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if name == "xgboost":
                with contextlib.suppress(metadata.PackageNotFoundError):
                    out.append(f"xgboost=={metadata.version('xgboost-cpu')}")
    return out


def _mlflow_version(client: Any, model: str, version: int, registry_uri: str) -> str | None:
    """The MLflow version number mirroring our ``version`` of the registry at ``registry_uri`` (tags
    ``mlops.version``, ``mlops.registry``), or None."""
    found = client.search_model_versions(f"name = '{_quoted(model)}' and tag.`mlops.version` = '{int(version)}'")
    mine = [mv for mv in found if (mv.tags or {}).get("mlops.registry", "") == registry_uri]
    return str(mine[0].version) if mine else None


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def mirror_aliases(model: str, aliases: Mapping[str, int], registry_uri: str, *,
                   target: MlflowTarget | None = None) -> dict[str, Any]:
    """Make the MLflow registered model ``<model>``'s aliases those of our registry (``aliases``: alias ->
    our version): set the ones that differ, delete the ones we do not have. An alias whose version has no
    MLflow mirror yet is left out (reported). Returns ``{"set": {...}, "deleted": [...], "missing": {...}}``;
    ``{}`` without a server. Raises what the client raises."""
    target = target or mlflow_target()
    if target is None:
        return {}
    from mlflow import MlflowClient

    changes: dict[str, Any] = {"set": {}, "deleted": [], "missing": {}}
    with _client_env(target):
        client = MlflowClient(tracking_uri=target.tracking_uri)
        try:
            current = dict(client.get_registered_model(model).aliases or {})
        except Exception as e:
            if not _does_not_exist(e):
                raise
            changes["missing"] = dict(aliases)  # no registered model yet: nothing mirrored to point at
            return changes
        for alias, ours in aliases.items():
            mirrored = _mlflow_version(client, model, int(ours), registry_uri)
            if mirrored is None:
                changes["missing"][alias] = int(ours)
            elif str(current.get(alias)) != mirrored:
                client.set_registered_model_alias(model, alias, mirrored)
                changes["set"][alias] = int(ours)
        for alias in current:
            if alias not in aliases:
                client.delete_registered_model_alias(model, alias)
                changes["deleted"].append(alias)
    if changes["set"] or changes["deleted"]:
        log.info("MLflow: aliases of %s mirrored at %s: set %s, deleted %s", model, target.tracking_uri,
                 changes["set"] or "none", changes["deleted"] or "none")
    return changes


def follow_aliases(model: str, aliases: Mapping[str, int], registry_uri: str,
                   pending: Callable[[str, str], Any] | None = None) -> None:
    """:func:`mirror_aliases` after an alias move committed in our registry, with the module's fault policy
    (a warning; ``pending(model, reason)`` records the missed mirror; strict mode raises)."""
    target = mlflow_target()
    if target is None:
        return
    try:
        mirror_aliases(model, aliases, registry_uri, target=target)
    except Exception as e:  # noqa: BLE001 - the alias move is committed; MLflow catches up later
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if pending is not None:
            with contextlib.suppress(Exception):
                pending(model, reason)
        if strict():
            raise TrackingError(f"MLflow at {target.tracking_uri} (connection {target.conn_id!r}) could not mirror "
                                f"the aliases of {model}: {reason}") from None
        log.warning("MLflow at %s (connection %r) could not mirror the aliases of %s (%s); our registry has them, "
                    "the mirror is recorded as pending", target.tracking_uri, target.conn_id, model, reason)


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
