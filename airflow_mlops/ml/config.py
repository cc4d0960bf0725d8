"""The model config: one YAML file per model (``dags/configs/<model>.yaml``).

The YAML is parsed into frozen dataclasses and validated *early* (at DAG-parse time), the way
scikit-learn validates estimator parameters: every problem raises :class:`ConfigError`, whose
``field`` attribute is the dotted path of the offending field (``estimator.class``,
``metrics.floors.roc_auc``, ``search.space.max_depth`` ...) and whose message names it too.

* Unknown fields are errors, with a "did you mean" suggestion.
* Malformed YAML (and duplicate keys) is reported with the file name and line number.
* The estimator class is imported and checked (a scikit-learn classifier for ``binary`` /
  ``multiclass``, a regressor for ``regression``); its params and the search space must be
  parameters it accepts. This imports scikit-learn lazily, only when a config is parsed.
* :func:`check_config_against_data` checks the config against a dataset's schema (columns and
  task/target compatibility) once the data is known.

Importing this module is cheap: PyYAML, pandas and scikit-learn are imported inside functions.
See ``docs/model-config.md`` for the reference of every field.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from airflow_mlops.ml.metrics import (
    METRICS_BY_TASK,
    TASKS,
    higher_is_better,
    is_per_class_metric,
    is_resource_metric,
    metric_range,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = [
    "ConfigError",
    "FrozenDict",
    "DataConfig",
    "EstimatorConfig",
    "SearchConfig",
    "TrainingConfig",
    "MetricsConfig",
    "PromotionConfig",
    "ValidationConfig",
    "SchedulesConfig",
    "DriftConfig",
    "MonitoringConfig",
    "FairnessConfig",
    "ExplainConfig",
    "CanaryConfig",
    "AlertsConfig",
    "ModelConfig",
    "DEFAULT_ESTIMATORS",
    "DEFAULT_PRIMARY_METRIC",
    "load_model_config",
    "parse_model_config",
    "check_config_against_data",
    "is_numeric_dtype",
    "is_categorical_dtype",
]

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
SEARCH_METHODS = ("random", "halving")
FAIRNESS_METRICS = ("demographic_parity_difference", "equalized_odds_difference")
EXPLAIN_METHODS = ("auto", "shap", "shap_approximate", "perturbation")
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


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Frozen containers -> plain ``dict`` / ``list`` (what YAML/JSON and estimators expect)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# dataclasses
# --------------------------------------------------------------------------------------------


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

    @property
    def scoring(self) -> str:
        """The dataset scored daily: ``scoring_dataset``, else the training ``dataset``."""
        return self.scoring_dataset or self.dataset

    def dataset_uri(self, storage_root: str) -> str:
        """The dataset's root URI: ``uri`` when set, else ``<storage_root>/data/<dataset>``."""
        if self.uri:
            return self.uri.rstrip("/")
        return f"{storage_root.rstrip('/')}/data/{self.dataset}"


@dataclass(frozen=True)
class EstimatorConfig:
    """``estimator:`` the scikit-learn estimator (``class`` in YAML is ``class_path`` here)."""

    class_path: str
    params: FrozenDict = field(default_factory=FrozenDict)

    @property
    def is_linear(self) -> bool:
        """Linear models and SVMs get standardised numeric features."""
        return self.class_path.startswith(("sklearn.linear_model.", "sklearn.svm."))

    def load_class(self) -> type:
        """Import and return the estimator class."""
        module_name, _, class_name = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module_name), class_name)

    def build(self, seed: int | None = None) -> Any:
        """A new, unfitted estimator with ``params``; ``random_state`` is set to ``seed`` when the
        estimator has that parameter and the config does not set it."""
        estimator = self.load_class()()
        params = _thaw(self.params)
        if seed is not None and "random_state" not in params and "random_state" in estimator.get_params():
            params["random_state"] = seed
        return estimator.set_params(**params)


