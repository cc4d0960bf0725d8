"""ModelApprovalSensor: wait for a human approval of a model version (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_mlops.hooks.registry import ModelRegistryHook
from airflow_mlops.sensors.base import PokeOnceThenDefer
from airflow_mlops.sensors.data import default_deferrable

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.registry.lifecycle import ApprovalXCom
    from airflow_mlops.triggers.registry import ApprovalEvent, ApprovalTrigger


class ModelApprovalSensor(PokeOnceThenDefer, BaseSensorOperator):
    """Wait until a version is approved (through ``ApproveModelOperator``, the registry page or
    ``python -m airflow_mlops.cli approve``). A rejection fails the task at once, naming who rejected
    it and why. ``deferrable=True`` waits in the triggerer: approvals can take days.

    :param model: model name. (templated)
    :param version: the version waiting for approval, e.g. ``{{ ti.xcom_pull('train')['version'] }}``. (templated)
    :param promote_task_id: the ``PromoteModelOperator`` task that gated the version. The sensor then
        waits only when that gate left the version *awaiting approval*; a version the gate rejected
        (kept as challenger) or already promoted needs no approval, so the sensor is skipped (and the
        tasks after it) instead of holding the run for days. In a mapped task group (segments) the
        result of the same map index is read, and ``model``/``version`` default to that result's.
        (templated)

    XCom: :class:`~airflow_mlops.registry.lifecycle.ApprovalXCom` (``{"model", "version"}`` and the version's
    approval record: ``status`` ``approved`` or ``not_required``, ``required``, and ``by``, ``at``, ``reason`` of
    an approval).

    Example::

        ModelApprovalSensor(task_id="wait_for_approval", model="churn",
                            version="{{ ti.xcom_pull(task_ids='train')['version'] }}",
                            deferrable=True, poke_interval=600, timeout=7 * 24 * 3600)
    """

    template_fields: Sequence[str] = ("model", "version", "storage_uri", "promote_task_id")

    def __init__(self, *, model: str | None = None, version: int | str | None = None,
                 promote_task_id: str | None = None, storage_uri: str | None = None,
                 aws_conn_id: str | None = None, deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if promote_task_id is None and (model is None or version in (None, "")):
            raise ValueError("ModelApprovalSensor needs model= and version=, or promote_task_id= to read them from")
        self.model, self.version, self.promote_task_id = model, version, promote_task_id
        self.storage_uri, self.aws_conn_id = storage_uri, aws_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def execute(self, context: Context) -> Any:
        if self.promote_task_id:
            self._follow_gate(context)
        return super().execute(context)

    def _gate_result(self, context: Context) -> dict[str, Any]:
        """The gate's result (same map index); fills in model/version when not given."""
        from airflow_mlops.operators.base import pull_same_index

        if self.promote_task_id is None:  # only called with a promote_task_id
            raise ValueError("ModelApprovalSensor has no promote_task_id to read the promotion result from")
        result: dict[str, Any] | None = pull_same_index(context, self.promote_task_id)
        if not result:
            raise ValueError(f"task {self.promote_task_id!r} pushed no promotion result; nothing to wait for")
        if self.model in (None, ""):
            self.model = result.get("model")
        if self.version in (None, "") and result.get("version") is not None:
            self.version = result["version"]
        return result

    def _follow_gate(self, context: Context) -> None:
        """Skip unless the gate's result says the version awaits approval."""
        from airflow.sdk.exceptions import AirflowSkipException

        result = self._gate_result(context)
        label = f"{self.model} v{self.version}" if self.version not in (None, "") else str(self.model)
        if result.get("skipped"):
            raise AirflowSkipException(f"{label}: segment skipped ({result['skipped']}); no version to approve")
        if not result.get("awaiting_approval"):
            state = "is already champion" if result.get("promote") else "did not pass the gate (kept as challenger)"
            raise AirflowSkipException(f"{label} {state}: no approval to wait for. {result.get('summary', '')}".strip())
        self.log.info("%s passed the gate and awaits approval: %s", label, result.get("summary", ""))

    def _version_number(self) -> int:
        """The version waited for (given, or filled in from the gate's result)."""
        if self.version is None:
            raise ValueError(f"ModelApprovalSensor has no version of {self.model!r} to wait for")
        return int(self.version)

    def _target(self) -> tuple[str, int]:
        """The model and version waited for (given, or filled in from the gate's result)."""
        if self.model is None:
            raise ValueError("ModelApprovalSensor has no model to wait for")
        return self.model, self._version_number()

    def _judge(self, verdict: dict[str, Any]) -> PokeReturnValue:
        status = verdict.get("status")
        if status == "rejected":
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{self.model} v{self.version} was rejected by {verdict.get('by')}: "
                                       f"{verdict.get('reason') or 'no reason given'}")
        done = status in ("approved", "not_required")
        xcom_value: ApprovalXCom | None = cast("ApprovalXCom", {"model": self.model, "version": self._version_number(),
                                                                **verdict}) if done else None
        return PokeReturnValue(is_done=done, xcom_value=xcom_value)

    def poke(self, context: Context) -> PokeReturnValue:
        model, version = self._target()
        return self._judge(ModelRegistryHook(self.storage_uri, self.aws_conn_id).get_conn()
                           .approval(model, version))

    def trigger(self, context: Context) -> ApprovalTrigger:
        from airflow_mlops.triggers.registry import ApprovalTrigger

        model, version = self._target()
        return ApprovalTrigger(storage_uri=self.storage_uri, aws_conn_id=self.aws_conn_id, model=model,
                               version=version, poke_interval=float(self.poke_interval))

    def execute_complete(self, context: Context, event: ApprovalEvent | None = None) -> ApprovalXCom | None:
        if self.promote_task_id:  # a resumed task is a new instance: model/version come from the gate again
            self._gate_result(context)
        if not event or event.get("status") != "decided":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"waiting for the approval failed: {event.get('message') if event else None}")
        return self._judge(event["verdict"]).xcom_value
