"""BatchInferenceOperator: score one input partition into the prediction log (streaming, atomic)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.scoring.batch import ScoringSummary
    from airflow_mlops.scoring.merge import MergeSummary


class BatchInferenceOperator(MLOpsBaseOperator):
    """Score the logical date's input partition with a registered model and write the predictions
    to ``<root>/predictions/<model>/ds=<ds>/`` in the prediction-log schema
    (``docs/prediction-log.md``): keys, ``prediction``, ``proba_<class>``, ``shadow_prediction``,
    ``shadow_model_version``, ``model_name``, ``model_version``, ``scored_by``, ``logical_date``,
    ``scored_at``, ``run_id``.

    Input files are streamed in Arrow record batches (memory bounded by ``batch_size``, not by the
    partition size) and written with one Parquet writer per input file; the partition is committed
    atomically, so a re-run (or a retry) replaces exactly that partition and a failure leaves the
    previous one intact. The input schema is checked against the model's feature schema before
    anything is written.

    Which model scores:

    * ``version`` (templated): pin a version (``scored_by="pinned"``);
    * else the version ``alias`` points to (``scored_by=<alias>``, default ``champion``);
    * ``as_of_logical_date=True``: the version the alias pointed to at the end of the logical day,
      from the registry's audit log; a backfill (``catchup=True``) thus scores each past date with
      the model that was champion then. If the alias did not exist then, the task fails naming the
      date and the alias history (pin a version to score such dates).

    Rollout controls (``docs/operators/batch-inference.md``):

    * **canary**: the config's ``canary`` section (``alias``, ``share``) or ``canary_alias`` /
      ``canary_share``: a stable share of the rows (chosen by a hash of the key values, the same on
      every re-run and backfill) is scored by that alias's version, ``scored_by="canary"``. A
      missing canary alias scores every row with the main model (``canary_error`` in the XCom).
    * **kill switch**: the Airflow Variable ``mlops_<model>_disabled`` (truthy: ``true``, ``1``,
      ``yes``, a reason text...) or the registry flag (``ModelRegistry.set_model_disabled``): every
      row gets the naive training baseline, ``scored_by="fallback"``; switching off resumes scoring.
    * **explanations**: the config's ``explain`` section (``top_k``, ``method``) or ``explain=True``:
      ``explain_<i>_feature`` / ``explain_<i>_value`` columns; time spent in the XCom ``explain``.

    Bad input (missing partition, missing/incompatible columns, unreadable file) and registry
    problems (unknown model, version or alias, retired version - naming who retired it and why -,
    integrity failure) fail the task without retries; storage errors are raised as they are and
    retried.

    :param alias: alias to score with. (templated)
    :param version: pinned version, wins over ``alias``. (templated)
    :param as_of_logical_date: resolve ``alias`` as of the end of the logical date.
    :param if_alias_missing: with ``as_of_logical_date``, what to do for a date when the alias did not
        exist yet: ``"fail"`` (default) or ``"first"`` = score with the first version the alias ever
        pointed to, recorded as ``scored_by="first_version"`` (still reproducible: the audit log is
        append-only). For backfilling history older than the first promotion.
    :param batch_size: rows per record batch (default
        :data:`airflow_mlops.scoring.batch.DEFAULT_BATCH_SIZE`).
    :param shadow_alias: also score with this alias into ``shadow_prediction`` /
        ``shadow_model_version`` (recorded only, never used downstream; null when the alias does not
        exist or the shadow model cannot score the input). (templated)
    :param input_dataset: score ``<root>/data/<input_dataset>`` instead of the config's dataset.
        (templated)
    :param input_format: ``parquet``/``csv`` of ``input_dataset`` (default: the config's format).
    :param output_prefix: prediction dataset prefix (default ``predictions/<model>``). (templated)
    :param files: score only these input files (fan-out with dynamic task mapping, see
        :func:`airflow_mlops.scoring.batch.partition_input_files`); the result is a part that
        :class:`MergePredictionPartsOperator` commits. (templated)
    :param canary_alias: canary alias (default: the config's ``canary.alias``). (templated)
    :param canary_share: canary share 0-1 (default: the config's ``canary.share``; ``0`` = off).
    :param explain: ``None`` = the config's ``explain`` section; ``True`` / ``False`` force it on/off.
    :param kill_switch_variable: Airflow Variable read as the kill switch (default
        ``mlops_<model>_disabled``); ``""`` = only the registry flag.
    :param segment: with a config's ``segments`` section, score only the rows of this segment value
        with that segment's model (``<model>__<slug>``, same alias rules) into a part of
        ``predictions/<model>/``, committed by :class:`MergePredictionPartsOperator`
        (``segments=True``); the kill switch variable is then the segment model's. See
        :mod:`airflow_mlops.segments.flows`. (templated)

    Example (the daily scoring DAG; ``catchup=True`` makes backfills reproducible)::

        from airflow_mlops.operators.inference import BatchInferenceOperator

        score = BatchInferenceOperator(
            task_id="score",
            config_path="dags/configs/churn.yaml",
            as_of_logical_date=True,        # the champion of that day
            shadow_alias="challenger",      # optional shadow column
        )

    XCom: ``{"model", "version", "scored_by", "selection", "as_of", "rows", "files", "output_files",
    "output_uri", "output_key", "input_uri", "seconds", "shadow_version", "shadow_error", "scored_at",
    "run_id", "ds", "part", "canary_alias", "canary_version", "canary_share", "canary_rows",
    "canary_error", "kill_switch", "fallback", "explain"}``.
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "alias", "version", "shadow_alias",
                                      "input_dataset", "output_prefix", "files", "canary_alias", "segment")
    ui_color = "#ffe8cc"

    def __init__(self, *, alias: str = "champion", version: int | str | None = None,
                 as_of_logical_date: bool = False, if_alias_missing: str = "fail", batch_size: int | None = None,
                 shadow_alias: str | None = None, input_dataset: str | None = None,
                 input_format: str | None = None, output_prefix: str | None = None,
                 files: str | list[str] | None = None, canary_alias: str | None = None,
                 canary_share: float | None = None, explain: bool | None = None,
                 kill_switch_variable: str | None = None, segment: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segment = segment
        self.canary_alias = canary_alias
        self.canary_share = canary_share
        self.explain = explain
        self.kill_switch_variable = kill_switch_variable
        self.alias = alias
        self.version = version
        self.as_of_logical_date = as_of_logical_date
        self.if_alias_missing = if_alias_missing
        self.batch_size = batch_size
        self.shadow_alias = shadow_alias
        self.input_dataset = input_dataset
        self.input_format = input_format
        self.output_prefix = output_prefix
        self.files = files

    def execute(self, context: Context) -> ScoringSummary:
        from airflow_mlops.operators.base import fail
        from airflow_mlops.registry.model_registry import RegistryError
        from airflow_mlops.scoring.batch import DEFAULT_BATCH_SIZE, score_partition
        from airflow_mlops.store.datasets import DataError, Dataset

        dataset = None
        if self.input_dataset:
            dataset = Dataset.for_name(self.store, self.input_dataset, self.input_format or self.config.data.format)
        files = self.files
        if isinstance(files, str):
            files = [files]
        version = self.version if self.version not in (None, "", "None") else None
        config, output_prefix, segment = self.config, self.output_prefix or None, None
        if self.segment not in (None, ""):
            from airflow_mlops.config.segments import segment_config

            if config.segments is None:
                fail(f"segment={self.segment!r} given but {self.config_path} has no segments section")
            segment = (config.segments.column, self.segment)
            from airflow_mlops.store.layout import predictions_prefix

            output_prefix = predictions_prefix(config.name, output_prefix)
            config = segment_config(config, self.segment)
        variable = (self.kill_switch_variable if self.kill_switch_variable is not None
                    else kill_switch_variable(config.name))
        switch = read_variable(variable) if variable else None
        try:
            return score_partition(
                config, self.store, self.logical_ds(context),
                alias=self.alias or "champion", version=version, as_of_logical_date=self.as_of_logical_date,
                input_dataset=dataset, output_prefix=output_prefix, segment=segment,
                batch_size=int(self.batch_size or DEFAULT_BATCH_SIZE), shadow_alias=self.shadow_alias or None,
                run_id=str(context.get("run_id") or ""), files=files, if_alias_missing=self.if_alias_missing,
                canary_alias=self.canary_alias or None,
                canary_share=None if self.canary_share is None else float(self.canary_share),
                disabled=switch, disabled_source=f"Airflow Variable {variable}", explain=self.explain,
            )
        except (DataError, RegistryError) as e:  # SchemaMismatchError is a DataError
            from airflow_mlops.operators.base import integrity_check

            fail(f"batch scoring of {config.name} failed: {e}", check=integrity_check(e))
            raise


def kill_switch_variable(model: str) -> str:
    """Name of the Airflow Variable that switches scoring of ``model`` to the fallback."""
    return f"mlops_{model}_disabled"


def read_variable(key: str) -> str | None:
    """The Variable's value, or None when it is not set (also read from ``AIRFLOW_VAR_<KEY>``)."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(key, default=None)
    except KeyError:
        return None
    return None if value is None else str(value)


class MergePredictionPartsOperator(MLOpsBaseOperator):
    """Commit the prediction partition of the logical date from the parts written by mapped
    :class:`BatchInferenceOperator` tasks (``files=``), atomically; see
    :func:`airflow_mlops.scoring.merge.merge_parts`. Fails (no retry) when parts were scored by different
    model versions, overlap, or do not cover the input partition.

    :param parts_task_id: the mapped scoring task whose XComs are the part summaries.
    :param output_prefix: prediction dataset prefix (default ``predictions/<model>``). (templated)
    :param segments: the parts are segment parts (``BatchInferenceOperator(segment=...)``): checked per
        segment and against the segment values of the input partition
        (:func:`airflow_mlops.segments.flows.merge_segment_parts`).

    Example::

        files = list_files()   # @task returning scoring.partition_input_files(config, store, ds)
        parts = BatchInferenceOperator.partial(task_id="score", config_path=CFG, version="{{ ... }}")\\
            .expand(files=files)
        parts >> MergePredictionPartsOperator(task_id="merge", config_path=CFG, parts_task_id="score")

    XCom: ``{"model", "version", "scored_by", "rows", "files", "parts", "output_uri", ...}``.
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "output_prefix")
    ui_color = "#ffe8cc"

    def __init__(self, *, parts_task_id: str = "score", output_prefix: str | None = None,
                 input_dataset: str | None = None, input_format: str | None = None, segments: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segments = segments
        self.parts_task_id = parts_task_id
        self.output_prefix = output_prefix
        self.input_dataset = input_dataset
        self.input_format = input_format

    def execute(self, context: Context) -> MergeSummary:
        from airflow_mlops.operators.base import fail
        from airflow_mlops.scoring.merge import merge_parts
        from airflow_mlops.store.datasets import DataError, Dataset

        pulled = context["ti"].xcom_pull(task_ids=self.parts_task_id)
        if isinstance(pulled, dict):
            pulled = [pulled]
        parts = [p for p in (pulled or []) if p]
        dataset = None
        if self.input_dataset:
            dataset = Dataset.for_name(self.store, self.input_dataset, self.input_format or self.config.data.format)
        try:
            if self.segments:
                from airflow_mlops.segments.flows import merge_segment_parts

                return merge_segment_parts(self.config, self.store, self.logical_ds(context), parts,
                                           output_prefix=self.output_prefix or None, input_dataset=dataset)
            return merge_parts(self.config, self.store, self.logical_ds(context), parts,
                               output_prefix=self.output_prefix or None, input_dataset=dataset)
        except DataError as e:
            fail(f"merging the prediction parts of {self.config.name} failed: {e}")
            raise
