"""Reliability catalogue: what goes wrong, what the user is told, and the state afterwards.

Every case is one ``pytest.param`` of :func:`test_case`, with an id ``<area>.<what>[.<path>]``:

* ``data.*``      bad input partitions (validation and scoring paths)
* ``registry.*``  unknown names, tampering, untrusted types, races, killed registrations, approvals
* ``task.*``      killed / retried / repeated task attempts
* ``s3.*``        S3 faults injected by a proxy between the client and the moto server, credentials
* ``config.*``    invalid model configs
* ``security.*``  no row values in logs or error messages

Each case asserts the error message (what was wrong, where, what to do) **and** the state
afterwards (no partial partition, no half version, no duplicate keys, previous output intact).
docs/reliability.md lists the same ids (checked by :func:`test_docs_list_every_case`).
Known product bugs are ``xfail(strict=True)`` with the reason; they turn into failures once fixed,
which is the signal to drop the mark.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
import traceback
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from catalogue_helpers import (
    CONFIG_PATH,
    DS,
    KEY,
    NEXT,
    OWNER,
    PREDICTION_COLUMNS,
    TRAIN_DAYS,
    assert_partition_complete,
    assert_registry_consistent,
    assert_unchanged,
    input_frames,
    no_staging_left,
    small_config,
    snapshot,
)

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.lifecycle import GateFailed, promote_candidate, train_and_register, validate_partition
from airflow_mlops.registry.model_registry import (
    AliasNotFoundError,
    ApprovalError,
    IntegrityError,
    ModelNotFoundError,
    ModelRegistry,
    UntrustedModelError,
    VersionNotFoundError,
)
from airflow_mlops.scoring.batch import score_partition
from airflow_mlops.scoring.schema import SchemaMismatchError
from airflow_mlops.scoring.selection import ModelSelectionError
from airflow_mlops.store.artifacts import ArtifactStore, StorageError
from airflow_mlops.store.datasets import DataError, Dataset

CATALOGUE: list = []


def case(case_id: str, *, xfail: str | None = None) -> Callable:
    """Register a catalogue case; ``xfail``: a known product bug (strict)."""

    def deco(fn: Callable) -> Callable:
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        CATALOGUE.append(pytest.param(fn, id=case_id, marks=marks))
        return fn

    return deco


PRED = "predictions/churn"
PRED_DS = f"{PRED}/ds={DS}"
PRED_NEXT = f"{PRED}/ds={NEXT}"


def _train(cfg, store, ds, **kw):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return train_and_register(cfg, store, ds, **kw)


def _score_next_then_replace_input(ctx, frames) -> dict[str, str]:
    """Score NEXT with good data (the partition a re-run must not damage), then re-deliver the
    input of NEXT as ``frames``. Returns a snapshot of the prediction log."""
    score_partition(ctx.config, ctx.store, NEXT, run_id="scheduled__first")
    ctx.data.write(NEXT, frames)
    return snapshot(ctx.store, PRED)


def _file_uris(ctx, ds) -> list[str]:
    return [ctx.store.uri(k) for k in ctx.data.files(ds)]


# =============================================================================================
# data: bad input partitions
# =============================================================================================
@case("data.missing-column.score")
def _(ctx):
    before = _score_next_then_replace_input(ctx, [f.drop(columns=["contract"]) for f in input_frames(NEXT)])
    with pytest.raises(SchemaMismatchError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert f"input {ctx.data.uri(NEXT)} does not match the feature schema of churn v2" in msg
    for uri in _file_uris(ctx, NEXT):  # every file is named, with the column and the expected dtype
        assert f"contract: expected string, found missing in {uri}" in msg
    assert "nothing was written" in msg
    assert {(d["column"], d["found"]) for d in err.value.differences} == {("contract", "missing")}
    assert_unchanged(ctx.store, before, PRED)  # the earlier partition of NEXT is intact
    assert_partition_complete(ctx.store, PRED_NEXT, 500)
    assert no_staging_left(ctx.store, PRED)


@case("data.missing-column.validate")
def _(ctx):
    ctx.data.write(NEXT, [f.drop(columns=["contract"]) for f in input_frames(NEXT)])
    data_before = snapshot(ctx.store, "data")
    with pytest.raises(GateFailed) as err:
        validate_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    q_uri = ctx.store.uri(f"quarantine/churn/ds={NEXT}")
    assert f"validation of {ctx.data.uri(NEXT)} failed; the whole batch quarantined at {q_uri}" in msg
    assert "expect_table_columns_to_match_set: table: missing columns ['contract']" in msg
    assert f"report: {ctx.store.uri(f'validation/churn/ds={NEXT}/report.html')}" in msg
    # state: the whole batch is quarantined (complete, once), the result is recorded, input untouched
    q = assert_partition_complete(ctx.store, f"quarantine/churn/ds={NEXT}", 500)
    assert ctx.store.read_manifest(f"quarantine/churn/ds={NEXT}")["reason"] == "batch"
    assert sorted(q[KEY]) == sorted(pd.concat(input_frames(NEXT))[KEY])
    assert ctx.store.read_json(f"validation/churn/ds={NEXT}/result.json")["success"] is False
    assert_unchanged(ctx.store, data_before, "data")
    assert not ctx.store.exists(PRED_NEXT + "/_SUCCESS")


@case("data.extra-column.accepted")
def _(ctx):
    frames = [f.assign(coupon_code="A-1", internal_score=np.arange(len(f), dtype="float64"))
              for f in input_frames(NEXT)]
    ctx.data.write(NEXT, frames)
    result = validate_partition(ctx.config, ctx.store, NEXT)
    assert result["success"] is True and result["failed"] == 0 and result["rows"] == 500
    summary = score_partition(ctx.config, ctx.store, NEXT)
    assert summary["rows"] == 500 and summary["version"] == 2
    out = assert_partition_complete(ctx.store, PRED_NEXT, 500, columns=PREDICTION_COLUMNS)
    # the extra columns are ignored: predictions equal the model's on the plain features
    model, meta = ctx.registry.load_model("churn", version=2)
    df = pd.concat(input_frames(NEXT), ignore_index=True)
    expected = pd.Series(model.predict_proba(df[meta["features"]])[:, 1], index=df[KEY])
    got = out.set_index(KEY)["proba_1"]
    np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy())
    assert not ctx.store.exists(f"quarantine/churn/ds={NEXT}")


@case("data.wrong-dtype.score")
def _(ctx):
    frames = [f.assign(monthly_charges=f["monthly_charges"].map(lambda x: f"{x:.2f} EUR")) for f in input_frames(NEXT)]
    before = _score_next_then_replace_input(ctx, frames)
    with pytest.raises(SchemaMismatchError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert "(2 difference(s)); nothing was written" in msg
    for uri in _file_uris(ctx, NEXT):
        assert f"monthly_charges: expected double (numeric), found string (string) in {uri}" in msg
    assert "EUR" not in msg  # the message describes types, never values
    assert_unchanged(ctx.store, before, PRED)
    assert no_staging_left(ctx.store, PRED)


@case("data.wrong-dtype.validate")
def _(ctx):
    frames = [f.assign(tenure_months=f["tenure_months"].astype(str)) for f in input_frames(NEXT)]
    ctx.data.write(NEXT, frames)
    with pytest.raises(GateFailed) as err:
        validate_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert "batch-level failure, whole batch of 500 rows rejected" in msg
    assert re.search(r"expect_column_values_to_be_in_type_list: column 'tenure_months': dtype object is not "
                     r"one of the expected types", msg)
    assert_partition_complete(ctx.store, f"quarantine/churn/ds={NEXT}", 500)
    assert not ctx.store.exists(PRED_NEXT + "/_SUCCESS")


@case("data.all-nan-feature.validate")
def _(ctx):
    ctx.data.write(NEXT, [f.assign(usage_gb=np.nan) for f in input_frames(NEXT)])
    with pytest.raises(GateFailed) as err:
        validate_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert "expect_column_values_to_not_be_null: column 'usage_gb': 100.0% values are null (500 rows" in msg
    # the column's median is missing too (batch-level median check): the whole batch is quarantined
    assert "the whole batch quarantined at" in msg
    assert_partition_complete(ctx.store, f"quarantine/churn/ds={NEXT}", 500)


def _training_median(model, feature: str) -> float:
    numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
    cols = list(model.named_steps["preprocess"].transformers_[0][2])
    return float(numeric.named_steps["impute"].statistics_[cols.index(feature)])


@case("data.all-nan-feature.score")
def _(ctx):
    ctx.data.write(NEXT, [f.assign(usage_gb=np.nan) for f in input_frames(NEXT)])
    summary = score_partition(ctx.config, ctx.store, NEXT)
    assert summary["rows"] == 500
    out = assert_partition_complete(ctx.store, PRED_NEXT, 500, columns=PREDICTION_COLUMNS).set_index(KEY)
    assert out["proba_1"].between(0, 1).all() and out["prediction"].notna().all()
    # behaviour: a missing value is imputed with the training median, so an all-NaN column scores
    # exactly as if every row had the training median
    model, meta = ctx.registry.load_model("churn", version=2)
    df = pd.concat(input_frames(NEXT), ignore_index=True)
    df["usage_gb"] = _training_median(model, "usage_gb")
    expected = model.predict_proba(df[meta["features"]])[:, 1]
    np.testing.assert_allclose(out.loc[df[KEY], "proba_1"].to_numpy(), expected)


@case("data.all-nan-feature.train")
def _(ctx):
    for d in TRAIN_DAYS:
        ctx.data.write(d, churn_day(d, rows=400).assign(usage_gb=np.nan))
    audit_before = len(ctx.registry.audit_log("churn"))
    summary = _train(ctx.config, ctx.store, TRAIN_DAYS[-1])
    # behaviour: training succeeds; the feature is constant after imputation (0 if all missing),
    # it carries no signal and its permutation importance is exactly 0
    assert summary["version"] == 4
    meta = ctx.registry.get_metadata("churn", 4)
    importance = {e["feature"]: e["importance_mean"] for e in meta["feature_importance"]}
    assert importance["usage_gb"] == 0.0
    assert meta["feature_dtypes"]["usage_gb"] == "double"
    assert ctx.registry.load_reference("churn", 4)["usage_gb"].isna().all()
    assert len(ctx.registry.audit_log("churn")) == audit_before + 1
    assert_registry_consistent(ctx.registry, "churn")


@case("data.unseen-category.score")
def _(ctx):
    frames = input_frames(NEXT)
    frames[0].loc[:19, "contract"] = "lifetime"  # never seen in training
    ctx.data.write(NEXT, frames)
    summary = score_partition(ctx.config, ctx.store, NEXT)
    assert summary["rows"] == 500
    out = assert_partition_complete(ctx.store, PRED_NEXT, 500).set_index(KEY)
    unseen = frames[0].loc[:19, KEY]
    assert out.loc[unseen, "proba_1"].between(0, 1).all()
    # the unknown category is encoded as "no known category" (one-hot all zeros), not an error
    model, meta = ctx.registry.load_model("churn", version=2)
    expected = model.predict_proba(frames[0].loc[:19, meta["features"]])[:, 1]
    np.testing.assert_allclose(out.loc[unseen, "proba_1"].to_numpy(), expected)


@case("data.unseen-category.validate")
def _(ctx):
    frames = input_frames(NEXT)
    frames[0].loc[:19, "contract"] = "lifetime"
    ctx.data.write(NEXT, frames)
    with pytest.raises(GateFailed) as err:
        validate_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert ("expect_column_values_to_be_in_set: column 'contract': 4.0% values not in the expected set of "
            "3 values (20 rows; mostly=0.99)") in msg
    assert "lifetime" not in msg
    q = assert_partition_complete(ctx.store, f"quarantine/churn/ds={NEXT}", 20)  # only the failing rows
    assert ctx.store.read_manifest(f"quarantine/churn/ds={NEXT}")["reason"] == "rows"
    assert sorted(q[KEY]) == sorted(frames[0].loc[:19, KEY])


@case("data.empty-partition")
def _(ctx):
    empty = input_frames(NEXT)[0].iloc[:0]
    before = _score_next_then_replace_input(ctx, empty)
    with pytest.raises(DataError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    assert str(err.value) == f"partition {ctx.data.uri(NEXT)} is empty (0 rows in 1 file(s)); nothing written"
    with pytest.raises(GateFailed, match=re.escape(f"partition {ctx.data.uri(NEXT)} is empty (0 rows in 1 file(s))")):
        validate_partition(ctx.config, ctx.store, NEXT)
    assert_unchanged(ctx.store, before, PRED)
    assert_partition_complete(ctx.store, PRED_NEXT, 500)
    assert not ctx.store.exists(f"quarantine/churn/ds={NEXT}")


@case("data.missing-partition")
def _(ctx):
    before = snapshot(ctx.store)
    missing = "2024-02-01"
    uri = ctx.data.uri(missing)
    expected = (f"partition {uri} has no parquet files; expected data for {missing} "
                f"(present partitions: ['2024-01-01', '2024-01-02', '{DS}', '{NEXT}'])")
    with pytest.raises(DataError) as err:
        score_partition(ctx.config, ctx.store, missing)
    assert str(err.value) == expected
    with pytest.raises(GateFailed) as gate:
        validate_partition(ctx.config, ctx.store, missing)
    assert str(gate.value) == expected
    with pytest.raises(DataError, match=re.escape(f"partition {uri} is missing")):
        _train(ctx.config, ctx.store, missing)
    assert_unchanged(ctx.store, before)  # nothing written anywhere, no version claimed


@case("data.corrupt-parquet")
def _(ctx):
    score_partition(ctx.config, ctx.store, NEXT, run_id="scheduled__first")
    before = snapshot(ctx.store, PRED)
    bad_key = ctx.data.files(NEXT)[1]
    good = ctx.store.read_bytes(bad_key)
    ctx.store.write_bytes(bad_key, good[: len(good) // 2])  # truncated delivery
    bad_uri = ctx.store.uri(bad_key)
    with pytest.raises(DataError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert msg.startswith(f"{bad_uri} is not a readable parquet file (")
    assert msg.endswith("re-deliver the file or remove it from the partition")
    with pytest.raises(GateFailed, match=re.escape(f"{bad_uri} is not a readable parquet file")):
        validate_partition(ctx.config, ctx.store, NEXT)
    assert_unchanged(ctx.store, before, PRED)
    assert no_staging_left(ctx.store, PRED)


def _csv_config_with_rows(ctx, ds, rows_text: Callable[[list[str]], list[str]]):
    cfg = dataclasses.replace(ctx.config, data=dataclasses.replace(ctx.config.data, format="csv"))
    lines = churn_day(ds, rows=300).to_csv(index=False).splitlines()
    key = f"data/churn/ds={ds}/delivery.csv"
    ctx.store.write_bytes(key, ("\n".join(rows_text(lines)) + "\n").encode())
    return cfg, key


@case("data.csv-malformed-row")
def _(ctx):
    def malformed(lines):
        lines[150] = lines[150] + ",unexpected"
        return lines

    cfg, key = _csv_config_with_rows(ctx, "2024-01-05", malformed)
    before = snapshot(ctx.store)
    uri = ctx.store.uri(key)
    for call in (lambda: score_partition(cfg, ctx.store, "2024-01-05", batch_size=64),
                 lambda: validate_partition(cfg, ctx.store, "2024-01-05")):
        with pytest.raises((DataError, GateFailed)) as err:
            call()
        msg = str(err.value)
        assert re.match(re.escape(f"{uri} is not a readable csv file (CSV parse error: ") +
                        r"(Row #\d+: )?Expected 8 columns, got 9\)", msg), msg
        assert msg.endswith("re-deliver the file or remove it from the partition")
    assert_unchanged(ctx.store, before)


@case("data.duplicate-keys")
def _(ctx):
    frames = input_frames(NEXT)
    frames[0].loc[1, KEY] = frames[0].loc[0, KEY]
    ctx.data.write(NEXT, frames)
    with pytest.raises(GateFailed) as err:
        validate_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert "customer_id" in msg and "duplicat" in msg
    assert not ctx.store.exists(PRED_NEXT + "/_SUCCESS")


# =============================================================================================
# registry
# =============================================================================================
@case("registry.unknown-model")
def _(ctx):
    before = snapshot(ctx.store)
    cfg = dataclasses.replace(ctx.config, name="churn_v2")
    with pytest.raises(ModelNotFoundError) as err:
        score_partition(cfg, ctx.store, NEXT)
    assert str(err.value) == "model 'churn_v2' is not registered; registered models: ['churn']"
    assert_unchanged(ctx.store, before)


@case("registry.unknown-version")
def _(ctx):
    before = snapshot(ctx.store)
    with pytest.raises(VersionNotFoundError) as err:
        score_partition(ctx.config, ctx.store, NEXT, version=9)
    assert str(err.value) == "model 'churn' has no version 9; versions: [1, 2, 3]"
    assert_unchanged(ctx.store, before)


@case("registry.unknown-alias")
def _(ctx):
    before = snapshot(ctx.store)
    with pytest.raises(AliasNotFoundError) as err:
        score_partition(ctx.config, ctx.store, NEXT, alias="prod")
    assert str(err.value) == "model 'churn' has no alias 'prod'; aliases: {'champion': 2}; versions: [1, 2, 3]"
    assert_unchanged(ctx.store, before)


@case("registry.alias-missing-at-logical-date")
def _(ctx):
    before = snapshot(ctx.store)
    with pytest.raises(ModelSelectionError) as err:
        score_partition(ctx.config, ctx.store, NEXT, as_of_logical_date=True)
    msg = str(err.value)
    assert f"alias 'champion' of model 'churn' pointed to no version at {NEXT}T23:59:59.999999+00:00 " \
           f"(end of logical date {NEXT})" in msg
    assert "set_alias None -> 2 by tests" in msg  # the alias history is listed
    assert "pin a version with version=<n> (or opt in to if_alias_missing='first')" in msg
    assert_unchanged(ctx.store, before)


@case("registry.tampered-artifact")
def _(ctx):
    key = "registry/churn/versions/2/model.skops"
    data = bytearray(ctx.store.read_bytes(key))
    data[len(data) // 2] ^= 0x01
    ctx.store.write_bytes(key, bytes(data))
    before = snapshot(ctx.store)
    recorded = ctx.registry.get_metadata("churn", 2)["artifacts"]["model.skops"]["sha256"]
    with pytest.raises(IntegrityError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    assert msg.startswith(f"hash mismatch for {ctx.store.uri(key)}: metadata.json records sha256 {recorded}, "
                          f"the file has ")
    assert "Re-register the model or roll back to another version" in msg
    assert_unchanged(ctx.store, before)  # nothing scored, nothing "repaired"
    ctx.registry.load_model("churn", version=3)  # the other versions are unaffected


class Untrusted:
    """A type no allow-list knows. Loading it would run ``__setstate__``: it must never be called."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def __setstate__(self, state):  # pragma: no cover - must not run
        open(state["path"], "w").close()
        self.__dict__.update(state)


