"""Operator extra links: buttons on a task instance that open the reports its operator wrote.

Each link reads the task's ``return_value`` XCom (the operator's summary: ``report_uri``,
``evaluation_report``, ``model``/``version``...), and points at the ``mlops`` plugin's report server
(``/mlops/files/<store key>``), which serves the report through the artifact store (hash-verified for
registry artifacts). A report outside the configured store root (``[mlops] storage_uri``), or a task
that returned no summary, yields no link (an empty string; the UI shows the button disabled).

Two ways to attach them, both supported by every class here:

* **by the plugin** (what the ``mlops`` plugin does): ``MLOpsPlugin.operator_extra_links`` lists the
  links with their ``operators`` (see :func:`plugin_links`). The API server then calls ``get_link`` when
  the UI asks for the task's links and the XCom is read from the metadata database. The operators stay
  untouched and task instances that ran before the plugin was installed get links too.
* **by the operator**: ``operator_extra_links = (EvaluationReportLink(),)`` on the operator class. Airflow 3
  then calls ``get_link`` in the worker when the task finishes and stores the URL in XCom
  (``_link_<ClassName>``), read by the UI.

URLs are relative (``/mlops/...``) unless ``[api] base_url`` is set, in which case they are prefixed with it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)


#: Where the plugin's FastAPI app is mounted in the Airflow API server.
URL_PREFIX = "/mlops"

def report_path(key: str, base: str = "") -> str:
    """Path (under the API server, prefixed with ``base``) at which the plugin serves store ``key``."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}{URL_PREFIX}/files/{quote(key, safe='/=')}"


def model_path(model: str, base: str = "") -> str:
    """Path (under the API server, prefixed with ``base``) of the plugin's page of ``model``."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}{URL_PREFIX}/models/{quote(model, safe='')}"


def api_base_url() -> str:
    """``[api] base_url`` without a trailing slash ('' when unset: links are then relative to the UI host)."""
    try:
        from airflow.configuration import conf

        base = conf.get("api", "base_url", fallback="") or ""
    except Exception:  # pragma: no cover
        base = ""
    return "" if base.strip() in ("", "/") else base.rstrip("/")


def report_url(uri: str | None, storage_uri: str | None = None) -> str:
    """URL of the plugin route serving the store object ``uri``; '' when the plugin cannot serve it."""
    from airflow_mlops.store.artifacts import ArtifactStore, StorageError
    from airflow_mlops.store.layout import match_report_key

    if not uri or not isinstance(uri, str):
        return ""
    try:
        key = ArtifactStore(storage_uri).key_of(uri)
    except StorageError:
        log.info("%s is outside the configured artifact store; no link", uri)
        return ""
    if match_report_key(key) is None:
        return ""
    return report_path(key, base=api_base_url())


def registry_url(model: str | None, version: Any = None) -> str:
    """URL of a model's registry page (anchored at ``version`` when given)."""

    if not model or not isinstance(model, str):
        return ""
    url = model_path(model, base=api_base_url())
    if version is not None:
        try:
            url += f"#{model}-v{int(version)}"
        except (TypeError, ValueError):
            pass
    return url


def _in_task_process() -> bool:
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return runner is not None and getattr(runner, "SUPERVISOR_COMMS", None) is not None


def _summary_from_db(ti_key: TaskInstanceKey) -> Any:
    from airflow.models.xcom import XCOM_RETURN_KEY, XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.scalar(
            XComModel.get_many(key=XCOM_RETURN_KEY, run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                               task_ids=ti_key.task_id, map_indexes=ti_key.map_index)
            .with_only_columns(XComModel.value).limit(1)
        )
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value


def task_summary(ti_key: TaskInstanceKey) -> dict[str, Any]:
    """The task's ``return_value`` XCom (the operator's summary); ``{}`` when absent or not a dict.

    In a task process (operator-declared links) it goes through the Task SDK; in the API server
    (plugin-declared links) it reads the metadata database. Values of a custom XCom backend that stores
    references instead of JSON are not resolved here (no link).
    """
    if _in_task_process():
        from airflow.sdk.execution_time.xcom import XCom  # the configured XCom backend

        value = XCom.get_value(ti_key=ti_key, key=XCom.XCOM_RETURN_KEY)
    else:
        value = _summary_from_db(ti_key)
    return value if isinstance(value, dict) else {}


class MLOpsReportLink(BaseOperatorLink):
    """Link to the report whose URI is under one of :attr:`xcom_fields` in the task's summary XCom.

    This generic link (button "MLOps report") tries ``report_uri``, ``evaluation_report`` and
    ``result_uri`` in that order; the subclasses pick one field and name the button.
    """

    name: ClassVar[str] = "MLOps report"
    xcom_fields: ClassVar[tuple[str, ...]] = ("report_uri", "evaluation_report", "result_uri")

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        summary = task_summary(ti_key)
        for field in self.xcom_fields:
            if summary.get(field):
                return report_url(summary[field])
        return ""


