"""Partitioned datasets in the artifact store: ``<dataset root>/ds=YYYY-MM-DD/`` of parquet or CSV.

Reading gives clear errors for a missing, empty or corrupt partition, naming the URI and what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mlops.hooks.storage import ArtifactNotFoundError, ArtifactStore, StorageError, join

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from airflow_mlops.ml.config import ModelConfig

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A partition is missing, empty, unreadable or does not match the expected schema."""


def redact_parse_error(e: BaseException) -> str:
    """First line of a reader error without row content: pyarrow's CSV errors quote the whole
    offending row (``Expected 8 columns, got 9: <row>``), which may hold personal data."""
    import re

    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return re.sub(r"(got \d+)\s*:.*", r"\1", first)


def partition_name(ds: str | dt.date) -> str:
    if isinstance(ds, dt.date):
        ds = ds.isoformat()
    try:
        dt.date.fromisoformat(str(ds)[:10])
    except ValueError:
        raise DataError(f"logical date {ds!r} is not YYYY-MM-DD") from None
    return f"ds={str(ds)[:10]}"


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
        return cls(store, join("data", name), fmt)

    @classmethod
    def from_config(cls, config: ModelConfig, store: ArtifactStore) -> Dataset:
        """The model's input dataset: ``data.uri`` if set, else ``<root>/data/<data.dataset>``
        (:attr:`Locations.input`)."""
        return Locations(config, store).input

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
                f"partition {self.uri(ds)} has no {self.fmt} files; expected data for {str(ds)[:10]} "
                f"(present partitions: {self.partitions()[-5:] or 'none'})"
            )
        tables = [self._read_file(f, columns) for f in files]
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DataError(f"files of partition {self.uri(ds)} have incompatible schemas: {e}") from None
        if table.num_rows == 0:
            raise DataError(f"partition {self.uri(ds)} is empty (0 rows in {len(files)} file(s))")
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
                    require_end: bool = True) -> tuple[pd.DataFrame, list[str]]:
        """Partitions in ``(end - days, end]`` concatenated, with the list of dates actually read.

        An unreadable partition other than ``end`` is skipped with a warning and left out of the
        returned dates (lineage must not claim data that was not used); ``end`` itself must be readable.
        """
        import pandas as pd

        end_date = dt.date.fromisoformat(str(end)[:10])
        wanted = {(end_date - dt.timedelta(days=i)).isoformat() for i in range(days)}
        dates = [d for d in self.partitions() if d in wanted]
        if require_end and end_date.isoformat() not in dates:
            raise DataError(f"partition {self.uri(end_date.isoformat())} is missing")
        if not dates:
            raise DataError(f"no partitions of {self.uri()} in the {days} day(s) ending {end_date}")
        frames, used = [], []
        for d in dates:
            try:
                frames.append(self.read(d, columns))
            except DataError as e:
                if d == end_date.isoformat():
                    raise
                log.warning("skipping partition %s: %s", d, e)
                continue
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

    def write(self, ds: str | dt.date, data: pd.DataFrame | pa.Table | Iterable[pa.Table], **manifest) -> dict:
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


def predictions_prefix(model: str, output_prefix: str | None = None) -> str:
    """The key prefix of a model's prediction log: ``output_prefix`` when given, else ``predictions/<model>``."""
    return (output_prefix or join("predictions", model)).strip("/")