@case("registry.untrusted-type")
def _(ctx):
    executed = ctx.tmp / "setstate-ran"
    meta = {k: v for k, v in ctx.registry.get_metadata("churn", 2).items() if k not in ("artifacts", "approval")}
    mv = ctx.registry.register("churn", {"estimator": Untrusted(str(executed))}, metadata=meta, actor="someone")
    ctx.registry.set_alias("churn", "champion", mv.version, actor="tests")
    before = snapshot(ctx.store)
    with pytest.raises(UntrustedModelError) as err:
        score_partition(ctx.config, ctx.store, NEXT)
    msg = str(err.value)
    uri = ctx.store.uri(f"registry/churn/versions/{mv.version}/model.skops")
    assert msg.startswith(f"{uri} contains types outside the trusted list: ['{Untrusted.__module__}.Untrusted']")
    assert ("name them (fully qualified) in the model config's estimator.class or estimator.trusted_types; never "
            "load files of unknown origin") in msg
    assert not executed.exists()
    assert_unchanged(ctx.store, before)


@case("registry.promotion-race")
def _(ctx):
    race = ctx.request.getfixturevalue("promotion_race")
    reg = ModelRegistry(race["store"])
    results = race["results"]
    champion = reg.resolve("churn", alias="champion")
    changes = [e for e in reg.audit_log("churn") if e["alias"] == "champion" and e["action"] == "set_alias"]
    # every promotion that reports success is in one consistent chain ending at the final champion
    promoted = [e for e in changes if e["actor"].startswith("trainer-")]
    assert sorted(e["to"] for e in promoted) == sorted(v for v, r in results.items() if r["promote"])
    assert promoted and changes[-len(promoted):] == promoted
    assert [e["from"] for e in promoted] == [1] + [e["to"] for e in promoted[:-1]]  # gap-free chain
    assert changes[-1]["to"] == champion and champion in (2, 3)
    for r in results.values():  # the loser of the race was gated again, against the new champion
        assert r["alias"] == ("champion" if r["promote"] else "challenger")
    assert_registry_consistent(reg, "churn")
    for v in (2, 3):  # each decision is stored once with the version
        decision = json.loads(reg.store.read_bytes(f"registry/churn/versions/{v}/reports/promotion.json"))
        assert decision["promote"] is results[v]["promote"] and decision["decided_by"] == f"trainer-{v}"


