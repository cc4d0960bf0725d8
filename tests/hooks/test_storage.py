"""ArtifactStore on file:// and on s3:// (moto server over HTTP)."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_mlops.store.artifacts import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ArtifactStore,
    PreconditionFailedError,
    StorageError,
    default_storage_uri,
)


def test_bytes_roundtrip_and_listing(store):
    uri = store.write_bytes("a/b/c.bin", b"hello")
    assert uri.endswith("a/b/c.bin")
    assert store.read_bytes("a/b/c.bin") == b"hello"
    store.write_bytes("a/b/c.bin", b"replaced")
    assert store.read_bytes("a/b/c.bin") == b"replaced"
    store.write_bytes("a/d.bin", b"x")
    assert store.list("a") == ["a/b/c.bin", "a/d.bin"]
    assert store.list_dirs("a") == ["b"]
    assert store.exists("a/d.bin") and not store.exists("a/zzz")


def test_missing_key_names_uri(store):
    with pytest.raises(ArtifactNotFoundError, match="nope.json"):
        store.read_bytes("nope.json")


def test_exclusive_create(store):
    store.create_bytes("x/once", b"1")
    with pytest.raises(ArtifactExistsError, match="already exists"):
        store.create_bytes("x/once", b"2")
    assert store.read_bytes("x/once") == b"1"


def test_compare_and_swap(store):
    store.write_bytes_if_match("doc.json", b"v1", None)  # create-if-absent
    with pytest.raises(PreconditionFailedError):
        store.write_bytes_if_match("doc.json", b"again", None)
    data, etag = store.read_versioned("doc.json")
    assert data == b"v1"
    store.write_bytes_if_match("doc.json", b"v2", etag)
    with pytest.raises(PreconditionFailedError):
        store.write_bytes_if_match("doc.json", b"v3", etag)  # stale etag
    assert store.read_bytes("doc.json") == b"v2"


def test_json_and_parquet(store):
    store.write_json("m/meta.json", {"a": 1, "b": [1, 2]})
    assert store.read_json("m/meta.json") == {"a": 1, "b": [1, 2]}
    df = pd.DataFrame({"k": [1, 2, 3], "x": [0.5, None, 1.5], "c": ["a", "b", "a"]})
    store.write_parquet("t/data.parquet", df)
    back = store.read_parquet("t/data.parquet")
    pd.testing.assert_frame_equal(back, df)
    store.write_bytes("bad/x.json", b"{not json")
    with pytest.raises(StorageError, match="not valid JSON"):
        store.read_json("bad/x.json")


def _write_partition(store, prefix, frames):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with store.partition_writer(prefix) as w:
        for df in frames:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), w.new_file())
            w.add_rows(len(df))


def test_partition_commit_replaces_previous_attempt(store):
    p = "data/ds/ds=2024-01-01"
    _write_partition(store, p, [pd.DataFrame({"k": [1, 2]}), pd.DataFrame({"k": [3]})])
    assert sorted(store.read_parquet(p)["k"]) == [1, 2, 3]
    _write_partition(store, p, [pd.DataFrame({"k": [7, 8]})])
    assert sorted(store.read_parquet(p)["k"]) == [7, 8]  # replaced, no rows of the first attempt
    assert store.read_manifest(p)["rows"] == 2
    assert len([k for k in store.list(p) if k.endswith(".parquet")]) == 1


def test_partition_failure_leaves_previous_partition(store):
    p = "data/ds/ds=2024-01-02"
    _write_partition(store, p, [pd.DataFrame({"k": [1]})])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with store.partition_writer(p) as w:
            pd.DataFrame({"k": [9]}).to_parquet(w.new_file())
            raise Boom()
    assert list(store.read_parquet(p)["k"]) == [1]


def test_partition_without_manifest_reads_all_data_files(store):
    store.write_parquet("data/ext/ds=2024-01-01/a.parquet", pd.DataFrame({"k": [1]}))
    store.write_parquet("data/ext/ds=2024-01-01/b.parquet", pd.DataFrame({"k": [2]}))
    assert sorted(store.read_parquet("data/ext/ds=2024-01-01")["k"]) == [1, 2]


def test_delete_prefix(store):
    store.write_bytes("p/q/1", b"1")
    store.write_bytes("p/q/2", b"2")
    store.write_bytes("p/r", b"3")
    store.delete_prefix("p/q")
    assert store.list("p") == ["p/r"]


def test_key_traversal_refused(store):
    with pytest.raises(StorageError, match="'..'"):
        store.read_bytes("../etc/passwd")


def test_default_root_follows_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__MLOPS__STORAGE_URI", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_storage_uri() == f"file://{tmp_path}/mlops"
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_URI", "s3://bucket/prefix")
    assert ArtifactStore().root == "s3://bucket/prefix"


def test_unsupported_scheme():
    with pytest.raises(StorageError, match="unsupported storage URI"):
        ArtifactStore("gs://bucket/x")


def test_s3_missing_connection_is_named(s3_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MISSING_AWS", raising=False)
    store = ArtifactStore(s3_root, conn_id="missing_aws")
    with pytest.raises(StorageError, match="missing_aws"):
        store.read_bytes("anything")
