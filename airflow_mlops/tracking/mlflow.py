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

__all__ = ["FetchedModel", "MlflowTarget", "ModelToMirror", "TrackingError", "decision_tags", "fetch_model",
           "follow_aliases", "log_training_run", "mirror_aliases", "mirror_model", "mlflow_target",
           "report_missed", "sync_version", "tag_decision", "track_registration"]

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


def report_missed(target: MlflowTarget, error: BaseException, what: str, record: Callable[[str], Any] | None,
            kept: str) -> None:
    """The module's fault policy for a write MLflow did not take: ``record(reason)`` (the pending record), then
    :class:`TrackingError` in strict mode, else one warning line naming the server and the connection (never
    its credentials) and what was kept (``kept``)."""
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    if record is not None:
        with contextlib.suppress(Exception):
            record(reason)
    if strict():
        raise TrackingError(f"MLflow at {target.tracking_uri} (connection {target.conn_id!r}) could not {what}: "
                            f"{reason}") from None
    log.warning("MLflow at %s (connection %r) could not %s (%s); %s", target.tracking_uri, target.conn_id, what,
                reason, kept)


def strict() -> bool:
    return platform.setting_bool("mlops", "mlflow_strict", fallback=False)


@contextlib.contextmanager
def _client_env(target: MlflowTarget, timeout: int = HTTP_TIMEOUT_SECONDS, *,
                as_default: bool = False) -> Iterator[None]:
    """The client's settings for the duration of the calls: credentials, a short timeout, no retries; with
    ``as_default`` the server is also the default tracking and registry URI (the artifact repositories MLflow
    builds itself, e.g. for a ``runs:/`` URI naming a logged model, look there)."""
    values = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    if as_default:
        values.update({"MLFLOW_TRACKING_URI": target.tracking_uri, "MLFLOW_REGISTRY_URI": target.tracking_uri})
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
                     fitted: ModelToMirror | None = None, registry_uri: str = "") -> str:
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
        run = client.create_run(experiment_id, run_name=f"{model} v{version}",
                                tags=_tags(model, version, meta, version_uri, registry_uri))
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in _params(meta).items()]
        metrics = [Metric(k, v, now, step) for k, v, step in _metrics(meta)]
        for i in range(0, max(len(params), len(metrics), 1), _MAX_PARAMS):
            client.log_batch(run_id, metrics=metrics[i:i + _MAX_PARAMS], params=params[i:i + _MAX_PARAMS])
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
                       fitted: Callable[[], ModelToMirror] | None = None, registry_uri: str = "") -> str | None:
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
                                fitted=fitted() if fitted is not None else None, registry_uri=registry_uri)
    except Exception as e:  # noqa: BLE001 - the server, the network or the client: never the registration
        report_missed(target, e, f"log {model} v{version}",
                (lambda reason: pending(model, version, reason)) if pending is not None else None,
                "the version is registered, the run is recorded as pending for a later catch-up")
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
    #: the pipeline's predictions of ``example`` when already known (the training's): the signature's output
    example_output: Any = None
    #: the version's registered ``model.skops`` (what MLflow gets, unchanged)
    model_bytes: bytes = b""


def mirror_model(client: Any, model: str, version: int, run_id: str, fitted: ModelToMirror) -> str:
    """The version logged under the run as an MLflow model of the ``sklearn`` flavor in the **skops** format
    (never pickle; see :func:`_write_mlflow_model`), registered as a version of the MLflow registered model
    ``<model>`` tagged ``mlops.version``. Returns the MLflow version number. A pipeline of xgboost, LightGBM or
    CatBoost steps is still a scikit-learn pipeline: the ``sklearn`` flavor loads all of them."""
    with tempfile.TemporaryDirectory(prefix="mlops-mlflow-model-") as tmp:
        path = os.path.join(tmp, "model")
        _write_mlflow_model(path, fitted)
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


