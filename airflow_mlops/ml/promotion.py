"""The champion/challenger gate: a pure decision with reasons, no I/O.

A candidate is promoted when every hard constraint holds (metric floors and ceilings on its held-out
metrics) and, if there is a champion, it beats the champion on the primary metric *measured on the
same holdout* by at least ``min_improvement`` (direction-aware: lower is better for rmse, log_loss...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlops.ml.metrics import higher_is_better


@dataclass
class Check:
    constraint: str
    metric: str
    value: float | None
    limit: float | None
    passed: bool

    def describe(self) -> str:
        op = {"floor": ">=", "ceiling": "<=", "beats_champion": "vs champion"}.get(self.constraint, self.constraint)
        status = "ok" if self.passed else "BROKEN"
        return f"{self.constraint} {self.metric} {_fmt(self.value)} {op} {_fmt(self.limit)}: {status}"


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

    def summary(self) -> str:
        verdict = "promote to champion" if self.promote else "keep as challenger"
        return f"{verdict}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def decide(
    primary_metric: str,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None = None,
    *,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    floors: Mapping[str, float] | None = None,
    ceilings: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """Decide whether ``candidate`` (held-out metrics) replaces ``champion`` (same holdout)."""
    checks: list[Check] = []
    reasons: list[str] = []
    for metric, limit in (floors or {}).items():
        value = candidate.get(metric)
        ok = value is not None and value >= limit
        checks.append(Check("floor", metric, value, float(limit), ok))
        if not ok:
            reasons.append(f"{metric} = {_fmt(value)} is below the floor {_fmt(limit)}")
    for metric, limit in (ceilings or {}).items():
        value = candidate.get(metric)
        ok = value is not None and value <= limit
        checks.append(Check("ceiling", metric, value, float(limit), ok))
        if not ok:
            reasons.append(f"{metric} = {_fmt(value)} is above the ceiling {_fmt(limit)}")

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
    promote = all(c.passed for c in checks)
    if promote and not reasons:
        reasons.append("all constraints hold")
    return PromotionDecision(promote, primary_metric, dict(candidate), dict(champion) if champion else None,
                             champion_version, checks, reasons)
