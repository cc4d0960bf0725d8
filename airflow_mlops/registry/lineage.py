"""Reverse lineage: which registered versions were trained on a dataset (by fingerprint content hash, dataset
URI or partition URI).

:class:`RegistryLineage` is a part of :class:`~airflow_mlops.registry.model_registry.ModelRegistry` (use that
class). Registration writes the index ``<prefix>/_lineage/<content_hash>/<model>@<n>``; a URI query reads each
version's signed ``training_data`` metadata. :func:`split_dataset_uri` is importable from
:mod:`airflow_mlops.registry.model_registry` too.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_mlops.registry.core import RegistryCore
from airflow_mlops.registry.errors import ModelNotFoundError, RegistryError
from airflow_mlops.store.artifacts import join


class RegistryLineage(RegistryCore):
    """The lineage queries of :class:`~airflow_mlops.registry.model_registry.ModelRegistry`."""

    def models_using(self, dataset: str) -> list[tuple[str, int]]:
        """Every ``(model, version)`` trained on a dataset, sorted.

        ``dataset`` is a fingerprint content hash (or a unique prefix of at least 8 hex digits) or a
        training data URI: the dataset root (``s3://b/p/data/churn``, with or without a trailing
        slash; a local path is read as ``file://``) matches every version trained on that dataset,
        a partition URI (``.../data/churn/ds=2024-01-03``, optionally with a file name) only the
        versions whose training window included that partition.
        """
        return [(r["model"], r["version"]) for r in self.lineage(dataset)]

    def lineage(self, dataset: str) -> list[dict[str, Any]]:
        """Like :meth:`models_using`, one dict per version: model, version, created_at, aliases,
        lifecycle, training data URI, partitions, content hash, and ``matched_by``."""
        query = (dataset or "").strip()
        if not query:
            raise RegistryError("give a dataset URI or a fingerprint content hash")
        found: dict[tuple[str, int], str] = {}
        if not _is_uri(query):
            for h in self._lineage_hashes(query):
                for k in self.store.list(join(self.prefix, "_lineage", h)):
                    model, _, num = k.rsplit("/", 1)[-1].partition("@")
                    if num.isdigit():
                        found[(model, int(num))] = "fingerprint"
        metas: dict[tuple[str, int], dict[str, Any]] = {}
        for model in self.list_models():
            try:
                versions = self.list_versions(model)
            except ModelNotFoundError:
                continue
            for v in versions:
                meta = self.get_metadata(model, v)
                metas[(model, v)] = meta
                how = _lineage_match(meta.get("training_data") or {}, query)
                if how:
                    found.setdefault((model, v), how)
        out: list[dict[str, Any]] = []
        states: dict[str, dict[str, Any]] = {}
        for (model, v), how in sorted(found.items()):
            version_meta = metas.get((model, v))
            if version_meta is None:  # indexed but not committed (a registration that died): not a version
                continue
            st = states.setdefault(model, self.state(model))
            td = version_meta.get("training_data") or {}
            out.append({
                "model": model, "version": v, "created_at": version_meta.get("created_at"),
                "aliases": sorted(a for a, av in st["aliases"].items() if av == v),
                "lifecycle": (st["lifecycle"].get(str(v)) or {"state": "active"})["state"],
                "training_data_uri": td.get("uri"), "partitions": td.get("partitions"),
                "content_hash": (td.get("fingerprint") or {}).get("content_hash"), "matched_by": how,
            })
        return out

    def _lineage_hashes(self, query: str) -> list[str]:
        if not _is_hash_prefix(query):
            return [query]
        return [h for h in self.store.list_dirs(join(self.prefix, "_lineage")) if h.startswith(query.lower())]


def _is_uri(query: str) -> bool:
    return "://" in query or query.startswith("/")


def _is_hash_prefix(query: str) -> bool:
    """A hex string of 8 to 63 digits: a shortened sha256 content hash."""
    import re

    return bool(re.fullmatch(r"[0-9a-fA-F]{8,63}", query))


def split_dataset_uri(uri: str) -> tuple[str, str | None]:
    """``(dataset root URI, partition date or None)``: trailing slashes, a ``ds=`` partition and a file
    name after it are removed; a bare local path becomes ``file://``."""
    import re

    u = uri.strip()
    if u.startswith("/"):
        u = "file://" + os.path.normpath(u)
    u = u.rstrip("/")
    m = re.search(r"/ds=(\d{4}-\d{2}-\d{2})(/.*)?$", u)
    if m:
        return u[:m.start()].rstrip("/"), m.group(1)
    return u, None


def _lineage_match(training_data: dict[str, Any], query: str) -> str | None:
    """How a version's ``training_data`` metadata matches a lineage query, or None."""
    if not _is_uri(query):
        fp = (training_data.get("fingerprint") or {}).get("content_hash") or ""
        if fp and (fp == query or (_is_hash_prefix(query) and fp.lower().startswith(query.lower()))):
            return "fingerprint"
        return None
    if not training_data.get("uri"):
        return None
    root, ds = split_dataset_uri(query)
    own_root, _ = split_dataset_uri(str(training_data["uri"]))
    if root != own_root:
        return None
    if ds is None:
        return "uri"
    return "partition" if ds in (training_data.get("partitions") or []) else None
