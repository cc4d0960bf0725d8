"""Evaluation metrics for the three supported tasks (binary, multiclass, regression).

Pure Python; scikit-learn and numpy are imported lazily inside the functions, so importing this
module is cheap (the config schema imports it to validate metric names).

Every value returned is a plain, finite Python ``float`` (or ``int`` for supports), so results can
be written to JSON as they are. A metric that is undefined for the given data (for example
``roc_auc`` when the true labels hold a single class, or any probability metric when no
probabilities are available) is *omitted* from the result rather than reported as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np

__all__ = [
    "TASKS",
    "METRICS_BY_TASK",
    "LOWER_IS_BETTER",
    "PROBA_METRICS",
    "RESOURCE_METRIC_PREFIXES",
    "metric_range",
    "higher_is_better",
    "is_resource_metric",
    "PER_CLASS_METRICS",
    "is_per_class_metric",
    "per_class_metric_name",
    "flatten_per_class",
    "compute_metrics",
    "per_class_metrics",
]

#: The supported learning tasks.
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")

#: Every metric computed for a task, in reporting order.
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "average_precision"),
    "multiclass": ("accuracy", "f1_macro", "roc_auc_ovr", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

#: Metrics for which a smaller value is better.
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})
#: Metrics computed from the class probabilities alone (the predicted labels do not enter them).
PROBA_METRICS: frozenset[str] = frozenset({"roc_auc", "average_precision", "log_loss", "roc_auc_ovr"})

#: Prefixes of operational metrics (measured outside ``compute_metrics``); all lower-is-better,
#: all non-negative. They may only carry ceilings.
RESOURCE_METRIC_PREFIXES: tuple[str, ...] = ("latency_", "model_size_", "peak_rss_")

#: Per-class metrics of classifiers, addressable in floors/ceilings as ``<metric>_class_<label>``
#: (e.g. ``recall_class_1``, ``precision_class_churned``); values come from :func:`per_class_metrics`.
PER_CLASS_METRICS: tuple[str, ...] = ("precision", "recall", "f1")

_UNIT_INTERVAL = frozenset(
    {"roc_auc", "accuracy", "f1", "precision", "recall", "average_precision", "f1_macro", "roc_auc_ovr"}
)
_ALL_METRICS = frozenset(m for names in METRICS_BY_TASK.values() for m in names)


def is_resource_metric(metric: str) -> bool:
    """True for operational metrics such as ``latency_p95_ms`` or ``model_size_bytes``."""
    return any(metric.startswith(p) and len(metric) > len(p) for p in RESOURCE_METRIC_PREFIXES)


def is_per_class_metric(metric: str) -> bool:
    """True for per-class classifier metrics such as ``recall_class_1`` or ``precision_class_churned``."""
    return any(metric.startswith(f"{m}_class_") and len(metric) > len(m) + 7 for m in PER_CLASS_METRICS)


def per_class_metric_name(metric: str, label: Any) -> str:
    """``per_class_metric_name("recall", 1) == "recall_class_1"`` (the label as in ``metadata.json``)."""
    return f"{metric}_class_{plain_value(label)}"


def flatten_per_class(per_class: dict[str, dict[str, float | int]] | None) -> dict[str, float]:
    """``{"1": {"recall": 0.7, ...}}`` -> ``{"recall_class_1": 0.7, "precision_class_1": ..., ...}``."""
    out: dict[str, float] = {}
    for label, values in (per_class or {}).items():
        for m in PER_CLASS_METRICS:
            v = _finite((values or {}).get(m))
            if v is not None:
                out[per_class_metric_name(m, label)] = v
    return out


def metric_range(metric: str) -> tuple[float, float]:
    """The closed interval ``(low, high)`` of values ``metric`` can take.

    Raises ``ValueError`` for an unknown metric name.
    """
    if metric in _UNIT_INTERVAL or is_per_class_metric(metric):
        return (0.0, 1.0)
    if metric == "r2":
        return (-math.inf, 1.0)
    if metric in LOWER_IS_BETTER or is_resource_metric(metric):
        return (0.0, math.inf)
    raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(_ALL_METRICS))}")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` means a better model.

    ``rmse``, ``mae``, ``log_loss`` and the resource metrics (``latency_*``, ``model_size_*``,
    ``peak_rss_*``) are lower-is-better; every other known metric is higher-is-better.
    Raises ``ValueError`` for an unknown metric name.
    """
    if metric in LOWER_IS_BETTER or is_resource_metric(metric):
        return False
    if metric in _ALL_METRICS or is_per_class_metric(metric):
        return True
    raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(_ALL_METRICS))}")


def _finite(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _resolve_classes(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any] | None) -> list[Any]:
    import numpy as np

    if classes is not None:
        return list(classes)
    return list(np.unique(np.concatenate([np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)])))


