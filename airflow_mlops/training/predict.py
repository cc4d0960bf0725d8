"""Predictions of a fitted pipeline: labels and class probabilities aligned to the model's classes, and the
prediction-log columns (``prediction``, ``proba_<class>``) of a frame. Shared by training (holdout), the
smoke test, scoring and reproduction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.training.steps import category_label

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

#: scikit-learn classifiers whose ``predict`` is the class of highest ``predict_proba`` except where the
#: two highest probabilities are equal (a tie; e.g. a binary decision value so close to 0 that the
#: probability rounds to exactly 0.5). For them :func:`predict_labels` derives the labels from one
#: ``predict_proba`` pass and asks ``predict`` only for the tied rows.
LABELS_FROM_PROBA: frozenset[str] = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    # xgboost: predict_proba is [1 - p, p] for two classes and predict is p > 0.5; argmax otherwise
    "xgboost.sklearn.XGBClassifier",
    # LightGBM: predict is the argmax of predict_proba
    "lightgbm.sklearn.LGBMClassifier",
})


def as_float64_proba(raw: Any) -> np.ndarray:
    """Class probabilities as float64 rows that sum to 1. Libraries that compute in float32 (xgboost,
    lightgbm) return rows summing to 1 only within float32 precision; those are renormalised after the
    cast, so log loss and the prediction log see proper distributions. float64 input is returned as is."""
    import numpy as np

    arr = np.asarray(raw)
    if arr.dtype == np.float64:
        return arr
    arr = arr.astype(np.float64)
    if arr.ndim == 2 and arr.shape[1] > 1:
        sums = arr.sum(axis=1, keepdims=True)
        np.divide(arr, sums, out=arr, where=sums > 0)
    return arr


def proba_aligned(estimator: Any, X: Any, classes: Sequence[Any] | None,
                   proba: np.ndarray | None = None) -> np.ndarray:
    """``predict_proba`` with columns in the order of ``classes`` (zeros for classes the
    estimator never saw, e.g. a rare class absent from a CV training fold). ``proba``: the
    estimator's own ``predict_proba(X)`` when already computed."""
    import numpy as np

    proba = as_float64_proba(estimator.predict_proba(X) if proba is None else proba)
    seen = list(estimator.classes_)
    if classes is None or list(classes) == seen:
        return proba
    out = np.zeros((proba.shape[0], len(classes)), dtype="float64")
    position = {plain_value(c): i for i, c in enumerate(classes)}
    for j, cls in enumerate(seen):
        key = plain_value(cls)
        if key not in position:
            raise ValueError(f"the model predicts class {key!r} which is not in classes {list(classes)!r}")
        out[:, position[key]] = proba[:, j]
    return out


def labels_and_proba(final: Any, X: Any, classes: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(final.predict(X), aligned proba)`` from one probability pass (see :data:`LABELS_FROM_PROBA`)."""
    import numpy as np
    from sklearn.utils import _safe_indexing

    raw = np.asarray(final.predict_proba(X))
    top = raw.argmax(axis=1)
    labels = np.asarray(final.classes_)[top]
    if raw.shape[1] > 1:
        best = raw[np.arange(len(raw)), top]
        runner_up = np.partition(raw, -2, axis=1)[:, -2]
        tied = np.flatnonzero(best == runner_up)
        if len(tied):  # where predict's own rule decides (e.g. a decision value of +1e-17 gives p = 0.5)
            labels[tied] = np.asarray(final.predict(_safe_indexing(X, tied)))
    return labels, proba_aligned(final, X, classes, proba=raw)


def final_step(estimator: Any, X: Any) -> tuple[Any, Any]:
    """``(final estimator, its input)``: a Pipeline's transformers run once here, so predict and
    predict_proba (which would each run them through the Pipeline) share one preprocessing pass. An object
    with a ``final_and_input(X)`` method (the scorer's pipeline that caches its preprocessing per batch)
    answers for itself."""
    split = getattr(estimator, "final_and_input", None)
    if callable(split):
        final, Xt = split(X)
        return final, Xt
    steps = getattr(estimator, "steps", None)
    if steps is not None and len(steps) > 1:
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


def predict_labels(estimator: Any, X: Any, task: str,
                   classes: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray | None]:
    import numpy as np

    with_proba = task != "regression" and hasattr(estimator, "predict_proba")
    final, Xt = final_step(estimator, X) if with_proba else (estimator, X)
    if with_proba and f"{type(final).__module__}.{type(final).__qualname__}" in LABELS_FROM_PROBA:
        return labels_and_proba(final, Xt, classes)
    pred = np.asarray(final.predict(Xt))
    proba = proba_aligned(final, Xt, classes) if with_proba else None
    return pred, proba


def predict_frame(
    pipeline: Any,
    df: pd.DataFrame,
    features: Sequence[str],
    task: str,
    classes: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Predict ``df`` and return the prediction-log columns, indexed like ``df``.

    Columns: ``prediction``, plus ``proba_<class>`` (``float64``) per class for classifiers that
    have ``predict_proba``, in the order of ``classes`` (default: the pipeline's ``classes_``).
    """
    import pandas as pd

    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"feature column(s) missing from the data to score: {', '.join(missing)}")
    X = df[list(features)]
    pred, proba = predict_labels(pipeline, X, task, classes)
    out = pd.DataFrame({"prediction": pred}, index=df.index)
    if proba is not None:
        labels = list(classes) if classes is not None else [plain_value(c) for c in pipeline.classes_]
        for j, label in enumerate(labels):
            out[f"proba_{category_label(label)}"] = proba[:, j]
    return out


def plain_value(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "shape", None) == () else value


__all__ = ["LABELS_FROM_PROBA", "as_float64_proba", "final_step", "labels_and_proba", "plain_value", "predict_frame",
           "predict_labels", "proba_aligned"]
