"""The model config: one YAML file per model (``dags/configs/<model>.yaml``), as frozen dataclasses.

:class:`ModelConfig` and its sections (data, estimator, search, metrics, promotion, validation, schedules,
drift, monitoring, fairness, explain, canary, segments, alerts), the values each field accepts, and
:class:`ConfigError`, whose ``field`` attribute is the dotted path of the offending field
(``estimator.class``, ``metrics.floors.roc_auc``, ...). Reading and checking a YAML file is
:mod:`airflow_mlops.config.parser` (:func:`~airflow_mlops.config.parser.load_model_config`); checking a config
against a partition's schema is :mod:`airflow_mlops.config.data_check`. See ``docs/model-config.md`` for
every field.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "FrozenDict", "DataConfig", "EstimatorConfig", "SearchConfig", "TrainingConfig",
           "MetricsConfig", "PromotionConfig", "ValidationConfig", "SchedulesConfig", "DriftConfig",
           "MonitoringConfig", "FairnessConfig", "ExplainConfig", "CanaryConfig", "AlertsConfig",
           "ModelConfig", "DEFAULT_ESTIMATORS", "DEFAULT_PRIMARY_METRIC"]

NAME_RE = re.compile(r"^[a-z0-9_]+$")
DATASET_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

#: Estimator used when the config has no ``estimator`` section.
DEFAULT_ESTIMATORS: dict[str, str] = {
    "binary": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}

#: Primary metric used when ``metrics.primary`` is not given.
DEFAULT_PRIMARY_METRIC: dict[str, str] = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}

SCHEDULE_PRESETS = frozenset(
    {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually",
     "@midnight"}
)
#: ``search.method``: random search, successive halving, optuna's TPE sampler (the extra ``airflow-mlops[optuna]``)
SEARCH_METHODS = ("random", "halving", "optuna")
#: ``training.split``: a random (stratified) holdout, or the last ``holdout_days`` of the window
TRAINING_SPLITS = ("random", "time")
FAIRNESS_METRICS = ("demographic_parity_difference", "equalized_odds_difference")
#: The clauses a drift rule is made of, in the order they are reported.
DRIFT_CLAUSES = ("share", "prediction", "top_features")

#: Named rules: ``share`` is the share of drifted features alone (the rule before 0.x; the drift module's
#: default), ``combined`` (the model config's default) flags drift when any clause fires.
DRIFT_RULES: dict[str, tuple[str, ...]] = {"share": ("share",), "combined": DRIFT_CLAUSES}

EXPLAIN_METHODS = ("auto", "native", "native_approximate", "shap", "shap_approximate", "perturbation")
ALERT_CHECKS = ("drift", "performance", "freshness", "volume", "duplicate", "fairness", "gate", "promotion",
                "integrity")
DISTRIBUTIONS = ("uniform", "loguniform", "randint")
DATA_FORMATS = ("parquet", "csv")
#: Columns never used as features when ``features`` is null.
RESERVED_COLUMNS = frozenset({"ds"})
#: Above this many distinct values a float target is considered continuous (not multiclass).
MAX_FLOAT_CLASSES = 20


# --------------------------------------------------------------------------------------------
# errors and immutable containers
# --------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """An invalid model config.

    Attributes:
        field: dotted path of the offending field (``"estimator.class"``), or ``None`` when the
            problem is not about one field (e.g. malformed YAML).
        source: the config file (or ``"<dict>"``).
        reason: the message without the ``source: field:`` prefix.
        line: 1-based line number in ``source`` when known (malformed YAML), else ``None``.
    """

    def __init__(
        self, reason: str, field: str | None = None, source: str | None = None, line: int | None = None
    ) -> None:
        self.reason = reason
        self.field = field
        self.source = source
        self.line = line
        location = source or ""
        if source and line is not None:
            location = f"{source}:{line}"
        prefix = ": ".join(p for p in (location, field) if p)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)

    def __reduce__(self) -> tuple[Any, ...]:  # keep attributes across pickling (XCom, subprocesses)
        return (self.__class__, (self.reason, self.field, self.source, self.line))


class FrozenDict(dict):  # type: ignore[type-arg]
    """A read-only, hashable ``dict`` (used for mappings inside the frozen dataclasses).

    It is a real ``dict`` subclass, so ``json.dumps`` and ``isinstance(x, dict)`` work; it
    pickles and deep-copies as itself.
    """

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("the model config is immutable; build a new one with dataclasses.replace()")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: repr(kv[0]))))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Frozen containers -> plain ``dict`` / ``list`` (what YAML/JSON and estimators expect)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlData:
    """Data in a SQL database, read through the Airflow connection ``conn_id`` (any ``common.sql`` hook): a
    ``table`` whose ``date_column`` places each row on a day, or a templated ``query`` (see
    :class:`airflow_mlops.sql.source.SqlSource`)."""

    conn_id: str
    table: str | None = None
    date_column: str | None = None
    query: str | None = None

    def source(self, name: str | None = None) -> Any:
        """The :class:`~airflow_mlops.sql.source.SqlSource` (no connection is opened)."""
        from airflow_mlops.sql.source import SqlSource

        return SqlSource(table=self.table, date_column=self.date_column, query=self.query, name=name)

    def label(self) -> str:
        """``<conn_id>:<table>`` or ``<conn_id>:query`` (names, asset names; no credentials)."""
        return f"{self.conn_id}:{self.table if self.table else 'query'}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DataConfig:
    """``data:`` where the training data lives."""

    dataset: str
    uri: str | None = None
    format: str = "parquet"
    conn_id: str | None = None
    training_window_days: int = 30
    ground_truth_dataset: str | None = None
    scoring_dataset: str | None = None
    #: rows per day of the package's synthetic churn data written for missing partitions (the shipped
    #: example model only, so its DAGs run on a fresh install); null for real data
    example_rows: int | None = None
    #: training data in a SQL database (``data: {conn_id, table, date_column}`` or ``{conn_id, query}``)
    sql: SqlData | None = None
    #: the scored data in SQL (``scoring_dataset: {table, date_column}`` / ``{query}``, ``conn_id`` defaulting to
    #: ``data.conn_id``)
    scoring_sql: SqlData | None = None
    #: late labels in SQL (``ground_truth_dataset`` as a mapping, like ``scoring_dataset``)
    ground_truth_sql: SqlData | None = None

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.ground_truth_dataset or self.ground_truth_sql)

    def to_dict(self) -> dict[str, Any]:
        """The ``data:`` section as YAML would write it (SQL sources as their fields)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("sql", "scoring_sql", "ground_truth_sql"):
                continue
            out[f.name] = getattr(self, f.name)
        if self.sql is not None:
            out.update(self.sql.to_dict())
        if self.scoring_sql is not None:
            out["scoring_dataset"] = self.scoring_sql.to_dict()
        if self.ground_truth_sql is not None:
            out["ground_truth_dataset"] = self.ground_truth_sql.to_dict()
        return out

    @property
    def scoring(self) -> str:
        """The dataset scored daily: ``scoring_dataset`` (its SQL label when in SQL), else the training ``dataset``."""
        if self.scoring_sql is not None:
            return self.scoring_sql.label()
        return self.scoring_dataset or self.dataset

    def dataset_uri(self, storage_root: str) -> str:
        """The dataset's root URI: ``uri`` when set, else ``<storage_root>/data/<dataset>``."""
        if self.uri:
            return self.uri.rstrip("/")
        return f"{storage_root.rstrip('/')}/data/{self.dataset}"


