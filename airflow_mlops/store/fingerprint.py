"""Deterministic content fingerprints of tabular data (training-data lineage).

:func:`fingerprint_table` returns ``{rows, columns, schema_hash, content_hash, algorithm,
sorted_by}``. The content hash depends only on the *logical* values of the table, never on how
the rows happened to be split into files, record batches or chunks:

1. The input (pandas DataFrame, Arrow Table/RecordBatch, or a sequence of them) is viewed as one
   Arrow table; the pandas index is not part of the data.
2. When ``keys`` are given, rows are put in a canonical order: sorted by the key columns, then
   by every other sortable column as a tie-breaker (nulls last). Without ``keys`` the row order
   is part of the data. Only the sort *indices* are materialised, never a sorted copy.
3. Each column is hashed separately (sha256), in fixed windows of :data:`BATCH_ROWS` rows taken
   from the (ordered) column, so memory stays bounded by one window of one column regardless of
   the input chunking. For each window the hash receives

   * the validity mask (``0`` if there are no nulls, else ``1`` + the packed bitmap),
   * the values, with nulls replaced by a fixed filler so undefined bytes under nulls never
     leak in: fixed-width types (integers, floats with NaN canonicalised, bools, dates,
     timestamps, durations) as their little-endian value bytes; strings/binary as int64
     lengths followed by the concatenated bytes; anything else (decimals, lists, structs, ...)
     as canonical JSON of the Python values. Dictionary-encoded columns are decoded first,
     so the dictionary layout of each file does not matter.

4. ``content_hash`` = sha256 over the row count and the (name, column digest) pairs sorted by
   column name, so it is also independent of the column order. ``schema_hash`` = sha256 over
   the sorted (name, Arrow type) pairs.

Same data -> same fingerprint across runs and machines; changing one value, one null, a column
name or a column type changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    import pyarrow as pa

__all__ = ["BATCH_ROWS", "fingerprint_table", "as_arrow_table", "schema_dict"]

#: Rows per hashing window (bounds the memory used per column).
BATCH_ROWS = 65_536

_ALGORITHM = "sha256"


def as_arrow_table(data: pa.Table | pa.RecordBatch | pd.DataFrame | Sequence[Any]) -> pa.Table:
    """Convert a DataFrame, RecordBatch, Table or a sequence of those into one Arrow table."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("cannot fingerprint an empty sequence of tables")
        tables = [as_arrow_table(part) for part in data]
        return pa.concat_tables(tables)
    raise TypeError(f"expected a pyarrow Table/RecordBatch or a pandas DataFrame, got {type(data).__name__}")


def schema_dict(data: pa.Table | pa.RecordBatch | pd.DataFrame | Sequence[Any]) -> dict[str, str]:
    """Column name -> Arrow type string (``int64``, ``double``, ``string``, ``bool`` ...); the
    ``schema`` argument expected by :func:`airflow_mlops.config.data_check.check_config_against_data`."""
    table = as_arrow_table(data)
    return {f.name: str(f.type) for f in table.schema}


