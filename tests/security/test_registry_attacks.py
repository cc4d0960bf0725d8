"""Security catalogue, registry side: tampered and forged model versions, code in model files, paths around
the promotion gate, self-approval. Every attack is refused with a clear error and leaves every byte of the
store as it was (sha256 of each file before and after). Both backends where storage is involved.

The UI attacks are in test_ui_attacks.py, script injection into reports in test_report_injection.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from airflow_mlops.registry.model_registry import (
    ApprovalError,
    IntegrityError,
    LifecycleError,
    ModelRegistry,
    PolicyError,
    SignatureMismatchError,
    UnsignedError,
    UntrustedModelError,
    load_skops_bytes,
)
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.trust.signing import Signer, SigningError, signer_from_file
from airflow_mlops.trust.types import TRUSTED_TYPES, is_dangerous

MODEL = "churn"


def _fit(seed: int = 0) -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] + 0.2 * rng.normal(size=80) > 0).astype(int)
    return LogisticRegression().fit(X, y), X


def snapshot(store: ArtifactStore) -> dict[str, str]:
    """sha256 of every file in the store (both backends)."""
    return {k: hashlib.sha256(store.read_bytes(k)).hexdigest() for k in store.list("")}


def refused(store: ArtifactStore, attack: Callable[[], Any], error: type[BaseException], match: str) -> str:
    """Run ``attack``: it must raise ``error`` matching ``match`` and change no byte of the store."""
    before = snapshot(store)
    with pytest.raises(error, match=match) as e:
        attack()
    assert snapshot(store) == before, "a refused attack changed the store"
    return str(e.value)


@pytest.fixture
def reg(store) -> ModelRegistry:
    """v1 champion (approved), v2 rejected, v3 pending approval, v4 never gated: a model that requires approval."""
    r = ModelRegistry(store)
    for seed in range(4):
        r.register(MODEL, _fit(seed)[0], actor="trainer", require_approval=True, metadata={"owner": "team"})
    r.approve(MODEL, 1, approver="reviewer", reason="ok")
    r.set_alias(MODEL, "champion", 1, actor="gate", details={"decision": {"promote": True}})
    r.approve(MODEL, 2, approver="reviewer", reason="leaks the target", status="rejected")
    r.set_alias(MODEL, "challenger", 3, actor="gate", reason="awaits approval")
    return r


def _rewrite_hashes(store: ArtifactStore, version: int, rel: str, data: bytes) -> None:
    """What an attacker with write access does: replace an artifact and fix its sha256/bytes in metadata.json."""
    base = f"registry/{MODEL}/versions/{version}"
    store.write_bytes(f"{base}/{rel}", data)
    meta = json.loads(store.read_bytes(f"{base}/metadata.json"))
    meta["artifacts"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    store.write_bytes(f"{base}/metadata.json", ArtifactStore.dumps(meta))


# ---- code in a model file -------------------------------------------------------------------------------
def craft(module: str, name: str, args: tuple, loader: str = "ConstructorFromReduceNode") -> bytes:
    """A skops file whose root node calls ``module.name(*args)`` while loading (skops' reduce node)."""
    import skops.io as sio

    inner = zipfile.ZipFile(io.BytesIO(sio.dumps(tuple(args))))
    schema = json.loads(inner.read("schema.json"))
    args_node = {k: schema[k] for k in ("__class__", "__module__", "__loader__", "content")}
    root = {"__class__": name, "__module__": module, "__loader__": loader,
            "attrs" if loader == "OperatorFuncNode" else "content": args_node,
            "protocol": schema["protocol"], "_skops_version": schema["_skops_version"]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for item in inner.namelist():
            if item != "schema.json":
                zf.writestr(item, inner.read(item))
        zf.writestr("schema.json", json.dumps(root))
    return out.getvalue()


def function_transformer(func_module: str, func_name: str) -> bytes:
    """A real scikit-learn FunctionTransformer whose ``func`` is rewritten to ``func_module.func_name``: nothing
    runs while loading, the function runs at ``transform``/``predict`` time."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    data = sio.dumps(FunctionTransformer(func=np.log1p).fit(np.ones((3, 1))))
    inner = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(inner.read("schema.json"))
    schema["content"]["content"]["func"] = {"__class__": func_name, "__module__": func_module,
                                            "__loader__": "FunctionNode"}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for item in inner.namelist():
            zf.writestr(item, json.dumps(schema) if item == "schema.json" else inner.read(item))
    return out.getvalue()


def _payloads(marker: str) -> list[tuple[str, bytes]]:
    import pickle

    class _Touch:
        def __reduce__(self):
            return (open, (marker, "w"))

    py = f"open({marker!r}, 'w').write('pwned')"
    return [
        ("builtins.exec", craft("builtins", "exec", (py,))),
        ("builtins.eval", craft("builtins", "eval", (py,))),
        ("builtins.compile", craft("builtins", "compile", (py, "<m>", "exec"))),
        ("builtins.__import__", craft("builtins", "__import__", ("os",))),
        ("builtins.getattr", craft("builtins", "getattr", ("os", "system"))),
        ("builtins.open", craft("builtins", "open", (marker, "w"))),
        ("builtins.type", craft("builtins", "type", ("X", (), {}))),
        ("os.system", craft("os", "system", (f"touch {marker}",))),
        ("posix.system", craft("posix", "system", (f"touch {marker}",))),
        ("subprocess.Popen", craft("subprocess", "Popen", (["touch", marker],))),
        ("subprocess.check_output", craft("subprocess", "check_output", (["touch", marker],))),
        ("importlib.import_module", craft("importlib", "import_module", ("os",))),
        ("pickle.loads", craft("pickle", "loads", (pickle.dumps(_Touch()),))),
        ("marshal.loads", craft("marshal", "loads", (b"\xe3",))),
        ("numpy.load", craft("numpy", "load", (marker,))),
        ("operator.methodcaller", craft("operator", "methodcaller", ("system", f"touch {marker}"),
                                        loader="OperatorFuncNode")),
        ("os.system as a FunctionTransformer func", function_transformer("os", "system")),
    ]


def test_the_crafted_payload_really_runs_when_skops_is_told_to_trust_it(tmp_path):
    """Control: the exec payload is live. Loaded with skops directly and its type trusted, it writes the
    marker; so the refusals below prove the loader stopped something real."""
    import skops.io as sio

    marker = str(tmp_path / "control")
    sio.loads(craft("builtins", "exec", (f"open({marker!r}, 'w').write('pwned')",)), trusted=["builtins.exec"])
    assert os.path.exists(marker)


@pytest.mark.parametrize("index", range(17))
def test_dangerous_types_are_refused_whatever_the_trusted_list_says(tmp_path, index):
    marker = str(tmp_path / "pwned")
    label, data = _payloads(marker)[index]
    kind = label.split(" ")[0]
    with pytest.raises(UntrustedModelError, match="can run code, import, or reach files and processes") as e:
        load_skops_bytes(data, trusted_types=[kind, label], source=f"<{label}>")
    assert kind in str(e.value) and f"<{label}>" in str(e.value)
    assert not os.path.exists(marker), f"{label}: the payload ran"
    assert is_dangerous(kind)


def test_tampered_champion_with_exec_payload_and_rewritten_hashes_is_refused(reg, store, tmp_path):
    """The reported attack: builtins.exec in model.skops, sha256/bytes rewritten in metadata.json. The
    signature no longer verifies, so nothing of the file is even parsed; with the signature bypassed (an
    attacker who somehow had the key) the type check still refuses it."""
    marker = str(tmp_path / "pwned")
    payload = craft("builtins", "exec", (f"open({marker!r}, 'w').write('pwned')",))
    _rewrite_hashes(store, 1, "model.skops", payload)
    msg = refused(store, lambda: reg.load_model(MODEL, alias="champion"), SignatureMismatchError,
                  "signature does not verify")
    assert f"{MODEL} v1" in msg
    assert reg.verify_version(MODEL, 1)["status"] == "invalid"
    assert not os.path.exists(marker)
    # the same bytes re-signed with the deployment's own key (worst case): still refused by type
    meta_bytes = store.read_bytes(f"registry/{MODEL}/versions/1/metadata.json")
    store.write_bytes(f"registry/{MODEL}/versions/1/signature.json",
                      ArtifactStore.dumps(reg.signer.sign(meta_bytes, "version-metadata")))
    refused(store, lambda: reg.load_model(MODEL, alias="champion"), UntrustedModelError, "builtins.exec")
    assert not os.path.exists(marker)


def test_every_type_of_the_supported_pipelines_is_on_the_explicit_list():
    """No prefix trust: the types skops does not trust by default are each listed by full name."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    _, X = _fit()
    y = (X[:, 0] > 0).astype(int)
    for est in (HistGradientBoostingClassifier(max_iter=5), RandomForestClassifier(n_estimators=3),
                KNeighborsClassifier(n_neighbors=3)):
        untrusted = sio.get_untrusted_types(data=sio.dumps(est.fit(X, y)))
        assert set(untrusted) <= TRUSTED_TYPES, set(untrusted) - TRUSTED_TYPES
    assert not any(t.endswith(".") for t in TRUSTED_TYPES)  # names, not prefixes


def test_a_type_outside_the_list_is_refused_unless_the_model_names_it(reg, store):
    """A class that is not dangerous but not listed (here scipy's sparse matrix inside a model) is refused;
    naming it in trusted_types lets it load."""
    import skops.io as sio
    from scipy import sparse

    data = sio.dumps({"w": sparse.csr_matrix(np.eye(3))})
    with pytest.raises(UntrustedModelError, match="outside the trusted list.*scipy.sparse"):
        load_skops_bytes(data, source="<sparse>")
    listed = [t for t in sio.get_untrusted_types(data=data)]
    assert load_skops_bytes(data, trusted_types=listed)["w"].shape == (3, 3)


# ---- forged and tampered versions (both backends) ------------------------------------------------------
def test_tampered_artifact_without_rewritten_hash_is_refused(reg, store):
    model, _ = _fit(9)
    import skops.io as sio

    store.write_bytes(f"registry/{MODEL}/versions/1/model.skops", sio.dumps(model))
    refused(store, lambda: reg.load_model(MODEL, version=1), IntegrityError, "hash mismatch")


def test_tampered_reference_with_rewritten_hash_is_refused(reg, store):
    import pandas as pd

    sink = io.BytesIO()
    pd.DataFrame({"x": [1.0]}).to_parquet(sink)
    reg.register(MODEL, _fit(5)[0], reference=pd.DataFrame({"x": [0.5, 0.7]}), actor="trainer",
                 require_approval=True)
    _rewrite_hashes(store, 5, "reference.parquet", sink.getvalue())
    refused(store, lambda: reg.load_reference(MODEL, 5), SignatureMismatchError, "signature does not verify")


def test_edited_metadata_is_refused(reg, store):
    """Turning approval.required off (to skip the review) breaks the signature."""
    key = f"registry/{MODEL}/versions/3/metadata.json"
    meta = json.loads(store.read_bytes(key))
    meta["approval"] = {"required": False, "status": "not_required"}
    store.write_bytes(key, ArtifactStore.dumps(meta))
    refused(store, lambda: reg.set_alias(MODEL, "champion", 3, actor="x"), SignatureMismatchError,
            "v3 .*signature does not verify")


def test_removed_signature_is_refused_unless_unsigned_versions_are_allowed(reg, store):
    store.delete([f"registry/{MODEL}/versions/1/signature.json"])
    msg = refused(store, lambda: reg.load_model(MODEL, version=1), UnsignedError, "has no signature")
    assert "cli sign churn --adopt-unsigned" in msg and "allow_unsigned_versions" in msg
    lenient = ModelRegistry(store, allow_unsigned=True)
    model, meta = lenient.load_model(MODEL, version=1)
    assert meta["version"] == 1 and lenient.verify_version(MODEL, 1)["status"] == "unsigned"


def test_signature_forged_with_another_key_is_refused(reg, store):
    """An attacker signs rewritten metadata with a key of their own."""
    attacker = Signer("attacker-chosen-secret-0123456789", source="attacker")
    _rewrite_hashes(store, 1, "model.skops", b"PK not a model")
    meta_bytes = store.read_bytes(f"registry/{MODEL}/versions/1/metadata.json")
    store.write_bytes(f"registry/{MODEL}/versions/1/signature.json",
                      ArtifactStore.dumps(attacker.sign(meta_bytes, "version-metadata")))
    msg = refused(store, lambda: reg.load_model(MODEL, version=1), SignatureMismatchError,
                  f"signed with key {attacker.key_id}, which is not among the keys")
    assert reg.signer.key_id in msg


def test_signature_of_another_version_is_refused(reg, store):
    base = f"registry/{MODEL}/versions"
    store.write_bytes(f"{base}/4/signature.json", store.read_bytes(f"{base}/1/signature.json"))
    refused(store, lambda: reg.get_metadata(MODEL, 4), SignatureMismatchError, "signature does not verify")


def test_a_whole_version_copied_into_another_versions_place_is_refused(reg, store):
    """v2 was rejected; the attacker copies v1's signed files over v4's (never gated) place... and v2's over
    v4 to make the rejected model look new: the signed metadata names its real version."""
    base = f"registry/{MODEL}/versions"
    for rel in ("metadata.json", "signature.json", "model.skops"):
        store.write_bytes(f"{base}/4/{rel}", store.read_bytes(f"{base}/2/{rel}"))
    refused(store, lambda: reg.load_model(MODEL, version=4), SignatureMismatchError,
            "describes churn v2: a version's signed metadata was copied")


def test_malformed_signature_file_is_refused(reg, store):
    store.write_bytes(f"registry/{MODEL}/versions/1/signature.json", b'{"alg": "none"}')
    refused(store, lambda: reg.load_model(MODEL, version=1), SignatureMismatchError, "malformed")


# ---- the state document (aliases, approvals, audit) ------------------------------------------------------
def test_edited_state_pointing_champion_at_the_rejected_version_is_refused(reg, store):
    key = f"registry/{MODEL}/state.json"
    st = json.loads(store.read_bytes(key))
    st["aliases"]["champion"] = 2
    st["approvals"]["2"]["status"] = "approved"
    store.write_bytes(key, ArtifactStore.dumps(st))
    refused(store, lambda: reg.load_model(MODEL, alias="champion"), SignatureMismatchError,
            "registry state of 'churn'.*signature does not verify")


def test_state_without_its_signature_is_refused(reg, store):
    key = f"registry/{MODEL}/state.json"
    st = json.loads(store.read_bytes(key))
    st.pop("_signature")
    store.write_bytes(key, ArtifactStore.dumps(st))
    refused(store, lambda: reg.get_aliases(MODEL), UnsignedError, "registry state of 'churn'.*has no signature")


def test_state_of_another_model_is_refused(reg, store):
    reg.register("other", _fit(7)[0], actor="trainer")
    store.write_bytes("registry/other/state.json", store.read_bytes(f"registry/{MODEL}/state.json"))
    refused(store, lambda: reg.get_aliases("other"), SignatureMismatchError, "registry state of 'other'")


# ---- around the promotion gate -------------------------------------------------------------------------
def test_rollback_to_a_rejected_version_is_refused(reg, store):
    # v2 was champion once, before it was found to leak the target: the history alone does not qualify it
    store_state = json.loads(store.read_bytes(f"registry/{MODEL}/state.json"))
    assert store_state["approvals"]["2"]["status"] == "rejected"
    refused(store, lambda: reg.rollback(MODEL, "champion", 2, actor="oncall", reason="v1 is slow"), PolicyError,
            "never held alias 'champion'")


def two_champions(store: ArtifactStore, require_approval: bool = False) -> ModelRegistry:
    """v1 then v2 champion (approved by a reviewer where approval is required)."""
    r = ModelRegistry(store)
    for v in (1, 2):
        r.register(MODEL, _fit(v)[0], actor="trainer", require_approval=require_approval)
        if require_approval:
            r.approve(MODEL, v, approver="reviewer", reason="ok")
        r.set_alias(MODEL, "champion", v, actor="gate")
    return r


def test_rollback_to_a_former_champion_that_was_rejected_later_is_refused(store):
    r = two_champions(store, require_approval=True)
    r.approve(MODEL, 1, approver="risk", reason="found a leak", status="rejected")
    msg = refused(store, lambda: r.rollback(MODEL, "champion", 1, actor="oncall", reason="v2 is slow"), PolicyError,
                  "cannot point to v1 was rejected")
    assert "risk" in msg and "found a leak" in msg
    refused(store, lambda: r.rollback(MODEL, actor="oncall", reason="v2 is slow"), PolicyError,
            "no earlier version to roll back to that the promotion policy allows")
    assert r.rollback_targets(MODEL) == []


def test_rollback_to_a_retired_former_champion_is_refused(store):
    r = two_champions(store)
    r.set_lifecycle(MODEL, 1, "retired", actor="risk", reason="biased")
    refused(store, lambda: r.rollback(MODEL, "champion", 1, actor="oncall", reason="v2 is slow"), LifecycleError,
            "v1 is retired")


def test_rollback_to_a_never_gated_version_is_refused(reg, store):
    msg = refused(store, lambda: reg.rollback(MODEL, "champion", 4, actor="oncall", reason="try v4"), PolicyError,
                  "churn v4 never held alias 'champion'")
    assert "promotion gate" in msg
    assert reg.rollback_targets(MODEL) == []


def test_rollback_without_a_reason_is_refused(store):
    r = two_champions(store)
    refused(store, lambda: r.rollback(MODEL, actor="oncall"), PolicyError, "needs a reason")
    ev = r.rollback(MODEL, actor="oncall", reason="v2 scores drifted", details={"os_user": "alice"})
    assert (ev["from"], ev["to"], ev["actor"], ev["reason"]) == (2, 1, "oncall", "v2 scores drifted")
    assert ev["details"] == {"os_user": "alice"}


@pytest.mark.parametrize("version,match", [(3, "requires an approval and its approval is 'pending'"),
                                           (2, "was rejected")])
def test_champion_alias_to_an_unapproved_version_is_refused(reg, store, version, match):
    refused(store, lambda: reg.set_alias(MODEL, "champion", version, actor="gate"), PolicyError, match)


def test_self_approval_is_refused(reg, store):
    msg = refused(store, lambda: reg.approve(MODEL, 3, approver="trainer", reason="mine"), ApprovalError,
                  "'trainer' registered churn v3")
    assert "allow_self_approval" in msg


def test_approving_or_rejecting_a_version_that_needs_no_approval_is_refused(store):
    r = ModelRegistry(store)
    r.register(MODEL, _fit()[0], actor="trainer")
    for status in ("approved", "rejected"):
        refused(store, lambda s=status: r.approve(MODEL, 1, approver="reviewer", status=s), ApprovalError,
                "does not require an approval")


def test_rejecting_the_champion_is_refused_and_rejecting_a_challenger_drops_its_alias(reg, store):
    refused(store, lambda: reg.approve(MODEL, 1, approver="risk", status="rejected"), ApprovalError,
            "holds \\['champion'\\]")
    reg.approve(MODEL, 3, approver="risk", reason="unfair", status="rejected")
    assert reg.get_aliases(MODEL) == {"champion": 1}
    assert reg.audit_log(MODEL)[-1]["action"] == "delete_alias"


def test_scoring_refuses_a_champion_that_violates_the_policy(reg, store):
    """A champion left by an older release on a version that was later rejected (state signed on adoption)."""
    st = reg.state(MODEL)
    st["aliases"]["champion"] = 2
    store.write_bytes(f"registry/{MODEL}/state.json", reg._state_bytes(MODEL, st))
    refused(store, lambda: reg.check_serving(MODEL, 2), PolicyError, "churn v2 \\(champion\\) was rejected")
    refused(store, lambda: reg.check_serving(MODEL, 3, role="canary"), PolicyError, "requires an approval")


# ---- keys --------------------------------------------------------------------------------------------
def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "k"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(path, 0o644)
    with pytest.raises(SigningError, match="readable by other users"):
        signer_from_file(str(path))


def test_key_file_inside_the_store_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("AIRFLOW__MLOPS__SIGNING_KEY_FILE", str(root / "key"))
    with pytest.raises(SigningError, match="lies inside the artifact store"):
        ModelRegistry(ArtifactStore(f"file://{root}")).register(MODEL, _fit()[0])
    assert not (root / "registry").exists()


def test_embedded_default_key_is_generated_once_with_mode_0600(tmp_path):
    path = tmp_path / "home" / "mlops-signing.key"
    a = signer_from_file(str(path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert signer_from_file(str(path)).key_id == a.key_id


def test_key_rotation(store, tmp_path):
    """Old key A signed v1; the new key B becomes current with A kept as previous: v1 still loads, `sign`
    re-signs it with B, after which A can be dropped. Without A, a version signed by A is refused."""
    a, b = "key-a-0123456789abcdef0123456789", "key-b-0123456789abcdef0123456789"
    old = ModelRegistry(store, signer=Signer(a))
    old.register(MODEL, _fit()[0], actor="trainer")
    old.set_alias(MODEL, "champion", 1, actor="gate")
    only_b = ModelRegistry(store, signer=Signer(b))
    refused(store, lambda: only_b.load_model(MODEL, version=1), SignatureMismatchError, "not among the keys")
    rotating = ModelRegistry(store, signer=Signer(b, previous=[a]))
    assert rotating.load_model(MODEL, version=1)[1]["version"] == 1
    out = rotating.sign_versions(MODEL, actor="ops", reason="yearly rotation")
    assert out["resigned"] == [1] and out["invalid"] == {} and out["key_id"] == Signer(b).key_id
    assert only_b.load_model(MODEL, alias="champion")[1]["version"] == 1
    assert only_b.verify_version(MODEL, 1) == {"status": "verified", "key_id": Signer(b).key_id,
                                               "detail": f"signed with key {Signer(b).key_id}"}
    assert only_b.audit_log(MODEL)[-1]["action"] == "sign"
    refused(store, lambda: old.get_aliases(MODEL), SignatureMismatchError, "not among the keys")


def test_adopting_unsigned_legacy_versions_checks_their_hashes(store):
    """A store from before signatures: unsigned versions load only when allowed; `sign --adopt-unsigned`
    signs intact ones and refuses a tampered one."""
    r = ModelRegistry(store)
    for seed in range(2):
        r.register(MODEL, _fit(seed)[0], actor="trainer")
    r.set_alias(MODEL, "champion", 1, actor="gate")
    # make it legacy: no signature files, unsigned state
    for v in (1, 2):
        store.delete([f"registry/{MODEL}/versions/{v}/signature.json"])
    st = json.loads(store.read_bytes(f"registry/{MODEL}/state.json"))
    st.pop("_signature")
    store.write_bytes(f"registry/{MODEL}/state.json", ArtifactStore.dumps(st))
    store.write_bytes(f"registry/{MODEL}/versions/2/model.skops", b"tampered")
    refused(store, lambda: r.load_model(MODEL, alias="champion"), UnsignedError, "has no signature")
    out = r.sign_versions(MODEL, actor="ops", reason="adopting the pre-signature store", adopt_unsigned=True)
    assert out["adopted"] == [1] and list(out["invalid"]) == [2] and "sha256" in out["invalid"][2]
    assert r.load_model(MODEL, alias="champion")[1]["version"] == 1
    with pytest.raises(UnsignedError):
        r.load_model(MODEL, version=2)
