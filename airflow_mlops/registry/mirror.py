"""Our registry mirrored to a team's MLflow (:mod:`airflow_mlops.tracking.mlflow`): what the registry hands over.

* :func:`track_version`: after a registration, the version as an MLflow run with the model as an MLflow model
  version (the training step, and the registration of a model trained elsewhere); when earlier writes are
  pending (the server was down), :func:`catch_up` syncs them then;
* :func:`record_decision`: after the promotion gate, its decision as tags of the version's run;
* :func:`sync_mlflow`: the catch-up (``python -m airflow_mlops.cli mlflow-sync <model>``): every version's run,
  model version and decision tags, and the aliases, made what our registry says, idempotently; the pending
  records of missed writes are cleared once MLflow agrees.

The registry stays the source of truth: nothing here reads MLflow to change our registry.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any, TypedDict

from airflow_mlops.registry.core import HOLDOUT_FILE, MODEL_FILE
from airflow_mlops.registry.errors import RegistryError
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import join

log = logging.getLogger(__name__)

__all__ = ["SyncReport", "catch_up", "gate_decision", "record_decision", "sync_mlflow", "track_version"]


class SyncReport(TypedDict):
    """What :func:`sync_mlflow` changed in MLflow (all empty: MLflow already agreed with our registry)."""

    model: str
    tracking_uri: str
    versions: int  #: versions in our registry
    runs_logged: list[int]  #: our versions logged as a run now (with their model version)
    model_versions_registered: list[int]  #: runs that lacked their model version
    decisions_tagged: list[int]  #: runs given the gate's decision as tags
    aliases_set: dict[str, int]  #: alias -> our version
    aliases_deleted: list[str]
    pending_cleared: list[str]  #: the pending records of missed writes now caught up
    changed: bool


def _registry_uri(registry: ModelRegistry) -> str:
    return registry.store.uri(registry.prefix)


def _files(registry: ModelRegistry, name: str, version: int) -> dict[str, bytes]:
    out = {}
    # the evaluation report is a registered artifact (checked against its hash); the card is a derived view,
    # re-rendered on every decision, so read as it is now
    for artifact, verify in (("reports/evaluation.html", True), ("reports/model_card.md", False)):
        with contextlib.suppress(RegistryError):
            out[artifact] = registry.read_artifact(name, version, artifact, verify=verify)
    return out


def _to_mirror(registry: ModelRegistry, name: str, version: int, pipeline: Any, trusted: list[str],
               example: Any, example_output: Any = None) -> Any:
    """The types the registered file holds beyond skops' defaults (read from it: no second dump), each one
    that load_model trusts for this version (never more for MLflow's sake)."""
    import skops.io as sio

    from airflow_mlops.tracking.mlflow import ModelToMirror
    from airflow_mlops.trust.types import TRUSTED_TYPES

    data = registry.read_artifact(name, version, MODEL_FILE)  # checked against its signed sha256
    needed = sio.get_untrusted_types(data=data)
    refused = sorted(set(needed) - TRUSTED_TYPES - set(trusted))
    if refused:  # cannot happen for a version that passed the smoke test
        raise RegistryError(f"{name} v{version} holds types its loads do not trust: {refused}")
    return ModelToMirror(pipeline, tuple(sorted(needed)), example, registry_uri=_registry_uri(registry),
                         example_output=example_output, model_bytes=data)


def track_version(registry: ModelRegistry, name: str, mv: Any, pipeline: Any, trusted: list[str],
                  example: Any, example_output: Any = None) -> str | None:
    """The registered version ``mv`` as a run in the team's MLflow, when one is configured, with the model
    mirrored as an MLflow model version (``example``: a few feature rows, ``example_output``: the training's
    predictions of them); a failure is one warning (the version stays registered) and a pending record for the
    catch-up. Returns the run id."""
    from airflow_mlops.tracking.mlflow import track_registration

    def pending(model: str, version: int, reason: str) -> None:
        registry.mlflow_pending(model, str(version), {"version": version, "reason": reason})

    run_id = track_registration(name, mv.version, mv.metadata, lambda: _files(registry, name, mv.version),
                                version_uri=mv.uri, pending=pending, registry_uri=_registry_uri(registry),
                                fitted=lambda: _to_mirror(registry, name, mv.version, pipeline, trusted, example,
                                                          example_output))
    if run_id is not None:
        catch_up(registry, name)
    return run_id


def catch_up(registry: ModelRegistry, name: str) -> SyncReport | None:
    """After a write that reached MLflow: when earlier writes of ``name`` are pending (the server was down),
    :func:`sync_mlflow` now, with the module's fault policy (a warning; they stay pending for the next run or
    ``mlflow-sync``). One listing of the pending folder when nothing is pending."""
    if not registry.store.list(join(registry.prefix, name, "_mlflow", "pending")):
        return None
    from airflow_mlops.tracking.mlflow import mlflow_target, report_missed

    target = mlflow_target()
    if target is None:
        return None
    try:
        report = sync_mlflow(registry, name)
    except Exception as e:  # noqa: BLE001 - the server, the network or the client: the records stay pending
        report_missed(target, e, f"catch up the pending writes of {name}", None,
                      "they stay pending for the next run or mlflow-sync")
        return None
    log.info("MLflow: caught up the pending writes of %s (%s)", name, ", ".join(report["pending_cleared"]))
    return report


def record_decision(registry: ModelRegistry, name: str, version: int, decision: Mapping[str, Any]) -> None:
    """The gate's decision on the version's MLflow run (nothing without a server; a warning and a pending
    record when it fails)."""
    from airflow_mlops.tracking.mlflow import tag_decision

    def pending(model: str, reason: str) -> None:
        registry.mlflow_pending(model, f"decision-{version}", {"version": version, "reason": reason})

    tag_decision(name, version, _registry_uri(registry), decision, pending)


def gate_decision(registry: ModelRegistry, name: str, version: int) -> dict[str, Any] | None:
    """The latest decision of the promotion gate about ``version`` (from the audit log: the alias move of the
    candidate it decided), or None when the gate never ran for it."""
    for event in reversed(registry.audit_log(name)):
        decision = (event.get("details") or {}).get("decision") or {}
        if event.get("action") == "set_alias" and event.get("to") == version and decision \
                and decision.get("alias") == event.get("alias"):
            return dict(decision)
    return None


def sync_mlflow(registry: ModelRegistry, name: str) -> SyncReport:
    """Reconcile the team's MLflow with our registry for model ``name``; see the module docstring. Raises
    :class:`~airflow_mlops.tracking.mlflow.TrackingError` without a configured server, and what the MLflow
    client raises when the server fails (nothing of ours changes; run it again)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.tracking.mlflow import TrackingError, decision_tags, mirror_aliases, mlflow_target, sync_version
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES

    target = mlflow_target()
    if target is None:
        raise TrackingError("no MLflow server is configured: the Airflow connection named by [mlops] mlflow_conn_id "
                            "(default mlflow_default) does not exist")
    versions = registry.list_versions(name)
    pending_prefix = join(registry.prefix, name, "_mlflow", "pending")
    pending = sorted(registry.store.list(pending_prefix))
    report: SyncReport = {"model": name, "tracking_uri": target.tracking_uri, "versions": len(versions),
                          "runs_logged": [], "model_versions_registered": [], "decisions_tagged": [],
                          "aliases_set": {}, "aliases_deleted": [], "pending_cleared": [], "changed": False}
    uri = _registry_uri(registry)
    for version in versions:
        meta = registry.get_metadata(name, version)
        decision = gate_decision(registry, name, version)

        def fitted(version: int = version, meta: dict[str, Any] = meta) -> Any:
            pipeline, _ = registry.load_model(name, version=version, allow_retired=True)
            holdout = pq.read_table(pa.BufferReader(registry.read_artifact(name, version, HOLDOUT_FILE)))
            example = holdout.select(list(meta["features"])).slice(0, 5).to_pandas()
            return _to_mirror(registry, name, version, pipeline, [*PIPELINE_CUSTOM_TYPES,
                                                                  *(meta.get("trusted_types") or [])], example)

        def files(version: int = version) -> dict[str, bytes]:
            return _files(registry, name, version)

        changed = sync_version(target, name, version, meta, uri, artifacts=files, fitted=fitted,
                               version_uri=registry.version_uri(name, version),
                               extra_tags=decision_tags(decision) if decision else None)
        if "run" in changed:
            report["runs_logged"].append(version)
        elif "model_version" in changed:
            report["model_versions_registered"].append(version)
        if "tags" in changed:
            report["decisions_tagged"].append(version)
    aliases = mirror_aliases(name, registry.get_aliases(name), uri, target=target)
    report["aliases_set"] = dict(aliases.get("set") or {})
    report["aliases_deleted"] = list(aliases.get("deleted") or [])
    if aliases.get("missing"):  # cannot happen after the versions above: said, not hidden
        raise TrackingError(f"MLflow has no model version for {name} aliases {aliases['missing']}")
    registry.store.delete(pending)  # everything they recorded is now in MLflow
    report["pending_cleared"] = [key.rsplit("/", 1)[-1].removesuffix(".json") for key in pending]
    report["changed"] = bool(report["runs_logged"] or report["model_versions_registered"]
                             or report["decisions_tagged"] or report["aliases_set"] or report["aliases_deleted"])
    log.info("mlflow-sync %s at %s: %d version(s); runs logged %s, model versions %s, decisions tagged %s, aliases "
             "set %s, deleted %s; %d pending record(s) cleared", name, target.tracking_uri, len(versions),
             report["runs_logged"], report["model_versions_registered"], report["decisions_tagged"],
             report["aliases_set"], report["aliases_deleted"], len(pending))
    return report