class ValidationReportLink(MLOpsReportLink):
    """DataValidationOperator: the Great Expectations report of the validated partition."""

    name: ClassVar[str] = "Validation report"
    xcom_fields: ClassVar[tuple[str, ...]] = ("report_uri",)


class EvaluationReportLink(MLOpsReportLink):
    """TrainModelOperator: the evaluation report stored with the registered version (hash-verified)."""

    name: ClassVar[str] = "Evaluation report"
    xcom_fields: ClassVar[tuple[str, ...]] = ("evaluation_report",)


class DriftReportLink(MLOpsReportLink):
    """DriftDetectionOperator: the evidently drift report of the day."""

    name: ClassVar[str] = "Drift report"
    xcom_fields: ClassVar[tuple[str, ...]] = ("report_uri",)


class PromotionReportLink(BaseOperatorLink):
    """PromoteModelOperator: the gate's decision (``reports/promotion.html`` of the candidate version)."""

    name: ClassVar[str] = "Promotion decision"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError

        summary = task_summary(ti_key)
        model, version = summary.get("model"), summary.get("version")
        if not model or version is None:
            return ""
        try:
            uri = ModelRegistry().version_uri(str(model), int(version), "reports/promotion.html")
        except (RegistryError, TypeError, ValueError):
            return ""
        return report_url(uri)


class ModelCardLink(BaseOperatorLink):
    """TrainModelOperator, PromoteModelOperator, ApproveModelOperator: the version's model card
    (``reports/model_card.html``, re-rendered after each promotion decision and approval)."""

    name: ClassVar[str] = "Model card"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError

        summary = task_summary(ti_key)
        if summary.get("model_card"):
            return report_url(summary["model_card"])
        model, version = summary.get("model"), summary.get("version")
        if not model or version is None:
            return ""
        try:
            uri = ModelRegistry().version_uri(str(model), int(version), "reports/model_card.html")
        except (RegistryError, TypeError, ValueError):
            return ""
        return report_url(uri)


class ModelRegistryLink(BaseOperatorLink):
    """Any operator whose summary names ``model`` (and ``version``): the model's registry page."""

    name: ClassVar[str] = "Model registry"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        summary = task_summary(ti_key)
        return registry_url(summary.get("model"), summary.get("version"))


#: Which links the plugin attaches to which operators (module, class name).
LINKS_BY_OPERATOR: dict[tuple[str, str], tuple[type[BaseOperatorLink], ...]] = {
    ("airflow_mlops.operators.validation", "DataValidationOperator"): (ValidationReportLink,),
    ("airflow_mlops.operators.training", "TrainModelOperator"): (EvaluationReportLink, ModelCardLink,
                                                                 ModelRegistryLink),
    ("airflow_mlops.operators.training", "RegisterExternalModelOperator"): (EvaluationReportLink, ModelCardLink,
                                                                            ModelRegistryLink),
    ("airflow_mlops.operators.registry", "PromoteModelOperator"): (PromotionReportLink, ModelCardLink,
                                                                   ModelRegistryLink),
    ("airflow_mlops.operators.registry", "ApproveModelOperator"): (ModelCardLink, ModelRegistryLink),
    ("airflow_mlops.operators.registry", "RollbackModelOperator"): (ModelRegistryLink,),
    ("airflow_mlops.operators.monitoring", "DriftDetectionOperator"): (DriftReportLink, ModelRegistryLink),
    ("airflow_mlops.operators.inference", "BatchInferenceOperator"): (ModelRegistryLink,),
}


def plugin_links() -> list[BaseOperatorLink]:
    """One instance of each link class, its ``operators`` set to the operator classes of
    :data:`LINKS_BY_OPERATOR` that can be imported (an operator module that is missing is skipped)."""
    import importlib

    operators: dict[type[BaseOperatorLink], list[type]] = {}
    for (module, cls_name), link_classes in LINKS_BY_OPERATOR.items():
        try:
            op = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as e:
            log.debug("no extra links for %s.%s: %s", module, cls_name, e)
            continue
        for link_cls in link_classes:
            operators.setdefault(link_cls, []).append(op)
    out = []
    for link_cls, ops in operators.items():
        link_cls.operators = ops  # matched against the serialized task's class name and module
        out.append(link_cls())
    return out


__all__ = [
    "DriftReportLink", "EvaluationReportLink", "LINKS_BY_OPERATOR", "MLOpsReportLink", "ModelCardLink",
    "ModelRegistryLink",
    "PromotionReportLink", "ValidationReportLink", "plugin_links", "registry_url", "report_url", "task_summary",
]
