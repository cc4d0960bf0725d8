"""ModelRegistry on both backends: versions, integrity, aliases with CAS, audit log, approvals, lifecycle."""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing as mp
import time

import numpy as np
import pytest

from airflow_mlops.registry.model_registry import (
    AliasNotFoundError,
    ApprovalError,
    ConcurrentUpdateError,
    DeprecatedVersionWarning,
    IntegrityError,
    LifecycleError,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
    UntrustedModelError,
    VersionNotFoundError,
)
from airflow_mlops.store.artifacts import ArtifactStore


def _model(seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.1 * rng.normal(size=60) > 0).astype(int)
    return LogisticRegression().fit(X, y), X


@pytest.fixture
def registry(store):
    return ModelRegistry(store)


def test_register_and_load_roundtrip(registry):
    model, X = _model()
    mv = registry.register("churn", model, metadata={"metrics": {"auc": 0.9}}, actor="alice",
                           artifacts={"reports/evaluation.html": b"<html>ok</html>"})
    assert mv.version == 1
    meta = registry.get_metadata("churn", 1)
    assert meta["metrics"] == {"auc": 0.9}
    assert set(meta["artifacts"]) == {"model.skops", "reports/evaluation.html"}
    assert all(len(a["sha256"]) == 64 for a in meta["artifacts"].values())
    loaded, meta2 = registry.load_model("churn", version=1)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert registry.list_models() == ["churn"]
    assert registry.list_versions("churn") == [1]
    assert registry.audit_log("churn")[0]["action"] == "register"


def test_versions_are_immutable(registry, store):
    model, _ = _model()
    mv = registry.register("m", model)
    from airflow_mlops.store.artifacts import ArtifactExistsError

    with pytest.raises(ArtifactExistsError):
        store.create_bytes(f"registry/m/versions/{mv.version}/metadata.json", b"{}")


