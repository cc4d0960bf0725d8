"""The steps of the loop as plain functions over (config, store): what the operators call.

Each step is testable without a scheduler; operators only add Airflow context, XCom and logging.
Logs carry counts, metrics and URIs, never row values.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

from airflow_mlops.config.locations import Locations
from airflow_mlops.registry.core import HOLDOUT_FILE
from airflow_mlops.registry.model_registry import (
    AliasNotFoundError,
    ConcurrentUpdateError,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
)
from airflow_mlops.store.artifacts import ArtifactStore, join
from airflow_mlops.store.datasets import PARTITION_DATE_COLUMN, DataError, Dataset, pop_partition_dates
from airflow_mlops.store.layout import quarantine_prefix, validation_prefix
from airflow_mlops.trust.types import model_trusted_types

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config.model import ModelConfig
    from airflow_mlops.registry.smoke import SmokeProcess
    from airflow_mlops.training.external import ExternalModel
    from airflow_mlops.validation.run import ValidationSummary

log = logging.getLogger(__name__)

SUITE_FILE = "validation_suite.json"


__all__ = ["ApprovalSummary", "ApprovalXCom", "BrokenConstraint", "GateFailed", "HOLDOUT_FILE", "MAX_GATE_ATTEMPTS",
           "PromotionNotice", "PromotionSummary", "RollbackSummary", "SUITE_FILE", "TrainingFairness",
           "TrainingSummary", "champion_or_none", "evaluate_on_holdout", "notify_promotion", "promote_candidate",
           "refresh_cards", "suite_for", "train_and_register", "validate_partition", "write_card"]


class GateFailed(Exception):
    """A quality gate failed (validation, promotion constraints): not retryable."""


# ------------------------------------------------------------------------------------------
# XCom summaries
# ------------------------------------------------------------------------------------------
class TrainingFairness(TypedDict):
    """The fairness gaps in a :class:`TrainingSummary` (the full group metrics are in the version's
    ``metadata["fairness"]``)."""

    metric: str  #: ``fairness.metric``
    gap: float | None  #: between-group gap of ``metric``; None when not computed (a task that is not binary)
    max_gap: float  #: ``fairness.max_gap``
    primary_gap: float | None  #: between-group gap of the primary metric; None with fewer than two groups


class TrainingSummary(TypedDict):
    """What :func:`train_and_register` returns (the XCom of ``TrainModelOperator``): the new version, its
    primary metric against the naive baseline, URIs and the smoke test's resource profile."""

    model: str
    version: int
    uri: str  #: the version's directory
    primary_metric: str
    holdout: dict[str, float | None]  #: ``{primary_metric: value}`` on the holdout
    baseline: dict[str, float | None]  #: ``{primary_metric: value}`` of the naive baseline, same holdout
    rows: int  #: training rows (the whole window, or the segment's rows)
    fingerprint: str  #: content hash of the training rows
    evaluation_report: str  #: URI of ``reports/evaluation.html``
    model_card: str | None  #: URI of the model card; None when it could not be written
    #: ``latency_ms_per_10k_rows``, ``model_size_mb``, ``peak_rss_mb`` of the smoke test (None when not measured)
    profile: dict[str, float | None]
    fairness: NotRequired[TrainingFairness]  #: with ``sensitive_features`` only
    mlflow_run_id: NotRequired[str]  #: with an MLflow tracking server configured (``[mlops] mlflow_conn_id``)


class BrokenConstraint(TypedDict):
    """A constraint the candidate broke, in a :class:`PromotionSummary` (``broken_checks``)."""

    #: ``floor``, ``ceiling``, ``fairness``, ``beats_champion``, ``beats_baseline`` or ``primary_metric``
    constraint: str
    metric: str
    value: float | None  #: None when the candidate has no value for the metric
    limit: float | None
    violation: str  #: :meth:`~airflow_mlops.registry.gate.Check.violation`


