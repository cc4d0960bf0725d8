"""Which version scores a logical date: the alias as of the end of that day (or a pinned version), read from
the alias history, so a backfill scores each day with the model production used that day."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.model_registry import AliasNotFoundError, ModelRegistry
from airflow_mlops.store.dates import end_of_day, logical_ds

if TYPE_CHECKING:

    pass

from airflow_mlops.scoring.schema import FIRST_VERSION

log = logging.getLogger(__name__)


class ModelSelectionError(AliasNotFoundError):
    """No model can be chosen for the logical date (the alias did not exist then)."""


# ------------------------------------------------------------------------------------------
# model selection
# ------------------------------------------------------------------------------------------
def _as_utc(ts: str | dt.datetime) -> dt.datetime:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def _format_history(events: list[dict[str, Any]]) -> str:
    """The alias changes in the order that decides :meth:`ModelRegistry.alias_as_of`: each by its
    ``effective_at`` (the logical date it counts from; its write time ``at`` when it named none), the
    write time only added, as secondary information, when it differs."""
    if not events:
        return "no changes recorded"

    def effective(ev: dict[str, Any]) -> str:
        return str(ev.get("effective_at") or ev.get("at"))

    def order(ev: dict[str, Any]) -> tuple[dt.datetime, int]:
        try:
            return _as_utc(effective(ev)), int(ev.get("seq") or 0)
        except (TypeError, ValueError):
            return dt.datetime.max.replace(tzinfo=dt.UTC), int(ev.get("seq") or 0)

    parts = []
    for ev in sorted(events, key=order):
        text = (f"effective {effective(ev)} {ev.get('action')} {ev.get('from')} -> {ev.get('to')}"
                f" by {ev.get('actor')}")
        if ev.get("effective_at") and ev.get("at") and str(ev["at"]) != str(ev["effective_at"]):
            text += f" (recorded {ev['at']})"
        parts.append(text)
    return "; ".join(parts)


def select_model(registry: ModelRegistry, name: str, ds: str, *, alias: str = "champion",
                 version: int | str | None = None, as_of: str | dt.datetime | None = None,
                 as_of_logical_date: bool = False, if_alias_missing: str = "fail") -> dict[str, Any]:
    """Which version scores ``ds``: ``{"version", "scored_by", "selection", "alias", "as_of"}``.

    * ``version`` given: that version, ``scored_by="pinned"``, ``selection="version"``;
    * ``as_of`` (timestamp) or ``as_of_logical_date`` (= the end of the logical day ``ds``): the
      version ``alias`` pointed to at that moment, from the audit log (``selection="alias_as_of"``).
      If the alias did not exist then, :class:`ModelSelectionError` names the moment and lists the
      alias history: a backfill never silently uses today's model. Opt-in
      ``if_alias_missing="first"`` uses instead the first version the alias ever pointed to (fixed
      by the append-only audit log, so still reproducible), with ``scored_by="first_version"`` and
      ``selection="alias_first"``: for backfilling dates older than the first promotion;
    * otherwise the version ``alias`` points to now (``selection="alias"``).
    """
    if if_alias_missing not in ("fail", "first"):
        raise ValueError(f"if_alias_missing must be 'fail' or 'first', not {if_alias_missing!r}")
    if version not in (None, ""):
        v = registry.resolve(name, version=version)
        return {"version": v, "scored_by": "pinned", "selection": "version", "alias": None, "as_of": None}
    alias = alias or "champion"
    explicit = as_of is not None
    if as_of is None and as_of_logical_date:
        as_of = end_of_day(ds)
    if as_of is not None:
        ts = _as_utc(as_of)
        registry.list_versions(name)  # unknown model -> ModelNotFoundError
        held = registry.alias_as_of(name, alias, ts)
        if held is not None:
            return {"version": int(held), "scored_by": alias, "selection": "alias_as_of", "alias": alias,
                    "as_of": ts.isoformat()}
        history = registry.alias_history(name, alias)
        first = next((ev.get("to") for ev in history if ev.get("to") is not None), None)
        if if_alias_missing == "first" and first is not None:
            log.warning("alias %r of %s did not exist at %s; scoring %s with its first version v%s",
                        alias, name, ts.isoformat(), logical_ds(ds), first)
            return {"version": int(first), "scored_by": FIRST_VERSION, "selection": "alias_first", "alias": alias,
                    "as_of": ts.isoformat()}
        when = ts.isoformat() if explicit else f"{ts.isoformat()} (end of logical date {logical_ds(ds)})"
        raise ModelSelectionError(
            f"alias {alias!r} of model {name!r} pointed to no version at {when} - alias history: "
            f"{_format_history(history)}. Scoring this date with today's model would not be reproducible; "
            f"pin a version with version=<n> (or opt in to if_alias_missing='first') to score it anyway."
        )
    v = registry.resolve(name, alias=alias)
    return {"version": v, "scored_by": alias, "selection": "alias", "alias": alias, "as_of": None}


__all__ = ["ModelSelectionError", "select_model"]
