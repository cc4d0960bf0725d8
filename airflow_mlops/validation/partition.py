"""The run-time check of a model config against one data partition (the first task of every run)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, TypedDict

from airflow_mlops.config.data_check import check_config_against_data
from airflow_mlops.config.model import ConfigError
from airflow_mlops.store.datasets import DataMismatchError, Dataset

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig


class PartitionCheck(TypedDict):
    """What :func:`check_partition` returns: the partition checked and its size."""

    partition: str  #: the partition's URI
    files: int  #: data files in the partition
    rows: int
    columns: int


def check_partition(config: ModelConfig, dataset: Dataset, ds: str | dt.date, *,
                    with_target: bool = True) -> PartitionCheck:
    """Run-time check of the config against one partition (columns, target, dtypes, classes).

    Returns ``{"partition", "files", "rows", "columns"}``. Raises :class:`DataMismatchError` naming the
    partition's file, the config file and the column; an empty or unreadable partition raises the reader's
    :class:`DataError` (naming the partition)."""
    files = dataset.files(ds)
    table = dataset.read_table(ds)  # missing/empty/corrupt -> DataError naming the partition
    schema = {f.name: str(f.type) for f in table.schema}
    if dataset.fmt == "sql":  # a table's or query's day of rows
        where = dataset.uri(ds)
    else:
        where = dataset.store.uri(files[0]) if len(files) == 1 else f"{dataset.uri(ds)} ({len(files)} files)"
    summary: PartitionCheck = {"partition": dataset.uri(ds), "files": len(files), "rows": table.num_rows,
                               "columns": len(schema)}
    if not with_target:
        needed = [*config.keys, *(config.features or ())]
        missing = [c for c in needed if c not in schema]
        if missing:
            raise DataMismatchError(f"{where}: column(s) {', '.join(map(repr, missing))} required by "
                                    f"{config.source} (keys/features) are missing; columns present: "
                                    f"{', '.join(schema)}")
        return summary
    target = table.column(config.target).to_pandas() if config.target in schema else None
    try:
        check_config_against_data(config, schema, target)
    except ConfigError as e:
        raise DataMismatchError(f"{where} does not fit the model config ({e.field}): {e}") from None
    return summary


__all__ = ["PartitionCheck", "check_partition"]