@dataclass(frozen=True)
class SearchConfig:
    """``search:`` optional hyperparameter search.

    ``space`` maps an estimator parameter to a list of candidate values or to a distribution
    ``{distribution: uniform|loguniform|randint, low: x, high: y}`` (``randint`` is inclusive).
    """

    method: str = "random"
    n_iter: int = 10
    space: FrozenDict = field(default_factory=FrozenDict)

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
                out[prefix + name] = _thaw(spec)
        return out


@dataclass(frozen=True)
class TrainingConfig:
    """``training:`` split, cross-validation and reference sample."""

    test_size: float = 0.2
    cv_folds: int = 5
    seed: int = 42
    reference_sample_size: int = 5000


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
    #: ``airflow_mlops.ml.drift.DRIFT_CLAUSES``
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
    """``segments``: one model per value of ``column`` (see :mod:`airflow_mlops.segments`)."""

    column: str
    #: segments with fewer rows in the training window are not trained (logged and in the XCom)
    min_rows: int = 200
    #: batch scoring maps over (segment, input file) pairs instead of segments (large partitions)
    map_files: bool = False


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
    #: where the config came from (file path or ``"<dict>"``); not part of equality
    source: str = field(default="<dict>", compare=False)

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
        return _resolve_relative(suite, self.source)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON-able data, with every default filled in.

        ``parse_model_config(cfg.to_dict()) == cfg``.
        """
        out: dict[str, Any] = {}
        for name in _TOP_FIELDS:  # the documented order
            value = getattr(self, name)
            if name == "estimator":
                out[name] = {"class": value.class_path, "params": _thaw(value.params)}
            elif dataclasses.is_dataclass(value):
                out[name] = {f.name: _thaw(getattr(value, f.name)) for f in dataclasses.fields(value)}
            else:
                out[name] = _thaw(value)
        return out


# --------------------------------------------------------------------------------------------
# loading and parsing
# --------------------------------------------------------------------------------------------


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
            return super().construct_mapping(node, deep=deep)

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


def _module_exists(name: str) -> bool:
    """Whether module ``name`` can be found on ``sys.path``, without executing it or its parent packages."""
    import importlib.machinery
    import sys

    path = None
    parts = name.split(".")
    for i in range(len(parts)):
        qualified = ".".join(parts[:i + 1])
        module = sys.modules.get(qualified)
        if module is not None:
            path = getattr(module, "__path__", None)
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(qualified, path)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        path = spec.submodule_search_locations
        if path is None and i < len(parts) - 1:
            return False
    return True


# field -> (allowed keys) for the "unknown field" check
_TOP_FIELDS = (
    "name", "owner", "description", "intended_use", "limitations", "data", "keys", "target",
    "features", "categorical_features", "task", "estimator", "search", "training", "metrics",
    "promotion", "validation", "schedules", "drift", "monitoring", "slices", "sensitive_features",
    "fairness", "explain", "canary", "alerts", "segments",
)
_SECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "uri", "format", "conn_id", "training_window_days", "ground_truth_dataset",
             "scoring_dataset", "example_rows"),
    "estimator": ("class", "params"),
    "search": ("method", "n_iter", "space"),
    "training": ("test_size", "cv_folds", "seed", "reference_sample_size"),
    "metrics": ("primary", "floors", "ceilings"),
    "promotion": ("min_improvement", "require_approval", "allow_self_approval", "approval_poke_seconds",
                  "approval_timeout_hours"),
    "validation": ("suite", "mostly"),
    "schedules": ("training", "nightly_retraining", "scoring", "monitoring", "start_date", "max_active_runs",
                  "scoring_catchup"),
    "drift": ("threshold", "sample_size", "stattest_threshold", "rule", "top_k"),
    "monitoring": ("min_slice_size", "performance_window_days", "max_relative_change", "drift_cooldown_days",
                   "freshness_deadline_hours", "volume_window_days", "volume_min_ratio", "volume_max_ratio",
                   "volume_max_z"),
    "fairness": ("metric", "max_gap", "max_primary_gap"),
    "explain": ("top_k", "method"),
    "canary": ("alias", "share"),
    "alerts": ("email", "smtp_conn_id", "webhook", "checks"),
    "segments": ("column", "min_rows", "map_files"),
}
_MISSING = object()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _resolve_relative(path: str, source: str) -> str:
    if os.path.isabs(path) or source.startswith("<"):
        return os.path.abspath(path)
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(source)), path))


class _Parser:
    """Validates one config; every error names the field and the source."""

    def __init__(self, source: str, check_estimator: bool = True) -> None:
        self.source = source
        self.check_estimator = check_estimator

    # -- primitives ---------------------------------------------------------------------------

    def error(self, field_path: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, field=field_path, source=self.source)

    def mapping(self, value: Any, path: str, allowed: Sequence[str] | None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path or None, f"must be a mapping, got {type(value).__name__} {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path or None, f"field names must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(
                    _join(path, key), f"unknown field {key!r}{hint}; allowed fields: {', '.join(allowed)}"
                )
        return value

    def get(self, section: Mapping[str, Any], name: str, path: str, default: Any = _MISSING) -> Any:
        if name in section:
            return section[name]
        if default is _MISSING:
            raise self.error(_join(path, name), "required field is missing")
        return default

    def string(self, value: Any, path: str, *, nullable: bool = False, nonempty: bool = True,
               pattern: re.Pattern[str] | None = None, choices: Sequence[str] | None = None) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.error(path, f"must be a string{' or null' if nullable else ''}, got {value!r}")
        if nonempty and not value.strip():
            raise self.error(path, "must not be empty")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(path, f"must be one of {', '.join(choices)}; got {value!r}{hint}")
        if pattern is not None and not pattern.match(value):
            raise self.error(path, f"{value!r} does not match {pattern.pattern}")
        return value

    def text(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {value!r}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {value!r}")
        return value

    def integer(self, value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {value!r}")
        self._check_range(value, path, low, high, low_open=False, high_open=False)
        return value

    def number(self, value: Any, path: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(path, f"must be a number{' or null' if nullable else ''}, got {value!r}")
        if not math.isfinite(value):
            raise self.error(path, f"must be a finite number, got {value!r}")
        self._check_range(value, path, low, high, low_open=low_open, high_open=high_open)
        return float(value)

    def _check_range(self, value: float, path: str, low: float | None, high: float | None, *,
                     low_open: bool, high_open: bool) -> None:
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            lo = "-inf" if low is None else repr(low)
            hi = "inf" if high is None else repr(high)
            raise self.error(path, f"must be in {left}{lo}, {hi}{right}; got {value!r}")

    def columns(self, value: Any, path: str, *, nullable: bool, min_len: int = 1) -> tuple[str, ...] | None:
        if value is None and nullable:
            return None
        if not isinstance(value, (list, tuple)):
            raise self.error(path, f"must be a list of column names{' or null' if nullable else ''}, got {value!r}")
        if len(value) < min_len:
            raise self.error(path, f"must list at least {min_len} column(s)")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{path}[{i}]", f"must be a non-empty column name, got {item!r}")
        dupes = sorted({c for c in value if list(value).count(c) > 1})
        if dupes:
            raise self.error(path, f"duplicate column(s): {', '.join(dupes)}")
        return tuple(value)

    def section(self, raw: Mapping[str, Any], name: str, *, required: bool = False) -> Mapping[str, Any]:
        value = raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise self.error(name, "required section is missing")
            return {}
        return self.mapping(value, name, _SECTION_FIELDS[name])

    # -- sections -----------------------------------------------------------------------------

    def parse(self, raw: Mapping[str, Any]) -> ModelConfig:
        raw = self.mapping(raw, "", _TOP_FIELDS)
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
        search = self.parse_search(raw.get("search"), instance)
        training = self.parse_training(self.section(raw, "training"))
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
            source=self.source,
        )

    def parse_data(self, sec: Mapping[str, Any]) -> DataConfig:
        uri = self.string(sec.get("uri"), "data.uri", nullable=True)
        if uri is not None and not uri.startswith(("file://", "s3://")):
            raise self.error("data.uri", f"must be a file:// or s3:// URI, got {uri!r}")
        return DataConfig(
            dataset=self.string(self.get(sec, "dataset", "data"), "data.dataset", pattern=DATASET_RE),
            uri=uri,
            format=self.string(sec.get("format", "parquet"), "data.format", choices=DATA_FORMATS),
            conn_id=self.string(sec.get("conn_id"), "data.conn_id", nullable=True),
            training_window_days=self.integer(sec.get("training_window_days", 30),
                                              "data.training_window_days", low=1),
            ground_truth_dataset=self.dataset_or_uri(sec.get("ground_truth_dataset"), "data.ground_truth_dataset"),
            scoring_dataset=self.dataset_or_uri(sec.get("scoring_dataset"), "data.scoring_dataset"),
            example_rows=None if sec.get("example_rows") is None else
            self.integer(sec.get("example_rows"), "data.example_rows", 10, 10_000_000),
        )

    def dataset_or_uri(self, value: Any, path: str) -> str | None:
        """A dataset name under ``<root>/data/`` or the ``file://``/``s3://`` URI of a partitioned dataset."""
        if isinstance(value, str) and "://" in value:
            if not value.startswith(("file://", "s3://")):
                raise self.error(path, f"must be a dataset name or a file:// or s3:// URI, got {value!r}")
            return value.rstrip("/")
        return self.string(value, path, nullable=True, pattern=DATASET_RE)

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

    def parse_estimator(self, sec: Mapping[str, Any], task: str) -> tuple[EstimatorConfig, Any]:
        class_path = self.string(sec.get("class", DEFAULT_ESTIMATORS[task]), "estimator.class")
        params_raw = sec.get("params")
        params = {} if params_raw is None else dict(self.mapping(params_raw, "estimator.params", None))
        module_name, _, class_name = class_path.rpartition(".")
        if not module_name:
            raise self.error("estimator.class", f"must be a full import path like "
                                                f"'sklearn.ensemble.HistGradientBoostingClassifier', got {class_path!r}")
        if not self.check_estimator:  # structure only: the task that trains checks class and params
            if not _module_exists(module_name):
                raise self.error("estimator.class", f"cannot import {class_path!r}: no module named {module_name!r}")
            return EstimatorConfig(class_path=class_path, params=_freeze(params)), None
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error("estimator.class", f"cannot import {class_path!r}: "
                                                f"{type(exc).__name__}: {exc}") from exc
        cls = getattr(module, class_name, None)
        if cls is None:
            public = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(class_name, public, n=1)
            hint = f" (did you mean {module_name}.{close[0]}?)" if close else ""
            raise self.error("estimator.class", f"cannot import {class_path!r}: module {module_name!r} "
                                                f"has no attribute {class_name!r}{hint}")
        from sklearn.base import BaseEstimator, is_classifier, is_regressor

        if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
            raise self.error("estimator.class", f"{class_path!r} is not a scikit-learn estimator class")
        try:
            instance = cls()
        except Exception as exc:  # noqa: BLE001 - any constructor failure is a config error
            raise self.error("estimator.class", f"{class_path!r} cannot be constructed without "
                                                f"arguments: {exc}") from exc
        if task in ("binary", "multiclass") and not is_classifier(instance):
            raise self.error("estimator.class", f"task {task!r} needs a classifier; {class_path!r} is not one")
        if task == "regression" and not is_regressor(instance):
            raise self.error("estimator.class", f"task 'regression' needs a regressor; {class_path!r} is not one")
        accepted = instance.get_params(deep=True)
        for pname in params:
            self.check_param_name(pname, accepted, class_name, f"estimator.params.{pname}")
        self.check_param_values(instance, params, "estimator.params")
        return EstimatorConfig(class_path=class_path, params=_freeze(params)), instance

    def check_param_name(self, pname: str, accepted: Mapping[str, Any], class_name: str, path: str) -> None:
        if pname not in accepted:
            close = difflib.get_close_matches(pname, list(accepted), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(path, f"{class_name} does not accept parameter {pname!r}{hint}; "
                                   f"accepted: {', '.join(sorted(k for k in accepted if '__' not in k))}")

    def check_param_values(self, instance: Any, params: Mapping[str, Any], path: str) -> None:
        """Run scikit-learn's own parameter validation (what ``fit`` would do) right now."""
        from sklearn.base import clone

        try:
            probe = clone(instance).set_params(**_thaw(params))
        except (TypeError, ValueError) as exc:
            raise self.error(path, str(exc)) from exc
        validate = getattr(probe, "_validate_params", None)
        if validate is None:
            return
        try:
            validate()
        except (TypeError, ValueError) as exc:
            match = re.search(r"The '([^']+)' parameter", str(exc))
            where = f"{path}.{match.group(1)}" if match else path
            raise self.error(where, str(exc)) from exc

    def parse_search(self, raw: Any, instance: Any) -> SearchConfig | None:
        if raw is None:
            return None
        sec = self.mapping(raw, "search", _SECTION_FIELDS["search"])
        method = self.string(sec.get("method", "random"), "search.method", choices=SEARCH_METHODS)
        n_iter = self.integer(sec.get("n_iter", 10), "search.n_iter", low=1)
        space = self.mapping(self.get(sec, "space", "search"), "search.space", None)
        if not space:
            raise self.error("search.space", "must define at least one parameter")
        # instance None: the estimator was not checked (structure-only parse), nor are the names and values
        accepted = instance.get_params(deep=True) if instance is not None else None
        class_name = type(instance).__name__
        clean: dict[str, Any] = {}
        for pname, spec in space.items():
            path = f"search.space.{pname}"
            if accepted is not None:
                self.check_param_name(pname, accepted, class_name, path)
            if isinstance(spec, Mapping):
                clean[pname] = self.parse_distribution(spec, path)
            elif isinstance(spec, (list, tuple)):
                if not spec:
                    raise self.error(path, "candidate list must not be empty")
                for value in spec if instance is not None else ():
                    self.check_param_values(instance, {pname: value}, "search.space")
                clean[pname] = list(spec)
            else:
                raise self.error(path, "must be a list of candidate values or "
                                       "{distribution: uniform|loguniform|randint, low: x, high: y}")
        return SearchConfig(method=method, n_iter=n_iter, space=_freeze(clean))

    def parse_distribution(self, spec: Mapping[str, Any], path: str) -> dict[str, Any]:
        spec = self.mapping(spec, path, ("distribution", "low", "high"))
        kind = self.string(self.get(spec, "distribution", path), f"{path}.distribution", choices=DISTRIBUTIONS)
        if kind == "randint":
            low: float = self.integer(self.get(spec, "low", path), f"{path}.low")
            high: float = self.integer(self.get(spec, "high", path), f"{path}.high")
        else:
            low = self.number(self.get(spec, "low", path), f"{path}.low",
                              low=0.0 if kind == "loguniform" else None, low_open=True)
            high = self.number(self.get(spec, "high", path), f"{path}.high")
        if high < low or (high == low and kind != "randint"):
            raise self.error(f"{path}.high", f"must be greater than low ({low!r}); got {high!r}")
        return {"distribution": kind, "low": low, "high": high}

    def parse_training(self, sec: Mapping[str, Any]) -> TrainingConfig:
        return TrainingConfig(
            test_size=self.number(sec.get("test_size", 0.2), "training.test_size", 0.0, 0.9,
                                  low_open=True, high_open=True),
            cv_folds=self.integer(sec.get("cv_folds", 5), "training.cv_folds", 2, 20),
            seed=self.integer(sec.get("seed", 42), "training.seed", 0, 2**32 - 1),
            reference_sample_size=self.integer(sec.get("reference_sample_size", 5000),
                                               "training.reference_sample_size", low=1),
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
        return MetricsConfig(primary=primary, floors=_freeze(floors), ceilings=_freeze(ceilings))

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
                resolved = _resolve_relative(suite, self.source)
                if not os.path.isfile(resolved):
                    raise self.error("validation.suite", f"suite file {resolved} does not exist "
                                                         f"(relative paths are resolved against the config file)")
        return ValidationConfig(
            suite=suite,
            mostly=self.number(sec.get("mostly", 1.0), "validation.mostly", 0.0, 1.0, low_open=True),
        )

    def parse_schedules(self, sec: Mapping[str, Any]) -> SchedulesConfig:
        defaults = SchedulesConfig()
        values = {}
        for name in _SECTION_FIELDS["schedules"]:
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
        from airflow_mlops.ml.drift import DRIFT_CLAUSES, DRIFT_RULES

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
        sec = self.mapping(raw, "fairness", _SECTION_FIELDS["fairness"])
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
        sec = self.mapping({} if raw is True else raw, "explain", _SECTION_FIELDS["explain"])
        d = ExplainConfig()
        return ExplainConfig(
            top_k=self.integer(sec.get("top_k", d.top_k), "explain.top_k", 1, 50),
            method=self.string(sec.get("method", d.method), "explain.method", choices=EXPLAIN_METHODS),
        )

    def parse_canary(self, raw: Any) -> CanaryConfig | None:
        if raw is None:
            return None
        sec = self.mapping(raw, "canary", _SECTION_FIELDS["canary"])
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
        sec = self.mapping(raw, "segments", _SECTION_FIELDS["segments"])
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


# --------------------------------------------------------------------------------------------
# config vs data
# --------------------------------------------------------------------------------------------

_NUMERIC_RE = re.compile(
    r"^(u?int(8|16|32|64)?|float(16|32|64)?|halffloat|double|decimal(32|64|128|256)?(\(.*\))?|"
    r"U?Int(8|16|32|64)|Float(32|64)|number)(\[pyarrow\])?$"
)
_CATEGORICAL_RE = re.compile(
    r"^(bool|boolean|string|large_string|utf8|large_utf8|str|object|category|dictionary<.*>|"
    r"string\[(python|pyarrow)\])(\[pyarrow\])?$"
)


def is_numeric_dtype(dtype: str) -> bool:
    """True for integer/float/decimal dtype strings (pyarrow or pandas spelling), not bool."""
    return bool(_NUMERIC_RE.match(dtype.strip()))


def is_categorical_dtype(dtype: str) -> bool:
    """True for dtype strings treated as categorical: string/object/category/dictionary/bool."""
    return bool(_CATEGORICAL_RE.match(dtype.strip()))


def _missing_error(field_path: str, what: str, missing: Sequence[str], available: Iterable[str],
                   source: str) -> ConfigError:
    available = list(available)
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, available, n=1, cutoff=0.6)
        if close:
            hints.append(f"{col!r} -> {close[0]!r}?")
    hint = f" (did you mean {', '.join(hints)})" if hints else ""
    return ConfigError(
        f"{what} column(s) missing from the data: {', '.join(missing)}{hint}; "
        f"available columns: {', '.join(available)}",
        field=field_path, source=source,
    )


def check_config_against_data(
    config: ModelConfig,
    schema: Mapping[str, str],
    target_values: pd.Series | Sequence[Any] | None = None,
) -> None:
    """Check that ``config`` fits a dataset.

    Args:
        config: the model config.
        schema: column name -> dtype string (pyarrow spelling such as ``int64``, ``double``,
            ``string``, ``bool``, ``dictionary<...>``; pandas spellings are accepted too).
        target_values: the target column (optional). When given, the number of distinct
            non-null values is checked against the task.

    Raises:
        ConfigError: ``field="keys"`` / ``"target"`` / ``"features"`` /
            ``"categorical_features"`` when columns are missing (the message lists them and the
            available columns) or unusable; ``field="task"`` when the target does not fit the
            task (regression on a non-numeric target, binary without exactly 2 classes,
            multiclass with fewer than 3 classes or on a continuous float target).
    """
    columns = list(schema)
    src = config.source
    missing_keys = [k for k in config.keys if k not in schema]
    if missing_keys:
        raise _missing_error("keys", "key", missing_keys, columns, src)
    if config.target not in schema:
        raise _missing_error("target", "target", [config.target], columns, src)
    if config.features is not None:
        missing = [f for f in config.features if f not in schema]
        if missing:
            raise _missing_error("features", "feature", missing, columns, src)
    for path, what, cols in (("slices", "slice", config.slices),
                             ("sensitive_features", "sensitive feature", config.sensitive_features),
                             ("segments.column", "segment", (config.segments.column,) if config.segments else ())):
        missing = [c for c in cols if c not in schema]
        if missing:
            raise _missing_error(path, what, missing, columns, src)
    if config.segments is not None:
        seg_dtype = str(schema[config.segments.column]).strip().lower()
        if seg_dtype.startswith(("float", "double", "half", "decimal", "bool")):
            raise ConfigError(f"segment column {config.segments.column!r} has dtype {seg_dtype}; segments need a "
                              f"string or integer column (values name the models) — derive one upstream",
                              field="segments.column", source=src)
    features = config.feature_columns(columns)
    if not features:
        raise ConfigError("no feature columns left after removing keys, target and ds",
                          field="features", source=src)
    if config.categorical_features is not None:
        missing = [c for c in config.categorical_features if c not in schema]
        if missing:
            raise _missing_error("categorical_features", "categorical feature", missing, columns, src)
        categorical = set(config.categorical_features)
        not_numeric = [f for f in features if f not in categorical and not is_numeric_dtype(schema[f])]
        if not_numeric:
            details = ", ".join(f"{f} ({schema[f]})" for f in not_numeric)
            raise ConfigError(f"non-numeric feature(s) not listed in categorical_features: {details}; "
                              f"add them to categorical_features or remove the list to infer it",
                              field="categorical_features", source=src)
    unusable = [f for f in features if not (is_numeric_dtype(schema[f]) or is_categorical_dtype(schema[f]))]
    if unusable:
        details = ", ".join(f"{f} ({schema[f]})" for f in unusable)
        raise ConfigError(f"feature(s) with unsupported dtype: {details}; only numeric, bool, string and "
                          f"categorical columns can be used — list `features` explicitly without them or "
                          f"derive numeric columns upstream", field="features", source=src)

    target_dtype = schema[config.target]
    target_numeric = is_numeric_dtype(target_dtype)
    if config.task == "regression" and not target_numeric:
        raise ConfigError(f"task 'regression' needs a numeric target; {config.target!r} has dtype "
                          f"{target_dtype} (use task: binary or multiclass)", field="task", source=src)
    if target_values is None or config.task == "regression":
        return
    import pandas as pd

    values = pd.Series(target_values).dropna()
    distinct = values.unique()
    n_classes = len(distinct)
    shown = ", ".join(repr(v) for v in sorted(map(str, distinct[:10])))
    if config.task == "binary" and n_classes != 2:
        raise ConfigError(f"task 'binary' needs exactly 2 distinct target values; {config.target!r} has "
                          f"{n_classes} ({shown}{', ...' if n_classes > 10 else ''})",
                          field="task", source=src)
    if config.task == "multiclass":
        if n_classes < 3:
            raise ConfigError(f"task 'multiclass' needs at least 3 classes; {config.target!r} has "
                              f"{n_classes} ({shown}) — use task: binary", field="task", source=src)
        if pd.api.types.is_float_dtype(values.dtype) and n_classes > MAX_FLOAT_CLASSES:
            integral = bool((values == values.round()).all())
            if not integral or n_classes > 100:
                raise ConfigError(f"{config.target!r} is a float column with {n_classes} distinct values; "
                                  f"it looks continuous — use task: regression", field="task", source=src)
