"""Models trained elsewhere (a notebook, another pipeline, a team's MLflow) entering our registry through the
same door as our own training: evaluated on the holdout the config's split takes from the data window
(:func:`airflow_mlops.training.external.evaluate_fitted`), smoke-tested in a fresh process before the version
is committed, then decided by the same promotion gate, approvals and audit log
(:func:`~airflow_mlops.registry.lifecycle.promote_candidate`). The version's metadata records where it came
from (``origin``).

What is accepted, and why (nothing from outside runs as code):

* an MLflow model (``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<logged model id>``,
  ``runs:/<run id>/<path>``) of
  flavor ``sklearn`` or ``lightgbm`` saved with ``serialization_format="skops"``: loaded by our skops loader,
  which builds only the types the model's config trusts (``estimator.class`` and ``estimator.trusted_types``);
* flavor ``xgboost`` (an ``XGBClassifier`` / ``XGBRegressor``) or ``catboost`` (``CatBoostClassifier`` /
  ``CatBoostRegressor``): the library's own model file (JSON / UBJSON / CBM, data only) read into an
  estimator of a class from the list below, never a class the file names on its own;
* a ``.skops`` file (a local path, ``file://`` or ``s3://`` URI), loaded like the first case.

Refused with a message saying how to log it instead: pickle and cloudpickle (the default of
``mlflow.sklearn``), a LightGBM ``Booster`` (not an estimator with ``predict_proba``), any other flavor.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.locations import Locations
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.registry.skops_io import load_skops_bytes
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import PARTITION_DATE_COLUMN, pop_partition_dates
from airflow_mlops.training.external import ExternalModel, qualified_class
from airflow_mlops.trust.types import LIBRARY_TYPES

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig
    from airflow_mlops.registry.lifecycle import TrainingSummary
    from airflow_mlops.registry.smoke import SmokeProcess

log = logging.getLogger(__name__)

__all__ = ["ExternalModel", "ExternalModelError", "NATIVE_CLASSES", "load_external", "register_external"]

#: the estimator classes a library's own model file is read into (flavor -> MLflow's class name -> our class)
NATIVE_CLASSES: dict[str, dict[str, str]] = {
    "xgboost": {"xgboost.sklearn.XGBClassifier": "xgboost.XGBClassifier",
                "xgboost.sklearn.XGBRegressor": "xgboost.XGBRegressor"},
    "catboost": {"CatBoostClassifier": "catboost.CatBoostClassifier",
                 "CatBoostRegressor": "catboost.CatBoostRegressor"},
}
_NATIVE_FORMATS = {"xgboost": {"xgb", "json", "ubj"}, "catboost": {"cbm", "json"}}


class ExternalModelError(ValueError):
    """The model cannot enter: an unsafe format, an unknown flavor, a file that is not a model."""


def load_external(source: str, trusted: list[str], *, conn_id: str | None = None) -> ExternalModel:
    """Load the model at ``source`` without running anything it contains; ``trusted``: the types a skops file
    may build (the config's). ``conn_id``: the AWS connection of an ``s3://`` file."""
    if source.startswith(("models:/", "runs:/")):
        from airflow_mlops.tracking.mlflow import fetch_model

        with fetch_model(source) as fetched:
            model, extra, details = _from_mlflow(source, fetched.path, fetched.mlmodel, trusted)
            return ExternalModel(model, {**fetched.origin, **details}, extra)
    if source.endswith(".skops"):
        data = _read_file(source, conn_id)
        model = load_skops_bytes(data, trusted, source)
        return ExternalModel(model, {"kind": "file", "uri": source, "sha256": hashlib.sha256(data).hexdigest()})
    raise ExternalModelError(f"{source}: a model from elsewhere is an MLflow model URI (models:/<name>/<version>, "
                             "models:/<name>@<alias>, models:/<logged model id>, runs:/<run id>/<path>) or a .skops "
                             "file")


def _read_file(source: str, conn_id: str | None) -> bytes:
    if "://" in source and not source.startswith("file://"):
        folder, _, name = source.rpartition("/")
        return ArtifactStore(folder, conn_id=conn_id).read_bytes(name)
    path = source.removeprefix("file://")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ExternalModelError(f"{source}: cannot read the model file ({e.strerror})") from None


def _from_mlflow(source: str, path: str, mlmodel: dict[str, Any],
                 trusted: list[str]) -> tuple[Any, tuple[str, ...], dict[str, Any]]:
    flavors = mlmodel.get("flavors") or {}
    for flavor in ("sklearn", "lightgbm"):
        conf = flavors.get(flavor)
        if conf is None:
            continue
        data = conf.get("pickled_model") or conf.get("data") or ""
        fmt = conf.get("serialization_format") or "cloudpickle"
        if conf.get("model_class") == "lightgbm.basic.Booster":
            raise ExternalModelError(f"{source} is a LightGBM Booster, not an estimator with predict_proba: log the "
                                     "LGBMClassifier / LGBMRegressor with mlflow.lightgbm.log_model(..., "
                                     "serialization_format='skops')")
        if fmt != "skops":
            raise ExternalModelError(f"{source} is saved with {fmt}, which runs code when it is loaded; log it with "
                                     f"mlflow.{flavor}.log_model(..., serialization_format='skops')")
        with open(_inside(source, path, data), "rb") as f:
            model = load_skops_bytes(f.read(), trusted, source)
        return model, (), {"flavor": flavor, "format": "skops"}
    for flavor, classes in NATIVE_CLASSES.items():
        conf = flavors.get(flavor)
        if conf is None:
            continue
        named = str(conf.get("model_class") or conf.get("model_type") or "")
        ours = classes.get(named)
        if ours is None:
            raise ExternalModelError(f"{source}: a {flavor} model of class {named or '?'} cannot enter; accepted: "
                                     f"{sorted(classes)}")
        fmt = str(conf.get("model_format") or conf.get("save_format") or conf.get("data", "").rsplit(".", 1)[-1])
        if fmt not in _NATIVE_FORMATS[flavor]:
            raise ExternalModelError(f"{source}: {flavor} model format {fmt!r} is not one of "
                                     f"{sorted(_NATIVE_FORMATS[flavor])}")
        model = _native(ours, _inside(source, path, str(conf.get("data") or "")), fmt)
        return model, (qualified_class(model), *LIBRARY_TYPES.get(flavor, ())), {"flavor": flavor, "format": fmt}
    raise ExternalModelError(f"{source} has the MLflow flavor(s) {sorted(flavors)}; accepted: sklearn or lightgbm "
                             "saved with serialization_format='skops', xgboost, catboost")


def _inside(source: str, root: str, rel: str) -> str:
    """``rel`` (named by the MLmodel file) resolved inside the downloaded model's directory, never outside."""
    full = os.path.realpath(os.path.join(root, rel))
    if not rel or not full.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(full):
        raise ExternalModelError(f"{source}: the MLmodel file names a model file {rel!r} that is not in the model")
    return full


def _native(class_path: str, path: str, fmt: str) -> Any:
    import importlib

    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # one of NATIVE_CLASSES: never a name from the file
    model = cls()
    if module == "catboost":
        model.load_model(path, format=fmt)
    else:
        model.load_model(path)
    return model


def register_external(config: ModelConfig, store: ArtifactStore, source: str, ds: str,
                      run_info: dict[str, Any] | None = None, *, actor: str | None = None,
                      smoke: SmokeProcess | None = None) -> TrainingSummary:
    """Register the model at ``source`` as the next version of ``config.name``, evaluated on the data window
    ending at ``ds`` like a version trained there; returns the training summary (XCom of
    :class:`~airflow_mlops.operators.registry.RegisterExternalModelOperator`). It moves no alias: the promotion
    gate decides next. Raises :class:`ExternalModelError` or an untrusted-type error before anything is
    written, :class:`~airflow_mlops.registry.smoke.SmokeTestError` when the staged version does not reproduce
    its predictions in a fresh process (no version becomes visible)."""
    from contextlib import nullcontext

    from airflow_mlops.registry.lifecycle import _qualified_class, _train_and_register
    from airflow_mlops.registry.smoke import SmokeProcess
    from airflow_mlops.store.fingerprint import fingerprint_table
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.trust.types import model_trusted_types

    own = model_trusted_types(_qualified_class(config.estimator.class_path), config.estimator.trusted_types)
    external = load_external(source, [*PIPELINE_CUSTOM_TYPES, *own], conn_id=store.conn_id)
    registry = ModelRegistry(store)
    dataset = Locations(config, store).input
    df, dates = dataset.read_window(ds, config.data.training_window_days,
                                    partition_column=PARTITION_DATE_COLUMN if config.training.split == "time"
                                    else None)
    df, row_dates = pop_partition_dates(df)
    fingerprint = fingerprint_table(df, keys=list(config.keys))
    log.info("evaluating %s for %s on %d rows from %d partition(s) of %s", source, config.name, len(df), len(dates),
             dataset.uri())
    with nullcontext(smoke) if smoke is not None else SmokeProcess() as process:
        return _train_and_register(config, store, ds, run_info, actor, None, registry, dataset, df, dates,
                                   fingerprint, process, row_dates, external=external)