@case("registry.promotion-race.gate-sees-replaced-champion")
def _(ctx):
    race = ctx.request.getfixturevalue("promotion_race")
    reg = ModelRegistry(race["store"])
    final = [e for e in reg.audit_log("churn") if e["alias"] == "champion" and e["action"] == "set_alias"][-1]
    assert final["details"]["champion_version"] == final["from"]
    assert reg.resolve("churn", alias="previous_champion") == final["from"]


@case("registry.registration-killed")
def _(ctx):
    root = ctx.store.root
    state_before = ctx.store.read_bytes("registry/churn/state.json")
    marker = ctx.marker("IN_BEFORE_COMMIT")
    child = ctx.child(f"""
        from airflow_mlops.registry.model_registry import ModelRegistry
        from airflow_mlops.store.artifacts import ArtifactStore
        reg = ModelRegistry(ArtifactStore({root!r}))
        model, meta = reg.load_model("churn", version=3)
        def hang(mv):  # e.g. a smoke test: the version is written but not committed
            open({str(marker)!r}, "w").close()
            time.sleep(600)
        reg.register("churn", model, metadata={{"features": meta["features"]}}, actor="killed-trainer",
                     artifacts={{"reports/evaluation.html": b"<html></html>"}},
                     lineage_hashes=["hash-of-killed-run"], before_commit=hang)
    """)
    child.wait_for(marker)
    assert child.kill() == -9
    # the claimed version 4 has its artifacts on disk but no metadata.json: invisible
    assert ctx.store.exists("registry/churn/versions/4/model.skops")
    assert not ctx.store.exists("registry/churn/versions/4/metadata.json")
    assert ctx.registry.list_versions("churn") == [1, 2, 3]
    with pytest.raises(VersionNotFoundError, match=re.escape("model 'churn' has no version 4; versions: [1, 2, 3]")):
        ctx.registry.load_model("churn", version=4)
    assert ctx.store.read_bytes("registry/churn/state.json") == state_before  # no audit entry, no alias
    assert ctx.registry.models_using("hash-of-killed-run") == []
    # the next registration skips the claimed number: no reuse, no overwrite
    model, meta = ctx.registry.load_model("churn", version=3)
    assert ctx.registry.register("churn", model, metadata={"features": meta["features"]}, actor="retry").version == 5
    assert assert_registry_consistent(ctx.registry, "churn") == [1, 2, 3, 5]


