"""Partitioned datasets in the artifact store: ``<dataset root>/ds=YYYY-MM-DD/`` of parquet or CSV.

Reading gives clear errors for a missing, empty or corrupt partition, naming the URI and what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.artifacts import ArtifactNotFoundError, ArtifactStore, StorageError, join
from airflow_mlops.store.dates import logical_date, logical_ds
from airflow_mlops.store.layout import data_prefix, partition_dir

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A partition is missing, empty, unreadable or does not match the expected schema."""


class EmptyPartitionError(DataError):
    """A partition that exists (files and manifest) but holds no rows."""


def redact_parse_error(e: BaseException) -> str:
    """First line of a reader error without row content: pyarrow's CSV errors quote the whole
    offending row (``Expected 8 columns, got 9: <row>``), which may hold personal data."""
    import re

    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return re.sub(r"(got \d+)\s*:.*", r"\1", first)


def partition_name(ds: str | dt.date) -> str:
    """``ds=YYYY-MM-DD``: the partition of a logical date; :class:`DataError` when ``ds`` is not a date."""
    try:
        return partition_dir(ds)
    except ValueError as e:
        raise DataError(str(e)) from None


class Dataset:
    """A date-partitioned dataset.

    :param store: the artifact store holding it.
    :param prefix: key prefix of the dataset inside ``store`` (e.g. ``data/churn``).
    :param fmt: ``parquet`` or ``csv`` (input data; outputs are always parquet).
    """

    def __init__(self, store: ArtifactStore, prefix: str, fmt: str = "parquet") -> None:
        if fmt not in ("parquet", "csv"):
            raise DataError(f"format must be 'parquet' or 'csv', not {fmt!r}")
        self.store = store
        self.prefix = prefix.strip("/")
        self.fmt = fmt

    @classmethod
    def for_name(cls, store: ArtifactStore, name: str, fmt: str = "parquet") -> Dataset:
        return cls(store, data_prefix(name), fmt)

    def key(self, ds: str | dt.date) -> str:
        return join(self.prefix, partition_name(ds))

    def uri(self, ds: str | dt.date | None = None) -> str:
        return self.store.uri(self.key(ds) if ds is not None else self.prefix)

    def partitions(self) -> list[str]:
        """Dates (YYYY-MM-DD) of the partitions present, ascending."""
        return sorted(d[3:] for d in self.store.list_dirs(self.prefix) if d.startswith("ds="))

    def files(self, ds: str | dt.date) -> list[str]:
        suffix = ".parquet" if self.fmt == "parquet" else ".csv"
        return [f for f in self.store.partition_files(self.key(ds)) if f.endswith(suffix)]

    def exists(self, ds: str | dt.date) -> bool:
        return bool(self.files(ds))

    def read_table(self, ds: str | dt.date, columns: list[str] | None = None) -> pa.Table:
        """The whole partition as an Arrow table (empty partition -> :class:`DataError`)."""
        import pyarrow as pa

        files = self.files(ds)
        if not files:
            raise DataError(
                f"partition {self.uri(ds)} has no {self.fmt} files; expected data for {logical_ds(ds)} "
                f"(present partitions: {self.partitions()[-5:] or 'none'})"
            )
        tables = [self._read_file(f, columns) for f in files]
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DataError(f"files of partition {self.uri(ds)} have incompatible schemas: {e}") from None
        if table.num_rows == 0:
            raise EmptyPartitionError(f"partition {self.uri(ds)} is empty (0 rows in {len(files)} file(s))")
        return table

    def read(self, ds: str | dt.date, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_table(ds, columns).to_pandas()

    def _read_file(self, key: str, columns: list[str] | None) -> pa.Table:
        import pyarrow as pa

        data = self.store.read_bytes(key)
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(pa.BufferReader(data), columns=columns)
            import pyarrow.csv as pcsv

            opts = pcsv.ConvertOptions(include_columns=columns) if columns else None
            return pcsv.read_csv(pa.BufferReader(data), convert_options=opts)
        except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as e:
            raise DataError(
                f"{self.store.uri(key)} is not a readable {self.fmt} file ({redact_parse_error(e)}); "
                "re-deliver the file or remove it from the partition"
            ) from None

    def read_window(self, end: str | dt.date, days: int, columns: list[str] | None = None,
                    require_end: bool = True, partition_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
        """Partitions in ``(end - days, end]`` concatenated, with the list of dates actually read.

        An unreadable partition other than ``end`` is skipped with a warning and left out of the
        returned dates (lineage must not claim data that was not used); ``end`` itself must be readable.
        ``partition_column``: add a column of that name holding each row's partition date (``YYYY-MM-DD``).
        """
        import pandas as pd

        end_date = logical_date(end)
        wanted = {(end_date - dt.timedelta(days=i)).isoformat() for i in range(days)}
        dates = [d for d in self.partitions() if d in wanted]
        if require_end and end_date.isoformat() not in dates:
            raise DataError(f"partition {self.uri(end_date.isoformat())} is missing")
        if not dates:
            raise DataError(f"no partitions of {self.uri()} in the {days} day(s) ending {end_date}")
        frames, used = [], []
        for d in dates:
            try:
                frame = self.read(d, columns)
            except DataError as e:
                if d == end_date.isoformat():
                    raise
                log.warning("skipping partition %s: %s", d, e)
                continue
            if partition_column is not None:
                if partition_column in frame.columns:
                    raise DataError(f"{self.uri(d)} has a column {partition_column!r}, the name reserved for the "
                                    "partition date of each row")
                frame[partition_column] = d
            frames.append(frame)
            used.append(d)
        return pd.concat(frames, ignore_index=True), used

    def schema(self, ds: str | dt.date | None = None) -> dict[str, str] | None:
        """Column -> Arrow type string of one partition (the latest by default), from file metadata only."""
        import pyarrow as pa

        parts = self.partitions()
        if ds is None:
            if not parts:
                return None
            ds = parts[-1]
        files = self.files(ds)
        if not files:
            return None
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                schema = pq.read_schema(pa.BufferReader(self.store.read_bytes(files[0])))
            except (pa.ArrowInvalid, OSError):
                return None
        else:
            schema = self._read_file(files[0], None).schema
        return {f.name: str(f.type) for f in schema}

    def write(self, ds: str | dt.date, data: pd.DataFrame | pa.Table | Iterable[pa.Table],
              **manifest: Any) -> dict[str, Any]:
        """Atomically (re)write the partition as parquet; returns the manifest."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [data] if not isinstance(data, Iterable) or hasattr(data, "columns") else list(data)
        with self.store.partition_writer(self.key(ds), **manifest) as w:
            for t in tables:
                if not isinstance(t, pa.Table):
                    t = pa.Table.from_pandas(t, preserve_index=False)
                pq.write_table(t, w.new_file(), compression="zstd")
                w.add_rows(t.num_rows)
        return self.store.read_manifest(self.key(ds)) or {}


class DataMismatchError(DataError):
    """A readable partition that does not fit the model config (a missing column, a target that does not fit
    the task, ...): the config or the data must change, re-reading cannot help."""


#: the column :meth:`Dataset.read_window` adds for a time-ordered split (each row's partition date)
PARTITION_DATE_COLUMN = "_mlops_partition_ds"


def pop_partition_dates(df: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
    """``(df without the partition-date column, that column's values)``; ``(df, None)`` without it."""
    if PARTITION_DATE_COLUMN not in df.columns:
        return df, None
    return df.drop(columns=[PARTITION_DATE_COLUMN]), df[PARTITION_DATE_COLUMN].to_numpy(dtype=object)


__all__ = ["PARTITION_DATE_COLUMN", "ArtifactNotFoundError", "DataError", "DataMismatchError", "Dataset",
           "EmptyPartitionError", "StorageError", "partition_name", "pop_partition_dates", "redact_parse_error"]
