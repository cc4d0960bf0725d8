"""Group fairness of a trained model on its holdout, with fairlearn (optional extra ``fairness``).

When a config sets ``sensitive_features``, :func:`evaluate_fairness` computes, per group of those
columns (their combinations when there are several), with :class:`fairlearn.metrics.MetricFrame`:
row count, selection rate (share predicted positive), true/false positive rates and the config's
primary metric; then the between-group gap of ``fairness.metric``
(:func:`fairlearn.metrics.demographic_parity_difference` or
:func:`~fairlearn.metrics.equalized_odds_difference`) and the gap (max - min over groups) of the
primary metric. The result is stored under ``fairness`` in ``metadata.json``, shown in the model card
and enforced by the promotion gate (``fairness.max_gap``, ``fairness.max_primary_gap``).

Selection rate and the two gap metrics need a binary task (positive class = the second class, as in
:mod:`airflow_mlops.evaluation.metrics`); for multiclass and regression models only the per-group primary
metric and its gap are computed, and ``gap`` is ``None`` with a ``note``.

Group labels are values of the sensitive columns (categories such as ``female`` or ``north``); they
are aggregate descriptors, never row values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from airflow_mlops.config.model import ModelConfig


class FairnessError(ValueError):
    """Fairness cannot be evaluated as configured (missing columns, fairlearn not installed)."""


def _import_fairlearn() -> Any:
    try:
        import fairlearn.metrics as flm
    except ImportError:  # pragma: no cover - depends on the environment
        raise FairnessError("the fairness gate needs fairlearn: pip install 'airflow-mlops[fairness]' "
                            "(or remove sensitive_features from the model config)") from None
    return flm


def _group_name(key: Any, names: Sequence[str]) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{n}={v}" for n, v in zip(names, values))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def evaluate_fairness(
    config: ModelConfig,
    holdout: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
) -> dict[str, Any] | None:
    """Group metrics and gaps on the holdout; ``None`` when the config has no ``sensitive_features``.

    ``holdout`` must hold the sensitive columns (training keeps them in the saved holdout);
    ``y_pred``/``proba`` are the model's predictions of those rows (``proba`` columns in the order of
    ``classes``).
    """
    import numpy as np

    from airflow_mlops.config.model import FairnessConfig
    from airflow_mlops.evaluation.metrics import compute_metrics, higher_is_better

    sensitive = list(config.sensitive_features)
    if not sensitive:
        return None
    missing = [c for c in sensitive if c not in holdout.columns]
    if missing:
        raise FairnessError(f"the holdout lacks the sensitive feature column(s) {missing}; "
                            f"they must be in the training data (config: sensitive_features)")
    flm = _import_fairlearn()
    fcfg = config.fairness or FairnessConfig()
    task, primary = config.task, config.metrics.primary
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = len(y_true)
    sf = holdout[sensitive].reset_index(drop=True).astype(object).where(lambda d: d.notna(), "(missing)")
    sf = sf.astype(str)
    positions = np.arange(n)

    def primary_fn(yt: Any, yp: Any, pos: Any) -> float:
        pos = np.asarray(pos, dtype=int)
        pr = proba[pos] if proba is not None else None
        value = compute_metrics(task, yt, yp, pr, classes, names=[primary]).get(primary)
        return float("nan") if value is None else value

    metrics: dict[str, Any] = {"count": flm.count, primary: primary_fn}
    sample_params: dict[str, Any] = {primary: {"pos": positions}}
    binary = task == "binary" and classes is not None and len(classes) == 2
    positive = classes[1] if binary and classes is not None else None
    if binary:
        yt_bin = np.array([str(v) == str(positive) for v in y_true.tolist()], dtype=int)
        yp_bin = np.array([str(v) == str(positive) for v in y_pred.tolist()], dtype=int)
        metrics.update({"selection_rate": flm.selection_rate, "true_positive_rate": flm.true_positive_rate,
                        "false_positive_rate": flm.false_positive_rate})
        # the label metrics see 0/1 labels; the primary metric the original labels (via a second frame)
        frame_bin = flm.MetricFrame(metrics={k: v for k, v in metrics.items() if k != primary},
                                    y_true=yt_bin, y_pred=yp_bin, sensitive_features=sf)
    frame_primary = flm.MetricFrame(metrics={"count": flm.count, primary: primary_fn}, y_true=y_true,
                                    y_pred=y_pred, sensitive_features=sf, sample_params=sample_params)
    by_primary = frame_primary.by_group
    by_bin = frame_bin.by_group if binary else None
    groups = []
    for key in by_primary.index:
        row: dict[str, Any] = {"group": _group_name(key, sensitive), "count": int(by_primary.loc[key, "count"])}
        if by_bin is not None:
            for m in ("selection_rate", "true_positive_rate", "false_positive_rate"):
                row[m] = _num(by_bin.loc[key, m])
        row[primary] = _num(by_primary.loc[key, primary])
        groups.append(row)
    values = [g[primary] for g in groups if g[primary] is not None]
    primary_gap = (max(values) - min(values)) if len(values) >= 2 else None
    out: dict[str, Any] = {
        "sensitive_features": sensitive,
        "metric": fcfg.metric,
        "max_gap": fcfg.max_gap,
        "primary_metric": primary,
        "primary_gap": _num(primary_gap),
        "max_primary_gap": fcfg.max_primary_gap,
        "rows": int(n),
        "groups": groups,
        "library": f"fairlearn {getattr(__import__('fairlearn'), '__version__', '?')}",
    }
    if values:
        if higher_is_better(primary):
            best = max(groups, key=lambda g: g[primary] if g[primary] is not None else -np.inf)
        else:
            best = min(groups, key=lambda g: g[primary] if g[primary] is not None else np.inf)
        out["best_group"] = best["group"]
    if binary:
        fn = (flm.demographic_parity_difference if fcfg.metric == "demographic_parity_difference"
              else flm.equalized_odds_difference)
        out["gap"] = _num(fn(yt_bin, yp_bin, sensitive_features=sf))
        out["positive_label"] = str(positive)
        out["selection_rate_overall"] = _num(yp_bin.mean()) if n else None
    else:
        out["gap"] = None
        out["note"] = f"{fcfg.metric} needs a binary task; only the per-group {primary} gap is computed"
    return out


def fairness_checks(fairness: dict[str, Any] | None, max_gap: float | None = None,
                    max_primary_gap: float | None = None) -> list[tuple[str, float | None, float]]:
    """``[(metric name, value, limit)]`` the gate enforces: the fairness gap against ``max_gap`` and the
    primary-metric gap against ``max_primary_gap`` (limits default to the ones stored with the result)."""
    if not fairness:
        return []
    out = []
    gap_limit = max_gap if max_gap is not None else fairness.get("max_gap")
    if gap_limit is not None and fairness.get("gap") is not None:
        out.append((fairness["metric"], fairness.get("gap"), float(gap_limit)))
    pg_limit = max_primary_gap if max_primary_gap is not None else fairness.get("max_primary_gap")
    if pg_limit is not None:
        out.append((f"{fairness.get('primary_metric')}_gap_between_groups", fairness.get("primary_gap"),
                    float(pg_limit)))
    return out