@case("registry.approval-required")
def _(ctx):
    cfg = small_config(require_approval=True)
    ctx.registry.set_alias("churn", "champion", 1, actor="tests", reason="weak champion: the candidate beats it")
    summary = _train(cfg, ctx.store, TRAIN_DAYS[-1])
    v = summary["version"]
    assert v == 4 and ctx.registry.approval("churn", v)["status"] == "pending"
    first = promote_candidate(cfg, ctx.store, v)
    assert first["promote"] is False and first["alias"] == "challenger"
    assert first["summary"].startswith("passes the gate but awaits approval (pending)")
    assert ctx.registry.resolve("churn") == 1  # champion unchanged while pending
    ev = ctx.registry.approve("churn", v, approver="reviewer@example.com", reason="checked the report",
                              allow_self_approval=cfg.promotion.allow_self_approval)
    assert (ev["action"], ev["actor"], ev["from"], ev["to"]) == ("approve", "reviewer@example.com", "pending",
                                                                "approved")
    approval = ctx.registry.approval("churn", v)
    assert (approval["status"], approval["by"], approval["reason"]) == ("approved", "reviewer@example.com",
                                                                       "checked the report")
    second = promote_candidate(cfg, ctx.store, v, actor="reviewer@example.com")
    assert second["promote"] is True and ctx.registry.resolve("churn") == v
    assert_registry_consistent(ctx.registry, "churn")


