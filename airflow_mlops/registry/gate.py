"""The champion/challenger gate: a pure decision with reasons, no I/O.

A candidate is promoted when every hard constraint holds, it beats the naive baseline training recorded
(``metrics.baseline``: the class prior / the mean, on the same holdout) on the primary metric, and, if
there is a champion, it beats the champion on the primary metric *measured on the same holdout* by at
least ``min_improvement`` (direction-aware: lower is better for rmse, log_loss...). The constraints:

* ``metrics.floors`` / ``metrics.ceilings`` on any held-out metric, including per-class metrics of
  classifiers (``recall_class_<label>``, ``precision_class_<label>``, ``f1_class_<label>``);
* ceilings on the resource profile measured by the fresh-process smoke test
  (``latency_ms_per_10k_rows``, ``latency_ms_per_1k_rows``, ``model_size_mb``, ``model_size_bytes``,
  ``peak_rss_mb``, ``peak_rss_delta_mb``; see :mod:`airflow_mlops.registry.smoke`);
* the fairness gate: the between-group gap of ``fairness.metric`` at most ``fairness.max_gap`` and
  the between-group gap of the primary metric at most ``fairness.max_primary_gap`` (when set).

:func:`constraint_values` gathers the values of one version from its ``metadata.json``. A candidate
that beats the champion but breaks a constraint is not promoted; every broken constraint is listed
with its value and limit (:meth:`Check.violation`: ``"latency_ms_per_10k_rows 412.3 > ceiling 250"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlops.evaluation.metrics import higher_is_better


@dataclass
class Check:
    constraint: str
    metric: str
    value: float | None
    limit: float | None
    passed: bool

    def describe(self) -> str:
        op = {"floor": ">=", "ceiling": "<=", "beats_champion": "vs champion", "beats_baseline": "vs naive baseline",
              "fairness": "<="}.get(self.constraint, self.constraint)
        status = "ok" if self.passed else "BROKEN"
        return f"{self.constraint} {self.metric} {_fmt(self.value)} {op} {_fmt(self.limit)}: {status}"

    def violation(self) -> str:
        """The broken constraint as ``"<metric> <value> <op> <kind> <limit>"``, e.g.
        ``"latency_ms_per_10k_rows 412.3 > ceiling 250"`` or ``"recall_class_1 0.41 < floor 0.6"``."""
        if self.value is None:
            return f"{self.metric} not measured ({self.constraint} {_fmt(self.limit)})"
        if self.constraint == "floor":
            return f"{self.metric} {_fmt(self.value)} < floor {_fmt(self.limit)}"
        if self.constraint == "ceiling":
            return f"{self.metric} {_fmt(self.value)} > ceiling {_fmt(self.limit)}"
        if self.constraint == "fairness":
            return f"{self.metric} {_fmt(self.value)} > max_gap {_fmt(self.limit)}" if not \
                self.metric.endswith("_gap_between_groups") else \
                f"{self.metric} {_fmt(self.value)} > max_primary_gap {_fmt(self.limit)}"
        if self.constraint == "beats_champion":
            return f"{self.metric} {_fmt(self.value)} does not beat champion {_fmt(self.limit)}"
        if self.constraint == "beats_baseline":
            return f"{self.metric} {_fmt(self.value)} does not beat the naive baseline {_fmt(self.limit)}"
        return f"{self.constraint} {self.metric} {_fmt(self.value)} (limit {_fmt(self.limit)})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.passed:
            d["violation"] = self.violation()
        return d


@dataclass
class PromotionDecision:
    promote: bool
    primary_metric: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: int | None
    checks: list[Check] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def violations(self) -> list[str]:
        """Each broken *constraint* (floors, ceilings, fairness; not the champion comparison) as text."""
        return [c.violation() for c in self.broken if c.constraint != "beats_champion"]

    def summary(self) -> str:
        verdict = "promote to champion" if self.promote else "keep as challenger"
        text = f"{verdict}: " + "; ".join(self.reasons)
        if self.violations:
            text += " [broken constraints: " + "; ".join(self.violations) + "]"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [c.to_dict() for c in self.checks]
        d["violations"] = self.violations
        d["summary"] = self.summary()
        return d


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def constraint_values(meta: Mapping[str, Any]) -> dict[str, float]:
    """Every gateable value of a version from its ``metadata.json``: held-out metrics, flattened
    per-class metrics (``recall_class_<label>``...) and the numeric resource metrics of ``profile``."""
    from airflow_mlops.evaluation.metrics import flatten_per_class, is_resource_metric

    metrics = meta.get("metrics") or {}
    out: dict[str, float] = {k: v for k, v in (metrics.get("holdout") or {}).items() if isinstance(v, (int, float))}
    out.update(flatten_per_class(metrics.get("per_class")))
    for k, v in (meta.get("profile") or {}).items():
        if is_resource_metric(k) and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def decide(
    primary_metric: str,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None = None,
    *,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    floors: Mapping[str, float] | None = None,
    ceilings: Mapping[str, float] | None = None,
    constraint_values: Mapping[str, float] | None = None,
    fairness: Mapping[str, Any] | None = None,
    max_gap: float | None = None,
    max_primary_gap: float | None = None,
    baseline: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """Decide whether ``candidate`` (held-out metrics) replaces ``champion`` (same holdout).

    ``constraint_values``: the values floors/ceilings are checked against (default ``candidate``);
    pass :func:`constraint_values` of the candidate's metadata to gate per-class and resource metrics.
    ``fairness``: the candidate's ``metadata["fairness"]`` (:func:`airflow_mlops.training.fairness.evaluate_fairness`);
    ``max_gap``/``max_primary_gap`` override the limits stored with it (the current config's).
    ``baseline``: the naive baseline's held-out metrics (``metadata["metrics"]["baseline"]``); the candidate
    must beat it on the primary metric, first version included (a model no better than predicting the class
    prior or the mean never serves).
    """
    from airflow_mlops.training.fairness import fairness_checks

    checks: list[Check] = []
    reasons: list[str] = []
    values = dict(candidate)
    values.update(constraint_values or {})
    for metric, limit in (floors or {}).items():
        value = values.get(metric)
        ok = value is not None and value >= limit
        checks.append(Check("floor", metric, value, float(limit), ok))
        if not ok:
            reasons.append(f"{metric} = {_fmt(value)} is below the floor {_fmt(limit)}")
    for metric, limit in (ceilings or {}).items():
        value = values.get(metric)
        ok = value is not None and value <= limit
        checks.append(Check("ceiling", metric, value, float(limit), ok))
        if not ok:
            reasons.append(f"{metric} = {_fmt(value)} is above the ceiling {_fmt(limit)}")
    for metric, value, limit in fairness_checks(dict(fairness) if fairness else None, max_gap, max_primary_gap):
        ok = value is not None and value <= limit
        checks.append(Check("fairness", metric, value, float(limit), ok))
        if not ok:
            groups = ", ".join((fairness or {}).get("sensitive_features") or [])
            reasons.append(f"fairness: {checks[-1].violation()} between the groups of {groups}")

    cand = candidate.get(primary_metric)
    if cand is None:
        checks.append(Check("primary_metric", primary_metric, None, None, False))
        reasons.append(f"the candidate has no {primary_metric} on the holdout")
    if champion is not None and cand is not None:
        champ = champion.get(primary_metric)
        if champ is None:
            reasons.append(f"champion v{champion_version} has no {primary_metric}; comparing on constraints only")
        else:
            hib = higher_is_better(primary_metric)
            gain = (cand - champ) if hib else (champ - cand)
            ok = gain > 0 if min_improvement == 0 else gain >= min_improvement
            checks.append(Check("beats_champion", primary_metric, cand, champ, ok))
            word = "higher" if hib else "lower"
            if ok:
                reasons.append(f"{primary_metric} {_fmt(cand)} vs champion v{champion_version} {_fmt(champ)} "
                               f"on the same holdout: improvement {_fmt(gain)} >= margin {_fmt(min_improvement)} "
                               f"({word} is better)")
            else:
                reasons.append(f"{primary_metric} {_fmt(cand)} does not beat champion v{champion_version} "
                               f"{_fmt(champ)} on the same holdout by the margin {_fmt(min_improvement)} "
                               f"(improvement {_fmt(gain)}; {word} is better)")
    elif champion is None and cand is not None:
        reasons.append(f"no champion yet; {primary_metric} = {_fmt(cand)}")
    base = (baseline or {}).get(primary_metric)
    if cand is not None and base is not None:
        hib = higher_is_better(primary_metric)
        ok = cand > base if hib else cand < base
        checks.append(Check("beats_baseline", primary_metric, cand, base, ok))
        if not ok:
            reasons.append(f"{primary_metric} {_fmt(cand)} does not beat the naive baseline {_fmt(base)} "
                           f"({'higher' if hib else 'lower'} is better): the model predicts no better than the "
                           "class prior / the mean")
    promote = all(c.passed for c in checks)
    if promote and not reasons:
        reasons.append("all constraints hold")
    return PromotionDecision(promote, primary_metric, dict(candidate), dict(champion) if champion else None,
                             champion_version, checks, reasons)
