"""Shared plumbing of the airflow-mlops operators: config, store, registry, logical date, context,
and OpenLineage reporting.

OpenLineage: every operator derived from :class:`MLOpsBaseOperator` implements
``get_openlineage_facets_on_complete`` (the hook the ``apache-airflow-providers-openlineage``
listener calls after a successful task). Input and output datasets and the model version come from
what the operator recorded during ``execute`` (:meth:`MLOpsBaseOperator.set_lineage`), from its
returned XCom dict (``input_uri``/``dataset_uri``, ``output_uri``, ``model`` + ``version``, a
registration's ``uri``) and from ``openlineage_default_inputs``. The provider is optional (extra
``openlineage``) and imported only inside that method.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from airflow_mlops.hooks.storage import ArtifactStoreHook
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.dates import LogicalDate, logical_ds

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.config.model import ModelConfig


class MLOpsBaseOperator(BaseOperator):
    """Base of the airflow-mlops operators.

    :param config_path: the model's YAML config (``dags/configs/<model>.yaml``). (templated)
    :param ds: logical date ``YYYY-MM-DD`` of the partition to work on; default the run's ``ds``. (templated)
    :param storage_uri: artifact store root; default ``[mlops] storage_uri``. (templated)
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots; default ``[mlops] storage_conn_id``.
    """

    template_fields: Sequence[str] = ("config_path", "ds", "storage_uri")
    ui_color = "#d6ecff"

    #: Datasets this operator reads besides what its XCom names, resolved from the config for the
    #: logical date: ``"config_data"`` (the config's input dataset), ``"scoring_data"``
    #: (``data.scoring``), ``"predictions"`` (``predictions/<model>``), ``"ground_truth"``
    #: (``data.ground_truth_dataset``). For OpenLineage.
    openlineage_default_inputs: Sequence[str] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap each subclass's ``execute`` so its return value is kept for lineage reporting."""
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if callable(execute) and not getattr(execute, "_mlops_keeps_result", False):
            @functools.wraps(execute)
            def keep_result(self: BaseOperator, *args: Any, **kw: Any) -> Any:
                result = execute(self, *args, **kw)
                self._lineage_result = result
                return result

            keep_result._mlops_keeps_result = True  # type: ignore[attr-defined]
            cls.execute = keep_result  # type: ignore[method-assign]

    def __init__(self, *, config_path: str, ds: str | None = None, storage_uri: str | None = None,
                 aws_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.ds = ds
        self.storage_uri = storage_uri
        self.aws_conn_id = aws_conn_id

    @cached_property
    def config(self) -> ModelConfig:
        """The model config, fully checked (the Dag file checked only its structure, see
        :func:`~airflow_mlops.config.parser.load_model_config`). An invalid config fails the task without retries,
        the message naming the file and the field."""
        from airflow_mlops.config.model import ConfigError
        from airflow_mlops.config.parser import load_model_config

        try:
            return load_model_config(self.config_path)
        except ConfigError as e:
            fail(f"model config problem: {e}")

    @cached_property
    def hook(self) -> ArtifactStoreHook:
        """The store hook: ``storage_uri`` / ``aws_conn_id`` of this task, else ``[mlops]`` settings."""
        return ArtifactStoreHook(self.storage_uri, self.aws_conn_id)

    @cached_property
    def store(self) -> ArtifactStore:
        return self.hook.get_conn()

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.store)

    def logical_ds(self, context: Context) -> LogicalDate:
        """The run's logical date, parsed once here (the operator boundary) into a :class:`LogicalDate`
        that the capability packages take as is: ``ds=`` when given, else :func:`context_ds`."""
        ds = logical_ds(self.ds or context_ds(context))
        self._lineage_ds = ds
        return ds

    # ---- lineage -------------------------------------------------------------------
    def set_lineage(self, *, inputs: Sequence[str] = (), outputs: Sequence[str] = (), model: str | None = None,
                    version: int | None = None, model_role: str | None = None) -> None:
        """Record, during ``execute``, dataset URIs read/written and the model version used
        (``model_role="input"``) or produced (``"output"``), for OpenLineage. Adds to what the
        returned XCom dict names."""
        rec = self.__dict__.setdefault("_lineage_recorded", {"inputs": [], "outputs": []})
        rec["inputs"].extend(str(u) for u in inputs if u)
        rec["outputs"].extend(str(u) for u in outputs if u)
        if model is not None:
            rec["model"], rec["version"] = model, (int(version) if version is not None else None)
        if model_role is not None:
            rec["model_role"] = model_role

    def lineage_info(self) -> dict[str, Any]:
        """What the last ``execute`` read and wrote: ``{"inputs": [uri], "outputs": [uri], "model",
        "version", "model_role", "model_uri", "partitions": {dataset uri: [ds]}}``; dataset URIs are
        dataset roots (a ``ds=`` partition is listed under ``partitions``)."""
        from airflow_mlops.registry.model_registry import split_dataset_uri

        rec = dict(getattr(self, "_lineage_recorded", None) or {"inputs": [], "outputs": []})
        result = getattr(self, "_lineage_result", None)
        result = result if isinstance(result, dict) else {}
        inputs = list(rec["inputs"]) + [result[k] for k in ("input_uri", "dataset_uri", "training_data_uri")
                                         if isinstance(result.get(k), str)]
        outputs = list(rec["outputs"]) + [result[k] for k in ("output_uri", "quarantine_uri")
                                          if isinstance(result.get(k), str)]
        model = rec.get("model") or (result.get("model") if isinstance(result.get("model"), str) else None)
        version = rec.get("version") if rec.get("model") else result.get("version")
        try:
            version = int(version) if version is not None else None
        except (TypeError, ValueError):
            version = None
        role = rec.get("model_role")
        model_uri = None
        fingerprint = None
        if model and version is not None:
            model_uri = self.registry.version_uri(model, version)
            if role is None:  # a registration returns the new version's URI
                role = "output" if str(result.get("uri", "")).rstrip("/") == model_uri.rstrip("/") else "input"
            if role == "output":
                try:
                    td = self.registry.get_metadata(model, version).get("training_data") or {}
                except Exception:  # lineage must never fail the task
                    td = {}
                if td.get("uri"):
                    root = str(td["uri"]).rstrip("/")
                    inputs += [f"{root}/ds={d}" for d in td.get("partitions") or []] or [td["uri"]]
                fingerprint = (td.get("fingerprint") or {}).get("content_hash")
        ds = getattr(self, "_lineage_ds", None)
        for name in self.openlineage_default_inputs:
            uri = self._default_input_uri(name)
            if uri:
                inputs.append(f"{uri.rstrip('/')}/ds={ds}" if ds else uri)
        partitions: dict[str, list[str]] = {}

        def roots(uris: list[str]) -> list[str]:
            out: list[str] = []
            for u in uris:
                root, part = split_dataset_uri(u)
                if root not in out:
                    out.append(root)
                if part and part not in partitions.setdefault(root, []):
                    partitions[root].append(part)
            return out

        return {"inputs": roots(inputs), "outputs": roots(outputs), "model": model, "version": version,
                "model_role": role, "model_uri": model_uri, "partitions": partitions,
                "fingerprint": fingerprint or (result.get("fingerprint") if role == "output" else None)}

    def _default_input_uri(self, name: str) -> str | None:
        from airflow_mlops.config.locations import Locations

        try:
            where = Locations(self.config, self.store)
            if name == "config_data":
                return where.input.uri()
            if name == "scoring_data":
                return where.scoring.uri()
            if name == "predictions":
                return where.predictions().uri()
            if name == "ground_truth":
                gt = where.ground_truth
                return gt.uri() if gt is not None else None
        except Exception:  # lineage must never fail the task
            return None
        raise ValueError(f"unknown openlineage_default_inputs entry {name!r}; "
                         "use config_data, scoring_data, predictions or ground_truth")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage ``OperatorLineage`` of the finished task: input/output datasets (namespace and
        name as the OpenLineage naming spec: ``file`` + path, ``s3://bucket`` + key) with the model
        version as a dataset (output of training, input of scoring/monitoring), and the run facet
        ``mlops_model_version`` (model, version, URI, role, data fingerprint, partitions)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        info = self.lineage_info()
        inputs = [openlineage_dataset(u) for u in info["inputs"]]
        outputs = [openlineage_dataset(u) for u in info["outputs"]]
        run_facets: dict[str, Any] = {}
        if info["model"] and info["version"] is not None:
            (outputs if info["model_role"] == "output" else inputs).append(openlineage_dataset(info["model_uri"]))
            run_facets["mlops_model_version"] = model_version_facet_class()(
                name=info["model"], version=int(info["version"]), uri=info["model_uri"],
                role=info["model_role"], training_data_fingerprint=info["fingerprint"],
                partitions=info["partitions"] or None,
            )
        return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)

    @staticmethod
    def run_info(context: Context) -> dict[str, Any]:
        """dag_id, run_id, task_id, try_number and logical date of the running task, and ``triggered_by``:
        the identity the task acts as (the user who triggered the Dag run, ``scheduler`` for scheduled runs;
        see :func:`airflow_mlops.trust.identity.run_identity`)."""
        from airflow_mlops.trust.identity import run_identity

        ti = context["ti"]
        logical = context.get("logical_date")
        return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                "try_number": getattr(ti, "try_number", None),
                "logical_date": logical.isoformat() if logical is not None else None,
                "hostname": os.uname().nodename, "triggered_by": run_identity(context)}