def _register_copy(ctx, source: int, **kw) -> int:
    from airflow_mlops.registry.lifecycle import HOLDOUT_FILE

    model, meta = ctx.registry.load_model("churn", version=source)
    meta = {k: v for k, v in meta.items() if k not in ("artifacts", "approval")}
    holdout = ctx.registry.read_artifact("churn", source, HOLDOUT_FILE)
    return ctx.registry.register("churn", model, metadata=meta, artifacts={HOLDOUT_FILE: holdout}, **kw).version


@case("registry.self-approval-refused")
def _(ctx):
    v = _register_copy(ctx, 3, actor=OWNER, require_approval=True)
    state_before = ctx.store.read_bytes("registry/churn/state.json")
    cfg = small_config(require_approval=True)
    with pytest.raises(ApprovalError) as err:
        ctx.registry.approve("churn", v, approver=OWNER, allow_self_approval=cfg.promotion.allow_self_approval)
    assert str(err.value) == (f"'{OWNER}' registered churn v{v} (triggered the run that trained it) and may not "
                              "approve it; ask another reviewer, or allow it in the model's config "
                              "(promotion.allow_self_approval)")
    assert ctx.store.read_bytes("registry/churn/state.json") == state_before  # nothing recorded
    assert ctx.registry.approval("churn", v)["status"] == "pending"
    allowed = small_config(require_approval=True, allow_self_approval=True)
    ev = ctx.registry.approve("churn", v, approver=OWNER, allow_self_approval=allowed.promotion.allow_self_approval)
    assert (ev["actor"], ev["to"]) == (OWNER, "approved")
    assert ctx.registry.approval("churn", v)["by"] == OWNER
    assert_registry_consistent(ctx.registry, "churn")


# =============================================================================================
# tasks: killed, retried, repeated
# =============================================================================================
@case("task.scoring-killed-mid-write.retried")
def _(ctx):
    old = assert_partition_complete(ctx.store, PRED_DS, 500)
    before = snapshot(ctx.store, PRED)
    marker = ctx.marker("BATCHES_WRITTEN")
    child = ctx.child(f"""
        import airflow_mlops.scoring.batch as scoring
        from airflow_mlops.scoring.io import BackgroundWriter
        from airflow_mlops.store.artifacts import ArtifactStore
        from catalogue_helpers import small_config
        real, n = BackgroundWriter.write, [0]
        def write(self, batch):
            real(self, batch)
            n[0] += 1
            if n[0] == 3:  # three batches of the new attempt are on disk
                open({str(marker)!r}, "w").close()
                time.sleep(600)
        BackgroundWriter.write = write
        scoring.score_partition(small_config(), ArtifactStore({ctx.store.root!r}), {DS!r}, batch_size=64,
                                run_id="killed")
    """)
    child.wait_for(marker)
    assert child.kill() == -9
    # readers still see exactly the previous partition; the killed attempt's files stay in a hidden
    # .staging-* directory that no listing or reader follows
    assert_unchanged(ctx.store, before, PRED)
    assert not no_staging_left(ctx.store, PRED)
    pd.testing.assert_frame_equal(assert_partition_complete(ctx.store, PRED_DS, 500), old)
    assert Dataset(ctx.store, PRED).partitions() == [DS]
    # the retry produces exactly one complete partition
    score_partition(ctx.config, ctx.store, DS, run_id="retry", batch_size=64)
    new = assert_partition_complete(ctx.store, PRED_DS, 500, columns=PREDICTION_COLUMNS)
    assert set(new["run_id"]) == {"retry"}
    assert sorted(new[KEY]) == sorted(old[KEY])
    assert Dataset(ctx.store, PRED).partitions() == [DS]


@case("task.scoring-killed-mid-commit.s3")
def _(ctx):
    store = ctx.s3_store()
    old = assert_partition_complete(store, PRED_DS, 500)
    before = snapshot(store, PRED)
    marker = ctx.marker("FIRST_UPLOAD_DONE")
    child = ctx.child(f"""
        from airflow_mlops.store.artifacts import ArtifactStore
        import airflow_mlops.scoring.batch as scoring
        from catalogue_helpers import small_config
        real = ArtifactStore.upload_file
        def upload_file(self, key, path):
            uri = real(self, key, path)
            open({str(marker)!r}, "w").close()  # one new data file is in the bucket, no manifest yet
            time.sleep(600)
        ArtifactStore.upload_file = upload_file
        scoring.score_partition(small_config(), ArtifactStore({store.root!r}), {DS!r}, run_id="killed")
    """)
    child.wait_for(marker)
    assert child.kill() == -9
    after = snapshot(store, PRED)
    orphans = sorted(set(after) - set(before))
    assert len(orphans) == 1 and "ds=" + DS in orphans[0]  # the killed attempt's upload...
    assert {k: after[k] for k in before} == before  # ...next to the untouched previous partition
    pd.testing.assert_frame_equal(store.read_table(PRED_DS).to_pandas(), old)  # readers follow _SUCCESS
    score_partition(ctx.config, store, DS, run_id="retry")
    new = assert_partition_complete(store, PRED_DS, 500)  # the orphan is gone, one complete partition
    assert set(new["run_id"]) == {"retry"}


@case("task.same-date-scored-twice")
def _(ctx):
    first = score_partition(ctx.config, ctx.store, NEXT, run_id="scheduled__a")
    second = score_partition(ctx.config, ctx.store, NEXT, run_id="scheduled__a")  # a retry / clear
    out = assert_partition_complete(ctx.store, PRED_NEXT, 500)
    assert len(ctx.store.read_manifest(PRED_NEXT)["files"]) == 2  # replaced, not appended
    assert set(out["scored_at"].map(lambda t: t.isoformat())) == {second["scored_at"]} != {first["scored_at"]}
    assert Dataset(ctx.store, PRED).partitions() == [DS, NEXT]
    assert no_staging_left(ctx.store, PRED)