#: libraries whose scikit-learn estimators split on category codes natively (``estimator.categorical``)
NATIVE_CATEGORICAL_LIBRARIES: tuple[str, ...] = ("xgboost", "lightgbm", "catboost")
#: values of ``estimator.categorical``
CATEGORICAL_ENCODINGS: tuple[str, ...] = ("auto", "native", "onehot")


@dataclass(frozen=True)
class EstimatorConfig:
    """``estimator:`` the scikit-learn estimator (``class`` in YAML is ``class_path`` here)."""

    class_path: str
    params: FrozenDict = field(default_factory=FrozenDict)
    #: further types (fully qualified) the model's file may contain beyond the estimator class itself,
    #: e.g. the team's own transformer classes; trusted when loading this model's versions only
    trusted_types: tuple[str, ...] = ()
    #: how the built-in preprocessing hands categorical features to the estimator: ``onehot`` (one column per
    #: category), ``native`` (one column per feature that the library treats as categories: codes for xgboost and
    #: LightGBM, string labels for CatBoost), ``auto`` (native where the library supports it)
    categorical: str = "auto"

    @property
    def native_categorical(self) -> bool:
        """Whether the built-in preprocessing gives this estimator category codes for its own categorical splits."""
        supported = self.class_path.split(".", 1)[0] in NATIVE_CATEGORICAL_LIBRARIES
        return self.categorical == "native" or (self.categorical == "auto" and supported)

    @property
    def is_linear(self) -> bool:
        """Linear models and SVMs get standardised numeric features."""
        return self.class_path.startswith(("sklearn.linear_model.", "sklearn.svm."))

    def load_class(self) -> type:
        """Import and return the estimator class."""
        module_name, _, class_name = self.class_path.rpartition(".")
        cls: type = getattr(importlib.import_module(module_name), class_name)
        return cls

    def build(self, seed: int | None = None) -> Any:
        """A new, unfitted estimator with ``params``; ``random_state`` is set to ``seed`` when the
        estimator has that parameter and the config does not set it."""
        estimator = self.load_class()()
        params = thaw(self.params)
        if seed is not None and "random_state" not in params and "random_state" in estimator.get_params():
            params["random_state"] = seed
        return estimator.set_params(**params)