class Locations:
    """The one resolver of a model's locations; every task, sensor, CLI command and UI page asks it.

    * ``input``: the training/validation input, ``data.uri`` when set (its own store, ``data.conn_id``),
      else ``<root>/data/<data.dataset>``.
    * ``scoring``: the dataset scored daily: ``data.scoring_dataset`` when set (a name under ``<root>/data/``,
      or a ``file://``/``s3://`` URI read with ``data.conn_id``), else ``input``.
    * ``ground_truth``: ``data.ground_truth_dataset`` (a name or a URI, like the scoring dataset; ``None`` when
      not set).
    * ``predictions``: the prediction log ``<root>/predictions/<model>``.
    * ``monitoring(ds)`` / ``validation(ds)``: output key prefixes ``<root>/monitoring|validation/<model>/ds=<ds>``;
      ``quarantine``: ``<root>/quarantine/<data.dataset>``.

    :param config: the model config.
    :param store: the artifact store (``[mlops] storage_uri``) holding the model's outputs.
    """

    def __init__(self, config: ModelConfig, store: ArtifactStore) -> None:
        self.config, self.store = config, store

    @classmethod
    def of(cls, config: ModelConfig, storage_uri: str | None = None, conn_id: str | None = None) -> Locations:
        return cls(config, ArtifactStore(storage_uri, conn_id=conn_id))

    def _named(self, name: str) -> Dataset:
        """A dataset name under ``<root>/data/``, or a dataset URI (its own store)."""
        if "://" in name:
            return Dataset(ArtifactStore(name, conn_id=self.config.data.conn_id or self.store.conn_id), "",
                           self.config.data.format)
        return Dataset.for_name(self.store, name, self.config.data.format)

    @property
    def input(self) -> Dataset:
        data = self.config.data
        if data.uri:
            return Dataset(ArtifactStore(data.uri, conn_id=data.conn_id or self.store.conn_id), "", data.format)
        return self._named(data.dataset)

    @property
    def scoring(self) -> Dataset:
        name = getattr(self.config.data, "scoring_dataset", None)
        return self._named(name) if name else self.input

    @property
    def ground_truth(self) -> Dataset | None:
        name = getattr(self.config.data, "ground_truth_dataset", None)
        return self._named(name) if name else None

    def predictions(self, output_prefix: str | None = None) -> Dataset:
        return Dataset(self.store, predictions_prefix(self.config.name, output_prefix))

    @property
    def quarantine(self) -> Dataset:
        return Dataset(self.store, join("quarantine", self.config.data.dataset))

    def monitoring(self, ds: str | dt.date) -> str:
        return join("monitoring", self.config.name, partition_name(ds))

    def validation(self, ds: str | dt.date) -> str:
        return join("validation", self.config.name, partition_name(ds))

    def dataset(self, role: str) -> Dataset:
        """``role``: ``input``, ``scoring``, ``ground_truth`` or ``predictions``."""
        if role == "predictions":
            return self.predictions()
        if role not in ("input", "scoring", "ground_truth"):
            raise ValueError(f"unknown location {role!r}; one of input, scoring, ground_truth, predictions")
        found = getattr(self, role)
        if found is None:
            raise DataError(f"{self.config.source}: data.ground_truth_dataset is not set for model {self.config.name}")
        return found


class DataMismatchError(DataError):
    """A readable partition that does not fit the model config (a missing column, a target that does not fit
    the task, ...): the config or the data must change, re-reading cannot help."""


def check_partition(config: ModelConfig, dataset: Dataset, ds: str | dt.date, *,
                    with_target: bool = True) -> dict[str, Any]:
    """Run-time check of the config against one partition (columns, target, dtypes, classes).

    Returns ``{"partition", "files", "rows", "columns"}``. Raises :class:`DataMismatchError` naming the
    partition's file, the config file and the column; an empty or unreadable partition raises the reader's
    :class:`DataError` (naming the partition)."""
    from airflow_mlops.ml.config import ConfigError, check_config_against_data

    files = dataset.files(ds)
    table = dataset.read_table(ds)  # missing/empty/corrupt -> DataError naming the partition
    schema = {f.name: str(f.type) for f in table.schema}
    where = dataset.store.uri(files[0]) if len(files) == 1 else f"{dataset.uri(ds)} ({len(files)} files)"
    summary = {"partition": dataset.uri(ds), "files": len(files), "rows": table.num_rows, "columns": len(schema)}
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


__all__ = ["ArtifactNotFoundError", "DataError", "DataMismatchError", "Dataset", "Locations", "StorageError",
           "check_partition",
           "partition_name"]