class PromotionSummary(TypedDict):
    """What :func:`promote_candidate` returns (the XCom of ``PromoteModelOperator``): the gate's decision and
    the alias the candidate got.

    A candidate that already is the champion is not gated again: ``{"model", "version", "promote": True,
    "summary": "already champion", "alias": "champion"}``, without the other keys.
    """

    model: str
    version: int
    promote: bool  #: the candidate became ``champion``
    alias: Literal["champion", "challenger"]
    summary: str  #: the decision and its reasons, as text
    champion_version: NotRequired[int | None]  #: the champion it was compared with; None for the first one
    #: each broken constraint (not the champion comparison) as ``"<metric> <value> > ceiling <limit>"``
    broken: NotRequired[list[str]]
    broken_checks: NotRequired[list[BrokenConstraint]]  #: every broken check, the champion comparison included
    awaiting_approval: NotRequired[bool]  #: passed the gate, kept as challenger until approved
    primary_metric: NotRequired[str]
    candidate_score: NotRequired[float | None]  #: the primary metric of the candidate on its holdout
    champion_score: NotRequired[float | None]  #: the champion's on the same holdout; None without a champion
    model_card: NotRequired[str | None]  #: URI of the candidate's re-rendered model card


class PromotionNotice(TypedDict):
    """What :func:`notify_promotion` returns (the XCom of ``NotifyPromotionOperator``).

    For a segment's model the operator adds ``segment``; for a skipped segment it sends nothing and returns
    ``{"segment", "check": None, "sent": False, "skipped"}`` (the keys marked not required below, and no
    ``message``).
    """

    check: str | None  #: ``gate``, ``fairness`` or ``promotion``; None for a skipped segment
    sent: bool  #: delivered now (False when already sent for this model, check and date, or not sent)
    message: NotRequired[str]
    segment: NotRequired[str]  #: segmented models only
    skipped: NotRequired[str]  #: why the segment was not trained (skipped segments only)


class ApprovalSummary(TypedDict):
    """The XCom of ``ApproveModelOperator``: the decision recorded, and then either the promotion gate's
    result (``promotion``, approved with ``promote=True``) or the re-rendered model card (``model_card``)."""

    model: str
    version: int
    approval: str  #: ``approved`` or ``rejected``
    by: str  #: the approver
    promotion: NotRequired[PromotionSummary]
    model_card: NotRequired[str | None]  #: URI of the model card; None when it could not be written


_RollbackKeywordKeys = TypedDict("_RollbackKeywordKeys", {"from": int | None})  # "from" is a keyword


class RollbackSummary(_RollbackKeywordKeys):
    """The XCom of ``RollbackModelOperator``: ``{"model", "alias", "from", "to", "model_cards"}``; ``from`` is
    the version that held the alias (None when none did)."""

    model: str
    alias: str
    to: int  #: the version the alias points to now
    model_cards: dict[str, str | None]  #: ``{version: card URI}`` of both versions (None: not written)


class ApprovalXCom(TypedDict):
    """The XCom of ``ModelApprovalSensor`` once the version may serve: the model, the version and its
    approval record (:meth:`~airflow_mlops.registry.model_registry.ModelRegistry.approval`)."""

    model: str
    version: int
    status: Literal["approved", "not_required"]
    #: the model's ``promotion.require_approval`` when the version was registered (absent in old records)
    required: NotRequired[bool]
    by: NotRequired[str]  #: who approved (``approved`` only)
    at: NotRequired[str]  #: when, ISO 8601 UTC (``approved`` only)
    reason: NotRequired[str]  #: (``approved`` only)


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def champion_or_none(registry: ModelRegistry, name: str, alias: str = "champion") -> int | None:
    try:
        return registry.resolve(name, alias=alias)
    except (ModelNotFoundError, AliasNotFoundError):
        return None