@dataclass(frozen=True)
class SearchConfig:
    """``search:`` optional hyperparameter search.

    ``space`` maps an estimator parameter to a list of candidate values or to a distribution
    ``{distribution: uniform|loguniform|randint, low: x, high: y}`` (``randint`` is inclusive).
    ``method``: ``random`` (RandomizedSearchCV), ``halving`` (HalvingRandomSearchCV) or ``optuna`` (optuna's
    TPE sampler seeded with ``training.seed``, ``n_iter`` sequential trials).
    """

    method: str = "random"
    #: candidates sampled (``n_candidates`` for ``halving``, the trial budget for ``optuna``)
    n_iter: int = 10
    space: FrozenDict = field(default_factory=FrozenDict)
    #: parallel candidate fits (scikit-learn's ``n_jobs``: 1 = in the task's process, -1 = every core)
    n_jobs: int = 1

    def param_distributions(self, prefix: str = "estimator__") -> dict[str, Any]:
        """``space`` as a scikit-learn ``param_distributions`` dict (scipy frozen distributions)."""
        from scipy import stats

        out: dict[str, Any] = {}
        for name, spec in self.space.items():
            if isinstance(spec, Mapping):
                low, high = spec["low"], spec["high"]
                kind = spec["distribution"]
                if kind == "uniform":
                    dist: Any = stats.uniform(loc=low, scale=high - low)
                elif kind == "loguniform":
                    dist = stats.loguniform(low, high)
                else:  # randint, inclusive of high
                    dist = stats.randint(int(low), int(high) + 1)
                out[prefix + name] = dist
            else:
                out[prefix + name] = thaw(spec)
        return out


@dataclass(frozen=True)
class TrainingConfig:
    """``training:`` split, cross-validation and reference sample."""

    test_size: float = 0.2
    cv_folds: int = 5
    seed: int = 42
    reference_sample_size: int = 5000
    #: ``random``: a random holdout of ``test_size`` and shuffled folds; ``time``: the last ``holdout_days`` of
    #: the training window are the holdout and the CV folds are forward-chaining in time
    split: str = "random"
    holdout_days: int = 1


@dataclass(frozen=True)
class MetricsConfig:
    """``metrics:`` primary metric and hard floors/ceilings."""

    primary: str = "roc_auc"
    floors: FrozenDict = field(default_factory=FrozenDict)
    ceilings: FrozenDict = field(default_factory=FrozenDict)


@dataclass(frozen=True)
class PromotionConfig:
    """``promotion:`` champion/challenger gate."""

    min_improvement: float = 0.0
    require_approval: bool = False
    allow_self_approval: bool = False
    #: how often the training DAG's approval wait checks the registry, and how long it waits
    approval_poke_seconds: float = 600.0
    approval_timeout_hours: float = 168.0


@dataclass(frozen=True)
class ValidationConfig:
    """``validation:`` data validation suite (``"infer"``, a path, or ``None`` to skip)."""

    suite: str | None = "infer"
    mostly: float = 1.0


@dataclass(frozen=True)
class SchedulesConfig:
    """``schedules:`` cron expressions / presets; ``None`` disables the time-based schedule."""

    training: str | None = None
    nightly_retraining: str | None = "0 2 * * *"
    scoring: str | None = "@daily"
    monitoring: str | None = "@daily"
    start_date: str = "2024-01-01"
    max_active_runs: int = 4
    #: batch scoring catches up every missed day since start_date when unpaused (backfills work either way)
    scoring_catchup: bool = True


@dataclass(frozen=True)
class DriftConfig:
    """``drift:`` drift detection settings (``docs/drift.md``)."""

    #: the ``share`` clause fires when the share of drifted features is >= this
    threshold: float = 0.5
    sample_size: int = 100000
    stattest_threshold: float | None = None
    #: ``combined`` (drift when the share clause, the prediction distribution or any of the top_k most
    #: important features drifts), ``share`` (the share clause alone) or a tuple of clauses of
    #: ``DRIFT_CLAUSES``
    rule: str | tuple[str, ...] = "combined"
    #: how many of the most important features (the version's ``feature_importance``) the
    #: ``top_features`` clause watches
    top_k: int = 3


