"""A model config against a partition's schema: the columns it names exist, the target fits the task, the
dtypes are usable; errors name the column and list what is there. Run by the first task of every run
(:func:`airflow_mlops.validation.partition.check_partition`), never at Dag parse time."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
from airflow_mlops.config.model import MAX_FLOAT_CLASSES, ConfigError, ModelConfig

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
    if config.builtin_preprocess:  # a team's preprocess/pipeline factory decides what it can use itself
        _check_builtin_dtypes(config, schema, features)

    _check_target(config, schema, target_values)


def _check_builtin_dtypes(config: ModelConfig, schema: Mapping[str, str], features: Sequence[str]) -> None:
    """The feature dtypes the built-in preprocessing can encode."""
    src = config.source
    if config.categorical_features is not None:
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


def _check_target(config: ModelConfig, schema: Mapping[str, str], target_values: pd.Series | Sequence[Any] | None
                  ) -> None:
    """The target fits the task."""
    src = config.source
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
    _check_xgboost_labels(config, values, shown, n_classes)
    if config.task == "multiclass":
        if n_classes < 3:
            raise ConfigError(f"task 'multiclass' needs at least 3 classes; {config.target!r} has "
                              f"{n_classes} ({shown}) — use task: binary", field="task", source=src)
        if pd.api.types.is_float_dtype(values.dtype) and n_classes > MAX_FLOAT_CLASSES:
            integral = bool((values == values.round()).all())
            if not integral or n_classes > 100:
                raise ConfigError(f"{config.target!r} is a float column with {n_classes} distinct values; "
                                  f"it looks continuous — use task: regression", field="task", source=src)


def _check_xgboost_labels(config: ModelConfig, values: pd.Series, shown: str, n_classes: int) -> None:
    """xgboost's classifier learns only the labels ``0 .. n-1`` (its ``classes_`` is ``range(n)``); any other
    labels fail deep inside its ``fit``. Said here, before training, with the column and the way out."""
    if config.estimator.class_path.split(".")[0] != "xgboost" or "Classifier" not in config.estimator.class_path:
        return
    import pandas as pd

    integral = pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype) or (
        pd.api.types.is_float_dtype(values.dtype) and bool((values == values.round()).all()))
    if integral and set(int(v) for v in values.unique()) == set(range(n_classes)):
        return
    raise ConfigError(f"{config.estimator.class_path} learns only the class labels 0..{n_classes - 1}; target "
                      f"{config.target!r} has {shown}{', ...' if n_classes > 10 else ''}: map the labels to "
                      f"0..{n_classes - 1} in the data, or use lightgbm.LGBMClassifier or "
                      f"catboost.CatBoostClassifier, which learn any labels", field="estimator.class",
                      source=config.source)