def openlineage_dataset(uri: str) -> Any:
    """An OpenLineage ``Dataset`` for a storage URI, named like Airflow's asset converters do
    (``file:///p`` -> namespace ``file``, name ``/p``; ``s3://b/k`` -> ``s3://b``, ``k``)."""
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return Dataset(namespace=f"file://{parts.netloc}" if parts.netloc else "file", name=parts.path or uri)
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/") or "/")


@functools.cache
def model_version_facet_class() -> type:
    """The ``mlops_model_version`` run facet (an OpenLineage ``RunFacet``), built on first use so the
    OpenLineage client stays an optional dependency."""
    import attr
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attr.define
    class MLOpsModelVersionRunFacet(RunFacet):
        """The registered model version a task produced (``role="output"``) or used (``"input"``)."""

        name: str
        version: int
        uri: str
        role: str = "input"
        training_data_fingerprint: str | None = None
        partitions: dict[str, Any] | None = None

        @staticmethod
        def _get_schema() -> str:
            return "https://example.invalid/airflow-mlops/spec/MLOpsModelVersionRunFacet.json"

    return MLOpsModelVersionRunFacet


def pull_same_index(context: Context, task_id: str) -> Any:
    """The XCom of ``task_id`` at this (mapped) task instance's map index: the same segment."""
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index)