def _proba_2d(y_proba: Any, n_classes: int) -> np.ndarray:
    import numpy as np

    proba = np.asarray(y_proba, dtype="float64")
    if proba.ndim == 1:
        if n_classes != 2:
            raise ValueError("a 1-D y_proba (positive-class probability) is only valid for binary tasks")
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise ValueError(f"y_proba must have one column per class ({n_classes}); got shape {proba.shape}")
    return proba


def compute_metrics(
    task: str,
    y_true: Any,
    y_pred: Any,
    y_proba: Any | None = None,
    classes: Sequence[Any] | None = None,
    *,
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Compute every metric of ``METRICS_BY_TASK[task]``.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        y_true: true labels / values.
        y_pred: predicted labels / values.
        y_proba: class probabilities, shape ``(n, len(classes))`` with columns in the order of
            ``classes``; for ``binary`` a 1-D array of the positive-class probability is also
            accepted. Without it, probability metrics (``roc_auc``, ``log_loss``,
            ``average_precision``, ``roc_auc_ovr``) are omitted.
        classes: the ordered class labels. Defaults to the sorted labels seen in ``y_true`` and
            ``y_pred``. For ``binary`` the *second* class is the positive one (``1``, ``True``,
            or the alphabetically last label).
        names: compute only these metrics (default: all metrics of the task).

    Returns:
        ``{metric: float}`` with finite values only; undefined metrics are omitted.
        ``rmse`` is the square root of the mean squared error.
    """
    import numpy as np
    from sklearn import metrics as skm

    if task not in METRICS_BY_TASK:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} rows but y_pred has {y_pred.shape[0]}")
    out: dict[str, float] = {}
    if y_true.shape[0] == 0:
        return out

    wanted = set(METRICS_BY_TASK[task]) if names is None else set(names)

    def put(name: str, fn: Any) -> None:
        if name not in wanted:
            return
        try:
            value = _finite(fn())
        except ValueError:  # undefined for this data (e.g. one class only)
            value = None
        if value is not None:
            out[name] = value

    if task == "regression":
        yt = y_true.astype("float64")
        yp = y_pred.astype("float64")
        put("rmse", lambda: math.sqrt(skm.mean_squared_error(yt, yp)))
        put("mae", lambda: skm.mean_absolute_error(yt, yp))
        if yt.shape[0] >= 2:
            put("r2", lambda: skm.r2_score(yt, yp))
        return out

    labels = _resolve_classes(y_true, y_pred, classes)
    known = {plain_value(c) for c in labels}
    unexpected = {plain_value(v) for v in (*np.unique(y_true), *np.unique(y_pred))} - known
    if unexpected:
        shown = ", ".join(sorted(repr(v) for v in unexpected))
        raise ValueError(f"labels {shown} are not among classes {labels!r}")
    proba = _proba_2d(y_proba, len(labels)) if y_proba is not None else None

    if task == "binary":
        if len(labels) != 2:
            raise ValueError(f"binary metrics need exactly 2 classes; got {labels!r}")
        positive = labels[1]
        put("accuracy", lambda: skm.accuracy_score(y_true, y_pred))
        if wanted & {"f1", "precision", "recall"}:
            # one pass for the three (f1_score, precision_score and recall_score each make this same call)
            try:
                prf = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=positive,
                                                          average="binary", zero_division=0)
            except ValueError:  # undefined for this data, like any metric in put()
                prf = None
            if prf is not None:
                put("precision", lambda: prf[0])
                put("recall", lambda: prf[1])
                put("f1", lambda: prf[2])
        if proba is not None:
            is_pos = y_true == positive
            if 0 < int(is_pos.sum()) < is_pos.shape[0]:
                put("roc_auc", lambda: skm.roc_auc_score(is_pos, proba[:, 1]))
                put("average_precision", lambda: skm.average_precision_score(is_pos, proba[:, 1]))
            put("log_loss", lambda: skm.log_loss(y_true, proba, labels=labels))
        return _ordered(task, out)

    # multiclass
    put("accuracy", lambda: skm.accuracy_score(y_true, y_pred))
    put("f1_macro", lambda: skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    if proba is not None:
        present = set(np.unique(y_true).tolist())
        if len(present) == len(labels):  # one-vs-rest AUC is undefined for an absent class
            put("roc_auc_ovr", lambda: skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        put("log_loss", lambda: skm.log_loss(y_true, proba, labels=labels))
    return _ordered(task, out)


def _ordered(task: str, values: dict[str, float]) -> dict[str, float]:
    return {name: values[name] for name in METRICS_BY_TASK[task] if name in values}


def per_class_metrics(
    y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None
) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and support for each class of a classifier.

    Returns ``{str(class): {"precision": float, "recall": float, "f1": float, "support": int}}``
    in the order of ``classes`` (default: sorted labels of ``y_true`` and ``y_pred``).
    """
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = _resolve_classes(y_true, y_pred, classes)
    if y_true.shape[0] == 0:
        return {}
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return {
        str(plain_value(label)): {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }


def plain_value(value: Any) -> Any:
    """numpy scalar -> Python scalar (so ``str`` gives ``1`` and not ``np.int64(1)``)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