def _write_mlflow_model(path: str, fitted: ModelToMirror) -> None:
    """The directory ``mlflow.sklearn.save_model(..., serialization_format="skops")`` writes, made from the
    version's registered skops file itself: MLflow's ``model.skops`` is byte for byte the file our registry
    signed and scoring loads, and loading it trusts exactly the types that file needs (``fitted.trusted_types``).
    ``MLmodel`` carries the signature and the input example; the requirements are the pinned libraries of the
    pipeline's steps. (``save_model`` would serialise the pipeline again and scan every installed distribution
    to check requirements we already pin: about half a second of a training task.)"""
    import sys as _sys

    import numpy as np
    import pandas as pd
    import sklearn
    import yaml
    from mlflow import pyfunc
    from mlflow.models import Model, infer_signature
    from mlflow.models.utils import _save_example
    from mlflow.version import VERSION

    os.makedirs(path)
    with open(os.path.join(path, "model.skops"), "wb") as f:
        f.write(fitted.model_bytes)
    if fitted.example_output is not None:  # labels kept as Python objects: their concrete dtype
        output = np.asarray(pd.Series(list(fitted.example_output)).infer_objects())
    else:
        output = fitted.pipeline.predict(fitted.example)
    mlmodel = Model()
    mlmodel.signature = infer_signature(fitted.example, output)
    _save_example(mlmodel, fitted.example, path)
    python = ".".join(map(str, _sys.version_info[:3]))
    pyfunc.add_to_model(mlmodel, loader_module="mlflow.sklearn", model_path="model.skops", conda_env="conda.yaml",
                        python_env="python_env.yaml", predict_fn="predict")
    mlmodel.add_flavor("sklearn", pickled_model="model.skops", sklearn_version=sklearn.__version__,
                       serialization_format="skops", code=None, skops_trusted_types=list(fitted.trusted_types))
    mlmodel.model_size_bytes = len(fitted.model_bytes)
    mlmodel.save(os.path.join(path, "MLmodel"))
    requirements = [f"mlflow=={VERSION}", *_requirements(fitted.pipeline)]
    with open(os.path.join(path, "requirements.txt"), "w") as f:
        f.write("\n".join(requirements))
    with open(os.path.join(path, "python_env.yaml"), "w") as f:
        yaml.safe_dump({"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
                        "dependencies": ["-r requirements.txt"]}, f, default_flow_style=False)
    with open(os.path.join(path, "conda.yaml"), "w") as f:
        yaml.safe_dump({"channels": ["conda-forge"], "dependencies": [f"python={python}", "pip", {"pip": requirements}],
                        "name": "mlflow-env"}, f, default_flow_style=False)


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
        report_missed(target, e, f"mirror the aliases of {model}",
                (lambda reason: pending(model, reason)) if pending is not None else None,
                "our registry has them, the mirror is recorded as pending")


# ------------------------------------------------------------------------------------------------
# the gate's decision on the run; the catch-up of one version (mlflow-sync)
# ------------------------------------------------------------------------------------------------
def decision_tags(decision: Mapping[str, Any]) -> dict[str, str]:
    """The promotion gate's decision (a version's ``reports/promotion.json``) as run tags."""
    outcome = ("promoted" if decision.get("promote") else
               "awaiting_approval" if decision.get("awaiting_approval") else "challenger")
    tags = {"mlops.gate_decision": outcome, "mlops.gate_summary": str(decision.get("summary") or "")[:500],
            "mlops.gate_champion": str(decision.get("champion_version") if decision.get("champion_version")
                                       is not None else "none"),
            "mlops.gate_decided_by": str(decision.get("decided_by") or "")}
    return {k: v for k, v in tags.items() if v}


def _version_run(client: Any, model: str, version: int, registry_uri: str) -> Any | None:
    """The (parent) run logged for our ``version`` of the registry at ``registry_uri``, or None."""
    experiment = client.get_experiment_by_name(model)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], max_results=50,
                              filter_string=f"tags.`mlops.version` = '{int(version)}' and "
                                            f"tags.`mlops.registry` = '{_quoted(registry_uri)}'")
    runs = [r for r in runs if "mlflow.parentRunId" not in (r.data.tags or {})]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return (finished or runs or [None])[0]


