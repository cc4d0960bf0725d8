"""The predictions table (``predictions: {conn_id, table}`` in the model config): once a logical date's
prediction-log partition is committed in the store, its rows replace that date's rows of the table in one
transaction (:func:`airflow_mlops.sql.write.write_predictions`: Postgres ``COPY``, ``executemany`` elsewhere).

The prediction log in the store stays the record the package reads back (monitoring, reproduction, lineage);
the table is its published copy for the team's own queries and dashboards. The partition is streamed file by
file and record batch by record batch, so memory does not grow with the day's rows. A rerun or backfill of a
date replaces its rows (never duplicates); a failed publish rolls back and leaves the table's rows as they were,
and the task fails (a retry publishes the committed partition again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.datasets import DataError, Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.config.model import ModelConfig

log = logging.getLogger(__name__)

__all__ = ["publish_predictions"]

#: rows per record batch read back from the prediction log
PUBLISH_BATCH_ROWS = 65_536


def publish_predictions(config: ModelConfig, output: Dataset, ds: str, hook: Any = None) -> dict[str, Any] | None:
    """Publish the committed prediction-log partition ``ds`` of ``output`` to ``config.predictions``; ``None``
    when the config has no predictions table. Returns ``{"table", "ds", "deleted", "inserted", "created",
    "method", "conn_id"}`` (counts only)."""
    if config.predictions is None:
        return None
    from airflow_mlops.sql.dataset import sql_hook
    from airflow_mlops.sql.write import write_predictions

    files = [f for f in output.files(ds) if f.endswith(".parquet")]
    if not files:
        raise DataError(f"{output.uri(ds)} has no committed prediction files to publish to {config.predictions.table}")
    hook = hook or sql_hook(config.predictions.conn_id)
    result = write_predictions(hook, config.predictions.table, _batches(output, files), ds)
    summary = {"table": result.table, "ds": result.logical_date, "deleted": result.rows_deleted,
               "inserted": result.rows_written, "created": result.created, "method": result.method,
               "conn_id": config.predictions.conn_id}
    log.info("published %s %s to table %s (connection %s): %d row(s) replaced %d", config.name, ds, result.table,
             config.predictions.conn_id, result.rows_written, result.rows_deleted)
    return summary


def _batches(output: Dataset, files: list[str]) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = output.store
    schema, yielded = None, False
    for f in files:
        source: Any = store.local_path(f) if store.is_local else pa.BufferReader(store.read_bytes(f))
        pf = pq.ParquetFile(source)
        try:
            schema = pf.schema_arrow
            for batch in pf.iter_batches(batch_size=PUBLISH_BATCH_ROWS):
                yielded = True
                yield batch
        finally:
            pf.close()
    if not yielded and schema is not None:  # no rows: the columns still make (or check) the table; the date is cleared
        yield pa.RecordBatch.from_pylist([], schema=schema)