def context_ds(context: Context) -> LogicalDate:
    """The run's date: ``ds`` for scheduled runs; for asset-triggered runs (no logical date in
    Airflow 3) the ``ds`` carried by the triggering asset event, else the run's ``run_after`` date."""
    ds = context.get("ds")
    if ds:
        return logical_ds(ds)
    events = context.get("triggering_asset_events") or {}
    for evs in events.values():
        for ev in evs:
            extra = getattr(ev, "extra", None) or {}
            if extra.get("ds"):
                return logical_ds(extra["ds"])
    run = context.get("dag_run")
    when = getattr(run, "run_after", None) or getattr(run, "start_date", None)
    if when is None:
        raise ValueError("cannot tell the logical date of this run; pass ds=")
    return LogicalDate(when.date())


def fail(message: str, check: str | None = None) -> NoReturn:
    """Fail the task without retries (a gate or a bad input: retrying cannot help). ``check`` names the
    alert check the failure notifier raises (e.g. ``integrity``; default: the notifier's own)."""
    from airflow.sdk.exceptions import AirflowFailException

    error = AirflowFailException(message)
    error.mlops_check = check  # type: ignore[attr-defined]
    raise error


#: Registry errors that mean "this model version must not be used": alerted as ``integrity``.
def integrity_check(error: BaseException) -> str | None:
    from airflow_mlops.registry.model_registry import IntegrityError, LifecycleError, PolicyError, UntrustedModelError

    return "integrity" if isinstance(error, (IntegrityError, UntrustedModelError, PolicyError, LifecycleError)) \
        else None
