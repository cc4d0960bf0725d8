"""Training: a scikit-learn Pipeline built from a :class:`~airflow_mlops.config.model.ModelConfig`.

:func:`train_model` runs the whole, deterministic procedure on an in-memory DataFrame:

1. check the config against the data (columns present, task fits the target);
2. drop rows whose target is missing (counted in the result, never silently);
3. resolve features (``features`` or all columns but keys/target/``ds``) and split them into
   categorical (explicit ``categorical_features``, else string/object/category/bool dtypes) and
   numeric;
4. build ``Pipeline([("preprocess", ColumnTransformer), ("estimator", <estimator>)])``:
   numeric -> float64, median imputation (+ ``StandardScaler`` for ``sklearn.linear_model`` /
   ``sklearn.svm`` estimators); categorical -> string labels, most-frequent imputation,
   one-hot encoding (unknown categories ignored, rare ones grouped, at most
   :data:`ONE_HOT_MAX_CATEGORIES` columns per feature; a fit whose data has no rare category and
   no feature over the limit uses a plain encoder, which gives the same columns much faster), or, with
   ``estimator.categorical`` native (xgboost, LightGBM), one column of category codes per feature that the
   estimator splits on as categories (:func:`native_categorical_fit_params`). A ``preprocess`` or
   ``pipeline`` factory of the team's code replaces the preprocessing (:mod:`airflow_mlops.training.factories`);
5. train/holdout split: seeded random (stratified for classification), or ``time`` (the last
   ``holdout_days``, forward-chaining folds; :mod:`airflow_mlops.training.splits`);
6. optional hyperparameter search (random, successive halving or optuna; :mod:`airflow_mlops.training.search`)
   with the same CV and seed;
7. K-fold CV on the train part (mean/std of every task metric);
8. refit on the whole train part, holdout metrics, naive baseline (``DummyClassifier(prior)`` /
   ``DummyRegressor(mean)``) on the same split, per-class metrics;
9. permutation importance on (at most 2000 rows of) the holdout, per input feature;
10. a reference sample (training features + ``prediction`` / ``proba_<class>``) for drift
    monitoring, and the holdout frame + predictions for reproducibility checks.

The fitted pipeline contains two small functions of :mod:`airflow_mlops.training.steps`
(:data:`~airflow_mlops.training.steps.PIPELINE_CUSTOM_TYPES`) that normalise input dtypes, so the pipeline behaves
the same whether a column arrives as ``object``, ``string``, ``category``, nullable ``Int64`` or Arrow
types; a skops loader must list them as trusted.

No Airflow imports; pandas, numpy, scikit-learn and pyarrow are imported inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.data_check import check_config_against_data, is_categorical_dtype
from airflow_mlops.config.model import ConfigError, ModelConfig
from airflow_mlops.evaluation.metrics import PROBA_METRICS, compute_metrics, higher_is_better, per_class_metrics
from airflow_mlops.training.errors import TrainingError
from airflow_mlops.training.factories import factory_pipeline
from airflow_mlops.training.predict import final_step, plain_value, predict_frame, predict_labels, proba_aligned
from airflow_mlops.training.search import run_search
from airflow_mlops.training.splits import random_split, time_split
from airflow_mlops.training.steps import categorical_as_strings, json_safe, numeric_as_float

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

__all__ = [
    "ConfigError",  # re-exported: train_model raises it when the config does not fit the data
    "IMPORTANCE_MAX_ROWS", "IMPORTANCE_REPEATS", "ONE_HOT_MAX_CATEGORIES", "ONE_HOT_MIN_FREQUENCY", "TrainResult",
    "split_features", "train_model",
]

#: Categories seen fewer times than this in training are grouped into one "infrequent" column.
ONE_HOT_MIN_FREQUENCY = 5
#: The label of a missing category in the string columns CatBoost gets (``estimator.categorical`` native).
MISSING_CATEGORY = "__missing__"

#: At most this many one-hot columns per categorical feature (high-cardinality guard).
ONE_HOT_MAX_CATEGORIES = 50
#: Permutation importance uses at most this many holdout rows.
IMPORTANCE_MAX_ROWS = 2000
IMPORTANCE_REPEATS = 5


# --------------------------------------------------------------------------------------------
# dtype normalisation used inside the pipeline (must stay importable under these names)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Everything :func:`train_model` produced. ``summary()`` is the JSON-safe part."""

    pipeline: Any
    task: str
    features: list[str]
    categorical_features: list[str]
    numeric_features: list[str]
    target: str
    classes: list[Any] | None
    #: {"cv": {metric: {"mean", "std"}}, "holdout": {...}, "baseline": {...}, "per_class": {...}}
    metrics: dict[str, Any]
    params: dict[str, Any]
    best_params: dict[str, Any] | None
    cv_scheme: dict[str, Any]
    split: dict[str, Any]
    n_rows: int
    n_dropped_nan_target: int
    feature_importance: list[dict[str, Any]]
    reference: pd.DataFrame
    holdout: pd.DataFrame
    holdout_predictions: np.ndarray
    fit_seconds: float
    #: training-time class probabilities of the holdout rows (columns in the order of ``classes``);
    #: ``None`` for regressors and classifiers without ``predict_proba``
    holdout_proba: np.ndarray | None = None
    keys: list[str] = field(default_factory=list)
    estimator_class: str = ""
    primary_metric: str = ""
    importance_metric: str = ""
    feature_dtypes: dict[str, str] = field(default_factory=dict)
    search: dict[str, Any] | None = None
    #: each cross-validation fold's metrics, in fold order (``metrics["cv"]`` aggregates them)
    cv_folds: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    #: the holdout's target as the model sees it (labels normalised; see :func:`compute_importance`)
    holdout_target: np.ndarray | None = None
    seed: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-safe description (for ``metadata.json``): everything but the pipeline, the
        frames and the predictions."""
        summary: dict[str, Any] = json_safe({
            "task": self.task,
            "target": self.target,
            "keys": self.keys,
            "features": self.features,
            "feature_dtypes": self.feature_dtypes,
            "categorical_features": self.categorical_features,
            "numeric_features": self.numeric_features,
            "classes": self.classes,
            "estimator": self.estimator_class,
            "params": self.params,
            "best_params": self.best_params,
            "search": self.search,
            "cv_scheme": self.cv_scheme,
            "cv_folds": self.cv_folds,
            "split": self.split,
            "primary_metric": self.primary_metric,
            "metrics": self.metrics,
            "n_rows": self.n_rows,
            "n_dropped_nan_target": self.n_dropped_nan_target,
            "feature_importance": self.feature_importance,
            "importance_metric": self.importance_metric,
            "reference_rows": int(len(self.reference)),
            "holdout_rows": int(len(self.holdout)),
            "fit_seconds": self.fit_seconds,
            "train_seconds": self.train_seconds,
        })
        return summary


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def frame_schema(df: pd.DataFrame) -> dict[str, str]:
    """Column -> Arrow type string for a DataFrame (``int64``, ``double``, ``string``, ``bool``,
    ``dictionary<...>``, ``timestamp[ns]`` ...); falls back to the pandas dtype name for columns
    Arrow cannot type (e.g. mixed-type ``object`` columns)."""
    import pyarrow as pa

    try:
        schema = pa.Schema.from_pandas(df, preserve_index=False)
        return {name: str(schema.field(name).type) for name in df.columns}
    except (pa.ArrowException, TypeError, ValueError):
        pass
    out: dict[str, str] = {}
    for name in df.columns:
        try:
            out[name] = str(pa.Schema.from_pandas(df[[name]], preserve_index=False).field(0).type)
        except (pa.ArrowException, TypeError, ValueError):
            out[name] = str(df[name].dtype)
    return out


def split_features(config: ModelConfig, schema: dict[str, str], features: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(categorical, numeric)`` feature lists (in feature order).

    Categorical = ``config.categorical_features`` when given, else features whose dtype is
    string/object/category/dictionary/bool.
    """
    if config.categorical_features is not None:
        chosen = set(config.categorical_features)
        categorical = [f for f in features if f in chosen]
    else:
        categorical = [f for f in features if is_categorical_dtype(schema[f])]
    numeric = [f for f in features if f not in set(categorical)]
    return categorical, numeric


