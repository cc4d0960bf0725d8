"""Artifact store: one interface over ``file://`` (embedded default) and ``s3://``.

Every dataset, model artifact, report and registry document goes through :class:`ArtifactStore`.
Keys are ``/``-separated paths relative to the store root.

Guarantees on both backends:

* ``write_bytes`` is atomic: readers see the old or the new content, never a partial file
  (temp file + ``os.replace`` locally; a single ``PutObject`` on S3).
* ``create_bytes`` is an exclusive create: it fails with :class:`ArtifactExistsError` when the key
  exists (``os.link`` of a complete temp file locally; ``If-None-Match: *`` on S3).
* ``write_bytes_if_match`` is compare-and-swap on an etag (lock file + ``os.replace`` locally;
  ``If-Match`` on S3) and raises :class:`PreconditionFailedError` when someone else wrote first.
* ``commit_partition`` publishes a set of files as one unit with a ``_SUCCESS`` manifest; a re-run
  replaces the partition, readers following the manifest never see a mix of two attempts.

The root comes from the ``root`` argument, else Airflow config ``[mlops] storage_uri``
(env ``AIRFLOW__MLOPS__STORAGE_URI``), else ``file://$AIRFLOW_HOME/mlops``. S3 credentials come
only from an Airflow AWS connection (``[mlops] storage_conn_id``, default ``aws_default``).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_mlops import platform

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

SUCCESS_MANIFEST = "_SUCCESS"
DATA_SUFFIXES = (".parquet", ".csv")


class StorageError(Exception):
    """A storage operation failed; the message names the URI."""


class ArtifactNotFoundError(StorageError, FileNotFoundError):
    """The key does not exist."""


class ArtifactExistsError(StorageError, FileExistsError):
    """Exclusive create of a key that already exists."""


class PreconditionFailedError(StorageError):
    """Compare-and-swap lost: the object changed since it was read."""


def default_storage_uri() -> str:
    """``[mlops] storage_uri`` from Airflow config, else ``file://$AIRFLOW_HOME/mlops``."""
    uri = platform.setting("mlops", "storage_uri")
    if not uri:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        uri = "file://" + os.path.abspath(os.path.join(home, "mlops"))
    return uri


def default_conn_id() -> str:
    """``[mlops] storage_conn_id`` (the Airflow AWS connection of ``s3://`` roots), default ``aws_default``."""
    return platform.setting("mlops", "storage_conn_id", fallback="aws_default") or "aws_default"


def _norm_key(key: str) -> str:
    key = key.strip("/")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"key {key!r} must not contain '..'")
    return "/".join(parts)