@dataclass(frozen=True)
class MonitoringConfig:
    """``monitoring``: performance, slice, freshness and volume checks of the monitoring DAG."""

    #: slices smaller than this (rows in the window) are reported but never alerted on
    min_slice_size: int = 200
    #: days of joined ground truth per performance window (ending at the logical date)
    performance_window_days: int = 7
    #: alert when a metric moves by more than this relative amount from the previous window,
    #: either way (a sudden rise is suspicious too); null disables the check
    max_relative_change: float | None = 0.25
    #: after a retraining request, no new request for this many days (0 = no cooldown)
    drift_cooldown_days: int = 0
    #: hours after the end of the logical day by which the partition must have arrived
    freshness_deadline_hours: float = 6.0
    #: trailing window (days) the volume check compares today's row count against
    volume_window_days: int = 14
    #: alert when rows / trailing median is below this ratio ...
    volume_min_ratio: float = 0.5
    #: ... or above this one
    volume_max_ratio: float = 2.0
    #: optional z-score limit on the row count against the trailing window (null = ratio only)
    volume_max_z: float | None = None


@dataclass(frozen=True)
class FairnessConfig:
    """``fairness``: the group-fairness gate (needs ``sensitive_features``)."""

    metric: str = "demographic_parity_difference"
    #: largest allowed between-group difference of ``metric``
    max_gap: float = 0.2
    #: largest allowed gap of the primary metric between groups (null = not enforced)
    max_primary_gap: float | None = None


@dataclass(frozen=True)
class ExplainConfig:
    """``explain``: per-row top feature contributions in the scoring output."""

    top_k: int = 3
    method: str = "auto"


@dataclass(frozen=True)
class CanaryConfig:
    """``canary``: a stable share of rows scored (for real) by another alias."""

    alias: str = "challenger"
    share: float = 0.05


@dataclass(frozen=True)
class SegmentsConfig:
    """``segments``: one model per value of ``column`` (see :mod:`airflow_mlops.segments.flows`)."""

    column: str
    #: segments with fewer rows in the training window are not trained (logged and in the XCom)
    min_rows: int = 200
    #: batch scoring maps over (segment, input file) pairs instead of segments (large partitions)
    map_files: bool = False


@dataclass(frozen=True)
class FactoryConfig:
    """``preprocess: {factory: ...}`` or ``pipeline: {factory: ...}``: a function of the team's code that returns
    an unfitted scikit-learn transformer (preprocess) or the whole unfitted ``Pipeline`` (pipeline).

    ``path`` is ``package.module:function``; ``params`` are passed as keyword arguments, and so are the column
    lists ``features``, ``numeric`` and ``categorical`` when the function's signature names them.
    """

    path: str
    params: FrozenDict = field(default_factory=FrozenDict)

    def load(self) -> Any:
        """Import and return the factory function."""
        module_name, _, function = self.path.partition(":")
        return getattr(importlib.import_module(module_name), function)

    def call(self, features: Iterable[str], numeric: Iterable[str], categorical: Iterable[str]) -> Any:
        """Call the factory: ``params`` plus the column lists its signature asks for."""
        import inspect

        function = self.load()
        kwargs = thaw(self.params)
        accepted = inspect.signature(function).parameters
        for name, columns in (("features", features), ("numeric", numeric), ("categorical", categorical)):
            if name in accepted and name not in kwargs:
                kwargs[name] = list(columns)
        return function(**kwargs)


@dataclass(frozen=True)
class AlertsConfig:
    """``alerts``: where alerts go (the config's ``owner`` is always a recipient when it is an
    e-mail address)."""

    email: tuple[str, ...] = ()
    #: Airflow connection id of the SMTP server (apache-airflow-providers-smtp)
    smtp_conn_id: str = "smtp_default"
    #: chat webhook URL, or an Airflow HTTP connection id prefixed with ``conn:``
    webhook: str | None = None
    #: checks that alert; default all of them
    checks: tuple[str, ...] = ALERT_CHECKS


@dataclass(frozen=True)
class PredictionsTable:
    """``predictions: {conn_id, table}``: after each logical date's prediction log partition is committed, its rows
    replace that date's rows of this table in one transaction (see :mod:`airflow_mlops.sql.write`)."""

    conn_id: str
    table: str