def test_flipped_byte_fails_with_file_and_hash(registry, store):
    model, _ = _model()
    registry.register("m", model)
    key = "registry/m/versions/1/model.skops"
    data = bytearray(store.read_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.write_bytes(key, bytes(data))
    with pytest.raises(IntegrityError, match=r"hash mismatch for .*model\.skops"):
        registry.load_model("m", version=1)


def test_untrusted_type_refused(registry, store):

    class Evil:  # a type no allow-list knows
        pass

    registry.register("m", {"payload": Evil()})
    with pytest.raises(UntrustedModelError, match="Evil"):
        registry.load_model("m", version=1)


def test_unknown_model_version_alias_list_what_exists(registry):
    model, _ = _model()
    registry.register("known", model)
    registry.set_alias("known", "champion", 1, actor="a")
    with pytest.raises(ModelNotFoundError, match=r"'nope'.*known"):
        registry.load_model("nope")
    with pytest.raises(VersionNotFoundError, match=r"no version 7; versions: \[1\]"):
        registry.load_model("known", version=7)
    with pytest.raises(AliasNotFoundError, match=r"no alias 'prod'.*champion"):
        registry.load_model("known", alias="prod")


def test_aliases_audit_as_of_and_rollback(registry):
    for i in range(3):
        registry.register("m", _model(i)[0])
    registry.set_alias("m", "champion", 1, actor="ci", reason="first")
    time.sleep(0.01)
    t1 = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    registry.set_alias("m", "champion", 2, actor="ci", reason="better auc")
    assert registry.resolve("m") == 2
    assert registry.alias_as_of("m", "champion", t1) == 1
    assert registry.alias_as_of("m", "champion", "2000-01-01T00:00:00Z") is None
    ev = registry.rollback("m", actor="oncall", reason="bad scores")
    assert (ev["from"], ev["to"], ev["actor"]) == (2, 1, "oncall")
    assert registry.resolve("m") == 1
    with pytest.raises(ConcurrentUpdateError):
        registry.set_alias("m", "champion", 3, expected=2)
    log = registry.audit_log("m")
    alias_events = [(e["action"], e["from"], e["to"], e["reason"]) for e in log if e["alias"] == "champion"]
    assert alias_events == [("set_alias", None, 1, "first"), ("set_alias", 1, 2, "better auc"),
                            ("rollback", 2, 1, "bad scores")]


def test_approval_rules(registry):
    registry.register("m", _model()[0], actor="trainer", require_approval=True)
    assert registry.approval("m", 1)["status"] == "pending"
    with pytest.raises(ApprovalError, match="may not approve"):
        registry.approve("m", 1, approver="trainer")
    registry.approve("m", 1, approver="reviewer", reason="looks good")
    ap = registry.approval("m", 1)
    assert (ap["status"], ap["by"]) == ("approved", "reviewer")
    assert registry.audit_log("m")[-1]["action"] == "approve"


def test_lifecycle_retired_refuses_to_load(registry):
    registry.register("m", _model()[0])
    registry.set_lifecycle("m", 1, "deprecated", actor="a", reason="old features")
    with pytest.warns(DeprecatedVersionWarning, match="m v1 is deprecated.*old features"):
        registry.load_model("m", version=1)
    registry.set_lifecycle("m", 1, "retired", actor="risk-team", reason="biased")
    with pytest.raises(LifecycleError, match="retired.*risk-team.*biased"):
        registry.load_model("m", version=1)


def test_half_registration_invisible_and_numbering_sane(registry, store):
    registry.register("m", _model()[0])
    # a registration that died after claiming version 2 and writing its model file
    store.create_json("registry/m/versions/2/_claim.json", {"by": "crashed"})
    store.create_bytes("registry/m/versions/2/model.skops", b"partial")
    assert registry.list_versions("m") == [1]
    with pytest.raises(VersionNotFoundError):
        registry.load_model("m", version=2)
    assert registry.register("m", _model(1)[0]).version == 3


def test_failed_before_commit_leaves_no_version(registry):
    registry.register("m", _model()[0])

    def smoke(mv):
        raise RuntimeError("smoke test failed")

    with pytest.raises(RuntimeError, match="smoke"):
        registry.register("m", _model(1)[0], before_commit=smoke)
    assert registry.list_versions("m") == [1]


def test_before_commit_adds_artifacts_and_metadata(registry):
    def finish(mv):
        with pytest.raises(ModelNotFoundError, match="no committed version yet"):  # not visible yet
            registry.list_versions("m")
        mv.metadata["late"] = {"value": 1}
        return {"reports/late.html": b"<p>late</p>"}

    mv = registry.register("m", _model()[0], artifacts={"reports/early.html": b"early"}, before_commit=finish)
    meta = registry.get_metadata("m", mv.version)
    assert meta["late"] == {"value": 1}
    assert list(meta["artifacts"]) == sorted(meta["artifacts"])
    assert meta["artifacts"]["reports/late.html"] == {"sha256": hashlib.sha256(b"<p>late</p>").hexdigest(),
                                                      "bytes": len(b"<p>late</p>")}
    assert registry.read_artifact("m", mv.version, "reports/late.html") == b"<p>late</p>"  # hash-verified read

    def clobber(mv):
        return {"model.skops": b"not the model"}

    with pytest.raises(RegistryError, match="reserved or already written"):
        registry.register("m", _model(1)[0], before_commit=clobber)
    assert registry.list_versions("m") == [mv.version]


def test_models_using_fingerprint(registry):
    registry.register("a", _model()[0], lineage_hashes=["h1"])
    registry.register("b", _model()[0], lineage_hashes=["h1"])
    registry.register("a", _model()[0], lineage_hashes=["h2"])
    assert registry.models_using("h1") == [("a", 1), ("b", 1)]
    assert registry.models_using("h2") == [("a", 2)]


# ---- concurrency across processes ------------------------------------------------------
def _register_worker(root: str, i: int, q) -> None:
    reg = ModelRegistry(ArtifactStore(root))
    model, _ = _model(i)
    mv = reg.register("race", model, metadata={"worker": i}, actor=f"w{i}")
    q.put((i, mv.version))


def _alias_worker(root: str, version: int, q) -> None:
    reg = ModelRegistry(ArtifactStore(root))
    try:
        ev = reg.set_alias("race", "champion", version, actor=f"w{version}")
        q.put((version, ev["seq"]))
    except Exception as e:  # reported, never silently lost
        q.put((version, repr(e)))


def _run_procs(target, args_list):
    ctx = mp.get_context("fork")  # separate processes; they inherit imports so 20 start fast
    _model(0)  # import sklearn + skops once before forking
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, q)) for a in args_list]
    for p in procs:
        p.start()
    results = [q.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


def test_twenty_concurrent_registrations(store_root):
    results = _run_procs(_register_worker, [(store_root, i) for i in range(20)])
    versions = sorted(v for _, v in results)
    assert versions == list(range(1, 21))
    reg = ModelRegistry(ArtifactStore(store_root))
    assert reg.list_versions("race") == list(range(1, 21))
    by_worker = {}
    for v in range(1, 21):
        meta = reg.get_metadata("race", v)
        assert meta["version"] == v
        by_worker[meta["worker"]] = v
        reg.load_model("race", version=v)  # every artifact intact (hash verified)
    assert by_worker == dict(results)  # nobody's version was overwritten by another worker
    assert len([e for e in reg.audit_log("race") if e["action"] == "register"]) == 20


def test_ten_processes_racing_on_an_alias(store_root):
    reg = ModelRegistry(ArtifactStore(store_root))
    for i in range(10):
        reg.register("race", _model(i)[0])
    results = _run_procs(_alias_worker, [(store_root, v) for v in range(1, 11)])
    succeeded = {v for v, r in results if isinstance(r, int)}
    final = reg.resolve("race", alias="champion")
    assert final in range(1, 11)
    events = [e for e in reg.audit_log("race") if e["action"] == "set_alias"]
    # every caller told "success" has its change in the log, in a consistent chain
    assert {e["to"] for e in events} == succeeded
    assert len(events) == len(succeeded)
    assert events[-1]["to"] == final
    for prev, cur in zip(events, events[1:]):
        assert cur["from"] == prev["to"]
    assert [e["seq"] for e in reg.audit_log("race")] == list(range(1, len(reg.audit_log("race")) + 1))


def test_alias_as_of_follows_effective_dates(registry):
    for i in range(2):
        registry.register("m", _model(i)[0])
    # promotions made by runs for logical dates 2024-01-01 and 2024-01-04 (recorded today)
    registry.set_alias("m", "champion", 1, effective_at="2024-01-01T00:00:00Z")
    registry.set_alias("m", "champion", 2, effective_at="2024-01-04T00:00:00Z")
    assert registry.alias_as_of("m", "champion", "2023-12-31T23:59:59Z") is None
    assert registry.alias_as_of("m", "champion", "2024-01-03T23:59:59Z") == 1
    assert registry.alias_as_of("m", "champion", "2024-01-04T23:59:59Z") == 2
    # a backfilled run for an earlier date recorded later still lands at its own date
    registry.set_alias("m", "champion", 1, effective_at="2024-01-02T00:00:00Z")
    assert registry.alias_as_of("m", "champion", "2024-01-03T00:00:00Z") == 1
    assert registry.alias_as_of("m", "champion", "2024-01-05T00:00:00Z") == 2