def join(*parts: str) -> str:
    """Join key fragments with ``/``."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------
class _LocalBackend:
    scheme = "file"

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)

    def path(self, key: str) -> str:
        return os.path.join(self.base, *key.split("/")) if key else self.base

    def uri(self, key: str) -> str:
        return "file://" + self.path(key)

    def read(self, key: str) -> bytes:
        try:
            with open(self.path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{self.uri(key)} does not exist") from None
        except IsADirectoryError:
            raise ArtifactNotFoundError(f"{self.uri(key)} is a directory, not an object") from None

    def _tmp_for(self, path: str) -> str:
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        os.close(fd)
        return tmp

    def _publish(self, key: str, fill: Callable[[str], None], exclusive: bool = False) -> None:
        """Write a complete temp file beside the target with ``fill(tmp)``, then publish it atomically:
        ``os.replace`` (replace) or ``os.link`` (exclusive create: fails if the name exists)."""
        path = self.path(key)
        tmp = self._tmp_for(path)
        try:
            fill(tmp)
            if not exclusive:
                os.replace(tmp, path)
                return
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ArtifactExistsError(f"{self.uri(key)} already exists") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @staticmethod
    def _filler(data: bytes) -> Callable[[str], None]:
        def fill(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return fill

    def write(self, key: str, data: bytes) -> None:
        self._publish(key, self._filler(data))

    def upload_file(self, key: str, local_path: str) -> None:
        def fill(tmp: str) -> None:
            shutil.copyfile(local_path, tmp)

        self._publish(key, fill)

    def create(self, key: str, data: bytes) -> None:
        self._publish(key, self._filler(data), exclusive=True)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        import fcntl

        lock = self.path(key) + ".lock"
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read(key)
        return data, hashlib.sha256(data).hexdigest()

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        with self._locked(key):
            try:
                current = hashlib.sha256(self.read(key)).hexdigest()
            except ArtifactNotFoundError:
                current = None
            if current != etag:
                raise PreconditionFailedError(
                    f"{self.uri(key)} changed since it was read (expected etag {etag}, found {current})"
                )
            self.write(key, data)
        return hashlib.sha256(data).hexdigest()

    def list(self, prefix: str) -> builtins.list[str]:
        root = self.path(prefix)
        if not os.path.isdir(root):
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".tmp-", ".staging-", ".trash-")))
            for name in filenames:
                if name.startswith(".tmp-") or name.endswith(".lock"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), self.base).replace(os.sep, "/")
                out.append(rel)
        return sorted(out)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        root = self.path(prefix)
        if not os.path.isdir(root):
            return []
        return sorted(
            d for d in os.listdir(root)
            if os.path.isdir(os.path.join(root, d)) and not d.startswith((".tmp-", ".staging-", ".trash-"))
        )

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        path = self.path(prefix)
        if os.path.isdir(path):
            trash = os.path.join(os.path.dirname(path), f".trash-{uuid.uuid4().hex}")
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)

    def commit_dir(self, prefix: str, staged_dir: str) -> None:
        """Swap a fully written directory into place (two renames; the old one removed after)."""
        final = self.path(prefix)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        trash = None
        if os.path.exists(final):
            trash = os.path.join(os.path.dirname(final), f".trash-{uuid.uuid4().hex}")
            os.rename(final, trash)
        os.rename(staged_dir, final)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def staging_dir(self, prefix: str) -> str:
        final = self.path(prefix)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".staging-{os.path.basename(final)}-", dir=parent)


class S3Backend:
    scheme = "s3"

    def __init__(self, bucket: str, prefix: str, conn_id: str, max_attempts: int = 5) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.conn_id = conn_id
        self.max_attempts = max_attempts
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                         connect_timeout=10, read_timeout=60)
            try:
                self._client = platform.s3_client(self.conn_id, config=cfg)
            except platform.ProviderMissingError as e:  # pragma: no cover - depends on the install
                raise StorageError(str(e)) from e
            except Exception as e:
                raise StorageError(
                    f"cannot create an S3 client from Airflow connection {self.conn_id!r}: {e}. "
                    f"Define the connection (e.g. AIRFLOW_CONN_{self.conn_id.upper()}) with AWS credentials."
                ) from e
        return self._client

    def key(self, key: str) -> str:
        return join(self.prefix, key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def _call(self, what: str, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except NoCredentialsError:
            raise StorageError(
                f"{what} {self.uri(key)}: no AWS credentials. Set them on the Airflow connection "
                f"{self.conn_id!r} (login = access key id, password = secret access key)."
            ) from None
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFoundError(f"{self.uri(key)} does not exist") from None
            if code in ("PreconditionFailed", "412") or status == 412:
                raise PreconditionFailedError(f"{self.uri(key)}: precondition failed ({what})") from None
            if code == "ConditionalRequestConflict" or status == 409:
                raise PreconditionFailedError(f"{self.uri(key)}: concurrent conditional write ({what})") from None
            if code == "NoSuchBucket":
                raise StorageError(f"{what} {self.uri(key)}: bucket {self.bucket!r} does not exist") from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise StorageError(
                    f"{what} {self.uri(key)}: access denied ({code}); check the credentials of Airflow "
                    f"connection {self.conn_id!r}"
                ) from None
            raise StorageError(
                f"{what} {self.uri(key)} failed after {self.max_attempts} attempts: {code or status} {e}"
            ) from e
        except (BotoCoreError, Boto3Error) as e:
            raise StorageError(
                f"{what} {self.uri(key)} failed after {self.max_attempts} attempts: {type(e).__name__}: {e}"
            ) from e

    def read(self, key: str) -> bytes:
        resp = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self.key(key))
        data: bytes = self._call("read", key, resp["Body"].read)
        return data

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        resp = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self.key(key))
        data: bytes = self._call("read", key, resp["Body"].read)
        return data, resp["ETag"]

    def write(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Bucket=self.bucket, Key=self.key(key), Body=data)

    def upload_file(self, key: str, local_path: str) -> None:
        self._call("upload", key, self.client.upload_file, local_path, self.bucket, self.key(key))

    def _own_write(self, key: str, data: bytes) -> str | None:
        """After a 412 on a conditional put: the ETag when the object already holds exactly ``data``.

        botocore retries a put whose response was lost (timeout, connection reset) although S3 applied
        it; the retry then fails its own precondition. The documents written conditionally (version
        metadata, the registry state) are small and unique (timestamps, ids), so equal bytes mean
        this very write landed. (Comparing the ETag with md5(data) would not hold on SSE-KMS buckets.)
        """
        try:
            current, etag = self.read_versioned(key)
        except ArtifactNotFoundError:
            return None
        return etag if current == data else None

    def create(self, key: str, data: bytes) -> None:
        try:
            self._call("create", key, self.client.put_object, Bucket=self.bucket, Key=self.key(key),
                       Body=data, IfNoneMatch="*")
        except PreconditionFailedError:
            if self._own_write(key, data) is not None:
                log.info("create %s: the first attempt's response was lost but it was applied", self.uri(key))
                return
            raise ArtifactExistsError(f"{self.uri(key)} already exists") from None

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        kwargs: dict[str, Any] = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            resp = self._call("conditional write", key, self.client.put_object, Bucket=self.bucket,
                              Key=self.key(key), Body=data, **kwargs)
        except PreconditionFailedError:
            applied = self._own_write(key, data)
            if applied is None:
                raise
            log.info("conditional write %s: the first attempt's response was lost but it was applied",
                     self.uri(key))
            return applied
        new_etag: str = resp["ETag"]
        return new_etag

    def _paginate(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        p = self.key(prefix)
        p = p + "/" if p else ""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": p}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list", prefix, lambda: list(paginator.paginate(**kwargs)))
        yield from pages

    def list(self, prefix: str) -> builtins.list[str]:
        base = self.prefix + "/" if self.prefix else ""
        out = []
        for page in self._paginate(prefix):
            for obj in page.get("Contents", []):
                out.append(obj["Key"][len(base):])
        return sorted(out)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        out = []
        for page in self._paginate(prefix, delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                out.append(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(out)

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self.key(key))
            return True
        except ArtifactNotFoundError:
            return False

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            self._call("delete", chunk[0], self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": [{"Key": self.key(k)} for k in chunk], "Quiet": True})

    def delete_prefix(self, prefix: str) -> None:
        self.delete(self.list(prefix))


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------
class ArtifactStore:
    """Artifact store rooted at a ``file://`` or ``s3://`` URI.

    :param root: root URI; default ``[mlops] storage_uri`` or ``file://$AIRFLOW_HOME/mlops``.
    :param conn_id: Airflow AWS connection for ``s3://`` roots (default ``[mlops] storage_conn_id``).
    :param max_attempts: attempts per S3 request (botocore standard retry mode, exponential backoff).
    """

    def __init__(self, root: str | None = None, conn_id: str | None = None, max_attempts: int = 5) -> None:
        root = (root or default_storage_uri()).rstrip("/")
        self.root = root
        # the AWS connection only matters for s3:// (reading the Airflow config costs an Airflow import)
        self.conn_id = conn_id or (default_conn_id() if root.startswith("s3://") else None)
        if root.startswith("file://"):
            self._b: _LocalBackend | S3Backend = _LocalBackend(root[len("file://"):] or "/")
        elif root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://"):].partition("/")
            if not bucket:
                raise StorageError(f"storage URI {root!r} has no bucket")
            self._b = S3Backend(bucket, prefix, self.conn_id or default_conn_id(), max_attempts=max_attempts)
        elif "://" not in root:
            self._b = _LocalBackend(root)
            self.root = "file://" + self._b.base
        else:
            raise StorageError(f"unsupported storage URI {root!r}: use file:///path or s3://bucket/prefix")

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self._b, _LocalBackend)

    # ---- addressing --------------------------------------------------------------
    def uri(self, key: str = "") -> str:
        """Full URI of a key."""
        return self._b.uri(_norm_key(key))

    def key_of(self, uri: str) -> str:
        """Key of a full URI inside this store (raises if the URI is outside)."""
        base = self.uri("")
        if uri.rstrip("/") == base.rstrip("/"):
            return ""
        if not uri.startswith(base.rstrip("/") + "/"):
            raise StorageError(f"{uri} is outside the store root {base}")
        return _norm_key(uri[len(base.rstrip("/")) + 1:])

    def local_path(self, key: str = "") -> str:
        """Filesystem path of a key (file:// stores only)."""
        if not isinstance(self._b, _LocalBackend):
            raise StorageError(f"{self.uri(key)} is not on the local filesystem")
        return self._b.path(_norm_key(key))

    def sub(self, prefix: str) -> ArtifactStore:
        """A store rooted at ``prefix`` below this one (same backend and connection)."""
        return ArtifactStore(self.uri(prefix), conn_id=self.conn_id,
                             max_attempts=getattr(self._b, "max_attempts", 5))

    # ---- bytes ---------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        return self._b.read(_norm_key(key))

    def write_bytes(self, key: str, data: bytes) -> str:
        """Atomically write (replace) ``key``; returns its URI."""
        k = _norm_key(key)
        self._b.write(k, data)
        return self._b.uri(k)

    def create_bytes(self, key: str, data: bytes) -> str:
        """Exclusive create; :class:`ArtifactExistsError` when ``key`` exists."""
        k = _norm_key(key)
        self._b.create(k, data)
        return self._b.uri(k)

    def upload_file(self, key: str, local_path: str) -> str:
        """Atomically copy a local file to ``key`` (multipart on S3)."""
        k = _norm_key(key)
        self._b.upload_file(k, local_path)
        return self._b.uri(k)

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """Content and an etag for :meth:`write_bytes_if_match`."""
        return self._b.read_versioned(_norm_key(key))

    def write_bytes_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """Compare-and-swap: write only if the etag still matches (``None``: only if absent)."""
        return self._b.write_if_match(_norm_key(key), data, etag)

    def exists(self, key: str) -> bool:
        return self._b.exists(_norm_key(key))

    def list(self, prefix: str = "") -> builtins.list[str]:
        """All keys below ``prefix`` (recursive), sorted."""
        return self._b.list(_norm_key(prefix))

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """Immediate child "directories" of ``prefix``."""
        return self._b.list_dirs(_norm_key(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        self._b.delete([_norm_key(k) for k in keys])

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything below ``prefix``."""
        self._b.delete_prefix(_norm_key(prefix))

    # ---- JSON ----------------------------------------------------------------------
    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()

    def read_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as e:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {e}") from None

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, self.dumps(obj))

    def create_json(self, key: str, obj: Any) -> str:
        return self.create_bytes(key, self.dumps(obj))

    # ---- parquet -------------------------------------------------------------------
    def write_parquet(self, key: str, data: pd.DataFrame | pa.Table) -> str:
        """Atomically write a DataFrame/Table as one parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return self.write_bytes(key, sink.getvalue().to_pybytes())

    def read_parquet(self, key: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        return self.read_table(key, columns=columns).to_pandas()

    def read_table(self, key: str, columns: builtins.list[str] | None = None) -> pa.Table:
        """Read one parquet file, or a partition/prefix (following its ``_SUCCESS`` manifest)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        k = _norm_key(key)
        if k.endswith(".parquet") and self.exists(k):
            files = [k]
        else:
            files = [f for f in self.partition_files(k) if f.endswith(".parquet")]
            if not files:
                raise ArtifactNotFoundError(f"no parquet files under {self.uri(k)}")
        tables = []
        for f in files:
            try:
                tables.append(pq.read_table(pa.BufferReader(self.read_bytes(f)), columns=columns))
            except (pa.ArrowInvalid, OSError) as e:
                if isinstance(e, StorageError):
                    raise
                raise StorageError(f"{self.uri(f)} is not a readable parquet file: {e}") from None
        return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]

    # ---- partitions ----------------------------------------------------------------
    def partition_files(self, prefix: str) -> builtins.list[str]:
        """Data files of a partition: those in its ``_SUCCESS`` manifest when there is one,
        else every ``.parquet``/``.csv`` file below it (data delivered from outside)."""
        p = _norm_key(prefix)
        manifest_key = join(p, SUCCESS_MANIFEST)
        try:
            manifest = self.read_json(manifest_key)
        except ArtifactNotFoundError:
            manifest = None
        if manifest is not None:
            if manifest.get("pending"):  # first commit of this partition in progress (or failed)
                return []
            return [join(p, name) for name in manifest.get("files", [])]
        return [k for k in self.list(p)
                if k.endswith(DATA_SUFFIXES) and not k.rsplit("/", 1)[-1].startswith(("_", "."))]

    def read_manifest(self, prefix: str) -> dict[str, Any] | None:
        """The partition's committed ``_SUCCESS`` manifest, or ``None`` (no manifest, or only the
        placeholder of a first commit that has not completed)."""
        try:
            manifest = self.read_json(join(prefix, SUCCESS_MANIFEST))
        except ArtifactNotFoundError:
            return None
        return None if manifest.get("pending") else manifest

    @contextlib.contextmanager
    def partition_writer(self, prefix: str, **manifest_extra: Any) -> Iterator[PartitionWriter]:
        """Stage files for ``prefix`` and commit them atomically on a clean exit.

        On error nothing is published and the previous partition (if any) stays as it was.
        """
        writer = PartitionWriter(self, _norm_key(prefix))
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit(**manifest_extra)


class PartitionWriter:
    """Collects the files of one partition attempt; see :meth:`ArtifactStore.partition_writer`.

    Files are written to a local staging directory (the final directory's sibling on file://, a temp
    directory for s3://). Commit: file:// swaps the directory in with a rename; s3:// uploads the
    files under attempt-unique names, then replaces the ``_SUCCESS`` manifest (the commit point),
    then deletes files of earlier attempts. When the partition has no manifest yet, a placeholder
    manifest marked ``pending`` (listing no files) is written first, so readers never list the files of
    a first commit that is still uploading or failed halfway (they see no partition); a failed
    attempt deletes its own uploads.
    """

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.attempt = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        if store.is_local:
            self.dir = store._b.staging_dir(prefix)  # type: ignore[union-attr]
        else:
            self.dir = tempfile.mkdtemp(prefix="mlops-partition-")
        self.files: list[str] = []
        self.rows = 0

    def new_file(self, suffix: str = ".parquet") -> str:
        """A local path for the next data file of this partition."""
        name = f"part-{len(self.files):05d}-{self.attempt}{suffix}"
        self.files.append(name)
        return os.path.join(self.dir, name)

    def add_rows(self, n: int) -> None:
        self.rows += n

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, **extra: Any) -> dict[str, Any]:
        names = [f for f in self.files if os.path.exists(os.path.join(self.dir, f))]
        manifest = {"files": names, "rows": self.rows, "attempt": self.attempt,
                    "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
        data = ArtifactStore.dumps(manifest)
        b = self.store._b
        if isinstance(b, _LocalBackend):
            with open(os.path.join(self.dir, SUCCESS_MANIFEST), "wb") as f:
                f.write(data)
            b.commit_dir(self.prefix, self.dir)
        else:
            manifest_key = join(self.prefix, SUCCESS_MANIFEST)
            uploaded: list[str] = []
            try:
                previous = set(self.store.list(self.prefix))
                if manifest_key not in previous:
                    self.store.write_bytes(manifest_key, ArtifactStore.dumps(
                        {"files": [], "rows": 0, "attempt": self.attempt, "pending": True}))
                for name in names:
                    uploaded.append(join(self.prefix, name))
                    self.store.upload_file(uploaded[-1], os.path.join(self.dir, name))
                self.store.write_bytes(manifest_key, data)
            except BaseException:
                self._discard(uploaded)
                raise
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
            keep = {join(self.prefix, n) for n in names} | {manifest_key}
            self.store.delete(sorted(previous - keep))
        log.info("committed partition %s: %d file(s), %d row(s)", self.store.uri(self.prefix), len(names), self.rows)
        return manifest


    def _discard(self, keys: list[str]) -> None:
        try:
            self.store.delete(keys)
        except StorageError as e:  # readers never list them (manifest); the next commit deletes them
            log.warning("could not delete %d file(s) of the failed attempt %s under %s: %s", len(keys),
                        self.attempt, self.store.uri(self.prefix), e)
