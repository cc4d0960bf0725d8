"""One input record batch in, one prediction-log record batch out, following a :class:`ScoringPlan`.

:class:`BatchAssembler` is the body of the streaming loop of :mod:`airflow_mlops.scoring.batch`: it keeps
the segment's rows, routes the canary's rows (a stable hash of the keys) to the canary model, predicts,
adds the shadow prediction and the top-k explanations, and lays the columns out in the prediction-log
schema of ``docs/prediction-log.md``. No I/O: it works on Arrow batches in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.scoring.policies import canary_mask, segment_mask
from airflow_mlops.scoring.schema import CANARY, proba_columns
from airflow_mlops.scoring.scorer import ConstantColumns, to_arrow

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.scoring.plan import ScoringPlan

__all__ = ["BatchAssembler"]


class BatchAssembler:
    """Turns input record batches into prediction-log batches for one run.

    :param plan: the run's plan (models, canary share, explanations).
    :param schema: the prediction-log schema (logical types).
    :param physical: the schema as written (dictionary-encoded columns).
    :param constants: per-run values (model name and version, ``scored_by``, logical date, ``scored_at``,
        ``run_id``, null shadow columns when there is no shadow).
    :param segment: ``(column, value)``: keep only that segment's rows.
    """

    def __init__(self, plan: ScoringPlan, schema: pa.Schema, physical: pa.Schema, constants: dict[str, Any],
                 segment: tuple[str, Any] | None = None) -> None:
        import pyarrow as pa

        self.plan = plan
        self.schema = schema
        self.physical = physical
        self.segment = segment
        self.keys = plan.keys
        self.canary = plan.canary.scorer
        self.shadow = plan.shadow.scorer
        self.explain_k = plan.explain_k
        self.pred_type = schema.field("prediction").type
        self.proba_cols = proba_columns(plan.scorer.meta) if plan.scorer.has_proba else []
        self.consts = ConstantColumns(physical, constants)
        self.scored_by_dict = pa.array([plan.scored_by, CANARY], type=pa.string())
        self.index_type = physical.field("scored_by").type.index_type
        # explanation feature names: one dictionary for every batch (main model's features first)
        names = list(dict.fromkeys([*plan.scorer.features, *(self.canary.features if self.canary else [])]))
        self.explain_dict = pa.array(names, type=pa.string())
        self.explain_pos = {f: i for i, f in enumerate(names)}
        #: rows scored by the canary so far
        self.canary_rows = 0

    def assemble(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """The prediction-log batch of ``batch`` (None when no row is left after the segment filter)."""
        import pyarrow as pa

        if self.segment is not None:
            batch = batch.filter(segment_mask(batch.column(self.segment[0]), self.segment[1]))
        n = batch.num_rows
        if n == 0:
            return None
        batch, nc = self._route(batch)
        pieces = self._predict(batch, n, nc)
        cols: dict[str, pa.Array] = self._key_columns(batch)
        cols.update(self._prediction_columns(pieces))
        cols.update(self.consts.get(n))
        if nc:
            cols.update(self._canary_columns(n, nc))
            self.canary_rows += nc
        if self.shadow is not None:
            spred, _, _ = self.shadow.predict(batch)
            cols["shadow_prediction"] = to_arrow(spred, self.pred_type)
        if self.explain_k:
            cols.update(self._explain_columns(pieces, n))
        return pa.record_batch([cols[fld.name] for fld in self.physical], schema=self.physical)

    def _route(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
        """``(batch, canary rows)``: with a canary, the main model's rows first and the canary's last, as two
        contiguous slices."""
        import numpy as np
        import pyarrow as pa

        if self.canary is None:
            return batch, 0
        mask = canary_mask(batch, self.keys, self.plan.canary_share, self.plan.name)
        nc = int(mask.sum())
        if nc:
            order = np.concatenate([np.flatnonzero(~mask), np.flatnonzero(mask)])
            batch = batch.take(pa.array(order))
        return batch, nc

    def _predict(self, batch: pa.RecordBatch, n: int, nc: int) -> list[tuple[Any, Any, Any, Any]]:
        """``[(scorer, predictions, proba frame, contributions), ...]``: the main slice, then the canary's."""
        pieces = []
        if n - nc:
            pieces.append((self.plan.scorer, *self.plan.scorer.predict(batch.slice(0, n - nc) if nc else batch)))
        if nc and self.canary is not None:
            pieces.append((self.canary, *self.canary.predict(batch.slice(n - nc))))
        return pieces

    def _key_columns(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        cols = {}
        for k in self.keys:
            col, t = batch.column(k), self.schema.field(k).type
            cols[k] = col if col.type == t else col.cast(t)
        return cols

    def _prediction_columns(self, pieces: Sequence[tuple[Any, Any, Any, Any]]) -> dict[str, pa.Array]:
        import numpy as np
        import pyarrow as pa

        if len(pieces) == 1:
            pred = pieces[0][1]
        else:
            as_text = object if self.pred_type == pa.string() else None
            pred = np.concatenate([np.asarray(p[1], dtype=as_text) for p in pieces])
        cols = {"prediction": to_arrow(pred, self.pred_type)}
        for c in self.proba_cols:
            cols[c] = pa.array(np.concatenate([p[2][c].to_numpy() for p in pieces]), type=pa.float64())
        return cols

    def _canary_columns(self, n: int, nc: int) -> dict[str, pa.Array]:
        """``scored_by`` and ``model_version`` of a batch whose last ``nc`` rows the canary scored."""
        import numpy as np
        import pyarrow as pa

        assert self.canary is not None
        scored_by = pa.DictionaryArray.from_arrays(
            pa.array(np.r_[np.zeros(n - nc, np.int32), np.ones(nc, np.int32)], type=self.index_type),
            self.scored_by_dict)
        versions = np.r_[np.full(n - nc, self.plan.scorer.version), np.full(nc, self.canary.version)]
        return {"scored_by": scored_by, "model_version": pa.array(versions.astype(np.int64))}

    def _explain_columns(self, pieces: Sequence[tuple[Any, Any, Any, Any]], n: int) -> dict[str, pa.Array]:
        """``explain_<i>_feature`` (dictionary of feature names) and ``explain_<i>_value``; null under the
        kill switch (no model, no explanation) and where a model has fewer than k features."""
        import numpy as np
        import pyarrow as pa

        cols: dict[str, pa.Array] = {}
        if pieces[0][0].explainer is None:
            for i in range(1, self.explain_k + 1):
                cols[f"explain_{i}_feature"] = pa.nulls(n, type=self.physical.field(f"explain_{i}_feature").type)
                cols[f"explain_{i}_value"] = pa.nulls(n, type=pa.float64())
            return cols
        parts = [self._top_k(p[3], p[0].features) for p in pieces]
        gidx = np.concatenate([g for g, _ in parts])
        gval = np.concatenate([v for _, v in parts])
        for i in range(self.explain_k):
            absent = gidx[:, i] < 0
            cols[f"explain_{i + 1}_feature"] = pa.DictionaryArray.from_arrays(
                pa.array(gidx[:, i], type=pa.int32(), mask=absent), self.explain_dict)
            cols[f"explain_{i + 1}_value"] = pa.array(gval[:, i], type=pa.float64(), mask=absent)
        return cols

    def _top_k(self, contrib: Any, features: list[str]) -> tuple[Any, Any]:
        """(feature index in the run's dictionary, value) of the top-k, shape (n, k); -1 / nan where absent."""
        import numpy as np

        from airflow_mlops.scoring.explain import top_k

        k = self.explain_k
        idx, val = top_k(contrib, k)
        gidx = np.full((len(contrib), k), -1, dtype=np.int32)
        gval = np.full((len(contrib), k), np.nan)
        remap = np.array([self.explain_pos[f] for f in features], dtype=np.int32)
        gidx[:, :idx.shape[1]] = remap[idx]
        gval[:, :idx.shape[1]] = val
        return gidx, gval
