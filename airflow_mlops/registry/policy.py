"""The one promotion policy of the registry: which version an alias may point to, which version may score, and
which former holders a rollback may go to.

Functions over a model's state document (``state.json`` as :meth:`ModelRegistry.state
<airflow_mlops.registry.model_registry.ModelRegistry.state>` returns it: ``aliases``, ``approvals``,
``lifecycle``, ``audit``) and a version's signed metadata; they read, never write. :class:`ModelRegistry
<airflow_mlops.registry.model_registry.ModelRegistry>` calls them from ``set_alias``, ``rollback``,
``check_alias``, ``rollback_targets``, ``check_serving`` and ``approve``, inside the compare-and-swap of the
state where the call changes it. See docs/security.md.
"""

from __future__ import annotations

from typing import Any

from airflow_mlops.registry.errors import LifecycleError, PolicyError

LIFECYCLE_STATES = ("active", "deprecated", "retired")
APPROVAL_STATES = ("not_required", "pending", "approved", "rejected")

#: Aliases a retired version may not hold (they select the model that scores production data).
SERVING_ALIASES = ("champion", "challenger")
#: Aliases that hold candidates awaiting a decision: the approval rule does not apply to them.
CANDIDATE_ALIASES = ("challenger",)


def former_holders(st: dict[str, Any], alias: str) -> list[int]:
    """Versions ``alias`` pointed to before, oldest first, each once (its last occurrence counts)."""
    held = [int(ev["to"]) for ev in st["audit"]
            if ev.get("alias") == alias and ev["action"] in ("set_alias", "rollback") and ev.get("to") is not None]
    return list(dict.fromkeys(reversed(held)))[::-1]


def approval_of(st: dict[str, Any], meta: dict[str, Any], version: int) -> dict[str, Any]:
    return st["approvals"].get(str(int(version))) or dict(meta.get("approval") or {"status": "not_required"})


def approval_refusal(approval: dict[str, Any], pending_ok: bool = False) -> str | None:
    """Why an approval record forbids use: rejected, or (unless ``pending_ok``) required and not approved."""
    if approval.get("status") == "rejected":
        return f"was rejected (by {approval.get('by')}: {approval.get('reason') or 'no reason given'})"
    if not pending_ok and approval.get("required") and approval.get("status") != "approved":
        return f"requires an approval and its approval is {approval.get('status')!r}"
    return None


def refusal(st: dict[str, Any], name: str, alias: str, version: int, meta: dict[str, Any]) -> str | None:
    """Why the promotion policy forbids ``alias`` -> ``version`` (None: allowed)."""
    life = st["lifecycle"].get(str(version)) or {"state": "active"}
    if life["state"] == "retired":
        return f"v{version} is retired (by {life.get('by')}: {life.get('reason') or 'no reason given'})"
    candidate = alias in CANDIDATE_ALIASES or alias == "previous_champion"
    why = approval_refusal(approval_of(st, meta, version), pending_ok=candidate)
    if why:
        return f"v{version} {why}"
    if not candidate and life["state"] != "active" and st["aliases"].get(alias) != version:
        return (f"v{version} is {life['state']} (by {life.get('by')}: {life.get('reason') or 'no reason'}); "
                f"only active versions may become {alias!r}")
    return None


def enforce_policy(st: dict[str, Any], name: str, alias: str, version: int, meta: dict[str, Any]) -> None:
    """Raise :class:`LifecycleError` (retired) or :class:`PolicyError` if ``alias`` may not point to ``version``
    in the state ``st``: the check every alias move makes."""
    _refuse_retired(st, name, alias, version)
    why = refusal(st, name, alias, version, meta)
    if why:
        raise PolicyError(f"alias {alias!r} of {name!r} cannot point to {why}. Nothing was changed.")


def enforce_serving(st: dict[str, Any], name: str, version: int, meta: dict[str, Any], role: str) -> None:
    """Raise if ``version`` may not score production rows as ``role``: retired (:class:`LifecycleError`),
    rejected, or awaiting a required approval (:class:`PolicyError`). A deprecated version still serves."""
    life = st["lifecycle"].get(str(version)) or {"state": "active"}
    if life["state"] == "retired":
        raise LifecycleError(f"{name} v{version} ({role}) is retired (by {life.get('by')}: "
                             f"{life.get('reason') or 'no reason given'}); it may not score")
    why = approval_refusal(approval_of(st, meta, version))
    if why:
        raise PolicyError(f"{name} v{version} ({role}) {why}; it may not score. Point the alias at an allowed "
                          f"version (python -m airflow_mlops.cli rollback {name} --as <you> --reason ...) or "
                          "turn the kill switch on for fallback rows")


def _state_of(st: dict[str, Any], version: Any) -> str:
    state: str = (st["lifecycle"].get(str(version)) or {"state": "active"})["state"]
    return state


def _refuse_retired(st: dict[str, Any], name: str, alias: str, version: int) -> None:
    if _state_of(st, version) == "retired":
        entry = st["lifecycle"][str(version)]
        raise LifecycleError(
            f"{name} v{version} is retired (by {entry.get('by')}: {entry.get('reason') or 'no reason given'}) "
            f"and cannot become {alias!r}; pick another version, or reactivate it first: "
            f"python -m airflow_mlops.cli lifecycle {name} {version} active --as ME --reason ..."
        )