@case("task.same-date-scored-twice.s3")
def _(ctx):
    store = ctx.s3_store()
    score_partition(ctx.config, store, DS, run_id="again")
    out = assert_partition_complete(store, PRED_DS, 500)
    assert set(out["run_id"]) == {"again"}
    assert Dataset(store, PRED).partitions() == [DS]


@case("task.training-retried-after-corrupt-partition")
def _(ctx):
    key = ctx.data.files(TRAIN_DAYS[-1])[0]
    good = ctx.store.read_bytes(key)
    ctx.store.write_bytes(key, b"PAR1" + b"\0" * 64)
    registry_before = snapshot(ctx.store, "registry")
    with pytest.raises(DataError) as err:  # attempt 1
        _train(ctx.config, ctx.store, TRAIN_DAYS[-1])
    assert str(err.value).startswith(f"{ctx.store.uri(key)} is not a readable parquet file (")
    assert str(err.value).endswith("re-deliver the file or remove it from the partition")
    assert_unchanged(ctx.store, registry_before, "registry")  # no version claimed, nothing half-written
    ctx.store.write_bytes(key, good)  # the data team re-delivers
    summary = _train(ctx.config, ctx.store, TRAIN_DAYS[-1])  # attempt 2 (Airflow retry)
    assert summary["version"] == 4
    assert assert_registry_consistent(ctx.registry, "churn") == [1, 2, 3, 4]
    assert [e["version"] for e in ctx.registry.audit_log("churn") if e["action"] == "register"] == [1, 2, 3, 4]
    assert ctx.registry.get_metadata("churn", 4)["training_data"]["partitions"] == TRAIN_DAYS


@case("task.training-skips-corrupt-older-partition")
def _(ctx):
    key = ctx.data.files(TRAIN_DAYS[0])[0]
    ctx.store.write_bytes(key, b"not parquet")
    caplog = ctx.caplog
    summary = _train(ctx.config, ctx.store, TRAIN_DAYS[-1])
    # behaviour: only the window's last (logical-date) partition is required; an unreadable older one
    # is skipped with a warning naming it, and the version records which partitions it used
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("airflow_mlops")]
    expected = f"skipping partition {TRAIN_DAYS[0]}: {ctx.store.uri(key)} is not a readable parquet file"
    assert any(m.startswith(expected) for m in warnings), warnings
    meta = ctx.registry.get_metadata("churn", summary["version"])
    assert meta["training_data"]["fingerprint"]["rows"] == summary["rows"] == 400  # one partition was read
    assert_registry_consistent(ctx.registry, "churn")


@case("task.training-skips-corrupt-older-partition.lineage")
def _(ctx):
    ctx.store.write_bytes(ctx.data.files(TRAIN_DAYS[0])[0], b"not parquet")
    summary = _train(ctx.config, ctx.store, TRAIN_DAYS[-1])
    training_data = ctx.registry.get_metadata("churn", summary["version"])["training_data"]
    assert training_data["partitions"] == [TRAIN_DAYS[-1]]


# =============================================================================================
# s3: faults between the client and the server, connections, credentials
# =============================================================================================
@case("s3.slowdown-retried")
def _(ctx):
    store = ctx.faulty_store()
    ctx.proxy.inject("slowdown", times=2, method="PUT", path_contains="reports/summary.json")
    uri = store.write_json("reports/summary.json", {"ok": True})
    assert uri.endswith("/root/reports/summary.json")
    assert [o for _, _, o in ctx.proxy.requests_for("reports/summary.json", "PUT")] == ["slowdown", "slowdown", "200"]
    assert store.read_json("reports/summary.json") == {"ok": True}
    assert store.list("reports") == ["reports/summary.json"]  # one object, no duplicate


@case("s3.internal-error-retried")
def _(ctx):
    bucket = ctx.new_bucket()
    copy_src = ArtifactStore("file://" + ctx.template)
    store = ctx.faulty_store(bucket)
    for key in copy_src.list("registry/churn"):
        store.write_bytes(key, copy_src.read_bytes(key))
    ctx.proxy.inject("internal", times=4, method="GET", path_contains="versions/2/model.skops")
    model, meta = ModelRegistry(store).load_model("churn")  # champion, hash verified after the retries
    assert meta["version"] == 2 and hasattr(model, "predict_proba")
    outcomes = [o for _, _, o in ctx.proxy.requests_for("versions/2/model.skops", "GET")]
    assert outcomes == ["internal"] * 4 + ["200"]


@case("s3.connection-reset-retried")
def _(ctx):
    store = ctx.faulty_store()
    ctx.proxy.inject("reset", times=2, method="PUT", path_contains="part-00000")
    ctx.proxy.inject("reset", times=2, method="PUT", path_contains="_SUCCESS")
    Dataset(store, "data/churn").write(NEXT, input_frames(NEXT))
    assert_partition_complete(store, f"data/churn/ds={NEXT}", 500)
    # a new partition: the pending placeholder (reset twice, then 200), then the real manifest
    assert [o for _, _, o in ctx.proxy.requests_for("_SUCCESS", "PUT")] == ["reset", "reset", "200", "200"]


@case("s3.persistent-failure")
def _(ctx):
    store = ctx.faulty_store()
    store.write_json("registry/m/state.json", {"v": 1})
    ctx.proxy.inject("internal", times=100, method="PUT", path_contains="state.json")
    with pytest.raises(StorageError) as err:
        store.write_json("registry/m/state.json", {"v": 2})
    msg = str(err.value)
    assert msg.startswith(f"write {store.uri('registry/m/state.json')} failed after 5 attempts: InternalError")
    ctx.proxy.clear()
    assert store.read_json("registry/m/state.json") == {"v": 1}  # old content intact


@case("s3.persistent-failure.attempts-match-message")
def _(ctx):
    store = ctx.faulty_store()
    ctx.proxy.inject("internal", times=100, method="PUT", path_contains="x.json")
    with pytest.raises(StorageError, match=re.escape(f"write {store.uri('x.json')} failed after 5 attempts")):
        store.write_bytes("x.json", b"{}")
    assert len(ctx.proxy.requests_for("x.json", "PUT")) == 5  # 5 attempts in all, as the message says
    ctx.proxy.clear()
    assert not store.exists("x.json")