def suite_for(config: ModelConfig, registry: ModelRegistry, *, with_target: bool) -> dict[str, Any] | None:
    """The validation suite of a model's input: from the config's file, or inferred from the
    champion's stored suite/reference; before any champion exists, a structural suite (columns
    present, at least one row)."""
    from airflow_mlops.validation.infer import infer_suite
    from airflow_mlops.validation.suites import load_suite_spec

    spec = config.validation.suite
    if spec is None:
        return None
    if spec != "infer":
        path = config.validation_suite_path()
        assert path is not None  # the suite is neither null nor "infer": a file path
        return load_suite_spec(path)
    required = [*config.keys, *(config.features or [])] + ([config.target] if with_target else [])
    keys = list(config.keys)
    unique_keys = ({"type": "expect_column_values_to_be_unique", "kwargs": {"column": keys[0]},
                    "meta": {"notes": "duplicate keys"}} if len(keys) == 1 else
                   {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": keys},
                    "meta": {"notes": "duplicate keys"}})
    champion = champion_or_none(registry, config.name)
    if champion is None:
        return {"name": f"{config.name}_bootstrap", "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            {"type": "expect_table_columns_to_match_set",
             "kwargs": {"column_set": sorted(set(required)), "exact_match": False}},
            unique_keys,
        ], "meta": {"inferred_from": "config (no champion yet)"}}
    meta = registry.get_metadata(config.name, champion)
    reference = registry.load_reference(config.name, champion)
    features = list(meta.get("features") or [])
    suite = infer_suite(reference[features], columns=features,
                          categorical=list(meta.get("categorical_features") or []),
                          mostly=config.validation.mostly, name=f"{config.name}_v{champion}_inferred")
    suite.setdefault("meta", {})["inferred_from"] = f"{config.name} v{champion} reference"
    if with_target:
        suite["expectations"].append({"type": "expect_column_to_exist", "kwargs": {"column": config.target}})
    for k in config.keys:
        suite["expectations"].append({"type": "expect_column_to_exist", "kwargs": {"column": k}})
    suite["expectations"].append(unique_keys)
    return suite


def validate_partition(config: ModelConfig, store: ArtifactStore, ds: str, *, with_target: bool = True,
                       dataset: Dataset | None = None) -> ValidationSummary:
    """Validate one input partition. Writes ``validation/<model>/ds=<ds>/result.json`` and
    ``report.html``; on failure writes the failing rows (or the whole batch) under
    ``quarantine/<dataset>/ds=<ds>/`` and raises :class:`GateFailed`. On success, that date's quarantine
    partition left by an earlier failed run is removed (``quarantine_removed`` in the summary; other dates
    are untouched). Returns a small summary."""
    from airflow_mlops.validation.run import summarize_failures, validate_dataframe

    registry = ModelRegistry(store)
    dataset = dataset or Locations(config, store).input
    try:
        df = dataset.read(ds)
    except DataError as e:
        raise GateFailed(str(e)) from None
    suite = suite_for(config, registry, with_target=with_target)
    out_prefix = validation_prefix(config.name, ds)
    if suite is None:
        return {"success": True, "skipped": True, "rows": int(len(df))}
    outcome = validate_dataframe(df, suite, name=f"{config.name}:{ds}")
    result = dict(outcome.result_json)
    result.update({"dataset_uri": dataset.uri(ds), "rows": int(len(df))})
    result_uri = store.write_json(join(out_prefix, "result.json"), result)
    report_uri = store.write_bytes(join(out_prefix, "report.html"), outcome.to_html().encode())
    summary: ValidationSummary = {
        "success": bool(outcome.success), "rows": int(len(df)), "evaluated": outcome.evaluated,
        "failed": len(outcome.failed), "result_uri": result_uri, "report_uri": report_uri,
        "suite": suite.get("name")}
    log.info("validated %s: %d rows, %d/%d expectations passed", dataset.uri(ds), len(df),
             outcome.successful, outcome.evaluated)
    qds = Dataset(store, quarantine_prefix(config.data.dataset))
    if outcome.success:
        removed = _clear_quarantine(qds, ds)
        if removed:
            summary["quarantine_removed"] = removed
        return summary
    _, quarantined = outcome.split(df)
    qds.write(ds, quarantined.reset_index(drop=True), reason="batch" if outcome.batch_level_failure else "rows",
              failed_expectations=[f["expectation_type"] for f in outcome.failed], report_uri=report_uri)
    scope = "the whole batch" if outcome.batch_level_failure else f"{len(quarantined)} failing row(s)"
    raise GateFailed(
        f"validation of {dataset.uri(ds)} failed; {scope} quarantined at {qds.uri(ds)}.\n"
        f"{summarize_failures(outcome)}\nreport: {report_uri}"
    )


