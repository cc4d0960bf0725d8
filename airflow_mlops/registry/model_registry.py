"""Model registry on top of the artifact store.

Layout under ``<root>/registry/<model>/`` (see docs/registry-layout.md):

``versions/<n>/_claim.json``
    exclusive-create marker that allocates version ``n`` (never reused).
``versions/<n>/model.skops``, ``reference.parquet``, ``reports/...``, ...
    immutable artifacts, each written with exclusive create.
``versions/<n>/signature.json``
    HMAC-SHA256 of ``metadata.json``'s exact bytes under a key held outside the store
    (:mod:`airflow_mlops.trust.signing`); written just before ``metadata.json``.
``versions/<n>/metadata.json``
    written last with exclusive create: the commit point of a registration. It carries the sha256
    of every artifact; loads verify the signature, then each artifact's sha256. A version without
    ``metadata.json`` (a registration killed halfway) is invisible and its number is skipped.
``state.json``
    one document holding aliases, approvals, lifecycle states (``active``/``deprecated``/``retired``
    per version), the model's kill switch (``disabled``) and the append-only audit log, with its own
    HMAC (``_signature``), updated only by compare-and-swap (lock + ``os.replace`` locally, ``If-Match``
    on S3) so that concurrent writers never lose an update and every applied change has its audit entry.

Every alias move goes through one promotion policy (:meth:`ModelRegistry.check_alias`): the target is a
committed, signed, non-retired, non-rejected version; ``champion`` (and any alias but ``challenger``) also
needs an approval where the model requires one and an ``active`` lifecycle; a rollback goes only to a
version that held the alias before. Scoring asks :meth:`ModelRegistry.check_serving` before it loads a
model. See docs/security.md.
``../_lineage/<content_hash>/<model>@<n>``
    reverse lineage: which versions were trained on a dataset fingerprint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_mlops.store.artifacts import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ArtifactStore,
    PreconditionFailedError,
    StorageError,
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
from airflow_mlops.trust.types import TRUSTED_TYPES, dangerous_types, referenced_types

if TYPE_CHECKING:
    import warnings

    import pandas as pd

log = logging.getLogger(__name__)

_T = TypeVar("_T")

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.parquet"
CLAIM_FILE = "_claim.json"
STATE_FILE = "state.json"
SIGNATURE_FILE = "signature.json"
#: the state document's own signature field
STATE_SIGNATURE = "_signature"
RESERVED_FILES = (METADATA_FILE, CLAIM_FILE, SIGNATURE_FILE)

LIFECYCLE_STATES = ("active", "deprecated", "retired")
APPROVAL_STATES = ("not_required", "pending", "approved", "rejected")


class RegistryError(Exception):
    """Base class of registry errors."""


class ModelNotFoundError(RegistryError, LookupError):
    pass


class VersionNotFoundError(RegistryError, LookupError):
    pass


class AliasNotFoundError(RegistryError, LookupError):
    pass


class IntegrityError(RegistryError):
    """A stored artifact does not match the sha256 recorded in metadata.json."""


class UntrustedModelError(RegistryError):
    """A model file holds types outside the trusted list, or types that can run code (always refused)."""


class SignatureMismatchError(IntegrityError):
    """A version's metadata or the state document is not signed by a key of this deployment, or was changed
    after it was signed."""


class UnsignedError(IntegrityError):
    """A version or state document has no signature (registered before signatures existed) and unsigned
    content was not allowed (``[mlops] allow_unsigned_versions``)."""


class PolicyError(RegistryError):
    """An alias move or a use of a version that the promotion policy forbids."""


class ConcurrentUpdateError(RegistryError):
    """A compare-and-swap update kept losing, or the expected current value did not hold."""


class ApprovalError(RegistryError):
    pass


class LifecycleError(RegistryError):
    """A lifecycle change or a use of a version that its lifecycle state forbids (retired)."""


class DeprecatedVersionWarning(UserWarning):
    """A deprecated version was loaded: it still works, but should be replaced."""


#: Aliases a retired version may not hold (they select the model that scores production data).
SERVING_ALIASES = ("champion", "challenger")
#: Aliases that hold candidates awaiting a decision: the approval rule does not apply to them.
CANDIDATE_ALIASES = ("challenger",)


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    """Who is acting when the caller names nobody: the OS user (never the Dag owner: an owner is not the
    person who triggered a run; operators pass the run's identity, see :mod:`airflow_mlops.trust.identity`)."""
    return os_user()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_ts(ts: str | dt.datetime) -> dt.datetime:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: name, number, URI of its directory and its metadata."""

    name: str
    version: int
    uri: str
    metadata: dict[str, Any] = field(repr=False)


class ModelRegistry:
    """The model registry contract of DESIGN.md over an :class:`ArtifactStore`.

    :param store: artifact store (its root holds ``registry/``).
    :param prefix: key prefix of the registry inside the store.
    :param signer: signs and verifies versions and the state document; default: the deployment's key
        (:func:`airflow_mlops.trust.signing.default_signer`), looked up on first use.
    :param allow_unsigned: load versions/state written before signatures existed (default
        ``[mlops] allow_unsigned_versions``, off). Each such load logs a warning.
    """

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
        _check_name(name)
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

    # ---- registration --------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        *,
        metadata: dict[str, Any] | None = None,
        artifacts: dict[str, bytes] | None = None,
        reference: pd.DataFrame | None = None,
        actor: str | None = None,
        reason: str = "",
        require_approval: bool = False,
        lineage_hashes: Iterable[str] = (),
        before_commit: Callable[[ModelVersion], dict[str, bytes] | None] | None = None,
    ) -> ModelVersion:
        """Register ``model`` as the next version of ``name``.

        The version number is allocated by exclusive create, artifacts are written (each exclusive),
        then ``metadata.json`` commits the version. ``before_commit`` (e.g. a smoke test) runs on the
        written, not yet visible version; if it raises, the version never becomes visible. It may update
        ``mv.metadata`` and return more artifacts ``{relative path: bytes}``, written and hashed like the
        others before the commit.
        """
        actor = actor or default_actor()
        signer = self.signer  # a missing/unusable key fails before anything is written
        files: dict[str, bytes] = {MODEL_FILE: dump_skops_bytes(model)}
        if reference is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            sink = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pandas(reference, preserve_index=False), sink, compression="zstd")
            files[REFERENCE_FILE] = sink.getvalue().to_pybytes()
        for rel, data in (artifacts or {}).items():
            rel = rel.strip("/")
            if rel in RESERVED_FILES or rel in files:
                raise RegistryError(f"artifact name {rel!r} is reserved")
            files[rel] = data

        version = self._allocate_version(name, actor)
        for rel, data in files.items():
            self.store.create_bytes(self._version_key(name, version, rel), data)

        meta = dict(metadata or {})
        meta.update({
            "name": name,
            "version": version,
            "created_at": utcnow(),
            "registered_by": actor,
            "artifacts": {rel: {"sha256": sha256(data), "bytes": len(data)} for rel, data in sorted(files.items())},
            "approval": {"required": bool(require_approval),
                         "status": "pending" if require_approval else "not_required"},
        })
        mv = ModelVersion(name, version, self.version_uri(name, version), meta)
        if before_commit is not None:
            for rel, data in (before_commit(mv) or {}).items():
                rel = rel.strip("/")
                if rel in RESERVED_FILES or rel in files:
                    raise RegistryError(f"artifact name {rel!r} is reserved or already written")
                self.store.create_bytes(self._version_key(name, version, rel), data)
                files[rel] = data
                meta["artifacts"][rel] = {"sha256": sha256(data), "bytes": len(data)}
            meta["artifacts"] = dict(sorted(meta["artifacts"].items()))
        meta_bytes = ArtifactStore.dumps(meta)
        self.store.create_bytes(self._version_key(name, version, SIGNATURE_FILE),
                                ArtifactStore.dumps(signer.sign(meta_bytes, PURPOSE_VERSION)))
        self.store.create_bytes(self._version_key(name, version, METADATA_FILE), meta_bytes)
        for h in lineage_hashes:
            if h:
                try:
                    self.store.create_bytes(join(self.prefix, "_lineage", h, f"{name}@{version}"), b"")
                except ArtifactExistsError:
                    pass
        self._update_state(name, lambda st: _audit(st, actor, "register", version=version, reason=reason,
                                                   details={"approval": meta["approval"]["status"]}))
        log.info("registered %s version %d at %s", name, version, mv.uri)
        return mv

    def _allocate_version(self, name: str, actor: str) -> int:
        candidate = (max(self._claimed_versions(name), default=0)) + 1
        for _ in range(1000):
            try:
                self.store.create_json(self._version_key(name, candidate, CLAIM_FILE),
                                       {"claimed_at": utcnow(), "by": actor, "pid": os.getpid()})
                return candidate
            except ArtifactExistsError:
                candidate += 1
        raise ConcurrentUpdateError(f"could not allocate a version number for {name!r}")

    # ---- metadata & artifacts ------------------------------------------------------
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

    def get_version(self, name: str, version: int | None = None, alias: str | None = None,
                    as_of: str | dt.datetime | None = None) -> ModelVersion:
        v = self.resolve(name, version=version, alias=alias, as_of=as_of)
        return ModelVersion(name, v, self.version_uri(name, v), self.get_metadata(name, v))

    def read_artifact(self, name: str, version: int, relpath: str, verify: bool = True) -> bytes:
        """Bytes of a version's artifact, verified against metadata.json's sha256."""
        meta = self.get_metadata(name, version)
        key = self._version_key(name, version, relpath)
        data = self.store.read_bytes(key)
        if verify:
            recorded = meta.get("artifacts", {}).get(relpath.strip("/"))
            if recorded is None:
                raise IntegrityError(
                    f"{self.store.uri(key)} is not listed in metadata.json of {name} v{version}; "
                    f"listed: {sorted(meta.get('artifacts', {}))}"
                )
            actual = sha256(data)
            if actual != recorded["sha256"]:
                raise IntegrityError(
                    f"hash mismatch for {self.store.uri(key)}: metadata.json records sha256 "
                    f"{recorded['sha256']}, the file has {actual}. The artifact was modified after "
                    f"registration; do not use it. Re-register the model or roll back to another version."
                )
        return data

    def add_report(self, name: str, version: int, relpath: str, data: bytes) -> str:
        """Attach a report produced after registration under ``reports/`` (never overwrites)."""
        self.get_metadata(name, version)
        rel = join("reports", relpath)
        try:
            return self.store.create_bytes(self._version_key(name, version, rel), data)
        except ArtifactExistsError:
            raise RegistryError(f"{self.version_uri(name, version, rel)} exists; versions are immutable") from None

    def list_reports(self, name: str, version: int) -> list[str]:
        base = self._version_key(name, version, "reports")
        return [k[len(base) + 1:] for k in self.store.list(base)]

    def load_model(self, name: str, version: int | None = None, alias: str | None = None,
                   as_of: str | dt.datetime | None = None, trusted_types: Iterable[str] = (),
                   allow_retired: bool = False) -> tuple[Any, dict[str, Any]]:
        """Load a model: resolve version/alias, verify the sha256, load with skops (trusted types only).

        Returns ``(model, metadata)``. A retired version refuses to load unless ``allow_retired``.
        """
        v = self.resolve(name, version=version, alias=alias, as_of=as_of)
        meta = self.get_metadata(name, v)
        state = self.lifecycle(name, v)
        if state["state"] == "retired" and not allow_retired:
            raise LifecycleError(
                f"{name} v{v} is retired (by {state.get('by')} at {state.get('at')}: "
                f"{state.get('reason') or 'no reason given'}); it cannot be loaded for scoring. Score with "
                f"another version (pin one, or re-point the alias: python -m airflow_mlops.cli rollback {name} "
                f"--to-version N --as ME --reason ...), or reactivate it: python -m airflow_mlops.cli "
                f"lifecycle {name} {v} active --as ME --reason ..."
            )
        if state["state"] == "deprecated":
            import warnings

            msg = (f"{name} v{v} is deprecated (by {state.get('by')} at {state.get('at')}: "
                   f"{state.get('reason') or 'no reason given'}); it still scores, but replace it soon")
            log.warning(msg)
            warnings.warn(msg, DeprecatedVersionWarning, stacklevel=2)
        data = self.read_artifact(name, v, MODEL_FILE)
        # the classes the model's config named travel in its signed metadata (never from the store alone)
        trusted = [*(meta.get("trusted_types") or []), *trusted_types]
        return load_skops_bytes(data, trusted_types=trusted, source=self.version_uri(name, v, MODEL_FILE)), meta

    def load_reference(self, name: str, version: int) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(self.read_artifact(name, version, REFERENCE_FILE))).to_pandas()

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
            result = mutate(st)
            try:
                self.store.write_bytes_if_match(key, self._state_bytes(name, st), etag)
                return result
            except PreconditionFailedError:
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
        raise ConcurrentUpdateError(f"{self.store.uri(key)}: gave up after {attempts} concurrent-update retries")

    def audit_log(self, name: str) -> list[dict[str, Any]]:
        """Every change (registration, alias, approval, lifecycle), oldest first."""
        self.list_versions(name)
        return list(self.state(name)["audit"])

    # ---- aliases -------------------------------------------------------------------
    def get_aliases(self, name: str) -> dict[str, int]:
        return dict(self.state(name)["aliases"])

    def resolve(self, name: str, version: int | str | None = None, alias: str | None = None,
                as_of: str | dt.datetime | None = None) -> int:
        """Version number for an explicit version, an alias, or an alias as of a timestamp."""
        versions = self.list_versions(name)
        if version is not None:
            try:
                v = int(version)
            except (TypeError, ValueError):
                raise VersionNotFoundError(f"version {version!r} of {name!r} is not an integer") from None
            if v not in versions:
                raise VersionNotFoundError(f"model {name!r} has no version {v}; versions: {versions or 'none'}")
            return v
        alias = alias or "champion"
        if as_of is not None:
            held = self.alias_as_of(name, alias, as_of)
            if held is None:
                raise AliasNotFoundError(
                    f"alias {alias!r} of {name!r} pointed to no version at {_parse_ts(as_of).isoformat()}; "
                    f"current aliases: {self.get_aliases(name) or 'none'}"
                )
            return held
        aliases = self.get_aliases(name)
        if alias not in aliases:
            raise AliasNotFoundError(
                f"model {name!r} has no alias {alias!r}; aliases: {aliases or 'none'}; versions: {versions}"
            )
        return int(aliases[alias])

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None, reason: str = "",
                  expected: int | None | object = ..., details: dict[str, Any] | None = None,
                  effective_at: str | dt.datetime | None = None) -> dict[str, Any]:
        """Point ``alias`` at ``version`` (compare-and-swap on the state document).

        ``expected``: if given, the change applies only if the alias currently points there
        (``None`` = alias absent); otherwise :class:`ConcurrentUpdateError`.
        ``effective_at``: the moment the change counts from for :meth:`alias_as_of` (e.g. the logical
        date of the Airflow run that promoted the model, so a backfill scores each day with the model
        production had that day); default: now. Returns the audit event.
        """
        _check_name(alias, what="alias")
        versions = self.list_versions(name)
        if int(version) not in versions:
            raise VersionNotFoundError(f"model {name!r} has no version {version}; versions: {versions}")
        actor = actor or default_actor()
        meta = self.get_metadata(name, int(version))  # verifies the signature

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            current = st["aliases"].get(alias)
            if expected is not ... and current != expected:
                raise ConcurrentUpdateError(
                    f"alias {alias!r} of {name!r} points to {current}, not the expected {expected}"
                )
            self._enforce_policy(st, name, alias, int(version), meta)
            st["aliases"][alias] = int(version)
            return _audit(st, actor, "set_alias", alias=alias, version=int(version), from_=current,
                          to=int(version), reason=reason, details=details, effective_at=effective_at)

        return self._update_state(name, mutate)

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None, reason: str = "") -> dict[str, Any]:
        actor = actor or default_actor()

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            if alias not in st["aliases"]:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}; aliases: {st['aliases'] or 'none'}")
            current = st["aliases"].pop(alias)
            return _audit(st, actor, "delete_alias", alias=alias, from_=current, to=None, reason=reason)

        self.list_versions(name)
        return self._update_state(name, mutate)

    def alias_as_of(self, name: str, alias: str, as_of: str | dt.datetime) -> int | None:
        """Version the alias pointed to at ``as_of``, or None: replays the audit log by each change's
        ``effective_at`` (its wall-clock ``at`` unless the change named a logical date)."""
        ts = _parse_ts(as_of)
        applicable = [(_parse_ts(ev.get("effective_at") or ev["at"]), ev["seq"], ev.get("to"))
                      for ev in self.state(name)["audit"]
                      if ev.get("alias") == alias and ev["action"] in ("set_alias", "delete_alias", "rollback")]
        applicable = [a for a in applicable if a[0] <= ts]
        return max(applicable)[2] if applicable else None

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        return [ev for ev in self.audit_log(name) if ev.get("alias") == alias]

    def rollback(self, name: str, alias: str = "champion", to_version: int | None = None, *,
                 actor: str | None = None, reason: str = "", details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Re-point ``alias`` to ``to_version`` or, by default, to the latest version it held before that the
        promotion policy still allows. Only a version that held the alias before qualifies (a version that
        never did goes through the promotion gate instead); it must pass :meth:`check_alias` too. The audit
        entry records who, why (required) and from/to; ``details`` (e.g. the OS user of a CLI call) is kept
        with it."""
        actor = actor or default_actor()
        versions = self.list_versions(name)
        if to_version is not None and int(to_version) not in versions:
            raise VersionNotFoundError(f"model {name!r} has no version {to_version}; versions: {versions}")
        metas = {v: self.get_metadata(name, v) for v in self._former_holders(self.state(name), alias)}

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            current = st["aliases"].get(alias)
            former = self._former_holders(st, alias)
            if to_version is None:
                allowed = [v for v in former if v != current and v in metas
                           and self._refusal(st, name, alias, v, metas[v]) is None]
                if not allowed:
                    raise PolicyError(
                        f"alias {alias!r} of {name!r} has no earlier version to roll back to that the promotion "
                        f"policy allows (held before: {former or 'none'}; each must be active, not rejected, and "
                        "approved where the model requires it)")
                target = allowed[-1]
            else:
                target = int(to_version)
                if target not in former:
                    raise PolicyError(
                        f"{name} v{target} never held alias {alias!r} (versions that did: {former or 'none'}); a "
                        "rollback goes only to a former holder. A new version reaches the champion through the "
                        f"promotion gate (the training Dag's promote task, or ApproveModelOperator(promote=True)).")
            self._enforce_policy(st, name, alias, target, metas.get(target) or self.get_metadata(name, target))
            if not (reason or "").strip():
                raise PolicyError(f"rolling back {name}:{alias} needs a reason (it goes to the audit log)")
            st["aliases"][alias] = target
            return _audit(st, actor, "rollback", alias=alias, version=target, from_=current, to=target,
                          reason=reason, details=details)

        return self._update_state(name, mutate)

    # ---- promotion policy ------------------------------------------------------------
    @staticmethod
    def _former_holders(st: dict[str, Any], alias: str) -> list[int]:
        """Versions ``alias`` pointed to before, oldest first, each once (its last occurrence counts)."""
        held = [int(ev["to"]) for ev in st["audit"]
                if ev.get("alias") == alias and ev["action"] in ("set_alias", "rollback") and ev.get("to") is not None]
        return list(dict.fromkeys(reversed(held)))[::-1]

    @staticmethod
    def _approval_of(st: dict[str, Any], meta: dict[str, Any], version: int) -> dict[str, Any]:
        return st["approvals"].get(str(int(version))) or dict(meta.get("approval") or {"status": "not_required"})

    @staticmethod
    def _approval_refusal(approval: dict[str, Any], pending_ok: bool = False) -> str | None:
        """Why an approval record forbids use: rejected, or (unless ``pending_ok``) required and not approved."""
        if approval.get("status") == "rejected":
            return f"was rejected (by {approval.get('by')}: {approval.get('reason') or 'no reason given'})"
        if not pending_ok and approval.get("required") and approval.get("status") != "approved":
            return f"requires an approval and its approval is {approval.get('status')!r}"
        return None

    def _refusal(self, st: dict[str, Any], name: str, alias: str, version: int, meta: dict[str, Any]) -> str | None:
        """Why the promotion policy forbids ``alias`` -> ``version`` (None: allowed)."""
        life = st["lifecycle"].get(str(version)) or {"state": "active"}
        if life["state"] == "retired":
            return f"v{version} is retired (by {life.get('by')}: {life.get('reason') or 'no reason given'})"
        candidate = alias in CANDIDATE_ALIASES or alias == "previous_champion"
        why = self._approval_refusal(self._approval_of(st, meta, version), pending_ok=candidate)
        if why:
            return f"v{version} {why}"
        if not candidate and life["state"] != "active" and st["aliases"].get(alias) != version:
            return (f"v{version} is {life['state']} (by {life.get('by')}: {life.get('reason') or 'no reason'}); "
                    f"only active versions may become {alias!r}")
        return None

    def _enforce_policy(self, st: dict[str, Any], name: str, alias: str, version: int, meta: dict[str, Any]) -> None:
        _refuse_retired(st, name, alias, version)
        why = self._refusal(st, name, alias, version, meta)
        if why:
            raise PolicyError(f"alias {alias!r} of {name!r} cannot point to {why}. Nothing was changed.")

    def check_alias(self, name: str, alias: str, version: int) -> None:
        """Raise :class:`PolicyError` (or :class:`LifecycleError` for a retired version) if ``alias`` may not
        point to ``version`` now: the one promotion policy every alias move goes through."""
        self._enforce_policy(self.state(name), name, alias, int(version), self.get_metadata(name, int(version)))

    def rollback_targets(self, name: str, alias: str = "champion") -> list[int]:
        """Versions a rollback of ``alias`` may go to now: former holders the policy allows, oldest first."""
        st = self.state(name)
        current = st["aliases"].get(alias)
        out = []
        for v in self._former_holders(st, alias):
            if v != current and self._refusal(st, name, alias, v, self.get_metadata(name, v)) is None:
                out.append(v)
        return out

    def check_serving(self, name: str, version: int, role: str = "champion") -> None:
        """Raise if ``version`` may not score production rows as ``role`` (champion, canary, a pinned version):
        retired (:class:`LifecycleError`), rejected, or awaiting a required approval (:class:`PolicyError`).
        A deprecated version still serves (with a warning when loaded)."""
        v = int(version)
        st, meta = self.state(name), self.get_metadata(name, v)
        life = st["lifecycle"].get(str(v)) or {"state": "active"}
        if life["state"] == "retired":
            raise LifecycleError(f"{name} v{v} ({role}) is retired (by {life.get('by')}: "
                                 f"{life.get('reason') or 'no reason given'}); it may not score")
        why = self._approval_refusal(self._approval_of(st, meta, v))
        if why:
            raise PolicyError(f"{name} v{v} ({role}) {why}; it may not score. Point the alias at an allowed "
                              f"version (python -m airflow_mlops.cli rollback {name} --as <you> --reason ...) or "
                              "turn the kill switch on for fallback rows")

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
            prev = self._approval_of(st, meta, version).get("status")
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
            ev = _audit(st, approver, status if status == "rejected" else "approve", version=version,
                        from_=prev, to=status, reason=reason, details=details)
            if status == "rejected":  # a rejected candidate no longer holds candidate aliases (canary traffic)
                for alias in holders:
                    st["aliases"].pop(alias)
                    _audit(st, approver, "delete_alias", alias=alias, from_=version, to=None,
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
            return _audit(st, actor, "lifecycle", version=version, from_=prev, to=state, reason=reason,
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
            return _audit(st, actor, "sign", reason=reason, details={
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
            return _audit(st, actor, "disable" if disabled else "enable", from_=bool(current), to=bool(disabled),
                          reason=reason, details=details)

        ev = self._update_state(name, mutate)
        if not ev.get("unchanged"):
            log.warning("%s kill switch %s by %s: %s", name, "ON" if disabled else "off", actor, reason)
        return ev

    def is_model_disabled(self, name: str) -> dict[str, Any] | None:
        """``{"by", "at", "reason"}`` when the model's kill switch is on, else ``None``."""
        disabled: dict[str, Any] | None = self.state(name).get("disabled") or None
        return disabled

    # ---- lineage -------------------------------------------------------------------
    def models_using(self, dataset: str) -> list[tuple[str, int]]:
        """Every ``(model, version)`` trained on a dataset, sorted.

        ``dataset`` is a fingerprint content hash (or a unique prefix of at least 8 hex digits) or a
        training data URI: the dataset root (``s3://b/p/data/churn``, with or without a trailing
        slash; a local path is read as ``file://``) matches every version trained on that dataset,
        a partition URI (``.../data/churn/ds=2024-01-03``, optionally with a file name) only the
        versions whose training window included that partition.
        """
        return [(r["model"], r["version"]) for r in self.lineage(dataset)]

    def lineage(self, dataset: str) -> list[dict[str, Any]]:
        """Like :meth:`models_using`, one dict per version: model, version, created_at, aliases,
        lifecycle, training data URI, partitions, content hash, and ``matched_by``."""
        query = (dataset or "").strip()
        if not query:
            raise RegistryError("give a dataset URI or a fingerprint content hash")
        found: dict[tuple[str, int], str] = {}
        if not _is_uri(query):
            for h in self._lineage_hashes(query):
                for k in self.store.list(join(self.prefix, "_lineage", h)):
                    model, _, num = k.rsplit("/", 1)[-1].partition("@")
                    if num.isdigit():
                        found[(model, int(num))] = "fingerprint"
        metas: dict[tuple[str, int], dict[str, Any]] = {}
        for model in self.list_models():
            try:
                versions = self.list_versions(model)
            except ModelNotFoundError:
                continue
            for v in versions:
                meta = self.get_metadata(model, v)
                metas[(model, v)] = meta
                how = _lineage_match(meta.get("training_data") or {}, query)
                if how:
                    found.setdefault((model, v), how)
        out: list[dict[str, Any]] = []
        states: dict[str, dict[str, Any]] = {}
        for (model, v), how in sorted(found.items()):
            version_meta = metas.get((model, v))
            if version_meta is None:  # indexed but not committed (a registration that died): not a version
                continue
            st = states.setdefault(model, self.state(model))
            td = version_meta.get("training_data") or {}
            out.append({
                "model": model, "version": v, "created_at": version_meta.get("created_at"),
                "aliases": sorted(a for a, av in st["aliases"].items() if av == v),
                "lifecycle": (st["lifecycle"].get(str(v)) or {"state": "active"})["state"],
                "training_data_uri": td.get("uri"), "partitions": td.get("partitions"),
                "content_hash": (td.get("fingerprint") or {}).get("content_hash"), "matched_by": how,
            })
        return out

    def _lineage_hashes(self, query: str) -> list[str]:
        if not _is_hash_prefix(query):
            return [query]
        return [h for h in self.store.list_dirs(join(self.prefix, "_lineage")) if h.startswith(query.lower())]


def _state_payload(name: str, body: dict[str, Any]) -> bytes:
    return canonical_json({"model": name, "state": body})


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


def _is_uri(query: str) -> bool:
    return "://" in query or query.startswith("/")


def _is_hash_prefix(query: str) -> bool:
    """A hex string of 8 to 63 digits: a shortened sha256 content hash."""
    import re

    return bool(re.fullmatch(r"[0-9a-fA-F]{8,63}", query))


def split_dataset_uri(uri: str) -> tuple[str, str | None]:
    """``(dataset root URI, partition date or None)``: trailing slashes, a ``ds=`` partition and a file
    name after it are removed; a bare local path becomes ``file://``."""
    import re

    u = uri.strip()
    if u.startswith("/"):
        u = "file://" + os.path.normpath(u)
    u = u.rstrip("/")
    m = re.search(r"/ds=(\d{4}-\d{2}-\d{2})(/.*)?$", u)
    if m:
        return u[:m.start()].rstrip("/"), m.group(1)
    return u, None


def _lineage_match(training_data: dict[str, Any], query: str) -> str | None:
    """How a version's ``training_data`` metadata matches a lineage query, or None."""
    if not _is_uri(query):
        fp = (training_data.get("fingerprint") or {}).get("content_hash") or ""
        if fp and (fp == query or (_is_hash_prefix(query) and fp.lower().startswith(query.lower()))):
            return "fingerprint"
        return None
    if not training_data.get("uri"):
        return None
    root, ds = split_dataset_uri(query)
    own_root, _ = split_dataset_uri(str(training_data["uri"]))
    if root != own_root:
        return None
    if ds is None:
        return "uri"
    return "partition" if ds in (training_data.get("partitions") or []) else None


def _audit(st: dict[str, Any], actor: str, action: str, *, alias: str | None = None, version: int | None = None,
           from_: Any = None, to: Any = None, reason: str = "", details: dict[str, Any] | None = None,
           effective_at: str | dt.datetime | None = None) -> dict[str, Any]:
    ev = {"seq": len(st["audit"]) + 1, "at": utcnow(), "actor": actor, "action": action,
          "alias": alias, "version": version, "from": from_, "to": to, "reason": reason}
    if effective_at is not None:
        ev["effective_at"] = _parse_ts(effective_at).isoformat(timespec="microseconds")
    if details:
        ev["details"] = details
    st["audit"].append(ev)
    return ev


def _check_name(name: str, what: str = "model name") -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise RegistryError(f"invalid {what} {name!r}: use letters, digits, '_', '-', '.'")


def _quiet() -> warnings.catch_warnings[None]:
    """skops resolves numpy ufuncs by scanning every loaded module; with Airflow loaded that trips
    thousands of Airflow deprecation shims. Silence those warnings (they are not ours to fix)."""
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def dump_skops_bytes(model: Any) -> bytes:
    ctx = _quiet()
    try:
        import skops.io as sio

        data: bytes = sio.dumps(model)
        return data
    finally:
        ctx.__exit__(None, None, None)


def load_skops_bytes(data: bytes, trusted_types: Iterable[str] = (), source: str = "<bytes>") -> Any:
    """Load a skops payload. Never unpickles; never builds a type that is not explicitly trusted.

    Every type the file references is read from its schema first: one that can execute code, import, or
    reach files/processes/attributes (:func:`airflow_mlops.trust.types.is_dangerous`) refuses the file
    whatever ``trusted_types`` says. The types skops does not trust by default must each be named, fully
    qualified, in :data:`~airflow_mlops.trust.types.TRUSTED_TYPES`, the package's pipeline helpers, or
    ``trusted_types`` (the classes a model's config names). Refusals raise :class:`UntrustedModelError`
    before any object is built."""
    ctx = _quiet()
    try:
        import skops.io as sio

        from airflow_mlops.training.steps import LEGACY_PIPELINE_TYPES, PIPELINE_CUSTOM_TYPES

        try:
            referenced = referenced_types(data, source)
        except ValueError as e:
            raise IntegrityError(str(e)) from None
        dangerous = dangerous_types(referenced)
        if not dangerous:
            try:
                untrusted = sio.get_untrusted_types(data=data)
            except Exception as e:
                raise IntegrityError(f"{source} is not a readable skops file: {type(e).__name__}: {e}") from None
            dangerous = dangerous_types(untrusted)
        if dangerous:
            raise UntrustedModelError(
                f"{source} references types that can run code, import, or reach files and processes: {dangerous}. "
                "They are refused whatever the trusted list says; a model never needs them. Do not use this file."
            )
        allowed = (TRUSTED_TYPES | set(PIPELINE_CUSTOM_TYPES) | set(LEGACY_PIPELINE_TYPES)
                   | {str(t) for t in trusted_types})
        refused = sorted(t for t in untrusted if t not in allowed)
        if refused:
            raise UntrustedModelError(
                f"{source} contains types outside the trusted list: {refused}. If they are your own classes, name "
                "them (fully qualified) in the model config's estimator/trusted types; never load files of unknown "
                "origin."
            )
        return sio.loads(data, trusted=sorted(set(untrusted)))
    finally:
        ctx.__exit__(None, None, None)


__all__ = [
    "AliasNotFoundError", "ApprovalError", "ConcurrentUpdateError", "DeprecatedVersionWarning", "IntegrityError",
    "LifecycleError", "LIFECYCLE_STATES", "PolicyError", "SERVING_ALIASES", "SignatureMismatchError",
    "UnsignedError",
    "ModelNotFoundError", "ModelRegistry", "ModelVersion", "RegistryError",
    "StorageError", "UntrustedModelError", "VersionNotFoundError", "load_skops_bytes",
]
