"""Merging the parts of a mapped scoring run (per input file, per segment) into one prediction-log partition:
the parts' manifests are checked (complete, one model per segment, same schema), then one atomic commit."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from airflow_mlops.scoring.batch import PARTS_DIR, partition_input_files, predictions_dataset
from airflow_mlops.scoring.io import copy_local
from airflow_mlops.store.artifacts import ArtifactStore, join
from airflow_mlops.store.datasets import DataError, Dataset, EmptyPartitionError, partition_name
from airflow_mlops.store.dates import logical_ds

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# fan-out merge
# ------------------------------------------------------------------------------------------
def _part_key(part: str | Mapping[str, Any]) -> str:
    if isinstance(part, Mapping):
        if "output_key" not in part:
            raise DataError(f"part summary {part!r} has no output_key")
        key: str = part["output_key"]
        return key
    return str(part)


class MergeSummary(TypedDict):
    """What :func:`merge_parts` returns (XCom of the merge task): counts and URIs."""

    model: str
    #: None for a segmented model (one version per segment: see ``segments``)
    version: int | None
    scored_by: str | None
    #: the parts' selection, or ``segments``
    selection: str | None
    rows: int
    files: int
    parts: int
    #: ``{value: {"model", "version", "rows"}}`` for segment parts, else None
    segments: dict[str, dict[str, Any]] | None
    output_files: int
    output_uri: str
    output_key: str
    input_uri: str | None
    shadow_version: int | None
    seconds: float
    ds: str
    #: what :func:`~airflow_mlops.scoring.publish.publish_predictions` did (``predictions: {conn_id, table}``)
    predictions_table: NotRequired[dict[str, Any] | None]


def merge_parts(config: ModelConfig, store: ArtifactStore, ds: str, parts: Sequence[str | Mapping[str, Any]], *,
                output_prefix: str | None = None, input_dataset: Dataset | None = None,
                require_complete: bool = True, cleanup: bool = True) -> MergeSummary:
    """Commit the prediction partition ``ds`` atomically from parts written by
    ``score_partition(files=...)``.

    ``parts`` are the part summaries (XComs of the mapped tasks) or their ``output_key``. Every part
    must be committed, scored by the same model version, and (``require_complete``) the parts
    together must cover exactly the files of the input partition, each once. The files are
    hard-linked (file://) or copied into one new partition commit; then the parts are removed.

    Segment parts (``score_partition(segment=...)``) are checked per segment: one model per segment,
    each segment covering the input files once; the manifest records ``segments`` (value -> model,
    version, rows).
    """
    started = time.perf_counter()
    ds = logical_ds(ds)
    keys = [_part_key(p) for p in parts]
    if not keys:
        raise DataError(f"no parts to merge for {config.name} {ds}")
    manifests = []
    for k in keys:
        m = store.read_manifest(k)
        if m is None:
            raise DataError(f"part {store.uri(k)} is not committed (no _SUCCESS); re-run its scoring task")
        if m.get("ds") != ds:
            raise DataError(f"part {store.uri(k)} is for {m.get('ds')}, not {ds}")
        manifests.append(m)
    segmented = {bool(m.get("segment")) for m in manifests}
    if len(segmented) > 1:
        raise DataError(f"parts of {config.name} {ds} mix segment parts and whole-partition parts; re-run the scoring")
    if len({_json_key(m.get("schema")) for m in manifests}) > 1:
        raise DataError(f"parts of {config.name} {ds} have different output schemas; re-run the scoring")
    by_segment: dict[Any, list[dict[str, Any]]] = {}
    for m in manifests:
        by_segment.setdefault((m.get("segment") or {}).get("value"), []).append(m)
    for seg, group in by_segment.items():
        _check_parts(config, ds, seg, group, require_complete, input_dataset, store)
    first = manifests[0]
    if segmented == {True}:
        return _merge_files(config, store, ds, keys, manifests, output_prefix, cleanup, started, extra={
            "model": config.name, "version": None, "scored_by": first.get("scored_by"), "selection": "segments",
            "segments": {str(seg): {"model": g[0].get("model"), "version": g[0].get("version"),
                                    "rows": sum(int(m.get("rows", 0)) for m in g)}
                         for seg, g in sorted(by_segment.items(), key=lambda kv: str(kv[0]))}})
    return _merge_files(config, store, ds, keys, manifests, output_prefix, cleanup, started)


def _check_parts(config: ModelConfig, ds: str, segment: Any, manifests: list[dict[str, Any]], require_complete: bool,
                 input_dataset: Dataset | None, store: ArtifactStore) -> None:
    """The parts of one segment (or of the whole partition) were scored by one model and cover the input
    files exactly once."""
    where = f"{config.name} {ds}" + (f" segment {segment!r}" if segment is not None else "")
    models = {(m.get("model"), m.get("version"), m.get("scored_by"), m.get("shadow_version"), m.get("canary_version"),
               m.get("canary_share")) for m in manifests}
    if len(models) > 1:
        raise DataError(
            f"parts of {where} were scored by different models {sorted(models, key=str)} (model, version, "
            "scored_by, shadow, canary version, canary share); an alias or the kill switch changed during the "
            "fan-out. Resolve the version once (version=...) and re-run the parts")
    covered: list[str] = [f for m in manifests for f in m.get("input_files", [])]
    dupes = sorted({f for f in covered if covered.count(f) > 1})
    if dupes:
        raise DataError(f"input file(s) of {where} scored by more than one part: {dupes}")
    if require_complete:
        expected = set(partition_input_files(config, store, ds, input_dataset))
        missing, extra = sorted(expected - set(covered)), sorted(set(covered) - expected)
        if missing or extra:
            raise DataError(f"parts of {where} do not cover the input partition of {ds}: missing "
                            f"{missing or 'none'}, not in the partition {extra or 'none'}")


def _merge_files(config: ModelConfig, store: ArtifactStore, ds: str, keys: list[str], manifests: list[dict[str, Any]],
                 output_prefix: str | None, cleanup: bool, started: float,
                 extra: dict[str, Any] | None = None) -> MergeSummary:
    import pyarrow.parquet as pq

    covered: list[str] = list(dict.fromkeys(f for m in manifests for f in m.get("input_files", [])))
    rows = sum(int(m.get("rows", 0)) for m in manifests)
    if rows == 0:
        raise EmptyPartitionError(f"input partition of {config.name} {ds} is empty (0 rows in all parts)")
    first = manifests[0]
    output = predictions_dataset(config, store, output_prefix)
    extra_manifest = {k: first.get(k) for k in ("model", "version", "scored_by", "selection", "as_of", "ds",
                                                "run_id", "scored_at", "input_uri", "shadow_version", "schema",
                                                "canary_alias", "canary_version", "canary_share", "kill_switch",
                                                "fallback", "explain")}
    extra_manifest.update({"input_files": covered, "part": False, "merged_from": keys, **(extra or {})})
    with store.partition_writer(output.key(ds), **extra_manifest) as w:
        for k, m in zip(keys, manifests):
            for fname in m.get("files", []):
                dest = w.new_file()
                copy_local(store, join(k, fname), dest)
                pq.read_metadata(dest)  # a truncated copy fails here, before the commit
        w.add_rows(rows)
        n_out = len(w.files)
    if cleanup:
        for k in keys:
            store.delete_prefix(k)
        if store.is_local:  # drop the directories left empty (rmdir refuses non-empty ones)
            for leftover in (join(output.prefix, PARTS_DIR, partition_name(ds)), join(output.prefix, PARTS_DIR)):
                with contextlib.suppress(OSError):
                    os.rmdir(store.local_path(leftover))
    summary: MergeSummary = {"model": extra_manifest["model"] or config.name, "version": extra_manifest["version"],
               "scored_by": extra_manifest["scored_by"], "selection": extra_manifest["selection"], "rows": rows,
               "files": len(covered), "parts": len(keys), "segments": extra_manifest.get("segments"),
               "output_files": n_out, "output_uri": output.uri(ds), "output_key": output.key(ds),
               "input_uri": first.get("input_uri"), "shadow_version": first.get("shadow_version"),
               "seconds": round(time.perf_counter() - started, 3), "ds": ds}
    log.info("merged %d part(s) of %s %s: %d row(s) -> %s", len(keys), config.name, ds, rows, summary["output_uri"])
    if output_prefix is None:
        from airflow_mlops.scoring.publish import publish_predictions

        summary["predictions_table"] = publish_predictions(config, output, ds)
    return summary


def _json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


__all__ = ["MergeSummary", "merge_parts"]
