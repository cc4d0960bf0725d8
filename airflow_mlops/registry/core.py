"""The registry's storage core: keys, listing, signed version metadata and the signed state document.

:class:`RegistryCore` is the base of :class:`~airflow_mlops.registry.model_registry.ModelRegistry` (use that
class; this one is not used alone). It holds what every part of the registry reads or writes: the keys under
``<prefix>/<model>/`` (see docs/registry-layout.md and the docstring of
:mod:`airflow_mlops.registry.model_registry`), the committed versions, each version's ``metadata.json``
verified against its signature, and ``state.json`` (aliases, approvals, lifecycle states, the kill switch and
the audit log) read with its signature checked and updated only by compare-and-swap, each change with its
audit entry (:func:`audit`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from airflow_mlops.registry.errors import (
    ConcurrentUpdateError,
    IntegrityError,
    ModelNotFoundError,
    RegistryError,
    SignatureMismatchError,
    UnsignedError,
    VersionNotFoundError,
)
from airflow_mlops.store.artifacts import (
    ArtifactNotFoundError,
    ArtifactStore,
    PreconditionFailedError,
    join,
)
from airflow_mlops.trust.identity import os_user
from airflow_mlops.trust.signing import (
    PURPOSE_STATE,
    PURPOSE_VERSION,
    SignatureError,
    Signer,
    SigningError,
    allow_unsigned_default,
    canonical_json,
    default_signer,
    key_file_in_use,
)

# the registry logs under one name, that of its public module (as before the registry was split in modules)
log = logging.getLogger("airflow_mlops.registry.model_registry")

_T = TypeVar("_T")

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.parquet"
#: the holdout with the training-time predictions (the gate and the smoke test score it)
HOLDOUT_FILE = "holdout.parquet"
CLAIM_FILE = "_claim.json"
STATE_FILE = "state.json"
SIGNATURE_FILE = "signature.json"
#: the state document's own signature field
STATE_SIGNATURE = "_signature"
RESERVED_FILES = (METADATA_FILE, CLAIM_FILE, SIGNATURE_FILE)


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    """Who is acting when the caller names nobody: the OS user (never the Dag owner: an owner is not the
    person who triggered a run; operators pass the run's identity, see :mod:`airflow_mlops.trust.identity`)."""
    return os_user()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_ts(ts: str | dt.datetime) -> dt.datetime:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts


class RegistryCore:
    """Keys, listing, verified metadata and the signed state document of the registry: the base of
    :class:`~airflow_mlops.registry.model_registry.ModelRegistry`, whose docstring describes the parameters."""

    def __init__(self, store: ArtifactStore | None = None, prefix: str = "registry", *,
                 signer: Signer | None = None, allow_unsigned: bool | None = None) -> None:
        self.store = store or ArtifactStore()
        self.prefix = prefix.strip("/")
        self._signer = signer
        self._allow_unsigned = allow_unsigned

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            path = key_file_in_use()
            if path:  # checked before the key file is read or created
                self._check_key_outside_store(path)
            self._signer = default_signer()
        return self._signer

    @property
    def allow_unsigned(self) -> bool:
        if self._allow_unsigned is None:
            self._allow_unsigned = allow_unsigned_default()
        return self._allow_unsigned

    def _check_key_outside_store(self, key_file: str) -> None:
        if not self.store.is_local:
            return
        path = os.path.realpath(key_file)
        root = os.path.realpath(self.store.local_path(""))
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            raise SigningError(f"the signing key file {path} lies inside the artifact store {self.store.root}: "
                               "whoever can write the store could forge signatures. Move it (set [mlops] "
                               "signing_key_file) or use [mlops] signing_conn_id")

    # ---- keys ----------------------------------------------------------------------
    def _model_key(self, name: str, *parts: str) -> str:
        check_name(name)
        return join(self.prefix, name, *parts)

    def _version_key(self, name: str, version: int, *parts: str) -> str:
        return self._model_key(name, "versions", str(int(version)), *parts)

    def version_uri(self, name: str, version: int, relpath: str = "") -> str:
        return self.store.uri(self._version_key(name, version, relpath))

    # ---- listing -------------------------------------------------------------------
    def list_models(self) -> list[str]:
        return [d for d in self.store.list_dirs(self.prefix) if not d.startswith("_")]

    def _claimed_versions(self, name: str) -> list[int]:
        return sorted(int(d) for d in self.store.list_dirs(self._model_key(name, "versions")) if d.isdigit())

    def list_versions(self, name: str) -> list[int]:
        """Committed versions (those with metadata.json), ascending. Unknown model -> error."""
        keys = self.store.list(self._model_key(name, "versions"))
        out = sorted({int(k.split("/")[-2]) for k in keys
                      if k.endswith("/" + METADATA_FILE) and k.split("/")[-2].isdigit()})
        if not out and not self.store.exists(self._model_key(name, STATE_FILE)):
            models = self.list_models()
            if name in models:  # a directory with only uncommitted (in-progress or failed) registrations
                raise ModelNotFoundError(f"model {name!r} has no committed version yet (a registration is in "
                                         f"progress or failed before its commit)")
            raise ModelNotFoundError(f"model {name!r} is not registered; registered models: {models or 'none'}")
        return out

    def exists(self, name: str) -> bool:
        try:
            return bool(self.list_versions(name))
        except ModelNotFoundError:
            return False

    # ---- metadata ------------------------------------------------------------------
    def get_metadata(self, name: str, version: int) -> dict[str, Any]:
        """The version's ``metadata.json``, after verifying its signature (:meth:`verify_version`)."""
        return self._verified_metadata(name, version)[0]

    def _verified_metadata(self, name: str, version: int) -> tuple[dict[str, Any], dict[str, Any]]:
        key = self._version_key(name, version, METADATA_FILE)
        try:
            data = self.store.read_bytes(key)
        except ArtifactNotFoundError:
            versions = self.list_versions(name)
            raise VersionNotFoundError(
                f"model {name!r} has no version {version}; versions: {versions or 'none'}"
            ) from None
        what = f"{name} v{int(version)} ({self.store.uri(key)})"
        try:
            signature = json.loads(self.store.read_bytes(self._version_key(name, version, SIGNATURE_FILE)))
        except ArtifactNotFoundError:
            signature = None
        except ValueError:
            raise SignatureMismatchError(f"{what}: signature.json is not JSON; the version was tampered with") from None
        if signature is None:
            if not self.allow_unsigned:
                raise UnsignedError(
                    f"{what} has no signature (registered before signatures existed, or signature.json was "
                    f"removed). Refusing to use it. If you trust this store's history, sign its versions once: "
                    f"python -m airflow_mlops.cli sign {name} --adopt-unsigned --as <you> --reason ...; or allow "
                    f"unsigned versions explicitly with [mlops] allow_unsigned_versions = True")
            log.warning("%s is unsigned; loaded because unsigned versions are allowed", what)
            status = {"status": "unsigned", "key_id": None, "detail": "registered before signatures; allowed by "
                      "[mlops] allow_unsigned_versions"}
        else:
            try:
                key_id = self.signer.verify(data, signature, PURPOSE_VERSION, what)
            except SignatureError as e:
                raise SignatureMismatchError(str(e)) from None
            status = {"status": "verified", "key_id": key_id, "detail": f"signed with key {key_id}"}
        try:
            meta = json.loads(data)
        except ValueError:
            raise IntegrityError(f"{what} is not JSON") from None
        if meta.get("name") != name or meta.get("version") != int(version):
            raise SignatureMismatchError(
                f"{what} describes {meta.get('name')} v{meta.get('version')}: a version's signed metadata was "
                "copied to another version's place. Refusing to use it.")
        return meta, status

    def verify_version(self, name: str, version: int) -> dict[str, Any]:
        """``{"status": "verified"|"unsigned"|"invalid", "key_id", "detail"}`` of a version's signature
        (for display: never raises on a bad signature)."""
        try:
            return self._verified_metadata(name, version)[1]
        except (SignatureMismatchError, UnsignedError, IntegrityError) as e:
            return {"status": "unsigned" if isinstance(e, UnsignedError) else "invalid", "key_id": None,
                    "detail": str(e)}

    # ---- state document (aliases, approvals, lifecycle, audit) --------------------
    def _read_state(self, name: str, adopt_unsigned: bool = False) -> tuple[dict[str, Any], str | None]:
        key = self._model_key(name, STATE_FILE)
        try:
            data, etag = self.store.read_versioned(key)
        except ArtifactNotFoundError:
            st, etag = {}, None
        else:
            what = f"registry state of {name!r} ({self.store.uri(key)})"
            try:
                st = json.loads(data)
                if not isinstance(st, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                raise IntegrityError(f"{what} is not a JSON object ({e}); it was damaged or tampered with") from None
            signature = st.pop(STATE_SIGNATURE, None)
            if signature is None:
                if not (self.allow_unsigned or adopt_unsigned):
                    raise UnsignedError(
                        f"{what} has no signature (written before signatures existed, or the signature was "
                        f"removed). Refusing to trust its aliases and approvals. If you trust this store's "
                        f"history, sign it once: python -m airflow_mlops.cli sign {name} --adopt-unsigned --as <you> "
                        f"--reason ...; or allow unsigned content with [mlops] allow_unsigned_versions = True")
                log.warning("%s is unsigned; used because unsigned content is allowed", what)
            else:
                try:
                    self.signer.verify(_state_payload(name, st), signature, PURPOSE_STATE, what)
                except SignatureError as e:
                    raise SignatureMismatchError(str(e)) from None
        for k, default in (("aliases", {}), ("approvals", {}), ("lifecycle", {}), ("audit", [])):
            st.setdefault(k, default)
        st.setdefault("disabled", None)
        return st, etag

    def _state_bytes(self, name: str, st: dict[str, Any]) -> bytes:
        """The state document of ``name`` as written: its JSON with ``_signature`` over it and the model name
        (so one model's state cannot stand in for another's)."""
        # sign what readers will parse: the JSON round trip of the document as it is written
        body = json.loads(ArtifactStore.dumps({k: v for k, v in st.items() if k != STATE_SIGNATURE}))
        signed = dict(body)
        signed[STATE_SIGNATURE] = self.signer.sign(_state_payload(name, body), PURPOSE_STATE)
        return ArtifactStore.dumps(signed)

    def state(self, name: str) -> dict[str, Any]:
        return self._read_state(name)[0]

    def _update_state(self, name: str, mutate: Callable[[dict[str, Any]], _T], attempts: int = 200,
                      adopt_unsigned: bool = False) -> _T:
        """Read-modify-write ``state.json`` with compare-and-swap, retrying with jittered backoff."""
        key = self._model_key(name, STATE_FILE)
        delay = 0.005
        for _ in range(attempts):
            st, etag = self._read_state(name, adopt_unsigned=adopt_unsigned)
            before = dict(st.get("aliases") or {})
            result = mutate(st)
            try:
                self.store.write_bytes_if_match(key, self._state_bytes(name, st), etag)
                if dict(st.get("aliases") or {}) != before:
                    self._aliases_moved(name, dict(st["aliases"]))
                return result
            except PreconditionFailedError:
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
        raise ConcurrentUpdateError(f"{self.store.uri(key)}: gave up after {attempts} concurrent-update retries")

    def _aliases_moved(self, name: str, aliases: dict[str, int]) -> None:
        """After a committed alias move: a team's MLflow registry follows (:func:`~airflow_mlops.tracking.mlflow.
        follow_aliases`; nothing without a server, a warning and a pending record when it fails)."""
        from airflow_mlops.tracking.mlflow import follow_aliases

        def pending(model: str, reason: str) -> None:
            self.mlflow_pending(model, "aliases", {"aliases": aliases, "reason": reason})

        follow_aliases(name, aliases, self.store.uri(self.prefix), pending)

    def mlflow_pending(self, name: str, what: str, record: dict[str, Any]) -> None:
        """Record a write to the team's MLflow that failed (``<name>/_mlflow/pending/<what>.json``: a version's
        run, or ``aliases``), for the catch-up."""
        self.store.write_json(join(self.prefix, name, "_mlflow", "pending", f"{what}.json"),
                              {"model": name, **record, "at": utcnow()})

    def audit_log(self, name: str) -> list[dict[str, Any]]:
        """Every change (registration, alias, approval, lifecycle), oldest first."""
        self.list_versions(name)
        return list(self.state(name)["audit"])


def _state_payload(name: str, body: dict[str, Any]) -> bytes:
    return canonical_json({"model": name, "state": body})


def audit(st: dict[str, Any], actor: str, action: str, *, alias: str | None = None, version: int | None = None,
          from_: Any = None, to: Any = None, reason: str = "", details: dict[str, Any] | None = None,
          effective_at: str | dt.datetime | None = None) -> dict[str, Any]:
    """Append an audit entry to the state document ``st`` (in a compare-and-swap update) and return it."""
    ev = {"seq": len(st["audit"]) + 1, "at": utcnow(), "actor": actor, "action": action,
          "alias": alias, "version": version, "from": from_, "to": to, "reason": reason}
    if effective_at is not None:
        ev["effective_at"] = parse_ts(effective_at).isoformat(timespec="microseconds")
    if details:
        ev["details"] = details
    st["audit"].append(ev)
    return ev


def check_name(name: str, what: str = "model name") -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise RegistryError(f"invalid {what} {name!r}: use letters, digits, '_', '-', '.'")
