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

The registry's code is in several modules, and their public names are importable from this one too:
:mod:`~airflow_mlops.registry.errors` (the exceptions), :mod:`~airflow_mlops.registry.core` (keys, listing,
verified metadata, the signed state document and its audit entries), :mod:`~airflow_mlops.registry.policy`
(the promotion policy), :mod:`~airflow_mlops.registry.decisions` (approvals, lifecycle states, re-signing, the
kill switch), :mod:`~airflow_mlops.registry.lineage` (which versions used a dataset) and
:mod:`~airflow_mlops.registry.skops_io` (the safe skops loader). This module holds :class:`ModelRegistry`:
registration, artifacts, model loading and aliases.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.core import (
    CLAIM_FILE,
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    RESERVED_FILES,
    SIGNATURE_FILE,
    STATE_FILE,
    STATE_SIGNATURE,
    audit,
    check_name,
    default_actor,
    parse_ts,
    sha256,
    utcnow,
)
from airflow_mlops.registry.decisions import RegistryDecisions
from airflow_mlops.registry.errors import (
    AliasNotFoundError,
    ApprovalError,
    ConcurrentUpdateError,
    DeprecatedVersionWarning,
    IntegrityError,
    LifecycleError,
    ModelImportError,
    ModelNotFoundError,
    PolicyError,
    RegistryError,
    SignatureMismatchError,
    UnsignedError,
    UntrustedModelError,
    VersionNotFoundError,
)
from airflow_mlops.registry.lineage import RegistryLineage, split_dataset_uri
from airflow_mlops.registry.policy import (
    APPROVAL_STATES,
    CANDIDATE_ALIASES,
    LIFECYCLE_STATES,
    SERVING_ALIASES,
    enforce_policy,
    enforce_serving,
    former_holders,
    refusal,
)
from airflow_mlops.registry.skops_io import dump_skops_bytes, load_skops_bytes
from airflow_mlops.store.artifacts import ArtifactExistsError, ArtifactStore, StorageError, join
from airflow_mlops.trust.signing import PURPOSE_VERSION

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: the name tests and :mod:`airflow_mlops.config.segments` cite for the check of model and alias names
_check_name = check_name


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: name, number, URI of its directory and its metadata."""

    name: str
    version: int
    uri: str
    metadata: dict[str, Any] = field(repr=False)


class ModelRegistry(RegistryDecisions, RegistryLineage):
    """The model registry contract of DESIGN.md over an :class:`ArtifactStore`.

    :param store: artifact store (its root holds ``registry/``).
    :param prefix: key prefix of the registry inside the store.
    :param signer: signs and verifies versions and the state document; default: the deployment's key
        (:func:`airflow_mlops.trust.signing.default_signer`), looked up on first use.
    :param allow_unsigned: load versions/state written before signatures existed (default
        ``[mlops] allow_unsigned_versions``, off). Each such load logs a warning.
    """

    # __init__, the signer, keys, listing, metadata and the state document: RegistryCore
    # (airflow_mlops.registry.core); approvals, lifecycle, signing and the kill switch: RegistryDecisions
    # (.decisions); models_using and lineage: RegistryLineage (.lineage).

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
        self._update_state(name, lambda st: audit(st, actor, "register", version=version, reason=reason,
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

    # ---- versions, artifacts, models ----------------------------------------------
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
                    f"alias {alias!r} of {name!r} pointed to no version at {parse_ts(as_of).isoformat()}; "
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
        check_name(alias, what="alias")
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
            enforce_policy(st, name, alias, int(version), meta)
            st["aliases"][alias] = int(version)
            return audit(st, actor, "set_alias", alias=alias, version=int(version), from_=current,
                         to=int(version), reason=reason, details=details, effective_at=effective_at)

        return self._update_state(name, mutate)

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None, reason: str = "") -> dict[str, Any]:
        actor = actor or default_actor()

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            if alias not in st["aliases"]:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}; aliases: {st['aliases'] or 'none'}")
            current = st["aliases"].pop(alias)
            return audit(st, actor, "delete_alias", alias=alias, from_=current, to=None, reason=reason)

        self.list_versions(name)
        return self._update_state(name, mutate)

    def alias_as_of(self, name: str, alias: str, as_of: str | dt.datetime) -> int | None:
        """Version the alias pointed to at ``as_of``, or None: replays the audit log by each change's
        ``effective_at`` (its wall-clock ``at`` unless the change named a logical date)."""
        ts = parse_ts(as_of)
        applicable = [(parse_ts(ev.get("effective_at") or ev["at"]), ev["seq"], ev.get("to"))
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
        metas = {v: self.get_metadata(name, v) for v in former_holders(self.state(name), alias)}

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            current = st["aliases"].get(alias)
            former = former_holders(st, alias)
            if to_version is None:
                allowed = [v for v in former if v != current and v in metas
                           and refusal(st, name, alias, v, metas[v]) is None]
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
            enforce_policy(st, name, alias, target, metas.get(target) or self.get_metadata(name, target))
            if not (reason or "").strip():
                raise PolicyError(f"rolling back {name}:{alias} needs a reason (it goes to the audit log)")
            st["aliases"][alias] = target
            return audit(st, actor, "rollback", alias=alias, version=target, from_=current, to=target,
                         reason=reason, details=details)

        return self._update_state(name, mutate)

    # ---- promotion policy ------------------------------------------------------------
    def check_alias(self, name: str, alias: str, version: int) -> None:
        """Raise :class:`PolicyError` (or :class:`LifecycleError` for a retired version) if ``alias`` may not
        point to ``version`` now: the one promotion policy every alias move goes through."""
        enforce_policy(self.state(name), name, alias, int(version), self.get_metadata(name, int(version)))

    def rollback_targets(self, name: str, alias: str = "champion") -> list[int]:
        """Versions a rollback of ``alias`` may go to now: former holders the policy allows, oldest first."""
        st = self.state(name)
        current = st["aliases"].get(alias)
        out = []
        for v in former_holders(st, alias):
            if v != current and refusal(st, name, alias, v, self.get_metadata(name, v)) is None:
                out.append(v)
        return out

    def check_serving(self, name: str, version: int, role: str = "champion") -> None:
        """Raise if ``version`` may not score production rows as ``role`` (champion, canary, a pinned version):
        retired (:class:`LifecycleError`), rejected, or awaiting a required approval (:class:`PolicyError`).
        A deprecated version still serves (with a warning when loaded)."""
        v = int(version)
        enforce_serving(self.state(name), name, v, self.get_metadata(name, v), role)


__all__ = [
    "AliasNotFoundError", "ApprovalError", "ConcurrentUpdateError", "DeprecatedVersionWarning", "IntegrityError",
    "LifecycleError", "LIFECYCLE_STATES", "PolicyError", "SERVING_ALIASES", "SignatureMismatchError",
    "UnsignedError",
    "ModelNotFoundError", "ModelRegistry", "ModelVersion", "RegistryError",
    "StorageError", "UntrustedModelError", "ModelImportError", "VersionNotFoundError", "load_skops_bytes",
    # defined in this module before the registry was split in modules, still importable from it
    "APPROVAL_STATES", "CANDIDATE_ALIASES", "CLAIM_FILE", "METADATA_FILE", "MODEL_FILE", "REFERENCE_FILE",
    "RESERVED_FILES", "SIGNATURE_FILE", "STATE_FILE", "STATE_SIGNATURE", "default_actor", "dump_skops_bytes",
    "sha256", "split_dataset_uri", "utcnow",
]