def _clear_quarantine(qds: Dataset, ds: str) -> str | None:
    """Remove the quarantine partition of ``ds`` left by an earlier failed validation of the same date
    (only that date's ``ds=<ds>/`` prefix). Its ``_SUCCESS`` manifest is first replaced by a pending one,
    so readers see the partition as absent at once (one write), then the prefix is deleted (a rename on
    a local store). Returns the removed partition's URI, or ``None`` when there was none."""
    from airflow_mlops.store.artifacts import SUCCESS_MANIFEST

    key = qds.key(ds)
    if not qds.store.list(key):
        return None
    qds.store.write_bytes(join(key, SUCCESS_MANIFEST), ArtifactStore.dumps(
        {"files": [], "rows": 0, "pending": True, "removing": "validation of the date passed"}))
    qds.store.delete_prefix(key)
    log.info("validation of %s passed: removed its quarantine partition %s from an earlier failed run",
             ds, qds.uri(ds))
    return qds.uri(ds)


# ------------------------------------------------------------------------------------------
# training + registration
# ------------------------------------------------------------------------------------------
def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, compression="zstd")
    data: bytes = sink.getvalue().to_pybytes()
    return data


def train_and_register(config: ModelConfig, store: ArtifactStore, ds: str, run_info: dict[str, Any] | None = None,
                       *, actor: str | None = None, segment: tuple[str, Any] | None = None,
                       smoke: SmokeProcess | None = None) -> TrainingSummary:
    """Train on the window of partitions ending at ``ds`` and register a new version.

    The version carries the model, the drift reference, the holdout (with the training-time
    predictions and probabilities, for the promotion gate and reproducibility checks), the evaluation
    report and the full metadata of the registry contract. Before the version is committed, the staged
    model is loaded in a fresh process and must reproduce those predictions (:mod:`airflow_mlops.registry.smoke`;
    its resource profile goes to ``metadata["profile"]``; a mismatch raises
    :class:`~airflow_mlops.registry.smoke.SmokeTestError` and no version becomes visible). With
    ``sensitive_features``, group fairness on the holdout goes to ``metadata["fairness"]``. A model card
    is written to ``reports/model_card.{md,html}``. Returns a small summary for XCom.

    ``segment=(column, value)`` trains on the window's rows whose ``column`` equals ``value`` (compared
    as text; see :mod:`airflow_mlops.segments.flows`); the metadata's ``training_data.segment`` records it.

    ``smoke``: a :class:`~airflow_mlops.registry.smoke.SmokeProcess` the caller started earlier (so the fresh
    interpreter's imports overlap the caller's own, e.g. while it parses the config); the caller closes
    it. Default: one started here.
    """
    from contextlib import nullcontext

    from airflow_mlops.registry.smoke import SmokeProcess
    from airflow_mlops.store.fingerprint import fingerprint_table

    registry = ModelRegistry(store)
    dataset = Locations(config, store).input
    time_split = config.training.split == "time"  # the holdout is the last days: each row's date is needed
    df, dates = dataset.read_window(ds, config.data.training_window_days,
                                    partition_column=PARTITION_DATE_COLUMN if time_split else None)
    if segment is not None:
        from airflow_mlops.config.segments import segment_rows

        df = segment_rows(df, *segment)
    df, row_dates = pop_partition_dates(df)
    fingerprint = fingerprint_table(df, keys=list(config.keys))
    log.info("training %s on %d rows from %d partition(s) of %s", config.name, len(df), len(dates), dataset.uri())
    # the caller's process, or a fresh interpreter started now that imports the scoring libraries while we train
    with nullcontext(smoke) if smoke is not None else SmokeProcess() as process:
        return _train_and_register(config, store, ds, run_info, actor, segment, registry, dataset, df, dates,
                                   fingerprint, process, row_dates)


