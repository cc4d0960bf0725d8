"""A model fitted elsewhere, evaluated the way :func:`~airflow_mlops.training.trainer.train_model` evaluates its
own: the same checks of the config against the data, the same holdout (the config's ``training.split`` and
seed), the naive baseline fitted on the rest, the same reference sample and holdout frame. Nothing is fitted:
there is no cross-validation and no search (``metrics["cv"]`` is empty). The result registers like a trained
one (:func:`airflow_mlops.registry.external.register_external`), so the smoke test, the promotion gate, approvals
and scoring treat both alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.data_check import check_config_against_data
from airflow_mlops.config.model import ConfigError, ModelConfig
from airflow_mlops.evaluation.metrics import compute_metrics, per_class_metrics
from airflow_mlops.training.predict import final_step, plain_value, predict_frame, predict_labels
from airflow_mlops.training.splits import random_split, time_split
from airflow_mlops.training.steps import json_safe
from airflow_mlops.training.trainer import (
    TrainResult,
    _baseline_metrics,
    _check_trainable,
    _class_list,
    _classification_labels,
    frame_schema,
    split_features,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExternalModel", "evaluate_fitted", "qualified_class"]


@dataclass(frozen=True)
class ExternalModel:
    """A model fitted elsewhere, loaded safely, with where it came from."""

    model: Any
    #: ``{"kind": "mlflow" | "file", "uri", ...}`` (see :func:`load_external`); no credentials
    origin: dict[str, Any]
    #: types beyond the config's that the registered file holds: the library helper types of a natively
    #: loaded class from :data:`NATIVE_CLASSES` (chosen here, never named by the file)
    trusted_types: tuple[str, ...] = ()


def qualified_class(obj: Any) -> str:
    """``module.Class`` of an object's final estimator (a Pipeline's last step)."""
    final = obj.steps[-1][1] if hasattr(obj, "steps") else obj
    return f"{type(final).__module__}.{type(final).__qualname__}"


def evaluate_fitted(config: ModelConfig, df: pd.DataFrame, model: Any, *, source: str,
                    row_dates: Sequence[str] | None = None) -> TrainResult:
    """Evaluate ``model`` (fitted elsewhere; it predicts from a frame of the config's feature columns) on the
    holdout the config's split takes from ``df``. ``source`` names the model in errors.

    Raises:
        ConfigError: the config does not fit the data, the model cannot predict from the features, or its
            classes are not the target's labels (the message names the column and ``source``).
        TrainingError: too little data for the split.
    """
    import numpy as np
    import pandas as pd

    started = time.perf_counter()
    task, classification, seed = config.task, config.is_classification, config.training.seed
    schema = frame_schema(df)
    check_config_against_data(config, schema, df[config.target] if config.target in df.columns else None)
    target_missing = df[config.target].isna().to_numpy()
    data = df.loc[~target_missing].reset_index(drop=True)
    features = config.feature_columns(list(df.columns))
    categorical, numeric = split_features(config, schema, features)
    X, y = data[features], data[config.target].to_numpy()
    classes: list[Any] | None = None
    if classification:
        y = _classification_labels(y)
        classes = _class_list(y)
        _check_classes(config, model, classes, source)
    else:
        y = y.astype("float64")
    _check_trainable(y, int(target_missing.sum()), config.training.cv_folds, classification)
    if config.training.split == "time":
        if row_dates is None or len(row_dates) != len(df):
            raise ConfigError("training.split: time needs the partition date of every row", field="training.split")
        dates = np.asarray(row_dates, dtype=object)[~target_missing]
        train_pos, hold_pos, _, split_info, _ = time_split(dates, config.training.holdout_days,
                                                           config.training.cv_folds)
    else:
        train_pos, hold_pos, _, split_info, _ = random_split(y, config.training.test_size, config.training.cv_folds,
                                                             classification, seed)
    X_hold, y_hold = X.iloc[hold_pos], y[hold_pos]
    try:
        hold_pred, hold_proba = predict_labels(model, X_hold, task, classes)
    except Exception as e:  # noqa: BLE001 - the model's own code: said with the model and the columns it got
        raise ConfigError(f"{source} cannot predict from the config's {len(features)} feature column(s) "
                          f"{features}: {type(e).__name__}: {str(e)[:300]}", field="features") from None
    n_ref = min(config.training.reference_sample_size, len(train_pos))
    ref_features = X.iloc[train_pos].sample(n=n_ref, random_state=seed).sort_index().reset_index(drop=True)
    reference = pd.concat([ref_features, predict_frame(model, ref_features, features, task, classes)], axis=1)
    hold_columns = list(dict.fromkeys([*config.keys, *features, *config.sensitive_features, config.target]))
    final, _ = final_step(model, X_hold.head(1))
    params = final.get_params(deep=False) if hasattr(final, "get_params") else {}
    return TrainResult(
        pipeline=model, task=task, features=list(features), categorical_features=categorical,
        numeric_features=numeric, target=config.target, classes=classes,
        metrics={"cv": {}, "holdout": compute_metrics(task, y_hold, hold_pred, hold_proba, classes),
                 "baseline": _baseline_metrics(task, y[train_pos], y_hold, classes),
                 "per_class": per_class_metrics(y_hold, hold_pred, classes) if classification else {}},
        params=json_safe(params), best_params=None,
        cv_scheme={"scheme": "none", "why": "fitted elsewhere: evaluated on the holdout only"}, split=split_info,
        n_rows=int(len(df)), n_dropped_nan_target=int(target_missing.sum()), feature_importance=[],
        reference=reference, holdout=data.iloc[hold_pos][hold_columns].reset_index(drop=True),
        holdout_predictions=hold_pred, holdout_proba=hold_proba, fit_seconds=0.0, keys=list(config.keys),
        estimator_class=qualified_class(model), primary_metric=config.metrics.primary,
        feature_dtypes={f: schema[f] for f in features}, holdout_target=y_hold, seed=seed,
        train_seconds=float(time.perf_counter() - started))


def _check_classes(config: ModelConfig, model: Any, labels: list[Any], source: str) -> None:
    known = getattr(model, "classes_", None)
    if known is None:
        raise ConfigError(f"{source} is a {config.task} model without classes_: it cannot be checked against the "
                          f"labels of target column {config.target!r}", field="target")
    ours, theirs = {plain_value(c) for c in labels}, {plain_value(c) for c in known}
    if ours != theirs:
        raise ConfigError(f"{source} predicts the classes {sorted(map(str, theirs))}, but target column "
                          f"{config.target!r} has the labels {sorted(map(str, ours))}", field="target")
