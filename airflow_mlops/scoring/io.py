"""Streaming I/O of batch scoring: input files read in bounded batches (a local path, or an S3 object streamed
to a temp file), batches prefetched on a thread, output written on a background thread."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.artifacts import ArtifactStore, S3Backend
from airflow_mlops.store.datasets import (
    DataError,
    redact_parse_error,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@contextlib.contextmanager
def local_file(store: ArtifactStore, key: str, tmpdir: str) -> Iterator[str]:
    """A local path holding ``key``: the file itself on file://, else a temp copy streamed to disk
    (memory stays bounded; disk use is one input file at a time)."""
    if store.is_local:
        yield store.local_path(key)
        return
    fd, path = tempfile.mkstemp(prefix="in-", suffix=os.path.splitext(key)[1], dir=tmpdir)
    os.close(fd)
    try:
        download(store, key, path)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def download(store: ArtifactStore, key: str, path: str) -> None:
    b = store._b
    client = getattr(b, "client", None)
    if isinstance(b, S3Backend) and client is not None and hasattr(client, "download_file"):
        b._call("download", key, client.download_file, b.bucket, b.key(key), path)  # streams to disk
    else:  # pragma: no cover - other backends
        with open(path, "wb") as f:
            f.write(store.read_bytes(key))


def file_schema(path: str, fmt: str, uri: str) -> pa.Schema:
    """Arrow schema of one input file from its metadata (parquet footer / CSV header + first block)."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path)
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path)
        try:
            return reader.schema
        finally:
            reader.close()
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{uri} is not a readable {fmt} file ({redact_parse_error(e)}); "
                        "re-deliver the file or remove it from the partition") from None


def iter_batches(path: str, fmt: str, columns: list[str], batch_size: int, uri: str,
                  csv_types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path, pre_buffer=False)  # decode column chunk by column chunk: less memory
            try:
                yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=True)
            finally:
                pf.close()
        else:
            import pyarrow.csv as pcsv

            block = int(min(max(batch_size * 16 * max(len(columns), 1), 1 << 20), 256 << 20))
            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block),
                                   convert_options=pcsv.ConvertOptions(include_columns=columns,
                                                                       column_types=csv_types or {}))
            try:
                for batch in reader:
                    for start in range(0, batch.num_rows, batch_size):
                        yield batch.slice(start, batch_size)
            finally:
                reader.close()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        raise DataError(f"{uri} cannot be read as {fmt} ({redact_parse_error(e)}); "
                        "re-deliver the file or remove it from the partition") from None


# ------------------------------------------------------------------------------------------
# overlap IO with compute (bounded: a couple of batches in flight)
# ------------------------------------------------------------------------------------------
class Failure:
    """An exception raised on the prefetch thread, handed to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(make_iter: Any, depth: int = 2) -> Generator[Any, None, None]:
    """Run the iterator returned by ``make_iter()`` in a background thread, at most ``depth``
    items ahead (Arrow decoding releases the GIL, so reading overlaps with prediction).
    Exceptions are re-raised in the consumer; closing the consumer stops the producer."""
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = None
        try:
            it = make_iter()
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=run, name="mlops-score-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """A ``ParquetWriter`` whose ``write_batch`` runs in a helper thread, one batch at a time
    (Parquet encoding and compression release the GIL), so writing overlaps with prediction."""

    def __init__(self, path: str, schema: pa.Schema, options: dict[str, Any]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(path, schema, **options)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-score-writer")
        self._pending: Any = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._writer.write_batch, batch)

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pending = None
            self._pool.shutdown(wait=True)
            self._writer.close()


def copy_local(store: ArtifactStore, key: str, dest: str) -> None:
    if store.is_local:
        src = store.local_path(key)
        try:
            os.link(src, dest)  # same filesystem: no copy, and deleting the part keeps the data
        except OSError:
            shutil.copyfile(src, dest)
    else:
        download(store, key, dest)


_DONE = object()


__all__ = ["BackgroundWriter", "copy_local", "download", "file_schema", "iter_batches", "local_file", "prefetch"]