@case("s3.persistent-upload-failure-is-storage-error")
def _(ctx):
    store = ctx.faulty_store()
    ctx.proxy.inject("internal", times=100, method="PUT", path_contains="part-00001")
    with pytest.raises(StorageError) as err:
        Dataset(store, PRED).write(NEXT, input_frames(NEXT))
    assert re.search(rf"upload s3://\S+/root/{PRED_NEXT}/part-00001-\S+\.parquet failed after 5 attempts",
                     str(err.value))
    ctx.proxy.clear()
    assert store.read_manifest(PRED_NEXT) is None  # never committed


@case("s3.failed-first-commit-leaves-nothing-visible")
def _(ctx):
    store = ctx.faulty_store()
    ctx.proxy.inject("internal", times=100, method="PUT", path_contains="part-00001")
    with pytest.raises(Exception):  # noqa: B017 - see the previous case for the error type
        Dataset(store, PRED).write(NEXT, input_frames(NEXT))
    ctx.proxy.clear()
    assert Dataset(store, PRED).files(NEXT) == []
    with pytest.raises(DataError):
        Dataset(store, PRED).read(NEXT)


@case("s3.lost-response.register")
def _(ctx):
    store = ctx.faulty_store()
    reg = ModelRegistry(store)
    model = ctx.registry.load_model("churn", version=3)[0]
    reg.register("churn", model, actor="a")
    ctx.proxy.inject("lost_response", times=1, method="PUT", path_contains="versions/2/metadata.json")
    try:
        mv = reg.register("churn", model, actor="a")
    except StorageError:
        mv = None
    assert_registry_consistent(reg, "churn")
    assert mv is not None and mv.version == 2


@case("s3.lost-response.alias-update")
def _(ctx):
    store = ctx.faulty_store()
    reg = ModelRegistry(store)
    model = ctx.registry.load_model("churn", version=3)[0]
    reg.register("churn", model, actor="a")
    ctx.proxy.inject("lost_response", times=1, method="PUT", path_contains="churn/state.json")
    reg.set_alias("churn", "champion", 1, actor="a")
    changes = [(e["from"], e["to"]) for e in reg.audit_log("churn") if e["alias"] == "champion"]
    assert changes == [(None, 1)]


@case("s3.unknown-connection")
def _(ctx):
    ctx.no_ambient_aws_credentials()
    bucket = ctx.new_bucket()
    store = ArtifactStore(f"s3://{bucket}/root", conn_id="mlops_typo")
    with pytest.raises(StorageError) as err:
        store.read_json("registry/churn/state.json")
    assert str(err.value) == (
        f"read s3://{bucket}/root/registry/churn/state.json: no AWS credentials. Set them on the Airflow "
        "connection 'mlops_typo' (login = access key id, password = secret access key).")
    assert ctx.moto.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@case("s3.missing-credentials")
def _(ctx):
    ctx.no_ambient_aws_credentials()
    bucket = ctx.new_bucket()
    ctx.define_connection("mlops_nocreds", extra={"endpoint_url": ctx.moto.endpoint, "region_name": "us-east-1"})
    store = ArtifactStore(f"s3://{bucket}/root", conn_id="mlops_nocreds")
    with pytest.raises(StorageError) as err:
        Dataset(store, "data/churn").write(NEXT, input_frames(NEXT))
    msg = str(err.value)
    assert msg == (f"list s3://{bucket}/root/data/churn/ds={NEXT}: no AWS credentials. Set them on the Airflow "
                   "connection 'mlops_nocreds' (login = access key id, password = secret access key).")
    assert ctx.moto.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing written


