"""Tests of airflow_mlops.store.fingerprint: determinism, sensitivity, batch/file independence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import airflow_mlops.store.fingerprint as fp
from airflow_mlops.store.fingerprint import fingerprint_table, schema_dict


def sample_frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": rng.permutation(n),
        "x": rng.normal(size=n),
        "count": pd.array(rng.integers(0, 50, size=n), dtype="Int64"),
        "plan": rng.choice(["basic", "plus", "pro", None], size=n),
        "tier": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
        "active": rng.choice([True, False], size=n),
        "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10_000, size=n), unit="min"),
        "blob": [bytes([i % 256]) * (i % 5) for i in range(n)],
    })
    frame.loc[::13, "x"] = np.nan
    frame.loc[::17, "count"] = pd.NA
    return frame


def test_shape_of_the_result() -> None:
    frame = sample_frame()
    result = fingerprint_table(frame)
    assert result["rows"] == 500
    assert result["algorithm"] == "sha256"
    assert result["sorted_by"] == []
    assert [c["name"] for c in result["columns"]] == list(frame.columns)
    assert {c["name"]: c["dtype"] for c in result["columns"]}["x"] == "double"
    assert len(result["content_hash"]) == 64 and len(result["schema_hash"]) == 64
    assert schema_dict(frame)["count"] == "int64" and schema_dict(frame)["plan"] == "string"


def test_same_data_same_fingerprint_across_processes() -> None:
    frame = sample_frame()
    first = fingerprint_table(frame)
    assert fingerprint_table(frame.copy()) == first
    assert fingerprint_table(pa.Table.from_pandas(frame, preserve_index=False)) == first
    # a fresh interpreter (different hash seed, different memory layout) agrees
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_fingerprint import sample_frame\n"
        "from airflow_mlops.store.fingerprint import fingerprint_table\n"
        "print(fingerprint_table(sample_frame())['content_hash'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == first["content_hash"]


def test_index_is_not_data() -> None:
    frame = sample_frame()
    assert fingerprint_table(frame.set_index(frame.index + 1000)) == fingerprint_table(frame)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.assign(x=f["x"].where(f.index != 3, 0.123456)),  # one float
        lambda f: f.assign(plan=f["plan"].where(f.index != 10, "enterprise")),  # one string
        lambda f: f.assign(count=f["count"].where(f.index != 1, pd.NA)),  # a value becomes null
        lambda f: f.assign(active=f["active"].where(f.index != 0, ~f["active"])),  # one bool
        lambda f: f.assign(signup=f["signup"].where(f.index != 5, pd.Timestamp("2030-01-01"))),
        lambda f: f.assign(blob=[b"x" if i == 7 else b for i, b in enumerate(f["blob"])]),
        lambda f: f.iloc[:-1],  # one row fewer
        lambda f: f.rename(columns={"x": "x2"}),  # a column name
        lambda f: f.assign(**{"count": f["count"].astype("float64")}),  # a dtype
        lambda f: f.iloc[::-1],  # row order matters without keys
    ],
)
def test_one_change_changes_the_fingerprint(mutate) -> None:  # type: ignore[no-untyped-def]
    frame = sample_frame()
    before = fingerprint_table(frame)
    after = fingerprint_table(mutate(frame.copy()))
    assert after["content_hash"] != before["content_hash"] or after["schema_hash"] != before["schema_hash"]


def test_value_changes_content_hash_only() -> None:
    frame = sample_frame()
    changed = frame.copy()
    changed.loc[42, "x"] = 1e9
    a, b = fingerprint_table(frame), fingerprint_table(changed)
    assert a["schema_hash"] == b["schema_hash"] and a["content_hash"] != b["content_hash"]


def test_null_differs_from_filler_and_nan() -> None:
    base = pa.table({"v": pa.array([1.0, None, 3.0])})
    zero = pa.table({"v": pa.array([1.0, 0.0, 3.0])})
    nan = pa.table({"v": pa.array([1.0, float("nan"), 3.0])})
    hashes = {fingerprint_table(t)["content_hash"] for t in (base, zero, nan)}
    assert len(hashes) == 3
    strings = [pa.table({"s": pa.array(v)}) for v in (["ab", "c"], ["a", "bc"], ["abc", ""], ["abc", None])]
    assert len({fingerprint_table(t)["content_hash"] for t in strings}) == 4


def test_independent_of_batch_and_chunk_splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp, "BATCH_ROWS", 64)  # exercise several hashing windows
    table = pa.Table.from_pandas(sample_frame(), preserve_index=False)
    whole = fingerprint_table(table)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=7))
    assert rechunked.column("x").num_chunks > 1
    assert fingerprint_table(rechunked) == whole
    parts = [table.slice(0, 100), table.slice(100, 33), table.slice(133)]
    assert fingerprint_table(parts) == whole
    assert fingerprint_table([b for b in table.to_batches(max_chunksize=50)]) == whole


def test_dictionary_layout_does_not_matter() -> None:
    # the same values, dictionary-encoded with different dictionaries per batch
    part1 = pa.table({"k": [1, 2], "c": pa.array(["x", "y"]).dictionary_encode()})
    part2 = pa.table({"k": [3, 4], "c": pa.array(["y", "x"]).dictionary_encode()})
    together = pa.table({"k": [1, 2, 3, 4], "c": pa.array(["x", "y", "y", "x"]).dictionary_encode()})
    assert fingerprint_table([part1, part2])["content_hash"] == fingerprint_table(together)["content_hash"]


def test_keys_make_row_and_file_order_irrelevant(tmp_path: Path) -> None:
    frame = sample_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    shuffled = frame.sample(frac=1.0, random_state=3)
    keyed = fingerprint_table(frame, keys=["customer_id"])
    assert keyed["sorted_by"] == ["customer_id"]
    assert fingerprint_table(shuffled, keys=["customer_id"]) == keyed
    assert fingerprint_table(shuffled)["content_hash"] != fingerprint_table(frame)["content_hash"]

    # the same rows written as several parquet files, read back in another file order
    for i, start in enumerate(range(0, 500, 150)):
        pq.write_table(table.slice(start, 150), tmp_path / f"part-{3 - i}.parquet", row_group_size=40)
    from_files = ds.dataset(str(tmp_path), format="parquet").to_table()
    assert from_files.column("x").num_chunks > 1
    assert fingerprint_table(from_files, keys=["customer_id"]) == keyed

    # non-unique keys: ties are broken by the other columns, so still order-independent
    ties = pd.DataFrame({"k": [1, 1, 2, 2], "v": ["b", "a", "d", "c"]})
    assert fingerprint_table(ties, keys=["k"]) == fingerprint_table(ties.iloc[[1, 0, 3, 2]], keys=["k"])


def test_column_order_is_not_data() -> None:
    frame = sample_frame()
    reordered = frame[list(reversed(frame.columns))]
    a, b = fingerprint_table(frame), fingerprint_table(reordered)
    assert a["content_hash"] == b["content_hash"] and a["schema_hash"] == b["schema_hash"]


def test_nested_and_decimal_columns_and_errors() -> None:
    import decimal

    table = pa.table({
        "k": [1, 2],
        "l": pa.array([[1, 2], None]),
        "s": pa.array([{"a": 1}, {"a": 2}]),
        "d": pa.array([decimal.Decimal("1.10"), decimal.Decimal("2.20")]),
        "h": pa.array(np.array([1.5, 2.5], dtype=np.float16)),
    })
    first = fingerprint_table(table, keys=["k"])
    assert fingerprint_table(table.take([1, 0]), keys=["k"]) == first
    changed = table.set_column(1, "l", pa.array([[1, 3], None]))
    assert fingerprint_table(changed, keys=["k"])["content_hash"] != first["content_hash"]
    with pytest.raises(ValueError, match="not in the table"):
        fingerprint_table(table, keys=["nope"])
    with pytest.raises(TypeError):
        fingerprint_table({"k": [1]})  # type: ignore[arg-type]
    empty = fingerprint_table(table.slice(0, 0))
    assert empty["rows"] == 0 and empty["content_hash"] != first["content_hash"]