def _train_and_register(config: ModelConfig, store: ArtifactStore, ds: str, run_info: dict[str, Any] | None,
                        actor: str | None, segment: tuple[str, Any] | None, registry: ModelRegistry,
                        dataset: Dataset, df: Any, dates: list[str], fingerprint: dict[str, Any],
                        smoke: Any, row_dates: Any = None, external: ExternalModel | None = None) -> TrainingSummary:
    """Train (or, with ``external``, take the model fitted elsewhere and evaluate it the same way), then
    register it behind the smoke test; the card and the MLflow run follow."""
    from airflow_mlops.registry.smoke import smoke_check, training_columns
    from airflow_mlops.reports import html as reports
    from airflow_mlops.training.fairness import evaluate_fairness
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.training.trainer import compute_importance, library_versions, train_model

    # importance is computed while the smoke test runs
    if external is None:
        result = train_model(config, df, importance=False, row_dates=row_dates)
    else:
        from airflow_mlops.training.external import evaluate_fitted

        result = evaluate_fitted(config, df, external.model, source=external.origin["uri"], row_dates=row_dates)
    holdout = result.holdout.reset_index(drop=True).copy()
    for col, values in training_columns(result.holdout_predictions, result.holdout_proba, result.classes).items():
        holdout[col] = values
    fairness = evaluate_fairness(config, holdout, holdout[config.target].to_numpy(), result.holdout_predictions,
                                 result.holdout_proba, result.classes)
    meta: dict[str, Any] = {
        "owner": config.owner, "description": config.description,
        "intended_use": config.intended_use, "limitations": config.limitations,
        **(run_info or {}),
        "training_data": {"uri": dataset.uri(), "partitions": dates, "window_end": ds,
                          "fingerprint": fingerprint,
                          # SQL data: the connection id, the table and date column or the query text (no credentials)
                          **({"sql": dataset.describe()} if dataset.fmt == "sql" else {}),  # type: ignore[attr-defined]
                          **({"segment": {"column": segment[0], "value": str(segment[1])}} if segment else {})},
        **result.summary(),
        "libraries": library_versions(),
        "config": config.to_dict(),
    }
    if fairness is not None:
        meta["fairness"] = fairness
        log.info("fairness of %s on %d holdout rows over %s: %s = %s (max_gap %s)", config.name, fairness["rows"],
                 fairness["sensitive_features"], fairness["metric"], fairness.get("gap"), fairness["max_gap"])
    meta.pop("source", None)
    if external is not None:  # where the model came from (no credentials): the card and the MLflow run show it
        meta["origin"] = dict(external.origin)
    artifacts = {HOLDOUT_FILE: _parquet_bytes(holdout)}

    def while_smoke_test_runs(mv: Any) -> dict[str, bytes]:
        # what the fresh scoring process does not need: permutation importance and the evaluation report.
        # One native thread here: the child scores with its own threads at the same time, and two
        # OpenMP pools spinning on the same cores slow each other down by an order of magnitude
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            compute_importance(result)
        mv.metadata["feature_importance"] = result.feature_importance  # plain str/float rows
        mv.metadata["importance_metric"] = result.importance_metric
        report = reports.evaluation_html({**mv.metadata, "name": config.name, "version": mv.version})
        return {"reports/evaluation.html": report.encode()}

    # the configured estimator class (with its library's helper types) and the config's estimator.trusted_types
    # are named by the config's author: trusted for this model only, recorded in its signed metadata (loads
    # trust them from there; sklearn helper types and the pipeline helpers are on the explicit list anyway)
    own = model_trusted_types(_qualified_class(config.estimator.class_path),
                              [*config.estimator.trusted_types, *(external.trusted_types if external else ())])
    meta["trusted_types"] = own
    trusted = [*PIPELINE_CUSTOM_TYPES, *own]
    check = smoke_check(store, features=result.features, task=result.task, classes=result.classes,
                        trusted_types=trusted, process=smoke, while_running=while_smoke_test_runs)
    mv = registry.register(
        config.name, result.pipeline, metadata=meta, artifacts=artifacts, reference=result.reference,
        actor=actor or _acting(run_info),
        reason=(f"trained by {meta.get('dag_id', 'a script')} for {ds}" if external is None else
                f"{external.origin['uri']} registered by {meta.get('dag_id', 'a script')}, evaluated for {ds}"),
        require_approval=config.promotion.require_approval, lineage_hashes=[fingerprint["content_hash"]],
        before_commit=check,
    )
    card = write_card(registry, config.name, mv.version)
    from airflow_mlops.registry.mirror import track_version

    mlflow_run = track_version(registry, config.name, mv, result.pipeline, trusted, holdout[result.features].head(5),
                               result.holdout_predictions[:5])
    primary = result.primary_metric
    profile = mv.metadata.get("profile") or {}
    summary: TrainingSummary = {
        "model": config.name, "version": mv.version, "uri": mv.uri, "primary_metric": primary,
        "holdout": {primary: result.metrics["holdout"].get(primary)},
        "baseline": {primary: result.metrics["baseline"].get(primary)},
        "rows": int(len(df)), "fingerprint": fingerprint["content_hash"],
        "evaluation_report": registry.version_uri(config.name, mv.version, "reports/evaluation.html"),
        "model_card": card.get("model_card"),
        "profile": {k: profile.get(k) for k in ("latency_ms_per_10k_rows", "model_size_mb", "peak_rss_mb")}}
    if mlflow_run is not None:
        summary["mlflow_run_id"] = mlflow_run
    if fairness is not None:
        summary["fairness"] = {"metric": fairness["metric"], "gap": fairness.get("gap"),
                               "max_gap": fairness["max_gap"], "primary_gap": fairness.get("primary_gap")}
    log.info("registered %s v%d: holdout %s=%s (baseline %s)", config.name, mv.version, primary,
             summary["holdout"][primary], summary["baseline"][primary])
    return summary