@case("s3.credentials-never-in-errors-or-logs")
def _(ctx):
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET42"
    caplog = ctx.caplog
    caplog.set_level(logging.DEBUG)  # everything, botocore included
    store = ctx.faulty_store(secret=secret)
    store.write_json("ok.json", {"fine": True})  # a successful request, logged by botocore at DEBUG
    ctx.proxy.inject("internal", times=100, method="PUT", path_contains="bad.json")
    with pytest.raises(StorageError) as err:
        store.write_json("bad.json", {})
    texts = [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    ctx.proxy.clear()
    ctx.proxy.inject("reset", times=100, method="GET", path_contains="ok.json")
    with pytest.raises(StorageError) as err2:
        store.read_json("ok.json")
    texts += [str(err2.value), "".join(traceback.format_exception(err2.value))]
    assert store.uri("bad.json") in texts[0] and store.uri("ok.json") in texts[3]
    records = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any("botocore" in r.name for r in caplog.records)  # the check below saw the DEBUG logs
    for text in texts + records:
        assert secret not in text


# =============================================================================================
# config
# =============================================================================================
def _write_config(ctx, text: str):
    path = ctx.tmp / "model.yaml"
    path.write_text(text)
    return path


def _churn_yaml() -> str:
    return CONFIG_PATH.read_text()


def _config_error(path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_model_config(path)
    e = err.value
    clone = pickle.loads(pickle.dumps(e))  # survives XCom / a subprocess with its attributes
    assert (clone.field, clone.source, clone.line, str(clone)) == (e.field, e.source, e.line, str(e))
    return e


@case("config.malformed-yaml")
def _(ctx):
    lines = _churn_yaml().splitlines()
    n = next(i for i, ln in enumerate(lines) if ln.startswith("features:"))
    lines[n] = "features: [tenure_months, monthly_charges"  # unclosed flow sequence
    lines.insert(n + 1, "task: binary: again")
    path = _write_config(ctx, "\n".join(lines) + "\n")
    e = _config_error(path)
    assert e.field is None and e.source == str(path) and e.line is not None
    assert abs(e.line - (n + 1)) <= 2, (e.line, n + 1)  # where the YAML parser noticed it
    assert str(e).startswith(f"{path}:{e.line}: malformed YAML at line {e.line}, column ")


@case("config.duplicate-key")
def _(ctx):
    text = _churn_yaml().replace("task: binary\n", "task: binary\ntask: regression\n")
    path = _write_config(ctx, text)
    e = _config_error(path)
    line = text.splitlines().index("task: regression") + 1
    assert e.line == line and "found duplicate key 'task'" in str(e)
    assert str(e).startswith(f"{path}:{line}: malformed YAML at line {line}")


@case("config.unknown-field")
def _(ctx):
    path = _write_config(ctx, _churn_yaml().replace("estimator:", "estimatr:"))
    e = _config_error(path)
    assert e.field == "estimatr"
    assert str(e).startswith(f"{path}: estimatr: unknown field 'estimatr' (did you mean 'estimator'?); "
                             "allowed fields: name, owner,")
    path = _write_config(ctx, _churn_yaml().replace("min_improvement:", "min_improvment:"))
    e = _config_error(path)
    assert e.field == "promotion.min_improvment"
    assert "unknown field 'min_improvment' (did you mean 'min_improvement'?)" in str(e)


@case("config.threshold-out-of-range")
def _(ctx):
    cases = {
        "  mostly: 0.99": ("  mostly: 1.5", "validation.mostly", "must be in (0.0, 1.0]; got 1.5"),
        "  floors: {roc_auc: 0.6}": ("  floors: {roc_auc: 1.2}", "metrics.floors.roc_auc",
                                     "must be in [0.0, 1.0]; got 1.2"),
        "  threshold: 0.5": ("  threshold: 0", "drift.threshold", "must be in (0.0, 1.0]; got 0"),
        "  test_size: 0.25": ("  test_size: 0.95", "training.test_size", "must be in (0.0, 0.9); got 0.95"),
        "  min_improvement: 0.0": ("  min_improvement: -0.01", "promotion.min_improvement",
                                   "must be in [0.0, inf]; got -0.01"),
    }
    for original, (bad, field, reason) in cases.items():
        assert original in _churn_yaml(), original
        path = _write_config(ctx, _churn_yaml().replace(original, bad))
        e = _config_error(path)
        assert e.field == field and str(e) == f"{path}: {field}: {reason}", str(e)


# =============================================================================================
# security: no row values in logs or error messages
# =============================================================================================
SENTINEL_TEXT = "SENTINEL_PII_42"
SENTINEL_NUMBER = 987654.321
SENTINEL_FORMS = (SENTINEL_TEXT, "987654", "9.87654", "987 654", "987,654")


def _leaks(text: str) -> list[str]:
    return [s for s in SENTINEL_FORMS if s in text]


@case("security.no-row-values-in-logs")
def _(ctx):
    caplog = ctx.caplog
    frames = input_frames(NEXT)
    frames[0].loc[:9, "region"] = SENTINEL_TEXT
    frames[0].loc[10:19, "monthly_charges"] = SENTINEL_NUMBER  # 2% > the 1% tolerated (mostly=0.99)
    ctx.data.write(NEXT, frames)
    errors = []
    with pytest.raises(GateFailed) as err:  # validation failure (set + range expectations)
        validate_partition(ctx.config, ctx.store, NEXT)
    errors.append(str(err.value))
    assert "column 'region'" in errors[0] and "column 'monthly_charges'" in errors[0]
    summary = _train(ctx.config, ctx.store, NEXT)  # training on the window holding the sentinels
    score_partition(ctx.config, ctx.store, NEXT, version=summary["version"])  # scoring them
    with pytest.raises(SchemaMismatchError) as err:  # a scoring failure on the same rows
        score_partition(ctx.config, ctx.store, NEXT, input_dataset=_sentinel_text_in_numeric(ctx))
    errors.append(str(err.value))
    ours = [r for r in caplog.records if r.name.startswith("airflow_mlops")]
    assert any("validated" in r.getMessage() for r in ours) and any("registered churn" in r.getMessage() for r in ours)
    assert any(r.name == "airflow_mlops.scoring.batch" for r in ours)
    for r in caplog.records:
        text = r.getMessage() + (r.exc_text or "")
        assert not _leaks(text), (r.name, text[:300])
    for text in errors:
        assert not _leaks(text), text
    for key in (f"validation/churn/ds={NEXT}/result.json", f"validation/churn/ds={NEXT}/report.html"):
        assert not _leaks(ctx.store.read_bytes(key).decode()), key


def _sentinel_text_in_numeric(ctx) -> Dataset:
    bad = Dataset(ctx.store, "data/churn_bad")
    frames = input_frames(NEXT)
    frames[0]["monthly_charges"] = SENTINEL_TEXT
    frames[1]["monthly_charges"] = SENTINEL_TEXT
    bad.write(NEXT, frames)
    return bad


@case("security.csv-parse-error-has-no-row-values")
def _(ctx):
    def malformed(lines):
        lines[150] = lines[150] + f",{SENTINEL_TEXT}"
        return lines

    cfg, key = _csv_config_with_rows(ctx, "2024-01-05", malformed)
    before = snapshot(ctx.store)
    caplog = ctx.caplog
    for call in (lambda: score_partition(cfg, ctx.store, "2024-01-05"),
                 lambda: validate_partition(cfg, ctx.store, "2024-01-05"),
                 lambda: _train(cfg, ctx.store, "2024-01-05")):
        with pytest.raises((DataError, GateFailed)) as err:
            call()
        assert re.match(re.escape(f"{ctx.store.uri(key)} is not a readable csv file (CSV parse error: ") +
                        r"(Row #\d+: )?Expected 8 columns, got 9\)", str(err.value)), str(err.value)
        assert not _leaks(str(err.value)), str(err.value)
    for r in caplog.records:
        assert not _leaks(r.getMessage() + (r.exc_text or "")), r.getMessage()[:300]
    assert_unchanged(ctx.store, before)


# =============================================================================================
@pytest.mark.parametrize("case_fn", CATALOGUE)
def test_case(case_fn, ctx):
    case_fn(ctx)


def test_docs_list_every_case():
    """docs/reliability.md has one table row per case id, and no row for a case that does not exist."""
    from catalogue_helpers import REPO

    doc = (REPO / "docs" / "reliability.md").read_text()
    documented = set(re.findall(r"^\|\s*`([a-z0-9.-]+)`\s*\|", doc, flags=re.M))
    ids = {p.id for p in CATALOGUE}
    assert documented == ids, {"undocumented": sorted(ids - documented), "unknown": sorted(documented - ids)}
    assert len(ids) == len(CATALOGUE) >= 24