def fingerprint_table(
    table_or_df: pa.Table | pa.RecordBatch | pd.DataFrame | Sequence[Any],
    keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fingerprint a table.

    Args:
        table_or_df: a pyarrow Table / RecordBatch, a pandas DataFrame (index ignored), or a
            sequence of them (concatenated in order, e.g. one per file).
        keys: key columns; when given, rows are canonically ordered first (see the module
            docstring), so the result does not depend on row or file order either.

    Returns:
        ``{"rows": int, "columns": [{"name", "dtype"}], "schema_hash": hex, "content_hash": hex,
        "algorithm": "sha256", "sorted_by": [keys]}``.
    """
    import pyarrow as pa

    table = as_arrow_table(table_or_df)
    names = table.column_names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate column names cannot be fingerprinted: {', '.join(dupes)}")
    keys = list(keys or [])
    missing = [k for k in keys if k not in names]
    if missing:
        raise ValueError(f"key column(s) not in the table: {', '.join(missing)}; columns: {', '.join(names)}")

    indices = _sort_indices(table, keys) if keys else None
    n_rows = table.num_rows

    column_digests: list[tuple[str, str]] = []
    for name in names:
        column = table.column(name)
        hasher = hashlib.sha256()
        hasher.update(f"{len(name)}:{name}".encode())
        for start in range(0, n_rows, BATCH_ROWS):
            stop = min(start + BATCH_ROWS, n_rows)
            if indices is None:
                chunk = column.slice(start, stop - start)
            else:
                chunk = column.take(indices.slice(start, stop - start))
            _hash_array(hasher, _combine(chunk, pa))
        column_digests.append((name, hasher.hexdigest()))

    content = hashlib.sha256()
    content.update(f"rows={n_rows};columns={len(names)}\n".encode())
    for name, digest in sorted(column_digests):
        content.update(f"{len(name)}:{name}={digest}\n".encode())

    schema_pairs = sorted([f.name, str(f.type)] for f in table.schema)
    schema_hash = hashlib.sha256(json.dumps(schema_pairs, separators=(",", ":")).encode()).hexdigest()
    return {
        "rows": n_rows,
        "columns": [{"name": f.name, "dtype": str(f.type)} for f in table.schema],
        "schema_hash": schema_hash,
        "content_hash": content.hexdigest(),
        "algorithm": _ALGORITHM,
        "sorted_by": keys,
    }


def _combine(chunk: Any, pa: Any) -> Any:
    """ChunkedArray window -> one Array (dictionary columns decoded)."""
    arr = chunk.combine_chunks() if isinstance(chunk, pa.ChunkedArray) else chunk
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _is_sortable(dtype: Any) -> bool:
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(
        t.is_integer(dtype) or t.is_floating(dtype) or t.is_boolean(dtype) or t.is_string(dtype)
        or t.is_large_string(dtype) or t.is_binary(dtype) or t.is_large_binary(dtype)
        or t.is_temporal(dtype) or t.is_decimal(dtype) or t.is_fixed_size_binary(dtype)
    )


def _sort_indices(table: pa.Table, keys: list[str]) -> pa.Array:
    """Row order: keys first, then every other sortable column as tie-breaker (nulls last)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = list(keys) + [n for n in table.column_names if n not in keys]
    columns = {}
    for i, name in enumerate(order):
        col = table.column(name)
        if not _is_sortable(col.type):
            if name in keys:
                raise ValueError(f"key column {name!r} has unsortable type {col.type}")
            continue
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        if pa.types.is_float16(col.type):  # not sortable by Arrow; float32 preserves the order
            col = pc.cast(col, pa.float32())
        columns[f"c{i}"] = col
    sort_table = pa.table(columns)
    # stable sort; nulls are placed at the end (Arrow's default)
    return pc.sort_indices(sort_table, sort_keys=[(c, "ascending") for c in sort_table.column_names])


def _hash_array(hasher: hashlib._Hash, arr: pa.Array) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pa.types
    dtype = arr.type
    hasher.update(f"|n={len(arr)}|".encode())
    if t.is_null(dtype):
        return
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        hasher.update(b"\x01" + np.packbits(valid).tobytes())
    else:
        hasher.update(b"\x00")

    if t.is_boolean(dtype):
        values = pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(np.uint8)
        hasher.update(b"bool" + values.tobytes())
    elif t.is_integer(dtype):
        values = pc.fill_null(arr, pa.scalar(0, dtype)).to_numpy(zero_copy_only=False)
        hasher.update(str(values.dtype).encode() + values.astype(values.dtype.newbyteorder("<")).tobytes())
    elif t.is_floating(dtype):
        values = arr.to_numpy(zero_copy_only=False)  # nulls -> NaN; the validity mask tells them apart
        values = np.where(np.isnan(values), np.array(np.nan, dtype=values.dtype), values)
        hasher.update(str(values.dtype).encode() + values.astype(values.dtype.newbyteorder("<")).tobytes())
    elif (t.is_timestamp(dtype) or t.is_date(dtype) or t.is_time(dtype) or t.is_duration(dtype)):
        as_int = arr.view(pa.int64() if dtype.bit_width == 64 else pa.int32())
        values = pc.fill_null(as_int, pa.scalar(0, as_int.type)).to_numpy(zero_copy_only=False)
        hasher.update(b"temporal" + values.astype(values.dtype.newbyteorder("<")).tobytes())
    elif t.is_string(dtype) or t.is_large_string(dtype) or getattr(t, "is_string_view", lambda _: False)(dtype):
        _hash_binary(hasher, pc.fill_null(arr.cast(pa.large_string()), ""), b"str")
    elif t.is_binary(dtype) or t.is_large_binary(dtype) or t.is_fixed_size_binary(dtype) or getattr(
        t, "is_binary_view", lambda _: False
    )(dtype):
        _hash_binary(hasher, pc.fill_null(arr.cast(pa.large_binary()), b""), b"bin")
    else:  # decimals, nested, intervals, extension types: canonical JSON of Python values
        payload = json.dumps(arr.to_pylist(), default=_json_default, sort_keys=True, separators=(",", ":"))
        hasher.update(b"json" + payload.encode())


def _hash_binary(hasher: hashlib._Hash, arr: pa.Array, tag: bytes) -> None:
    """Hash a large_string/large_binary array as int64 lengths + concatenated bytes."""
    import numpy as np

    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype="<i8")[arr.offset: arr.offset + len(arr) + 1]
    hasher.update(tag + np.diff(offsets).astype("<i8").tobytes())
    if data_buf is not None and len(arr):
        hasher.update(memoryview(data_buf)[int(offsets[0]): int(offsets[-1])])


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)