def _acting(run_info: dict[str, Any] | None) -> str:
    """Who a pipeline step acts as: the Dag run's identity (``triggered_by``), else the OS user."""
    from airflow_mlops.registry.model_registry import default_actor

    return str((run_info or {}).get("triggered_by") or default_actor())


def _qualified_class(class_path: str) -> str:
    """``module.Class`` as skops names it (the defining module, e.g. ``xgboost.sklearn.XGBClassifier``)."""
    import importlib

    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return class_path
    return f"{cls.__module__}.{cls.__qualname__}"


def write_card(registry: ModelRegistry, name: str, version: int,
                decision: dict[str, Any] | None = None) -> dict[str, str]:
    """(Re)write the version's model card; a failure is logged, never fatal (the version is committed)."""
    from airflow_mlops.registry.model_card import write_model_card

    try:
        return write_model_card(registry, name, version, decision)
    except Exception:  # the card is a derived view: never fail a committed registration/decision on it
        log.exception("could not write the model card of %s v%d", name, version)
        return {}


def refresh_cards(registry: ModelRegistry, name: str, versions: Any) -> dict[int, str | None]:
    """Re-render the model cards of ``versions`` (e.g. both sides of a rollback: the versions whose
    aliases changed), so no card keeps stating an alias it lost. ``None`` entries are skipped; a failure
    is logged, never raised (the alias change is committed). Returns ``{version: card uri or None}``."""
    out: dict[int, str | None] = {}
    for v in dict.fromkeys(int(v) for v in (versions or ()) if v is not None):
        out[v] = write_card(registry, name, v).get("model_card")
    if out:
        log.info("re-rendered the model card(s) of %s %s", name, ", ".join(f"v{v}" for v in out))
    return out


# ------------------------------------------------------------------------------------------
# promotion
# ------------------------------------------------------------------------------------------
def evaluate_on_holdout(registry: ModelRegistry, name: str, version: int, holdout: pd.DataFrame) -> dict[str, float]:
    """Metrics of ``version`` on a given holdout (features + target)."""
    from airflow_mlops.evaluation.metrics import compute_metrics
    from airflow_mlops.training.predict import predict_frame

    model, meta = registry.load_model(name, version=version, allow_retired=True)
    features, target, task = meta["features"], meta["target"], meta["task"]
    missing = [c for c in [*features, target] if c not in holdout.columns]
    if missing:
        raise DataError(f"holdout lacks columns {missing} needed by {name} v{version}")
    classes = meta.get("classes")
    pred = predict_frame(model, holdout, features, task, classes)
    proba = pred[[f"proba_{c}" for c in classes]].to_numpy() if classes else None
    return compute_metrics(task, holdout[target].to_numpy(), pred["prediction"].to_numpy(), proba, classes)


MAX_GATE_ATTEMPTS = 5