def tag_decision(model: str, version: int, registry_uri: str, decision: Mapping[str, Any],
                 pending: Callable[[str, str], Any] | None = None) -> bool:
    """Put the gate's decision on the version's run (fault policy of the module; ``pending(model, reason)``
    records a miss, ``mlflow-sync`` catches up). True when tagged."""
    target = mlflow_target()
    if target is None:
        return False
    try:
        from mlflow import MlflowClient

        with _client_env(target):
            client = MlflowClient(tracking_uri=target.tracking_uri)
            run = _version_run(client, model, version, registry_uri)
            if run is None:
                raise LookupError(f"no run of {model} v{version} in experiment {model!r}")
            for key, value in decision_tags(decision).items():
                client.set_tag(run.info.run_id, key, value)
        return True
    except Exception as e:  # noqa: BLE001 - the aliases are committed; MLflow catches up later
        report_missed(target, e, f"tag {model} v{version} with the gate's decision",
                (lambda reason: pending(model, reason)) if pending is not None else None, "recorded as pending")
        return False


def sync_version(target: MlflowTarget, model: str, version: int, meta: Mapping[str, Any], registry_uri: str, *,
                 artifacts: Callable[[], Mapping[str, bytes]], fitted: Callable[[], ModelToMirror],
                 version_uri: str | None = None, extra_tags: Mapping[str, str] | None = None) -> list[str]:
    """Make MLflow hold what it should for one of our versions: a finished run (logged now when missing; an
    unfinished one left by an interrupted write is deleted and logged again), the model version mirroring
    it, and ``extra_tags`` on the run (the gate's decision). Returns what was changed (``run``,
    ``model_version``, ``tags``); ``[]`` when MLflow already agreed. Raises what the client raises."""
    from mlflow import MlflowClient

    changed: list[str] = []
    with _client_env(target):
        client = MlflowClient(tracking_uri=target.tracking_uri)
        run = _version_run(client, model, version, registry_uri)
        if run is not None and run.info.status != "FINISHED":
            client.delete_run(run.info.run_id)
            run = None
        if run is None:
            run_id = log_training_run(target, model, version, meta, artifacts(), version_uri=version_uri,
                                      fitted=fitted(), registry_uri=registry_uri)
            changed += ["run", "model_version"]
            run = client.get_run(run_id)
        elif _mlflow_version(client, model, version, registry_uri) is None:
            mirror_model(client, model, version, run.info.run_id, fitted())
            changed.append("model_version")
        tags = run.data.tags or {}
        missing = {k: v for k, v in (extra_tags or {}).items() if tags.get(k) != v}
        for key, value in missing.items():
            client.set_tag(run.info.run_id, key, value)
        if missing:
            changed.append("tags")
    return changed


# ------------------------------------------------------------------------------------------------
# the other direction: a model logged to MLflow elsewhere, fetched for our gate
# ------------------------------------------------------------------------------------------------
#: seconds one request may take while a model's files are downloaded
DOWNLOAD_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class FetchedModel:
    """An MLflow model's files in a local directory, its ``MLmodel`` description and where it came from."""

    path: str
    mlmodel: dict[str, Any]
    #: ``{"kind": "mlflow", "uri", "tracking_uri", "run_id", "registered_model", "model_version"}`` (the last two
    #: for a ``models:/`` URI); no credentials
    origin: dict[str, Any]


