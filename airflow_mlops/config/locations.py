"""Where a model's data and outputs live: :class:`Locations`, resolved from its config and the store root."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import DataError, Dataset
from airflow_mlops.store.layout import monitoring_prefix, predictions_prefix, quarantine_prefix, validation_prefix

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig, SqlData


class Locations:
    """The one resolver of a model's locations; every task, sensor, CLI command and UI page asks it.

    * ``input``: the training/validation input, ``data.uri`` when set (its own store, ``data.conn_id``),
      a SQL table or query when ``data`` has ``table`` / ``query`` (:class:`~airflow_mlops.sql.dataset.SqlDataset`,
      read with the connection ``data.conn_id``), else ``<root>/data/<data.dataset>``.
    * ``scoring``: the dataset scored daily: ``data.scoring_dataset`` when set (a name under ``<root>/data/``,
      or a ``file://``/``s3://`` URI read with ``data.conn_id``), else ``input``.
    * ``ground_truth``: ``data.ground_truth_dataset`` (a name or a URI, like the scoring dataset; ``None`` when
      not set). Both may also be SQL (a mapping ``{conn_id, table, date_column}`` or ``{conn_id, query}``).
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

    def _sql(self, data: SqlData, name: str) -> Dataset:
        from airflow_mlops.sql.dataset import SqlDataset

        return SqlDataset(data.conn_id, data.source(name=f"{name} ({data.label()})"))

    @property
    def input(self) -> Dataset:
        data = self.config.data
        if data.sql is not None:
            return self._sql(data.sql, "data")
        if data.uri:
            return Dataset(ArtifactStore(data.uri, conn_id=data.conn_id or self.store.conn_id), "", data.format)
        return self._named(data.dataset)

    @property
    def scoring(self) -> Dataset:
        if self.config.data.scoring_sql is not None:
            return self._sql(self.config.data.scoring_sql, "data.scoring_dataset")
        name = getattr(self.config.data, "scoring_dataset", None)
        return self._named(name) if name else self.input

    @property
    def ground_truth(self) -> Dataset | None:
        if self.config.data.ground_truth_sql is not None:
            return self._sql(self.config.data.ground_truth_sql, "data.ground_truth_dataset")
        name = getattr(self.config.data, "ground_truth_dataset", None)
        return self._named(name) if name else None

    def predictions(self, output_prefix: str | None = None) -> Dataset:
        return Dataset(self.store, predictions_prefix(self.config.name, output_prefix))

    @property
    def quarantine(self) -> Dataset:
        return Dataset(self.store, quarantine_prefix(self.config.data.dataset))

    def monitoring(self, ds: str | dt.date) -> str:
        return monitoring_prefix(self.config.name, ds)

    def validation(self, ds: str | dt.date) -> str:
        return validation_prefix(self.config.name, ds)

    def dataset(self, role: str) -> Dataset:
        """``role``: ``input``, ``scoring``, ``ground_truth`` or ``predictions``."""
        if role == "predictions":
            return self.predictions()
        if role not in ("input", "scoring", "ground_truth"):
            raise ValueError(f"unknown location {role!r}; one of input, scoring, ground_truth, predictions")
        found: Dataset | None = getattr(self, role)
        if found is None:
            raise DataError(f"{self.config.source}: data.ground_truth_dataset is not set for model {self.config.name}")
        return found


__all__ = ["Locations"]
