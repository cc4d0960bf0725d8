"""The Airflow assets of airflow-mlops, built in one place (names and ``mlops://`` URIs are a contract: the
ready-made Dags schedule on them and the UI's asset view shows them).

* ``mlops://<model>/retrain-request``: drift, new data or a person asks for ``<model>_training`` to run; the
  drift task emits it through the asset alias :func:`retrain_alias_name`.
* ``mlops://<model>/versions``: a new registered version.
* ``mlops://<model>/predictions``: a scoring run wrote the prediction log.
* the input datasets at their root URIs (``s3://bucket/mlops/data/churn``, ``file:///...``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Asset

from airflow_mlops.config.locations import Locations

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig


def retrain_alias_name(model: str) -> str:
    """The asset alias the drift task emits ``mlops://<model>/retrain-request`` events through."""
    return f"mlops.{model}.retrain_request_alias"


def retrain_request_asset(model: str) -> Asset:
    """The asset whose events ask for ``<model>_training`` to run (drift, new data, manual)."""
    return Asset(name=f"mlops.{model}.retrain_request", uri=f"mlops://{model}/retrain-request", group="mlops")


def model_version_asset(model: str) -> Asset:
    """The asset updated whenever ``<model>`` gets a new registered version."""
    return Asset(name=f"mlops.{model}.versions", uri=f"mlops://{model}/versions", group="mlops")


def predictions_asset(model: str) -> Asset:
    """The asset updated by every scoring run of ``<model>`` (the prediction log)."""
    return Asset(name=f"mlops.{model}.predictions", uri=f"mlops://{model}/predictions", group="mlops")


def data_asset(config: ModelConfig, storage_uri: str | None = None, dataset: str | None = None) -> Asset:
    """The asset of an input dataset at its root URI (``s3://bucket/mlops/data/churn``, ``file:///...``):
    the ``inlets`` of the tasks that read it, so Airflow's asset view and OpenLineage show data -> model.
    ``dataset``: ``config.data.scoring`` for the scoring input (:attr:`Locations.scoring`), else the
    config's input dataset (:attr:`Locations.input`). Builds URIs only; reads nothing."""
    where = Locations.of(config, storage_uri)
    scoring = bool(dataset and dataset != config.data.dataset)
    found = where.scoring if scoring else where.input
    if found.fmt == "sql":
        uri = found.asset_uri()  # type: ignore[attr-defined]  # a SqlDataset: no connection is opened
        return Asset(name=f"mlops.data.{uri}", uri=uri, group="mlops")
    uri = found.uri()
    if scoring:
        return Asset(name=f"mlops.data.{uri if '://' in str(dataset) else dataset}", uri=uri, group="mlops")
    return Asset(name=f"mlops.data.{config.data.dataset}" if not config.data.uri else f"mlops.data.{uri}", uri=uri,
                 group="mlops")


__all__ = ["data_asset", "model_version_asset", "predictions_asset", "retrain_alias_name", "retrain_request_asset"]