@contextlib.contextmanager
def fetch_model(source: str) -> Iterator[FetchedModel]:
    """Download the MLflow model ``source`` (``models:/<name>/<version>``, ``models:/<name>@<alias>``,
    ``models:/<logged model id>`` or ``runs:/<run id>/<path>``) from the configured server into a temporary
    directory that lives as long as the context. Only files are read: what they may load is decided by the
    caller. Raises
    :class:`TrackingError` without a server or for another kind of URI, and what the client raises when the
    model does not exist or the server fails."""
    import yaml

    target = mlflow_target()
    if target is None:
        raise TrackingError(f"{source} is an MLflow model URI, but no MLflow server is configured (the Airflow "
                            "connection named by [mlops] mlflow_conn_id, default mlflow_default)")
    import mlflow.artifacts
    from mlflow import MlflowClient

    origin: dict[str, Any] = {"kind": "mlflow", "uri": source, "tracking_uri": target.tracking_uri}
    with _client_env(target, DOWNLOAD_TIMEOUT_SECONDS, as_default=True), \
            tempfile.TemporaryDirectory(prefix="mlops-fetch-") as tmp:
        client = MlflowClient(tracking_uri=target.tracking_uri)
        if source.startswith("models:/"):
            name, _, ref = source.removeprefix("models:/").partition("/")
            if "@" in name and not ref:
                name, alias = name.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            elif ref.isdigit():
                mv = client.get_model_version(name, ref)
            elif not ref and name.startswith("m-"):  # MLflow 3: a logged model's id (what log_model returns)
                logged = client.get_logged_model(name)
                mv = None
                origin.update(logged_model=name, run_id=logged.source_run_id)
            else:
                raise TrackingError(f"{source}: use models:/<name>/<version>, models:/<name>@<alias> or "
                                    "models:/<logged model id>")
            if mv is not None:
                origin.update(registered_model=name, model_version=int(mv.version), run_id=mv.run_id)
            uri = client.get_model_version_download_uri(name, mv.version) if mv is not None else source
        elif source.startswith("runs:/") and source.count("/") >= 2:
            origin["run_id"] = source.removeprefix("runs:/").split("/", 1)[0]
            uri = source
        else:
            raise TrackingError(f"{source}: an MLflow model URI is models:/<name>/<version>, models:/<name>@<alias> "
                                "or runs:/<run id>/<artifact path>")
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=target.tracking_uri)
        description = os.path.join(path, "MLmodel")
        if not os.path.isfile(description):
            raise TrackingError(f"{source} is not an MLflow model: it has no MLmodel file")
        with open(description) as f:
            mlmodel = yaml.safe_load(f) or {}
        log.info("MLflow: fetched %s from %s (flavors %s)", source, target.tracking_uri,
                 sorted(mlmodel.get("flavors") or {}))
        yield FetchedModel(path, mlmodel, origin)


# ------------------------------------------------------------------------------------------------
def _tags(model: str, version: int, meta: Mapping[str, Any], version_uri: str | None,
          registry_uri: str = "") -> dict[str, str]:
    td = meta.get("training_data") or {}
    origin = meta.get("origin") or {}
    tags = {
        "mlops.model": model, "mlops.version": str(version), "mlops.registry": registry_uri,
        "mlops.origin": str(origin.get("uri") or ""),
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


def _metrics(meta: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """``(key, value, step)``: holdout, baseline and the CV aggregates at step 0, and each CV fold's metrics as
    ``cv.<metric>`` with the fold's index as the step (MLflow's chart of a metric over steps shows the folds)."""
    import math

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    out: list[tuple[str, float, int]] = []
    metrics = meta.get("metrics") or {}
    for part in ("holdout", "baseline"):
        out += [(f"{part}.{k}", float(v), 0) for k, v in (metrics.get(part) or {}).items() if number(v)]
    for k, stats in (metrics.get("cv") or {}).items():
        out += [(f"cv.{k}.{stat}", float(v), 0) for stat, v in (stats or {}).items()
                if stat in ("mean", "std") and number(v)]
    for fold, values in enumerate(meta.get("cv_folds") or []):
        out += [(f"cv.{k}", float(v), fold) for k, v in (values or {}).items() if number(v)]
    return out