def build_pipeline(
    config: ModelConfig, numeric: Sequence[str], categorical: Sequence[str], estimator: Any | None = None
) -> Any:
    """The unfitted ``Pipeline([("preprocess", ColumnTransformer), ("estimator", ...)])``.

    ``estimator`` defaults to the configured one (params from the config, ``random_state`` from
    ``training.seed`` when the estimator has it and the config leaves it unset).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if estimator is None:
        estimator = config.estimator.build(seed=config.training.seed)
    transformers = []
    if numeric:
        steps = [
            ("as_float", FunctionTransformer(numeric_as_float, feature_names_out="one-to-one", validate=False,
                                             check_inverse=False)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
        if config.estimator.is_linear:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), list(numeric)))
    if categorical and config.estimator.native_categorical:
        # one column per feature, which the estimator is told to treat as categories
        # (native_categorical_fit_params): category codes for xgboost and LightGBM (missing and unseen values:
        # NaN, the library's missing), the string labels themselves for CatBoost (missing: MISSING_CATEGORY)
        import numpy as np
        from sklearn.preprocessing import OrdinalEncoder

        if config.estimator.class_path.startswith("catboost."):
            encode: Any = ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY,
                                                   keep_empty_features=True))
        else:
            encode = ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                                encoded_missing_value=np.nan, dtype=np.float64))
        transformers.append((
            "categorical",
            Pipeline([
                ("as_str", FunctionTransformer(categorical_as_strings, feature_names_out="one-to-one",
                                               validate=False, check_inverse=False)),
                encode,
            ]),
            list(categorical),
        ))
    elif categorical:
        transformers.append((
            "categorical",
            Pipeline([
                ("as_str", FunctionTransformer(categorical_as_strings, feature_names_out="one-to-one",
                                               validate=False, check_inverse=False)),
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=ONE_HOT_MIN_FREQUENCY,
                                         max_categories=ONE_HOT_MAX_CATEGORIES, sparse_output=False)),
            ]),
            list(categorical),
        ))
    if not transformers:
        raise TrainingError("no feature columns to train on")
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def native_categorical_fit_params(config: ModelConfig, pipeline: Any, numeric: Sequence[str],
                                   categorical: Sequence[str]) -> dict[str, Any]:
    """Point the estimator of a :func:`build_pipeline` pipeline with native categories at their columns (they
    follow the numeric ones): xgboost through its ``feature_types`` and ``enable_categorical`` parameters (set
    here unless the config sets them), LightGBM through ``categorical_feature`` and CatBoost through
    ``cat_features`` at fit time (returned as the pipeline's fit parameters). Nothing to do (``{}``) for one-hot
    encoded categories."""
    if not (config.builtin_preprocess and config.estimator.native_categorical and categorical):
        return {}
    estimator = pipeline.named_steps["estimator"]
    library = config.estimator.class_path.split(".", 1)[0]
    if library == "xgboost":
        set_by_config = set(config.estimator.params)
        updates: dict[str, Any] = {}
        if "enable_categorical" not in set_by_config:
            updates["enable_categorical"] = True
        if "feature_types" not in set_by_config:
            updates["feature_types"] = ["q"] * len(numeric) + ["c"] * len(categorical)
        estimator.set_params(**updates)
        return {}
    positions = list(range(len(numeric), len(numeric) + len(categorical)))
    if library == "catboost":  # a fit parameter: as a constructor one, scikit-learn's clone cannot copy it
        return {} if "cat_features" in config.estimator.params else {"estimator__cat_features": positions}
    if library == "lightgbm":
        return {"estimator__categorical_feature": positions}
    return {}


def _needs_category_grouping(X: pd.DataFrame, categorical: Sequence[str]) -> bool:
    """Whether a one-hot encoder with ``min_frequency=ONE_HOT_MIN_FREQUENCY`` and
    ``max_categories=ONE_HOT_MAX_CATEGORIES`` could encode ``X`` differently from a plain one.

    It cannot when every categorical column has at least one value, at most ``ONE_HOT_MAX_CATEGORIES``
    distinct values and every value at least ``ONE_HOT_MIN_FREQUENCY`` times: then no category is
    infrequent and both give the same columns. Counting raw values is conservative: the string labels
    the encoder sees merge values (never split them) and imputation only adds to a count.
    """
    for col in categorical:
        try:
            counts = X[col].value_counts(dropna=True)
        except TypeError:  # unhashable values: let the encoder decide
            return True
        if counts.empty or len(counts) > ONE_HOT_MAX_CATEGORIES or int(counts.min()) < ONE_HOT_MIN_FREQUENCY:
            return True
    return False


def _fit(pipeline: Any, X: pd.DataFrame, y: Any, categorical: Sequence[str],
         fit_params: Mapping[str, Any] | None = None) -> Any:
    """``pipeline.fit(X, y)``; the one-hot step groups rare categories only when this fit's data has
    any (scikit-learn counts every value in Python when grouping is on, ~5x slower than without)."""
    if categorical:
        grouping = _needs_category_grouping(X, categorical)
        pipeline.set_params(**{
            "preprocess__categorical__onehot__min_frequency": ONE_HOT_MIN_FREQUENCY if grouping else None,
            "preprocess__categorical__onehot__max_categories": ONE_HOT_MAX_CATEGORIES if grouping else None,
        })
    return pipeline.fit(X, y, **(fit_params or {}))


class _MetricScorer:
    """scikit-learn scorer ``(estimator, X, y) -> float`` for one of our metrics (negated for
    lower-is-better metrics, NaN when undefined on that data)."""

    def __init__(self, task: str, metric: str, classes: Sequence[Any] | None) -> None:
        self.task = task
        self.metric = metric
        self.classes = list(classes) if classes is not None else None
        self.sign = 1.0 if higher_is_better(metric) else -1.0

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        import numpy as np

        proba: np.ndarray | None
        if self.metric in PROBA_METRICS and self.classes is not None and hasattr(estimator, "predict_proba"):
            # the value depends on the probabilities only: one predict_proba instead of predict + predict_proba
            # (the labels passed along are the most probable classes, used for the label check only)
            final, Xt = final_step(estimator, X)
            proba = proba_aligned(final, Xt, self.classes)
            pred = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        else:
            pred, proba = predict_labels(estimator, X, self.task, self.classes)
        value = compute_metrics(self.task, y, pred, proba, self.classes, names=[self.metric]).get(self.metric)
        return float("nan") if value is None else self.sign * value


def _aggregate(folds: list[dict[str, float]], task: str) -> dict[str, dict[str, float]]:
    import numpy as np

    from airflow_mlops.evaluation.metrics import METRICS_BY_TASK

    out: dict[str, dict[str, float]] = {}
    for metric in METRICS_BY_TASK[task]:
        values = [f[metric] for f in folds if metric in f]
        if values:
            out[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return out


def _classification_labels(y: np.ndarray) -> np.ndarray:
    """Give class labels a concrete dtype: object columns of bools / ints become ``bool`` /
    ``int64`` (missing values had made them ``object``), integral floats become ``int64``,
    extension arrays become numpy; strings stay ``object``."""
    import numpy as np
    import pandas as pd

    y = np.asarray(y)
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        return y.astype("int64")  # an int label column that became float because of missing values
    if y.dtype.kind == "O":
        kind = pd.api.types.infer_dtype(y, skipna=False)
        if kind == "boolean":
            return y.astype(bool)
        if kind == "integer":
            return y.astype("int64")
        if kind == "floating" and np.all(np.mod(y.astype("float64"), 1) == 0):
            return y.astype("float64").astype("int64")
        if kind not in ("string", "floating"):
            kinds = sorted({type(v).__name__ for v in y})
            raise TrainingError(f"target has mixed or unsupported value types ({', '.join(kinds)}); "
                                f"clean it upstream")
    return y


def _class_list(y: np.ndarray) -> list[Any]:
    import numpy as np

    try:
        return [plain_value(c) for c in np.unique(y)]
    except TypeError as exc:
        kinds = sorted({type(v).__name__ for v in y})
        raise TrainingError(f"target has mixed value types ({', '.join(kinds)}); clean it upstream") from exc


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def train_model(config: ModelConfig, df: pd.DataFrame, *, importance: bool = True,
                row_dates: Sequence[str] | None = None) -> TrainResult:
    """Train, cross-validate and evaluate the configured model on ``df``.

    Deterministic: the same config and data give identical metrics, params and predictions.
    ``importance=False`` leaves ``feature_importance`` empty for the caller to fill later with
    :func:`compute_importance` (the registration does it while the smoke test runs).

    Raises:
        ConfigError: the config does not fit the data (missing columns, wrong task for the
            target, unusable feature dtypes); ``.field`` names the field.
        TrainingError: too little data (e.g. a class with a single row, fewer rows than folds).
    """
    import numpy as np
    import pandas as pd

    started = time.perf_counter()
    task = config.task
    classification = config.is_classification
    seed = config.training.seed

    bad_names = [c for c in df.columns if not isinstance(c, str)]
    if bad_names:
        raise TrainingError(f"column names must be strings; got {bad_names!r}")
    if df.columns.duplicated().any():
        raise TrainingError(f"duplicate column names: {sorted(set(df.columns[df.columns.duplicated()]))}")
    schema = frame_schema(df)
    check_config_against_data(config, schema, df[config.target] if config.target in df.columns else None)

    n_rows = int(len(df))
    target_missing = df[config.target].isna().to_numpy()
    n_dropped = int(target_missing.sum())
    data = df.loc[~target_missing].reset_index(drop=True)

    features = config.feature_columns(list(df.columns))
    categorical, numeric = split_features(config, schema, features)
    X = data[features]
    y = data[config.target].to_numpy()
    if classification:
        y = _classification_labels(y)
        classes: list[Any] | None = _class_list(y)
    else:
        y = y.astype("float64")
        classes = None

    folds = config.training.cv_folds
    _check_trainable(y, n_dropped, folds, classification)

    # -- split ----------------------------------------------------------------------------------
    if config.training.split == "time":
        if row_dates is None or len(row_dates) != n_rows:
            raise TrainingError("training.split: time needs the partition date of every row (row_dates)")
        dates = np.asarray(row_dates, dtype=object)[~target_missing]
        train_pos, hold_pos, splitter, split_info, cv_scheme = time_split(dates, config.training.holdout_days,
                                                                           folds)
    else:
        train_pos, hold_pos, splitter, split_info, cv_scheme = random_split(y, config.training.test_size, folds,
                                                                             classification, seed)
    X_train, y_train = X.iloc[train_pos], y[train_pos]
    X_hold, y_hold = X.iloc[hold_pos], y[hold_pos]

    fit_params: dict[str, Any] = {}
    if config.builtin_preprocess:
        pipeline = build_pipeline(config, numeric, categorical)
        fit_params = native_categorical_fit_params(config, pipeline, numeric, categorical)
        # the one-hot step's rare-category grouping is decided per fit (_fit)
        grouped = [] if config.estimator.native_categorical else categorical
    else:  # the team's factory: its transformers are fitted as they are
        pipeline = factory_pipeline(config, features, numeric, categorical)
        grouped = []
    primary = config.metrics.primary
    scorer = _MetricScorer(task, primary, classes)

    # -- optional hyperparameter search ----------------------------------------------------------
    best_params: dict[str, Any] | None = None
    search_info: dict[str, Any] | None = None
    if config.search is not None:
        best_params, search_info = run_search(config, pipeline, X_train, y_train, splitter, scorer, fit_params)
        pipeline.set_params(**{f"estimator__{k}": v for k, v in best_params.items()})

    # -- cross-validation on the train part -------------------------------------------------------
    cv_folds = _cross_validate(pipeline, splitter, X_train, y_train, grouped, task, classes, fit_params)
    cv_metrics = _aggregate(cv_folds, task)

    # -- final fit, holdout, baseline -------------------------------------------------------------
    fit_start = time.perf_counter()
    _fit(pipeline, X_train, y_train, grouped, fit_params)
    fit_seconds = time.perf_counter() - fit_start
    hold_pred, hold_proba = predict_labels(pipeline, X_hold, task, classes)
    holdout_metrics = compute_metrics(task, y_hold, hold_pred, hold_proba, classes)

    baseline_metrics = _baseline_metrics(task, y_train, y_hold, classes)
    per_class = per_class_metrics(y_hold, hold_pred, classes) if classification else {}

    # -- reference sample and holdout frame -------------------------------------------------------
    n_ref = min(config.training.reference_sample_size, len(X_train))
    ref_features = X_train.sample(n=n_ref, random_state=seed).sort_index().reset_index(drop=True)
    reference = pd.concat(
        [ref_features, predict_frame(pipeline, ref_features, features, task, classes)], axis=1
    )
    # sensitive features ride along (not as model inputs unless listed as features) for the fairness gate
    hold_columns = list(dict.fromkeys([*config.keys, *features, *config.sensitive_features, config.target]))
    holdout = data.iloc[hold_pos][hold_columns].reset_index(drop=True)

    estimator = pipeline.named_steps["estimator"]
    result = TrainResult(
        pipeline=pipeline,
        task=task,
        features=list(features),
        categorical_features=categorical,
        numeric_features=numeric,
        target=config.target,
        classes=classes,
        metrics={"cv": cv_metrics, "holdout": holdout_metrics, "baseline": baseline_metrics,
                 "per_class": per_class},
        params=json_safe(estimator.get_params(deep=False)),
        best_params=json_safe(best_params) if best_params is not None else None,
        cv_scheme=cv_scheme,
        split=split_info,
        n_rows=n_rows,
        n_dropped_nan_target=n_dropped,
        feature_importance=[],
        reference=reference,
        holdout=holdout,
        holdout_predictions=hold_pred,
        holdout_proba=hold_proba,
        fit_seconds=float(fit_seconds),
        keys=list(config.keys),
        estimator_class=config.estimator.class_path,
        primary_metric=primary,
        feature_dtypes={f: schema[f] for f in features},
        search=search_info,
        cv_folds=cv_folds,
        holdout_target=y_hold,
        seed=seed,
    )
    if importance:
        compute_importance(result)
    result.train_seconds = float(time.perf_counter() - started)
    return result


def _check_trainable(y: np.ndarray, n_dropped: int, folds: int, classification: bool) -> None:
    """Enough rows with a target for the folds, and at least two rows of every class."""
    import numpy as np

    min_rows = max(2 * folds, 10)
    if len(y) < min_rows:
        raise TrainingError(f"only {len(y)} rows with a target ({n_dropped} dropped for a missing target); "
                            f"need at least {min_rows} for cv_folds={folds}")
    if classification:
        labels, counts = np.unique(y, return_counts=True)
        rare = {plain_value(label): int(c) for label, c in zip(labels, counts) if c < 2}
        if rare:
            raise TrainingError(f"class(es) with fewer than 2 rows cannot be split into train and holdout: {rare}")


def _cross_validate(pipeline: Any, splitter: Any, X_train: pd.DataFrame, y_train: np.ndarray,
                    categorical: Sequence[str], task: str, classes: list[Any] | None,
                    fit_params: Mapping[str, Any] | None = None) -> list[dict[str, float]]:
    """Metrics of each fold of ``splitter`` on the train part, in fold order."""
    from sklearn.base import clone

    fold_metrics: list[dict[str, float]] = []
    for fit_idx, val_idx in splitter.split(X_train, y_train):
        model = _fit(clone(pipeline), X_train.iloc[fit_idx], y_train[fit_idx], categorical, fit_params)
        pred, proba = predict_labels(model, X_train.iloc[val_idx], task, classes)
        fold_metrics.append(compute_metrics(task, y_train[val_idx], pred, proba, classes))
    return fold_metrics


def _baseline_metrics(task: str, y_train: np.ndarray, y_hold: np.ndarray,
                      classes: list[Any] | None) -> dict[str, float]:
    """Holdout metrics of the naive baseline, which ignores the features (class prior / mean of the train
    part): fitting it on a constant column gives the same predictions as behind the preprocessing, without a
    second ColumnTransformer fit."""
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor

    dummy = DummyClassifier(strategy="prior") if task != "regression" else DummyRegressor(strategy="mean")
    baseline = dummy.fit(np.zeros((len(y_train), 1)), y_train)
    base_pred, base_proba = predict_labels(baseline, np.zeros((len(y_hold), 1)), task, classes)
    return compute_metrics(task, y_hold, base_pred, base_proba, classes)


def compute_importance(result: TrainResult) -> None:
    """Fill ``result.feature_importance`` / ``importance_metric``: permutation importance of each input
    feature on (at most :data:`IMPORTANCE_MAX_ROWS` rows of) the holdout, seeded by ``training.seed``."""
    if result.holdout_target is None:
        raise TrainingError("this TrainResult has no holdout target to compute importance on")
    result.feature_importance, result.importance_metric = _importance(
        result.pipeline, result.holdout[result.features], result.holdout_target, result.task, result.classes,
        result.primary_metric, result.seed)


def _importance(pipeline: Any, X: pd.DataFrame, y: np.ndarray, task: str, classes: list[Any] | None,
                primary: str, seed: int, *, encoded: bool = True) -> tuple[list[dict[str, Any]], str]:
    """Permutation importance per input feature on at most IMPORTANCE_MAX_ROWS holdout rows.

    Uses the primary metric, or accuracy / rmse when the primary metric is undefined on the
    holdout (e.g. ROC AUC with a single class present). The preprocessing works row by row, so
    shuffling a feature's rows before it equals shuffling that feature's encoded columns after it:
    the rows are encoded once and only the estimator runs per shuffle (:func:`_encoded_groups`);
    pipelines of another shape (or ``encoded=False``) are shuffled on the raw columns, with the same
    shuffles and therefore the same result."""
    import numpy as np

    if len(X) > IMPORTANCE_MAX_ROWS:
        pick = np.sort(np.random.default_rng(seed).choice(len(X), IMPORTANCE_MAX_ROWS, replace=False))
        X, y = X.iloc[pick], y[pick]
    metric = primary
    if not np.isfinite(_MetricScorer(task, metric, classes)(pipeline, X, y)):
        metric = "rmse" if task == "regression" else "accuracy"
    scorer = _MetricScorer(task, metric, classes)
    groups = _encoded_groups(pipeline, list(X.columns)) if encoded else None
    if groups is not None:
        estimator, data = pipeline[-1], pipeline[:-1].transform(X)
    else:
        estimator, data = pipeline, X.copy()
    base = scorer(estimator, data, y)
    rng = np.random.RandomState(seed)
    rows = []
    for name in X.columns:
        drops = []
        for _ in range(IMPORTANCE_REPEATS):
            order = rng.permutation(len(y))
            if groups is not None:
                cols = groups[name]
                if not _writeable(data):  # catboost marks the arrays it predicted on read-only
                    data = data.copy()
                saved = data[:, cols].copy()
                data[:, cols] = saved[order]
                drops.append(base - scorer(estimator, data, y))
                if not _writeable(data):
                    data = data.copy()
                data[:, cols] = saved
            else:
                saved = data[name].copy()
                data[name] = saved.to_numpy()[order]
                drops.append(base - scorer(estimator, data, y))
                data[name] = saved
        rows.append({"feature": name, "importance_mean": float(np.nan_to_num(np.mean(drops))),
                     "importance_std": float(np.nan_to_num(np.std(drops)))})
    rows.sort(key=lambda r: (-r["importance_mean"], r["feature"]))
    return rows, metric


def _writeable(data: Any) -> bool:
    flags = getattr(data, "flags", None)
    return flags is None or bool(flags.writeable)


def _encoded_groups(pipeline: Any, features: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{feature: column positions}`` in the output of a :func:`build_pipeline` preprocessing step
    (numeric features: one column each; categorical: their one-hot block), or ``None`` when the
    pipeline has another shape or the widths do not add up."""
    import numpy as np

    steps = getattr(pipeline, "named_steps", None) or {}
    pre = steps.get("preprocess")
    indices = getattr(pre, "output_indices_", None)
    if pre is None or indices is None or list(steps)[-1] != "estimator":
        return None
    groups: dict[str, np.ndarray] = {}
    for name, _, columns in pre.transformers_:
        if name == "remainder" or not (indices[name].stop - indices[name].start):
            continue
        start = indices[name].start
        if name == "numeric":
            widths = [1] * len(columns)
        elif name == "categorical" and "onehot" not in pre.named_transformers_["categorical"].named_steps:
            widths = [1] * len(columns)  # native categories: one column per feature
        elif name == "categorical":
            onehot = pre.named_transformers_["categorical"].named_steps["onehot"]
            if getattr(onehot, "drop_idx_", None) is not None:
                return None
            infrequent = getattr(onehot, "infrequent_categories_", None) or [None] * len(columns)
            widths = [len(cats) - (len(rare) - 1 if rare is not None else 0)
                      for cats, rare in zip(onehot.categories_, infrequent)]
        else:
            return None
        if sum(widths) != indices[name].stop - start:
            return None
        for col, width in zip(columns, widths):
            groups[col] = np.arange(start, start + width)
            start += width
    return groups if set(groups) == set(features) else None


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for reproducing a model (``metadata.json``).

    Keys: python, sklearn, pandas, numpy, pyarrow, skops, airflow, airflow_mlops; libraries
    that are not installed are left out. Airflow's version is read from package metadata,
    without importing Airflow.
    """
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for key, dist in (("sklearn", "scikit-learn"), ("pandas", "pandas"), ("numpy", "numpy"),
                      ("pyarrow", "pyarrow"), ("skops", "skops"), ("airflow", "apache-airflow"),
                      ("airflow_mlops", "airflow-mlops")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if key == "airflow_mlops":
                from airflow_mlops import __version__

                out[key] = __version__
    return out