def _gate(config: ModelConfig, registry: ModelRegistry, meta: dict[str, Any], version: int, champion_v: int | None,
          actor: str, run_info: dict[str, Any] | None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """One run of the champion/challenger gate: (decision dict, Decision, audit details)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.registry.gate import constraint_values, decide

    name = config.name
    primary = meta.get("primary_metric") or config.metrics.primary
    candidate = dict(meta["metrics"]["holdout"])
    champion_metrics = None
    if champion_v is not None:
        holdout = pq.read_table(pa.BufferReader(registry.read_artifact(name, version, HOLDOUT_FILE))).to_pandas()
        try:
            champion_metrics = evaluate_on_holdout(registry, name, champion_v, holdout)
        except DataError as e:
            log.warning("champion v%s cannot score the candidate's holdout (%s); using its recorded metrics",
                        champion_v, e)
            champion_metrics = registry.get_metadata(name, champion_v)["metrics"]["holdout"]
    fcfg = config.fairness
    decision = decide(primary, candidate, champion_metrics, champion_version=champion_v,
                      min_improvement=config.promotion.min_improvement,
                      floors=dict(config.metrics.floors), ceilings=dict(config.metrics.ceilings),
                      constraint_values=constraint_values(meta), fairness=meta.get("fairness"),
                      max_gap=fcfg.max_gap if fcfg else None,
                      max_primary_gap=fcfg.max_primary_gap if fcfg else None,
                      baseline=(meta.get("metrics") or {}).get("baseline"))
    d = decision.to_dict()
    d.update({"model": name, "version": version, "decided_by": actor, **(run_info or {})})
    approval = registry.approval(name, version)
    if decision.promote and approval.get("required") and approval.get("status") != "approved":
        d["promote"] = False
        d["awaiting_approval"] = True
        d["summary"] = f"passes the gate but awaits approval ({approval.get('status')}): " + decision.summary()
    details: dict[str, Any]  # mixed values: the "decision" entry is filled in below
    details = {"primary_metric": primary, "candidate": {primary: candidate.get(primary)},
               "champion": {primary: (champion_metrics or {}).get(primary)}, "champion_version": champion_v,
               "broken": [{"constraint": c.constraint, "metric": c.metric, "value": c.value, "limit": c.limit,
                           "violation": c.violation()} for c in decision.broken],
               "decision": {k: d.get(k) for k in ("promote", "summary", "reasons", "checks", "violations",
                                                  "champion_version", "decided_by", "awaiting_approval")}}
    details["decision"]["alias"] = "champion" if d["promote"] else "challenger"
    return d, decision, details


def promote_candidate(config: ModelConfig, store: ArtifactStore, version: int, *, actor: str | None = None,
                      run_info: dict[str, Any] | None = None) -> PromotionSummary:
    """Run the champion/challenger gate for ``version`` and move the aliases accordingly.

    The champion is re-scored on the candidate's holdout so both are compared on the same rows.
    Promoted: ``champion`` -> version (the previous champion keeps alias ``previous_champion``).
    Rejected (or awaiting approval): ``challenger`` -> version. The decision, with its reasons and
    metrics, is stored as ``reports/promotion.json``/``.html`` of the version and in the audit log.
    """
    from airflow_mlops.reports import html as reports

    registry = ModelRegistry(store)
    name = config.name
    actor = actor or _acting(run_info)
    meta = registry.get_metadata(name, version)
    effective = (run_info or {}).get("logical_date")  # backfills see the model production had that day
    # The champion may change while the gate runs (another promotion). The champion alias moves only by
    # compare-and-swap from the champion the gate compared with; on a conflict the gate runs again
    # against the new champion, so no promotion replaces a champion it was never compared with.
    for attempt in range(1, MAX_GATE_ATTEMPTS + 1):
        champion_v = champion_or_none(registry, name)
        if champion_v == version:
            return {"model": name, "version": version, "promote": True, "summary": "already champion",
                    "alias": "champion"}
        d, decision, details = _gate(config, registry, meta, version, champion_v, actor, run_info)
        if not d["promote"]:
            registry.set_alias(name, "challenger", version, actor=actor, reason=d["summary"], details=details,
                               effective_at=effective)
            d["alias"] = "challenger"
            break
        try:
            registry.set_alias(name, "champion", version, actor=actor, reason=d["summary"], details=details,
                               effective_at=effective, expected=champion_v)
        except ConcurrentUpdateError as e:
            log.warning("%s v%d: the champion changed while the gate ran (%s); re-running the gate (attempt %d/%d)",
                        name, version, e, attempt + 1, MAX_GATE_ATTEMPTS)
            continue
        if champion_v is not None:
            registry.set_alias(name, "previous_champion", champion_v, actor=actor,
                               reason=f"replaced by v{version}", details=details, effective_at=effective)
        d["alias"] = "champion"
        break
    else:
        raise RegistryError(f"{name} v{version}: the champion changed {MAX_GATE_ATTEMPTS} times while the "
                            f"promotion gate ran; nothing was changed. Retry the task once concurrent "
                            f"promotions of {name} have finished.")
    try:
        registry.add_report(name, version, "promotion.json", ArtifactStore.dumps(d))
        registry.add_report(name, version, "promotion.html", reports.decision_html(name, version, d).encode())
    except RegistryError:  # a retried task: the first decision report stays, the audit log has both
        log.info("promotion report of %s v%d exists; kept the first one", name, version)
    from airflow_mlops.registry.mirror import record_decision

    record_decision(registry, name, version, details["decision"])
    card = write_card(registry, name, version)
    if d["promote"] and champion_v is not None:
        write_card(registry, name, champion_v)  # its aliases changed
    log.info("%s v%d -> %s: %s", name, version, d["alias"], d["summary"])
    out = cast("PromotionSummary",
               {k: d[k] for k in ("model", "version", "promote", "alias", "summary", "champion_version")})
    out["broken"] = list(decision.violations)
    out["broken_checks"] = details["broken"]
    out["awaiting_approval"] = bool(d.get("awaiting_approval"))
    out["primary_metric"] = details["primary_metric"]
    out["candidate_score"] = details["candidate"][details["primary_metric"]]
    out["champion_score"] = details["champion"][details["primary_metric"]]
    out["model_card"] = card.get("model_card")
    return out


def notify_promotion(config: ModelConfig, store: ArtifactStore, result: dict[str, Any], ds: str, *,
                     context: Any = None) -> PromotionNotice:
    """Tell the model's owner what the promotion gate decided (the training DAG's ``notify`` step).

    * a broken constraint (floor, ceiling, profile limit) -> a ``gate`` alert, or ``fairness`` when a
      fairness limit broke; value and limit of the first broken constraint, all of them in the message;
    * promoted, awaiting approval, or not better than the champion -> a ``promotion`` notice.

    One message per model, check and logical date (per version and stage for ``promotion`` notices, so the
    "awaits approval" notice and the later "new champion" one are both sent); reruns do not re-send (see
    :mod:`airflow_mlops.alerts.delivery`).
    Returns ``{"check", "sent", "message"}``.
    """
    from airflow_mlops.alerts.delivery import Alert, deliver_alert

    name, version = config.name, int(result["version"])
    from airflow_mlops.registry.model_card import CARD_HTML

    report = ModelRegistry(store).version_uri(name, version, CARD_HTML)
    broken = result.get("broken_checks") or []
    primary = result.get("primary_metric") or config.metrics.primary
    cand, champ = result.get("candidate_score"), result.get("champion_score")
    if broken:
        fairness = [b for b in broken if b.get("constraint", "").startswith("fairness")]
        first = (fairness or broken)[0]
        check = "fairness" if fairness else "gate"
        message = (f"{name} v{version} was not promoted: {len(broken)} constraint(s) broken: "
                   + "; ".join(b["violation"] for b in broken)
                   + ". It is kept as challenger; see the model card.")
        alert = Alert(name, check, ds, first["value"], first["limit"], message, report_uri=report,
                      details={"version": version, "broken": [b["violation"] for b in broken]})
    else:
        if result.get("promote"):
            what = f"{name} v{version} is the new champion"
        elif result.get("awaiting_approval"):
            what = (f"{name} v{version} passed the gate and awaits approval: "
                    f"python -m airflow_mlops.cli approve {name} {version} --as <you>")
        else:
            what = f"{name} v{version} did not beat the champion and is kept as challenger"
        champ_txt = "no champion" if result.get("champion_version") is None else \
            f"champion v{result['champion_version']}: {champ}"
        message = f"{what} ({primary}: {cand} vs {champ_txt}). {result.get('summary', '')}".strip()
        threshold: Any = champ if champ is not None else "n/a"
        window = f"{ds} v{version}" + (" awaiting approval" if result.get("awaiting_approval") else "")
        alert = Alert(name, "promotion", window, cand if cand is not None else "n/a", threshold, message,
                      report_uri=report, details={"version": version, "alias": result.get("alias")})
    outcome = deliver_alert(config, store, alert, context=context)
    log.info("notify %s v%d: %s alert %s", name, version, alert.check, outcome.describe())
    return {"check": alert.check, "sent": outcome.sent, "message": message}
