"""Registry operators: champion/challenger promotion, approval, rollback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator, pull_same_index

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.registry.lifecycle import ApprovalSummary, PromotionNotice, PromotionSummary, RollbackSummary
    from airflow_mlops.segments.flows import SegmentPromotionSkipped, SegmentPromotionSummary


def _version_from(context: Context, version: Any, task_id: str | None) -> int:
    if version not in (None, ""):
        return int(version)
    if not task_id:
        raise ValueError("give version= or candidate_task_id=")
    pulled = context["ti"].xcom_pull(task_ids=task_id)
    if not pulled or "version" not in pulled:
        raise ValueError(f"task {task_id!r} pushed no {{'version': ...}} XCom")
    return int(pulled["version"])


class PromoteModelOperator(MLOpsBaseOperator):
    """Champion/challenger gate for a candidate version.

    The current champion is re-scored on the candidate's holdout so both are compared on the same
    rows; the candidate becomes ``champion`` when it beats it on the config's primary metric by at
    least ``promotion.min_improvement`` and meets every constraint; otherwise it becomes ``challenger``.
    Constraints: ``metrics.floors``/``ceilings`` on any held-out metric including per-class ones
    (``recall_class_<label>``...), ceilings on the smoke-test profile (``latency_ms_per_10k_rows``,
    ``model_size_mb``, ``peak_rss_mb``...), and the fairness gate (``fairness.max_gap``,
    ``fairness.max_primary_gap``) when ``sensitive_features`` is set. With
    ``promotion.require_approval`` a passing candidate stays challenger until approved. The decision
    (each check with value and limit) goes to the audit log, to the version's
    ``reports/promotion.json``/``.html`` and to its re-rendered model card.

    XCom: :class:`~airflow_mlops.registry.lifecycle.PromotionSummary` (``{"model", "version", "promote", "alias",
    "summary", "champion_version", "broken", "broken_checks", "awaiting_approval", "primary_metric",
    "candidate_score", "champion_score", "model_card"}``); ``broken`` lists each broken constraint as
    ``"<metric> <value> > ceiling <limit>"``. With ``segment``, + ``"segment"``
    (:class:`~airflow_mlops.segments.flows.SegmentPromotionSummary`), or ``{"segment", "model", "skipped"}`` for a
    skipped segment.

    :param version: candidate version (templated); default: the ``version`` in the XCom of
        ``candidate_task_id``.
    :param candidate_task_id: task whose XCom names the candidate (default ``train``).
    :param segment: gate the candidate of this segment's model (``<model>__<slug>``), read from the
        XCom of the mapped ``candidate_task_id`` instance with the same map index; a skipped segment is
        passed through. (templated)

    Example::

        PromoteModelOperator(task_id="promote", config_path="dags/configs/churn.yaml")
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "version", "segment")
    ui_color = "#e8dcff"

    def __init__(self, *, version: int | str | None = None, candidate_task_id: str | None = "train",
                 segment: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.candidate_task_id = candidate_task_id
        self.segment = segment

    def execute(self, context: Context) -> PromotionSummary | SegmentPromotionSummary | SegmentPromotionSkipped:
        from airflow_mlops.registry.lifecycle import promote_candidate

        if self.segment not in (None, ""):
            from airflow_mlops.segments.flows import promote_segment

            trained = ({"version": int(self.version)} if self.version not in (None, "")
                       else pull_same_index(context, self.candidate_task_id or "train"))
            if not trained:
                raise ValueError(f"task {self.candidate_task_id!r} pushed no result for segment {self.segment!r}")
            return promote_segment(self.config, self.store, self.segment, trained, run_info=self.run_info(context))

        version = _version_from(context, self.version, self.candidate_task_id)
        return promote_candidate(self.config, self.store, version, run_info=self.run_info(context))


class ApproveModelOperator(MLOpsBaseOperator):
    """Record an approval (or rejection) of a version; the approver may not be the identity that
    registered it unless the config allows self-approval. With ``promote=True`` an approved version
    that passed the gate is then made champion.

    :param version: the version to approve (templated).
    :param approver: who approves (templated); default: the user who triggered this Dag run (a scheduled
        run acts as ``scheduler``). The audit entry also records the run and its triggering identity.

    XCom: :class:`~airflow_mlops.registry.lifecycle.ApprovalSummary` (``{"model", "version", "approval", "by"}``,
    + ``"promotion"``, the gate's result, or ``"model_card"``).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "version", "approver", "reason")

    def __init__(self, *, version: int | str, approver: str | None = None, reason: str = "", reject: bool = False,
                 promote: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version, self.approver, self.reason, self.reject, self.promote = version, approver, reason, reject, promote

    def execute(self, context: Context) -> ApprovalSummary:
        from airflow_mlops.registry.lifecycle import promote_candidate

        name, v = self.config.name, int(self.version)
        run_info = self.run_info(context)
        approver = self.approver or run_info["triggered_by"]
        ev = self.registry.approve(name, v, approver=approver, reason=self.reason,
                                   allow_self_approval=self.config.promotion.allow_self_approval,
                                   status="rejected" if self.reject else "approved",
                                   details={"via": "dag_run", "dag_id": run_info["dag_id"],
                                            "run_id": run_info["run_id"],
                                            "triggered_by": run_info["triggered_by"]})
        out: ApprovalSummary = {"model": name, "version": v, "approval": ev["to"], "by": approver}
        if self.promote and not self.reject:
            out["promotion"] = promote_candidate(self.config, self.store, v, actor=approver, run_info=run_info)
        else:  # the card shows the approval history: re-render it
            from airflow_mlops.registry.lifecycle import write_card

            out["model_card"] = write_card(self.registry, name, v).get("model_card")
        return out


class RollbackModelOperator(MLOpsBaseOperator):
    """Re-point an alias (default ``champion``) to an earlier version: ``to_version`` or, by default,
    the version it held before. Recorded in the audit log with the reason. The model cards of both
    versions (the one that lost the alias and the one that gained it) are re-rendered.

    XCom: :class:`~airflow_mlops.registry.lifecycle.RollbackSummary` (``{"model", "alias", "from", "to",
    "model_cards"}``).
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "to_version", "reason")

    def __init__(self, *, alias: str = "champion", to_version: int | str | None = None, reason: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias, self.to_version, self.reason = alias, to_version, reason

    def execute(self, context: Context) -> RollbackSummary:
        tv = int(self.to_version) if self.to_version not in (None, "") else None
        run_info = self.run_info(context)
        ev = self.registry.rollback(self.config.name, self.alias, tv, actor=run_info["triggered_by"],
                                    reason=self.reason,
                                    details={"via": "dag_run", "dag_id": run_info["dag_id"],
                                             "run_id": run_info["run_id"]})
        from airflow_mlops.registry.lifecycle import refresh_cards

        cards = refresh_cards(self.registry, self.config.name, [ev["from"], ev["to"]])
        return {"model": self.config.name, "alias": self.alias, "from": ev["from"], "to": ev["to"],
                "model_cards": {str(v): uri for v, uri in cards.items()}}


class NotifyPromotionOperator(MLOpsBaseOperator):
    """Tell the model's owner what the promotion gate decided (the ``notify`` step of ``<model>_training``).

    Reads the XCom of ``promote_task_id`` and routes, through :func:`airflow_mlops.alerts.delivery.raise_alert`
    (e-mail via the SMTP provider, chat webhook; config ``owner`` and ``alerts``):

    * a ``gate`` alert (``fairness`` for a fairness limit) when the candidate broke a constraint, naming
      each constraint with its value and limit;
    * a ``promotion`` notice when it became champion, awaits approval (with the CLI command to approve),
      or did not beat the champion.

    One message per model, check and logical date: a rerun does not send it again.

    XCom: :class:`~airflow_mlops.registry.lifecycle.PromotionNotice` (``{"check", "sent", "message"}``, + ``"segment"``
    with ``segment``).

    Example::

        NotifyPromotionOperator(task_id="notify", config_path="dags/configs/churn.yaml",
                                promote_task_id="promote")

    ``segment``: notify the decision of this segment's model (the mapped ``promote_task_id`` instance
    with the same map index); a skipped segment sends nothing. (templated)
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "promote_task_id", "segment")
    ui_color = "#fff3c4"

    def __init__(self, *, promote_task_id: str = "promote", segment: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.promote_task_id = promote_task_id
        self.segment = segment

    def execute(self, context: Context) -> PromotionNotice:
        from airflow_mlops.registry.lifecycle import notify_promotion

        if self.segment not in (None, ""):
            from airflow_mlops.config.segments import segment_config

            result = pull_same_index(context, self.promote_task_id)
            if result and result.get("skipped"):
                return {"segment": str(self.segment), "check": None, "sent": False, "skipped": result["skipped"]}
            if not result or "version" not in result:
                raise ValueError(f"task {self.promote_task_id!r} pushed no promotion result for segment "
                                 f"{self.segment!r}; nothing to notify")
            out = notify_promotion(segment_config(self.config, self.segment), self.store, result,
                                   self.logical_ds(context), context=context)
            return {**out, "segment": str(self.segment)}
        result = context["ti"].xcom_pull(task_ids=self.promote_task_id)
        if not result or "version" not in result:
            raise ValueError(f"task {self.promote_task_id!r} pushed no promotion result; nothing to notify")
        return notify_promotion(self.config, self.store, result, self.logical_ds(context), context=context)
