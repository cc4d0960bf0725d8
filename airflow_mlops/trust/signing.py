"""Signatures an attacker with write access to the store cannot forge.

Every registered version's ``metadata.json`` (which carries the sha256 and size of every artifact) is
signed with HMAC-SHA256 under a secret held **outside** the store; the signature goes to
``signature.json`` beside it. The registry's state document (aliases, approvals, lifecycle, kill switch,
audit log) carries its own HMAC. Loads verify both: a changed byte, a signature made with another key or a
version's signature copied to another version is refused with :class:`SignatureError`.

Where the key comes from (:func:`default_signer`):

1. ``[mlops] signing_conn_id`` (env ``AIRFLOW__MLOPS__SIGNING_CONN_ID``) names an Airflow connection
   (so any secrets backend works): its password is the current key; its extra ``{"previous_keys": [...]}``
   lists retired keys that still verify (never sign). A configured connection that cannot be read is an
   error, never a silent fallback.
2. Otherwise the embedded default: ``[mlops] signing_key_file`` (default ``$AIRFLOW_HOME/mlops-signing.key``),
   created with mode 0600 and 32 random bytes on first use (logged once). First line: the current key;
   further lines: previous keys. The file must not lie inside a local store root.

Rotation (see docs/security.md): make the new key current and list the old one as previous, run
``python -m airflow_mlops.cli sign <model> --as <you> --reason ...`` (re-signs every version and the state with
the current key after verifying it under the old one), then drop the old key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_mlops import platform

log = logging.getLogger(__name__)

ALGORITHM = "hmac-sha256"
#: Domain separation: a MAC made for one purpose never verifies for another.
PURPOSE_VERSION = "version-metadata"
PURPOSE_STATE = "registry-state"
KEY_FILE_NAME = "mlops-signing.key"
MIN_KEY_BYTES = 16


class SigningError(Exception):
    """The signing key cannot be found or is unusable."""


class SignatureError(SigningError):
    """A signature is missing, malformed, or does not verify."""


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A secret and its public id (an HMAC of a fixed text under the key: reveals nothing of the key)."""

    secret: bytes

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, b"airflow-mlops key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def _as_key(secret: str | bytes, where: str) -> SigningKey:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    raw = raw.strip()
    if len(raw) < MIN_KEY_BYTES:
        raise SigningError(f"the signing key from {where} is shorter than {MIN_KEY_BYTES} bytes; use a random "
                           "secret, e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
    return SigningKey(raw)


def canonical_json(doc: Any) -> bytes:
    """The bytes a document's MAC is computed over (sorted keys, no whitespace, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Signer:
    """Signs with the current key; verifies with the current or any previous key.

    :param current: the key new signatures are made with.
    :param previous: retired keys that still verify (for rotation).
    :param source: where the keys came from (named in errors and docs, never the key itself).
    """

    def __init__(self, current: SigningKey | str | bytes, previous: Sequence[SigningKey | str | bytes] = (),
                 source: str = "given key") -> None:
        self.current = current if isinstance(current, SigningKey) else _as_key(current, source)
        self.previous = tuple(k if isinstance(k, SigningKey) else _as_key(k, source) for k in previous)
        self.source = source

    @property
    def key_id(self) -> str:
        return self.current.key_id

    def _keys(self) -> dict[str, SigningKey]:
        return {k.key_id: k for k in (*self.previous, self.current)}

    @staticmethod
    def _mac(key: SigningKey, purpose: str, payload: bytes) -> str:
        msg = b"airflow-mlops/1\x00" + purpose.encode() + b"\x00" + payload
        return hmac.new(key.secret, msg, hashlib.sha256).hexdigest()

    def sign(self, payload: bytes, purpose: str) -> dict[str, str]:
        """``{"alg", "key_id", "purpose", "mac"}`` over ``payload``."""
        return {"alg": ALGORITHM, "key_id": self.current.key_id, "purpose": purpose,
                "mac": self._mac(self.current, purpose, payload)}

    def verify(self, payload: bytes, signature: Any, purpose: str, what: str) -> str:
        """Check ``signature`` over ``payload``; returns the key id that verified it. ``what`` names the
        signed object in the error."""
        if not isinstance(signature, dict) or signature.get("alg") != ALGORITHM or \
                not isinstance(signature.get("mac"), str) or not isinstance(signature.get("key_id"), str):
            raise SignatureError(f"{what}: the signature is malformed (expected {ALGORITHM} with key_id and mac)")
        if signature.get("purpose") != purpose:
            raise SignatureError(f"{what}: the signature was made for {signature.get('purpose')!r}, not {purpose!r}")
        key = self._keys().get(signature["key_id"])
        if key is None:
            known = ", ".join(sorted(self._keys()))
            raise SignatureError(
                f"{what}: signed with key {signature['key_id']}, which is not among the keys of {self.source} "
                f"(key ids {known}). Either the file was signed by another deployment, or the key was rotated "
                "without keeping the old one as a previous key.")
        if not hmac.compare_digest(self._mac(key, purpose, payload), signature["mac"]):
            raise SignatureError(
                f"{what}: the signature does not verify (key {key.key_id}): the signed content was changed "
                "after it was signed. Do not use it; restore the original or register the model again.")
        return key.key_id

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, previous={[k.key_id for k in self.previous]}, source={self.source!r})"


# ------------------------------------------------------------------------------------------
# where the key comes from
# ------------------------------------------------------------------------------------------
_lock = threading.Lock()
_cache: dict[tuple[str, ...], Signer] = {}
_announced: set[str] = set()


def _conf(option: str) -> str:
    """``[mlops] <option>`` (env ``AIRFLOW__MLOPS__<OPTION>`` first), ``""`` when unset."""
    return platform.setting("mlops", option) or ""


def default_key_file() -> str:
    path = _conf("signing_key_file")
    if not path:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        path = os.path.join(home, KEY_FILE_NAME)
    return os.path.abspath(os.path.expanduser(path))


def signer_from_connection(conn_id: str) -> Signer:
    """Keys from an Airflow connection: password = current key, extra ``previous_keys`` = old keys."""
    try:
        conn = platform.connection(conn_id)
    except Exception as e:
        raise SigningError(f"[mlops] signing_conn_id is {conn_id!r}, but that Airflow connection cannot be read "
                           f"({type(e).__name__}: {e}); define it (password = the signing key) or unset the "
                           "option to use the embedded key file") from None
    if not conn.password:
        raise SigningError(f"Airflow connection {conn_id!r} ([mlops] signing_conn_id) has no password: put the "
                           "signing key there")
    extra = conn.extra_dejson or {}
    previous = extra.get("previous_keys") or []
    if isinstance(previous, str):
        previous = [previous]
    return Signer(conn.password, previous, source=f"Airflow connection {conn_id!r}")


def signer_from_file(path: str, create: bool = True) -> Signer:
    """Keys from a key file (first line current, further lines previous); created (0600) if missing."""
    if not os.path.exists(path):
        if not create:
            raise SigningError(f"signing key file {path} does not exist")
        import secrets

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            log.warning("airflow-mlops: generated a registry signing key at %s (mode 0600). Keep it outside the "
                        "artifact store and back it up; for production set [mlops] signing_conn_id to an Airflow "
                        "connection (secrets backend). See docs/security.md.", path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise SigningError(f"signing key file {path} is readable by other users (mode {oct(mode)}); "
                           f"run: chmod 600 {path}")
    with open(path, encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise SigningError(f"signing key file {path} is empty")
    return Signer(lines[0], lines[1:], source=f"key file {path}")


def key_file_in_use() -> str | None:
    """The key file :func:`default_signer` reads (``None`` when ``[mlops] signing_conn_id`` is set)."""
    return None if _conf("signing_conn_id") else default_key_file()


def default_signer() -> Signer:
    """The deployment's signer: the connection named by ``[mlops] signing_conn_id``, else the key file."""
    conn_id = _conf("signing_conn_id")
    path = "" if conn_id else default_key_file()
    cache_key = ("conn", conn_id) if conn_id else ("file", path, str(_mtime(path)))
    with _lock:
        signer = _cache.get(cache_key)
        if signer is None:
            signer = signer_from_connection(conn_id) if conn_id else signer_from_file(path)
            _cache[cache_key] = signer
            if signer.source not in _announced:
                _announced.add(signer.source)
                log.debug("airflow-mlops: registry signatures use key %s from %s", signer.key_id, signer.source)
        return signer


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def allow_unsigned_default() -> bool:
    """``[mlops] allow_unsigned_versions``: load versions registered before signatures existed (opt-in)."""
    return _conf("allow_unsigned_versions").lower() in ("1", "true", "yes", "on")


__all__ = ["ALGORITHM", "PURPOSE_STATE", "PURPOSE_VERSION", "SignatureError", "Signer", "SigningError",
           "SigningKey", "allow_unsigned_default", "canonical_json", "default_key_file", "default_signer",
           "key_file_in_use", "signer_from_connection", "signer_from_file"]
