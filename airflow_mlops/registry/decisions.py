"""Decisions on a version besides alias moves: approvals, lifecycle states, re-signing and the kill switch.

:class:`RegistryDecisions` is a part of :class:`~airflow_mlops.registry.model_registry.ModelRegistry` (use that
class). Each decision is one compare-and-swap update of the model's signed state document with its audit entry;
an approval goes through the promotion policy (:mod:`airflow_mlops.registry.policy`) like every alias move.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_mlops.registry.core import (
    METADATA_FILE,
    SIGNATURE_FILE,
    RegistryCore,
    audit,
    default_actor,
    log,
    sha256,
    utcnow,
)
from airflow_mlops.registry.errors import ApprovalError, LifecycleError, RegistryError
from airflow_mlops.registry.policy import CANDIDATE_ALIASES, LIFECYCLE_STATES, approval_of
from airflow_mlops.store.artifacts import ArtifactNotFoundError, ArtifactStore
from airflow_mlops.trust.signing import PURPOSE_VERSION, SignatureError


class RegistryDecisions(RegistryCore):
    """Approvals, lifecycle states, re-signing and the kill switch of
    :class:`~airflow_mlops.registry.model_registry.ModelRegistry`."""

    # ---- approvals -----------------------------------------------------------------
    def approval(self, name: str, version: int) -> dict[str, Any]:
        meta = self.get_metadata(name, version)
        st = self.state(name)
        return st["approvals"].get(str(version)) or dict(meta.get("approval", {"status": "not_required"}))

    def approve(self, name: str, version: int, *, approver: str | None = None, reason: str = "",
                allow_self_approval: bool = False, status: str = "approved",
                details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an approval (or ``status="rejected"``). The approver may not be the identity that
        registered the model unless ``allow_self_approval``."""
        if status not in ("approved", "rejected"):
            raise ApprovalError(f"status must be 'approved' or 'rejected', not {status!r}")
        meta = self.get_metadata(name, version)
        version = int(version)
        approver = approver or default_actor()
        if not (meta.get("approval") or {}).get("required"):
            raise ApprovalError(
                f"{name} v{version} does not require an approval (its model's promotion.require_approval was off "
                f"when it was registered); there is nothing to {'approve' if status == 'approved' else 'reject'}. "
                f"To stop a version from serving, deprecate or retire it: python -m airflow_mlops.cli lifecycle "
                f"{name} {version} retired --as <you> --reason ...")
        trainer = meta.get("registered_by")
        if status == "approved" and approver == trainer and not allow_self_approval:
            raise ApprovalError(
                f"{approver!r} registered {name} v{version} (triggered the run that trained it) and may not approve "
                "it; ask another reviewer, or allow it in the model's config (promotion.allow_self_approval)"
            )

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            prev = approval_of(st, meta, version).get("status")
            holders = sorted(a for a, v in st["aliases"].items() if v == version)
            if status == "rejected":
                serving = [a for a in holders if a not in CANDIDATE_ALIASES and a != "previous_champion"]
                if serving:
                    raise ApprovalError(
                        f"{name} v{version} holds {serving}; rejecting it would leave production on a rejected "
                        f"version. Roll the alias back first (python -m airflow_mlops.cli rollback {name} --as <you> "
                        "--reason ...), then reject it.")
            st["approvals"][str(version)] = {"status": status, "by": approver, "at": utcnow(), "reason": reason,
                                             "required": True}
            ev = audit(st, approver, status if status == "rejected" else "approve", version=version,
                       from_=prev, to=status, reason=reason, details=details)
            if status == "rejected":  # a rejected candidate no longer holds candidate aliases (canary traffic)
                for alias in holders:
                    st["aliases"].pop(alias)
                    audit(st, approver, "delete_alias", alias=alias, from_=version, to=None,
                          reason=f"v{version} rejected: {reason}")
            return ev

        return self._update_state(name, mutate)

    # ---- lifecycle -----------------------------------------------------------------
    def lifecycle(self, name: str, version: int) -> dict[str, Any]:
        """``{"state", "by", "at", "reason"}`` of a version (``{"state": "active"}`` if never changed)."""
        return self.state(name)["lifecycle"].get(str(int(version))) or {"state": "active"}

    def lifecycles(self, name: str) -> dict[int, dict[str, Any]]:
        """Lifecycle entry of every committed version, ascending."""
        st = self.state(name)
        return {v: st["lifecycle"].get(str(v)) or {"state": "active"} for v in self.list_versions(name)}

    def set_lifecycle(self, name: str, version: int, state: str, *, actor: str | None = None,
                      reason: str = "", force: bool = False, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Move a version to ``active``, ``deprecated`` (loads with a warning) or ``retired`` (refuses
        to load, cannot hold ``champion``/``challenger``). ``deprecated``/``retired`` need a reason.

        Retiring the version ``champion`` points to is refused unless ``force``: roll the champion back
        to another version first (otherwise scoring with the champion fails until it is re-pointed).
        Returns the audit event (or, when the version already has that state and reason, the current
        entry with ``"unchanged": True``, without a new audit event).
        """
        if state not in LIFECYCLE_STATES:
            raise LifecycleError(f"lifecycle state of {name} v{version} must be one of {LIFECYCLE_STATES}, "
                                 f"not {state!r}")
        if state != "active" and not (reason or "").strip():
            raise LifecycleError(f"setting {name} v{version} to {state!r} needs a reason (who asked, why); "
                                 "pass reason=... (CLI: --reason)")
        self.get_metadata(name, version)
        actor = actor or default_actor()
        version = int(version)

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            prev_entry = st["lifecycle"].get(str(version)) or {"state": "active"}
            prev = prev_entry["state"]
            if prev == state and (prev_entry.get("reason") or "") == (reason or ""):
                return {**prev_entry, "unchanged": True}
            holders = sorted(a for a, v in st["aliases"].items() if v == version)
            info: dict[str, Any] = dict(details or {})
            if holders:
                info["aliases"] = holders
            if state == "retired" and "champion" in holders:
                if not force:
                    raise LifecycleError(
                        f"{name} v{version} is the current champion; retiring it would make scoring with the "
                        f"champion fail. Roll the champion back first (python -m airflow_mlops.cli rollback "
                        f"{name} --to-version N --as {actor} --reason ...), then retire v{version}; or pass "
                        "--force (force=True) to retire it now and stop champion scoring until the alias is "
                        "re-pointed."
                    )
                info["forced"] = True
            st["lifecycle"][str(version)] = {"state": state, "by": actor, "at": utcnow(), "reason": reason}
            return audit(st, actor, "lifecycle", version=version, from_=prev, to=state, reason=reason,
                         details=info or None)

        ev = self._update_state(name, mutate)
        if not ev.get("unchanged"):
            log.info("%s v%d lifecycle %s -> %s by %s: %s", name, version, ev["from"], ev["to"], actor, reason)
        return ev

    # ---- signatures ----------------------------------------------------------------
    def sign_versions(self, name: str, *, actor: str | None = None, reason: str = "",
                      adopt_unsigned: bool = False, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Bring every committed version and the state document of ``name`` under the current key.

        * signed with the current key: left alone;
        * signed with a previous key of the signer (rotation): verified with it, re-signed with the current one;
        * unsigned (registered before signatures): with ``adopt_unsigned``, every artifact's sha256 is checked
          against its metadata first, then the version is signed; without it, listed and left alone;
        * a signature that does not verify: never re-signed (listed under ``invalid``).

        The state document is re-signed (adopted when unsigned and ``adopt_unsigned``). One audit entry
        (``sign``) lists what changed. Returns ``{"key_id", "resigned", "adopted", "current", "unsigned",
        "invalid"}``."""
        if not (reason or "").strip():
            raise RegistryError(f"signing the versions of {name!r} needs a reason (it goes to the audit log)")
        actor = actor or default_actor()
        signer = self.signer
        out: dict[str, Any] = {"key_id": signer.key_id, "resigned": [], "adopted": [], "current": [],
                               "unsigned": [], "invalid": {}}
        for v in self.list_versions(name):
            mkey, skey = self._version_key(name, v, METADATA_FILE), self._version_key(name, v, SIGNATURE_FILE)
            data = self.store.read_bytes(mkey)
            what = f"{name} v{v} ({self.store.uri(mkey)})"
            try:
                signature = json.loads(self.store.read_bytes(skey))
            except ArtifactNotFoundError:
                signature = None
            except ValueError:
                out["invalid"][v] = "signature.json is not JSON"
                continue
            if signature is None:
                if not adopt_unsigned:
                    out["unsigned"].append(v)
                    continue
                meta = json.loads(data)
                if meta.get("name") != name or meta.get("version") != v:
                    out["invalid"][v] = f"metadata.json describes {meta.get('name')} v{meta.get('version')}"
                    continue
                bad = [rel for rel, rec in (meta.get("artifacts") or {}).items()
                       if sha256(self.store.read_bytes(self._version_key(name, v, rel))) != rec.get("sha256")]
                if bad:
                    out["invalid"][v] = f"artifacts do not match their recorded sha256: {bad}"
                    continue
                out["adopted"].append(v)
            else:
                try:
                    key_id = signer.verify(data, signature, PURPOSE_VERSION, what)
                except SignatureError as e:
                    out["invalid"][v] = str(e)
                    continue
                if key_id == signer.key_id:
                    out["current"].append(v)
                    continue
                out["resigned"].append(v)
            self.store.write_bytes(skey, ArtifactStore.dumps(signer.sign(data, PURPOSE_VERSION)))

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            return audit(st, actor, "sign", reason=reason, details={
                **(details or {}), "key_id": signer.key_id, "resigned": out["resigned"], "adopted": out["adopted"],
                "invalid": sorted(out["invalid"]), "unsigned": out["unsigned"]})

        self._update_state(name, mutate, adopt_unsigned=adopt_unsigned)
        log.info("signed %s with key %s: %s", name, signer.key_id, out)
        return out

    # ---- kill switch ---------------------------------------------------------------
    def set_model_disabled(self, name: str, disabled: bool, *, actor: str | None = None, reason: str = "",
                           details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn the model's kill switch on (``disabled=True``) or off. While on, scoring uses its
        fallback instead of the model (see docs/governance.md). Recorded in ``state.json`` as
        ``disabled: {"by", "at", "reason"}`` (``null`` when off) and in the audit log.
        Disabling needs a reason. Returns the audit event (``"unchanged": True`` and no event when the
        switch already has that position)."""
        if disabled and not (reason or "").strip():
            raise LifecycleError(f"disabling {name!r} needs a reason; pass reason=... (CLI: --reason)")
        self.list_versions(name)
        actor = actor or default_actor()

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            current = st.get("disabled")
            if bool(current) == bool(disabled):
                return {"action": "disable" if disabled else "enable", "unchanged": True, "disabled": current}
            st["disabled"] = {"by": actor, "at": utcnow(), "reason": reason} if disabled else None
            return audit(st, actor, "disable" if disabled else "enable", from_=bool(current), to=bool(disabled),
                         reason=reason, details=details)

        ev = self._update_state(name, mutate)
        if not ev.get("unchanged"):
            log.warning("%s kill switch %s by %s: %s", name, "ON" if disabled else "off", actor, reason)
        return ev

    def is_model_disabled(self, name: str) -> dict[str, Any] | None:
        """``{"by", "at", "reason"}`` when the model's kill switch is on, else ``None``."""
        disabled: dict[str, Any] | None = self.state(name).get("disabled") or None
        return disabled