@dataclass(frozen=True)
class ModelConfig:
    """A validated model config. Build it with :func:`load_model_config` or
    :func:`parse_model_config`; it is immutable (use ``dataclasses.replace`` to derive one)."""

    name: str
    owner: str
    data: DataConfig
    keys: tuple[str, ...]
    target: str
    task: str = "binary"
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    features: tuple[str, ...] | None = None
    categorical_features: tuple[str, ...] | None = None
    estimator: EstimatorConfig = field(
        default_factory=lambda: EstimatorConfig(DEFAULT_ESTIMATORS["binary"])
    )
    search: SearchConfig | None = None
    #: the team's feature engineering (``preprocess: {factory: ...}``); None = the built-in preprocessing
    preprocess: FactoryConfig | None = None
    #: the team's whole unfitted Pipeline (``pipeline: {factory: ...}``); its last step is ``estimator.class``
    pipeline: FactoryConfig | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    schedules: SchedulesConfig = field(default_factory=SchedulesConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    #: columns whose values define slices (drift and performance per slice as well as globally)
    slices: tuple[str, ...] = ()
    #: columns holding protected attributes for the fairness gate
    sensitive_features: tuple[str, ...] = ()
    fairness: FairnessConfig | None = None
    explain: ExplainConfig | None = None
    canary: CanaryConfig | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    #: one model per value of a column (``segments.column``); never a feature
    segments: SegmentsConfig | None = None
    #: a SQL table the prediction log of each logical date is also published to (``predictions: {conn_id, table}``)
    predictions: PredictionsTable | None = None
    #: where the config came from (file path or ``"<dict>"``); not part of equality
    source: str = field(default="<dict>", compare=False)

    @property
    def builtin_preprocess(self) -> bool:
        """Whether the model uses the package's own preprocessing (no ``preprocess`` or ``pipeline`` factory)."""
        return self.preprocess is None and self.pipeline is None

    @property
    def is_classification(self) -> bool:
        """True for ``binary`` and ``multiclass``."""
        return self.task in ("binary", "multiclass")

    def feature_columns(self, all_columns: Iterable[str]) -> list[str]:
        """The feature columns: ``features`` when given, else every column of ``all_columns``
        except the keys, the target, the ``ds`` partition column and pandas index columns, in
        the order of ``all_columns``."""
        if self.features is not None:
            return list(self.features)
        excluded = set(self.keys) | {self.target} | RESERVED_COLUMNS
        if self.segments is not None:
            excluded.add(self.segments.column)
        return [
            c for c in all_columns
            if c not in excluded and not str(c).startswith("__index_level_")
        ]

    def dataset_uri(self, storage_root: str) -> str:
        """Root URI of the training dataset (see :meth:`DataConfig.dataset_uri`)."""
        return self.data.dataset_uri(storage_root)

    def validation_suite_path(self) -> str | None:
        """Absolute path of ``validation.suite`` when it is a file path (relative paths are
        resolved against the config file's directory); ``None`` for ``"infer"`` or ``null``."""
        suite = self.validation.suite
        if suite is None or suite == "infer":
            return None
        return resolve_relative(suite, self.source)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON-able data, with every default filled in.

        ``parse_model_config(cfg.to_dict()) == cfg``.
        """
        out: dict[str, Any] = {}
        for name in TOP_FIELDS:  # the documented order
            value = getattr(self, name)
            if name == "estimator":
                out[name] = {"class": value.class_path, "params": thaw(value.params),
                             **({"trusted_types": list(value.trusted_types)} if value.trusted_types else {}),
                             **({"categorical": value.categorical} if value.categorical != "auto" else {})}
            elif name in ("preprocess", "pipeline"):
                default = "builtin" if name == "preprocess" else None
                out[name] = default if value is None else {"factory": value.path, "params": thaw(value.params)}
            elif name == "data":
                out[name] = value.to_dict()
            elif name == "predictions":
                out[name] = None if value is None else {"conn_id": value.conn_id, "table": value.table}
            elif dataclasses.is_dataclass(value):
                out[name] = {f.name: thaw(getattr(value, f.name)) for f in dataclasses.fields(value)}
            else:
                out[name] = thaw(value)
        return out


# --------------------------------------------------------------------------------------------
# loading and parsing
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# config vs data
# --------------------------------------------------------------------------------------------


# field -> (allowed keys) for the "unknown field" check
TOP_FIELDS = (
    "name", "owner", "description", "intended_use", "limitations", "data", "keys", "target",
    "features", "categorical_features", "task", "estimator", "preprocess", "pipeline", "search", "training",
    "metrics", "promotion", "validation", "schedules", "drift", "monitoring", "slices", "sensitive_features",
    "fairness", "explain", "canary", "alerts", "segments", "predictions",
)


def resolve_relative(path: str, source: str) -> str:
    if os.path.isabs(path) or source.startswith("<"):
        return os.path.abspath(path)
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(source)), path))
