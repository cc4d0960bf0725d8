"""Reading a model config: YAML into :class:`~airflow_mlops.config.model.ModelConfig`, checked early.

Every problem raises :class:`~airflow_mlops.config.model.ConfigError` naming the file and the dotted field,
the way scikit-learn validates estimator parameters:

* Unknown fields are errors, with a "did you mean" suggestion.
* Malformed YAML (and duplicate keys) is reported with the file name and line number.
* The estimator class is imported and checked (a classifier for ``binary`` / ``multiclass``, a regressor for
  ``regression``); its params and the search space must be parameters it accepts. With
  ``check_estimator=False`` (Dag parsing) only the structure is checked and nothing is imported.

Importing this module is cheap: PyYAML and scikit-learn are imported inside functions.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from airflow_mlops.config.estimators import EstimatorParser
from airflow_mlops.config.factories import FactoryParser
from airflow_mlops.config.fields import SECTION_FIELDS
from airflow_mlops.config.model import (
    ALERT_CHECKS,
    DATA_FORMATS,
    DATASET_RE,
    DEFAULT_PRIMARY_METRIC,
    DRIFT_CLAUSES,
    DRIFT_RULES,
    EXPLAIN_METHODS,
    FAIRNESS_METRICS,
    NAME_RE,
    SCHEDULE_PRESETS,
    TOP_FIELDS,
    TRAINING_SPLITS,
    AlertsConfig,
    CanaryConfig,
    ConfigError,
    DataConfig,
    DriftConfig,
    ExplainConfig,
    FairnessConfig,
    MetricsConfig,
    ModelConfig,
    MonitoringConfig,
    PredictionsTable,
    PromotionConfig,
    SchedulesConfig,
    SegmentsConfig,
    SqlData,
    TrainingConfig,
    ValidationConfig,
    freeze,
    resolve_relative,
)
from airflow_mlops.evaluation.metrics import (
    METRICS_BY_TASK,
    TASKS,
    higher_is_better,
    is_per_class_metric,
    is_resource_metric,
    metric_range,
)


def _yaml_loader() -> type:
    """A SafeLoader subclass that rejects duplicate keys (PyYAML silently keeps the last one)."""
    import yaml

    class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable key: let PyYAML report it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark,
                    )
                seen.add(key)
            mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
            return mapping

    return _StrictLoader


def load_model_config(path: str | os.PathLike[str], *, check_estimator: bool = True) -> ModelConfig:
    """Read, parse and validate a model config YAML file.

    ``check_estimator=False`` (what the DAG factory uses while a Dag file is parsed): the estimator class is
    checked only for a syntactically valid path to a module that exists, found without importing anything
    (importing scikit-learn costs ~1 s per parse); its class, task fit and parameters are checked by every
    task that loads the config with the default ``True`` (and by ``python -m airflow_mlops.cli check``).

    Raises:
        ConfigError: the file is missing or unreadable, the YAML is malformed (message and
            ``.line`` give the line), or a field is invalid (``.field`` names it).
    """
    import yaml

    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", source=source) from exc
    try:
        raw = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        problem = " ".join(
            str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p
        ) or str(exc)
        where = f"line {line}, column {column}" if line is not None else "unknown position"
        raise ConfigError(f"malformed YAML at {where}: {problem}", source=source, line=line) from exc
    if raw is None:
        raise ConfigError("config file is empty", source=source)
    return parse_model_config(raw, source=source, check_estimator=check_estimator)


def parse_model_config(raw: Mapping[str, Any], source: str = "<dict>", *,
                       check_estimator: bool = True) -> ModelConfig:
    """Validate a config mapping (as loaded from YAML) and build a :class:`ModelConfig`.

    ``check_estimator``: see :func:`load_model_config`.

    Raises:
        ConfigError: with ``.field`` set to the dotted path of the first invalid field.
    """
    return _Parser(source, check_estimator=check_estimator).parse(raw)


class _Parser(EstimatorParser, FactoryParser):
    """Validates one config; every error names the field and the source."""

    def parse(self, raw: Mapping[str, Any]) -> ModelConfig:
        raw = self.mapping(raw, "", TOP_FIELDS)
        name = self.string(self.get(raw, "name", ""), "name", pattern=NAME_RE)
        owner = self.string(self.get(raw, "owner", ""), "owner")
        task = self.string(raw.get("task", "binary"), "task", choices=TASKS)
        data = self.parse_data(self.section(raw, "data", required=True))
        keys = self.columns(self.get(raw, "keys", ""), "keys", nullable=False)
        target = self.string(self.get(raw, "target", ""), "target")
        features = self.columns(raw.get("features"), "features", nullable=True)
        categorical = self.columns(raw.get("categorical_features"), "categorical_features", nullable=True,
                                   min_len=0)
        self.check_columns(keys, target, features, categorical)  # type: ignore[arg-type]
        estimator, instance = self.parse_estimator(self.section(raw, "estimator"), task)
        preprocess, pipeline = self.parse_factories(raw)
        search = self.parse_search(raw.get("search"), instance)
        training = self.parse_training(self.section(raw, "training"))
        if training.split == "time" and training.holdout_days >= data.training_window_days:
            raise self.error("training.holdout_days", f"{training.holdout_days} day(s) of holdout leave no training "
                                                      f"day in data.training_window_days={data.training_window_days}")
        metrics = self.parse_metrics(self.section(raw, "metrics"), task)
        sensitive = self.columns(raw.get("sensitive_features") or [], "sensitive_features", nullable=False,
                                 min_len=0)
        for path, cols in (("slices", raw.get("slices") or []), ("sensitive_features", sensitive)):
            clash = set(cols) & (set(keys) | {target})  # type: ignore[arg-type]
            if clash:
                raise self.error(path, f"column(s) {', '.join(sorted(clash))} are keys or the target")
        return ModelConfig(
            name=name,
            owner=owner,
            description=self.text(raw.get("description"), "description"),
            intended_use=self.text(raw.get("intended_use"), "intended_use"),
            limitations=self.text(raw.get("limitations"), "limitations"),
            data=data,
            keys=keys,  # type: ignore[arg-type]
            target=target,
            features=features,
            categorical_features=categorical,
            task=task,
            estimator=estimator,
            search=search,
            preprocess=preprocess,
            pipeline=pipeline,
            training=training,
            metrics=metrics,
            promotion=self.parse_promotion(self.section(raw, "promotion")),
            validation=self.parse_validation(self.section(raw, "validation")),
            schedules=self.parse_schedules(self.section(raw, "schedules")),
            drift=self.parse_drift(self.section(raw, "drift")),
            monitoring=self.parse_monitoring(self.section(raw, "monitoring")),
            slices=self.columns(raw.get("slices") or [], "slices", nullable=False, min_len=0),  # type: ignore[arg-type]
            sensitive_features=sensitive,  # type: ignore[arg-type]
            fairness=self.parse_fairness(raw.get("fairness"), sensitive),  # type: ignore[arg-type]
            explain=self.parse_explain(raw.get("explain")),
            canary=self.parse_canary(raw.get("canary")),
            alerts=self.parse_alerts(self.section(raw, "alerts")),
            segments=self.parse_segments(raw.get("segments"), keys, target, features),  # type: ignore[arg-type]
            predictions=self.parse_predictions(raw.get("predictions")),
            source=self.source,
        )

    def parse_data(self, sec: Mapping[str, Any]) -> DataConfig:
        uri = self.string(sec.get("uri"), "data.uri", nullable=True)
        if uri is not None and not uri.startswith(("file://", "s3://")):
            raise self.error("data.uri", f"must be a file:// or s3:// URI, got {uri!r}")
        conn_id = self.string(sec.get("conn_id"), "data.conn_id", nullable=True)
        sql = None
        if sec.get("table") is not None or sec.get("query") is not None or sec.get("date_column") is not None:
            if uri is not None:
                raise self.error("data.uri", "data is either in the store (uri / dataset) or in SQL (conn_id with "
                                             "table or query), not both")
            sql = self.sql_data(sec, "data", conn_id)
        if sec.get("dataset") is None and sql is not None and sql.table:  # the table's own name names the dataset
            sec = {**sec, "dataset": sql.table.split(".")[-1].strip('"`[]')}
        return DataConfig(
            dataset=self.string(self.get(sec, "dataset", "data"), "data.dataset", pattern=DATASET_RE),
            uri=uri,
            format=self.string(sec.get("format", "parquet"), "data.format", choices=DATA_FORMATS),
            conn_id=conn_id,
            training_window_days=self.integer(sec.get("training_window_days", 30),
                                              "data.training_window_days", low=1),
            ground_truth_dataset=None if isinstance(sec.get("ground_truth_dataset"), Mapping) else
            self.dataset_or_uri(sec.get("ground_truth_dataset"), "data.ground_truth_dataset"),
            scoring_dataset=None if isinstance(sec.get("scoring_dataset"), Mapping) else
            self.dataset_or_uri(sec.get("scoring_dataset"), "data.scoring_dataset"),
            example_rows=None if sec.get("example_rows") is None else
            self.integer(sec.get("example_rows"), "data.example_rows", 10, 10_000_000),
            sql=sql,
            scoring_sql=self.sql_mapping(sec.get("scoring_dataset"), "data.scoring_dataset", conn_id),
            ground_truth_sql=self.sql_mapping(sec.get("ground_truth_dataset"), "data.ground_truth_dataset", conn_id),
        )

    def sql_mapping(self, value: Any, path: str, default_conn: str | None) -> SqlData | None:
        """``scoring_dataset`` / ``ground_truth_dataset`` given as ``{conn_id?, table, date_column}`` or
        ``{conn_id?, query}``."""
        if not isinstance(value, Mapping):
            return None
        sec = self.mapping(value, path, ("conn_id", "table", "date_column", "query"))
        return self.sql_data(sec, path, self.string(sec.get("conn_id", default_conn), f"{path}.conn_id",
                                                     nullable=True))

    def sql_data(self, sec: Mapping[str, Any], path: str, conn_id: str | None) -> SqlData:
        """A table with its date column, or a query; checked without any connection (no data is read while a
        Dag file is parsed)."""
        from airflow_mlops.sql.errors import SqlSourceError
        from airflow_mlops.sql.source import SqlSource

        if not conn_id:
            raise self.error(f"{path}.conn_id", "SQL data needs the Airflow connection to read it with (conn_id)")
        table = self.string(sec.get("table"), f"{path}.table", nullable=True)
        date_column = self.string(sec.get("date_column"), f"{path}.date_column", nullable=True)
        query = self.string(sec.get("query"), f"{path}.query", nullable=True)
        try:
            SqlSource(table=table, date_column=date_column, query=query)
        except SqlSourceError as e:
            bad = "query" if query is not None and table is None else ("date_column" if table else "table")
            raise self.error(f"{path}.{bad}", str(e)) from None
        return SqlData(conn_id=conn_id, table=table, date_column=date_column, query=query)

    def parse_predictions(self, value: Any) -> PredictionsTable | None:
        if value is None:
            return None
        sec = self.mapping(value, "predictions", SECTION_FIELDS["predictions"])
        conn_id = self.string(self.get(sec, "conn_id", "predictions"), "predictions.conn_id")
        table = self.string(self.get(sec, "table", "predictions"), "predictions.table")
        from airflow_mlops.sql.dialects import split_name
        from airflow_mlops.sql.errors import SqlSourceError

        try:
            split_name(table)
        except SqlSourceError as e:
            raise self.error("predictions.table", str(e)) from None
        return PredictionsTable(conn_id=conn_id, table=table)

    def dataset_or_uri(self, value: Any, path: str) -> str | None:
        """A dataset name under ``<root>/data/`` or the ``file://``/``s3://`` URI of a partitioned dataset."""
        if isinstance(value, str) and "://" in value:
            if not value.startswith(("file://", "s3://")):
                raise self.error(path, f"must be a dataset name or a file:// or s3:// URI, got {value!r}")
            return value.rstrip("/")
        name: str | None = self.string(value, path, nullable=True, pattern=DATASET_RE)
        return name

    def check_columns(self, keys: tuple[str, ...], target: str, features: tuple[str, ...] | None,
                      categorical: tuple[str, ...] | None) -> None:
        if target in keys:
            raise self.error("target", f"target {target!r} is also listed in keys")
        if features is not None:
            for bad, what in ((set(features) & set(keys), "keys"), ({target} & set(features), "target")):
                if bad:
                    raise self.error("features", f"column(s) {', '.join(sorted(bad))} also used as {what}; "
                                                 "features must not overlap keys or target")
        if categorical is not None:
            overlap = set(categorical) & (set(keys) | {target})
            if overlap:
                raise self.error("categorical_features",
                                 f"column(s) {', '.join(sorted(overlap))} are keys or the target")
            if features is not None:
                extra = [c for c in categorical if c not in features]
                if extra:
                    raise self.error("categorical_features",
                                     f"column(s) {', '.join(extra)} are not listed in features")

    def parse_training(self, sec: Mapping[str, Any]) -> TrainingConfig:
        return TrainingConfig(
            test_size=self.number(sec.get("test_size", 0.2), "training.test_size", 0.0, 0.9,
                                  low_open=True, high_open=True),
            cv_folds=self.integer(sec.get("cv_folds", 5), "training.cv_folds", 2, 20),
            seed=self.integer(sec.get("seed", 42), "training.seed", 0, 2**32 - 1),
            reference_sample_size=self.integer(sec.get("reference_sample_size", 5000),
                                               "training.reference_sample_size", low=1),
            split=self.string(sec.get("split", "random"), "training.split", choices=TRAINING_SPLITS),
            holdout_days=self.integer(sec.get("holdout_days", 1), "training.holdout_days", low=1),
        )

    def parse_metrics(self, sec: Mapping[str, Any], task: str) -> MetricsConfig:
        valid = METRICS_BY_TASK[task]
        primary = sec.get("primary", DEFAULT_PRIMARY_METRIC[task])
        primary = self.string(primary, "metrics.primary")
        if primary not in valid:
            close = difflib.get_close_matches(primary, valid, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error("metrics.primary", f"{primary!r} is not a {task} metric{hint}; "
                                                f"valid: {', '.join(valid)}")
        floors = self.bounds(sec.get("floors"), "metrics.floors", task, floors=True)
        ceilings = self.bounds(sec.get("ceilings"), "metrics.ceilings", task, floors=False)
        for metric in set(floors) & set(ceilings):
            if floors[metric] > ceilings[metric]:
                raise self.error(f"metrics.floors.{metric}",
                                 f"floor {floors[metric]!r} is above the ceiling {ceilings[metric]!r}")
        return MetricsConfig(primary=primary, floors=freeze(floors), ceilings=freeze(ceilings))

    def bounds(self, raw: Any, path: str, task: str, *, floors: bool) -> dict[str, float]:
        if raw is None:
            return {}
        valid = METRICS_BY_TASK[task]
        out: dict[str, float] = {}
        for metric, value in self.mapping(raw, path, None).items():
            mpath = f"{path}.{metric}"
            per_class = task != "regression" and is_per_class_metric(metric)
            if metric not in valid and not per_class and not (not floors and is_resource_metric(metric)):
                allowed = (", ".join(valid) + ("" if task == "regression" else ", {precision,recall,f1}_class_<label>")
                           + ("" if floors else ", latency_*, model_size_*, peak_rss_*"))
                close = difflib.get_close_matches(metric, valid, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(mpath, f"{metric!r} is not a {task} metric{hint}; allowed: {allowed}")
            if floors and not higher_is_better(metric):
                raise self.error(mpath, f"{metric!r} is lower-is-better; a floor makes no sense, "
                                        f"put it under metrics.ceilings")
            low, high = metric_range(metric)
            out[metric] = self.number(value, mpath, None if math.isinf(low) else low,
                                      None if math.isinf(high) else high)
        return out

    def parse_promotion(self, sec: Mapping[str, Any]) -> PromotionConfig:
        return PromotionConfig(
            min_improvement=self.number(sec.get("min_improvement", 0.0), "promotion.min_improvement", low=0.0),
            require_approval=self.boolean(sec.get("require_approval", False), "promotion.require_approval"),
            allow_self_approval=self.boolean(sec.get("allow_self_approval", False),
                                             "promotion.allow_self_approval"),
            approval_poke_seconds=float(self.number(sec.get("approval_poke_seconds", 600.0),
                                                    "promotion.approval_poke_seconds", low=1.0)),
            approval_timeout_hours=float(self.number(sec.get("approval_timeout_hours", 168.0),
                                                     "promotion.approval_timeout_hours", low=0.0, low_open=True)),
        )

    def parse_validation(self, sec: Mapping[str, Any]) -> ValidationConfig:
        suite = self.string(sec.get("suite", "infer"), "validation.suite", nullable=True)
        if suite is not None and suite != "infer":
            if not suite.lower().endswith((".json", ".yaml", ".yml")):
                raise self.error("validation.suite", f"must be 'infer', null, or a path to a .json/.yaml "
                                                     f"expectation suite; got {suite!r}")
            if not self.source.startswith("<"):
                resolved = resolve_relative(suite, self.source)
                if not os.path.isfile(resolved):
                    raise self.error("validation.suite", f"suite file {resolved} does not exist "
                                                         f"(relative paths are resolved against the config file)")
        return ValidationConfig(
            suite=suite,
            mostly=self.number(sec.get("mostly", 1.0), "validation.mostly", 0.0, 1.0, low_open=True),
        )

    def parse_schedules(self, sec: Mapping[str, Any]) -> SchedulesConfig:
        defaults = SchedulesConfig()
        values: dict[str, Any] = {}
        for name in SECTION_FIELDS["schedules"]:
            path = f"schedules.{name}"
            if name == "max_active_runs":
                values[name] = self.integer(sec.get(name, defaults.max_active_runs), path, low=1)
                continue
            if name == "scoring_catchup":
                values[name] = self.boolean(sec.get(name, defaults.scoring_catchup), path)
                continue
            if name == "start_date":
                value = sec.get(name, defaults.start_date)
                value = value.isoformat() if hasattr(value, "isoformat") else self.string(value, path)
                try:
                    import datetime as _dt

                    _dt.date.fromisoformat(value)
                except ValueError:
                    raise self.error(path, f"must be a date YYYY-MM-DD, got {value!r}") from None
                values[name] = value
                continue
            value = self.string(sec.get(name, getattr(defaults, name)), path, nullable=True)
            if value is not None:
                self.check_schedule(value, path)
            values[name] = value
        return SchedulesConfig(**values)

    def check_schedule(self, value: str, path: str) -> None:
        if value.startswith("@"):
            if value not in SCHEDULE_PRESETS:
                raise self.error(path, f"unknown preset {value!r}; presets: {', '.join(sorted(SCHEDULE_PRESETS))}")
            return
        parts = value.split()
        if len(parts) != 5:
            raise self.error(path, f"{value!r} is not a cron expression (5 fields: minute hour day month "
                                   f"weekday) nor a preset like @daily")
        try:
            from croniter import croniter
        except ImportError:  # pragma: no cover - croniter ships with Airflow
            return
        if not croniter.is_valid(value):
            raise self.error(path, f"{value!r} is not a valid cron expression")

    def parse_drift(self, sec: Mapping[str, Any]) -> DriftConfig:
        d = DriftConfig()
        return DriftConfig(
            threshold=self.number(sec.get("threshold", 0.5), "drift.threshold", 0.0, 1.0, low_open=True),
            sample_size=self.integer(sec.get("sample_size", 100000), "drift.sample_size", low=1),
            stattest_threshold=self.number(sec.get("stattest_threshold"), "drift.stattest_threshold", low=0.0,
                                           low_open=True, nullable=True),
            rule=self.parse_drift_rule(sec.get("rule", d.rule)),
            top_k=self.integer(sec.get("top_k", d.top_k), "drift.top_k", low=0),
        )

    def parse_drift_rule(self, value: Any) -> str | tuple[str, ...]:
        """``drift.rule``: ``combined``, ``share`` or a non-empty list of clauses."""

        if isinstance(value, str):
            if value not in DRIFT_RULES:
                raise self.error("drift.rule", f"{value!r} is not a drift rule; expected one of "
                                               f"{', '.join(DRIFT_RULES)} or a list of clauses "
                                               f"({', '.join(DRIFT_CLAUSES)})")
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            bad = [v for v in value if v not in DRIFT_CLAUSES]
            if bad:
                raise self.error("drift.rule", f"unknown clause(s) {', '.join(map(repr, bad))}; clauses are "
                                               f"{', '.join(DRIFT_CLAUSES)}")
            return tuple(c for c in DRIFT_CLAUSES if c in value)
        raise self.error("drift.rule", f"must be one of {', '.join(DRIFT_RULES)} or a non-empty list of clauses "
                                       f"({', '.join(DRIFT_CLAUSES)}); got {value!r}")

    def parse_monitoring(self, sec: Mapping[str, Any]) -> MonitoringConfig:
        d = MonitoringConfig()
        p = "monitoring."
        low_ratio = self.number(sec.get("volume_min_ratio", d.volume_min_ratio), p + "volume_min_ratio", 0.0, 1.0,
                                high_open=True)
        return MonitoringConfig(
            min_slice_size=self.integer(sec.get("min_slice_size", d.min_slice_size), p + "min_slice_size", low=1),
            performance_window_days=self.integer(sec.get("performance_window_days", d.performance_window_days),
                                                 p + "performance_window_days", 1, 366),
            max_relative_change=self.number(sec.get("max_relative_change", d.max_relative_change),
                                            p + "max_relative_change", low=0.0, low_open=True, nullable=True),
            drift_cooldown_days=self.integer(sec.get("drift_cooldown_days", d.drift_cooldown_days),
                                             p + "drift_cooldown_days", 0, 366),
            freshness_deadline_hours=self.number(sec.get("freshness_deadline_hours", d.freshness_deadline_hours),
                                                 p + "freshness_deadline_hours", 0.0, 24.0 * 31),
            volume_window_days=self.integer(sec.get("volume_window_days", d.volume_window_days),
                                            p + "volume_window_days", 2, 366),
            volume_min_ratio=low_ratio,
            volume_max_ratio=self.number(sec.get("volume_max_ratio", d.volume_max_ratio), p + "volume_max_ratio",
                                         1.0, None, low_open=True),
            volume_max_z=self.number(sec.get("volume_max_z", d.volume_max_z), p + "volume_max_z", low=0.0,
                                     low_open=True, nullable=True),
        )

    def parse_fairness(self, raw: Any, sensitive: tuple[str, ...]) -> FairnessConfig | None:
        if raw is None:
            return FairnessConfig() if sensitive else None
        sec = self.mapping(raw, "fairness", SECTION_FIELDS["fairness"])
        if not sensitive:
            raise self.error("fairness", "needs sensitive_features: the columns holding the groups to compare")
        d = FairnessConfig()
        return FairnessConfig(
            metric=self.string(sec.get("metric", d.metric), "fairness.metric", choices=FAIRNESS_METRICS),
            max_gap=self.number(sec.get("max_gap", d.max_gap), "fairness.max_gap", 0.0, 1.0),
            max_primary_gap=self.number(sec.get("max_primary_gap"), "fairness.max_primary_gap", 0.0, None,
                                        nullable=True),
        )

    def parse_explain(self, raw: Any) -> ExplainConfig | None:
        if raw is None or raw is False:
            return None
        sec = self.mapping({} if raw is True else raw, "explain", SECTION_FIELDS["explain"])
        d = ExplainConfig()
        return ExplainConfig(
            top_k=self.integer(sec.get("top_k", d.top_k), "explain.top_k", 1, 50),
            method=self.string(sec.get("method", d.method), "explain.method", choices=EXPLAIN_METHODS),
        )

    def parse_canary(self, raw: Any) -> CanaryConfig | None:
        if raw is None:
            return None
        sec = self.mapping(raw, "canary", SECTION_FIELDS["canary"])
        alias = self.string(sec.get("alias", "challenger"), "canary.alias", pattern=NAME_RE)
        if alias == "champion":
            raise self.error("canary.alias", "the canary must be another alias than champion")
        return CanaryConfig(alias=alias,
                            share=self.number(self.get(sec, "share", "canary"), "canary.share", 0.0, 0.5,
                                              low_open=True))

    def parse_segments(self, raw: Any, keys: tuple[str, ...], target: str,
                       features: tuple[str, ...] | None) -> SegmentsConfig | None:
        if raw is None:
            return None
        sec = self.mapping(raw, "segments", SECTION_FIELDS["segments"])
        column = self.string(self.get(sec, "column", "segments"), "segments.column")
        if column in keys or column == target:
            raise self.error("segments.column", f"{column!r} is a key or the target; segment by another column")
        if features is not None and column in features:
            raise self.error("segments.column", f"{column!r} is listed in features; a segment column is "
                                                "constant within each segment's model, remove it from features")
        return SegmentsConfig(column=column,
                              min_rows=self.integer(sec.get("min_rows", 200), "segments.min_rows", 1),
                              map_files=self.boolean(sec.get("map_files", False), "segments.map_files"))

    def parse_alerts(self, sec: Mapping[str, Any]) -> AlertsConfig:
        emails = sec.get("email") or []
        if isinstance(emails, str):
            emails = [emails]
        if not isinstance(emails, (list, tuple)):
            raise self.error("alerts.email", f"must be an address or a list of addresses, got {emails!r}")
        for i, addr in enumerate(emails):
            if not isinstance(addr, str) or not re.match(r"^[^@\s]+@[^@\s]+$", addr):
                raise self.error(f"alerts.email[{i}]", f"not an e-mail address: {addr!r}")
        checks = sec.get("checks", list(ALERT_CHECKS))
        if not isinstance(checks, (list, tuple)):
            raise self.error("alerts.checks", f"must be a list of checks, got {checks!r}")
        for i, check in enumerate(checks):
            self.string(check, f"alerts.checks[{i}]", choices=ALERT_CHECKS)
        webhook = self.string(sec.get("webhook"), "alerts.webhook", nullable=True)
        if webhook is not None and not webhook.startswith(("http://", "https://", "conn:")):
            raise self.error("alerts.webhook", f"must be an http(s) URL or conn:<http connection id>, got {webhook!r}")
        return AlertsConfig(
            email=tuple(emails),
            smtp_conn_id=self.string(sec.get("smtp_conn_id", "smtp_default"), "alerts.smtp_conn_id"),
            webhook=webhook,
            checks=tuple(checks),
        )
