"""Per-row feature contributions for batch scoring (``explain`` section of the model config).

:func:`make_explainer` returns an :class:`Explainer` for one registered model; its
:meth:`Explainer.contributions` gives, for a frame of input rows, one contribution per **input
feature** (one-hot columns of a categorical feature are summed back into that feature), and
:func:`top_k` turns those into the ``explain_<i>_feature`` / ``explain_<i>_value`` columns of the
prediction log (largest absolute contribution first).

Methods (``explain.method``):

* ``shap``: `shap <https://shap.readthedocs.io>`_ on the pipeline's transformed features:
  ``TreeExplainer`` (path-dependent TreeSHAP, no background data) for tree ensembles, among them
  scikit-learn's ``HistGradientBoosting*`` (the default estimator), random forests, extra trees,
  gradient boosting and decision trees; ``LinearExplainer`` for linear models (``LogisticRegression``,
  ``LinearRegression``, ``Ridge``, ...), with the version's reference sample as background.
  Contributions are in the model's raw output space: log-odds for binary tree and logistic models,
  the predicted value for regressors.
* ``perturbation``: model-agnostic; ``contribution_j = f(x) - f(x with feature j replaced by its
  reference value)``, the reference value being the median (numeric) or the most frequent value
  (categorical) of the version's ``reference.parquet`` training sample. ``f`` is the predicted
  probability of the positive class (binary), of the predicted class (multiclass), or the
  prediction (regression). Costs one extra prediction per feature.
* ``shap_approximate``: tree ensembles only: shap's ``TreeExplainer(...).shap_values(approximate=True)``
  (Saabas attributions: one pass down each tree's decision path). About two orders of magnitude faster
  than exact TreeSHAP, but only an approximation of it: on the example churn model the top feature
  agrees with exact TreeSHAP on ~85% of rows and the whole top 3 on ~55%. For when exact shap does
  not fit the scoring time budget (see ``benchmarks/explain.py --method``).
* ``native``: the gradient-boosting library's own exact TreeSHAP, on the transformed features: xgboost
  ``Booster.predict(pred_contribs=True)``, LightGBM ``predict(pred_contrib=True)``, CatBoost
  ``get_feature_importance(type="ShapValues")``. Same values as shap's TreeExplainer on these models (raw
  output space: log-odds for binary classifiers), computed by the library's C++ code; needs no shap.
* ``native_approximate``: the fast path for xgboost, LightGBM and CatBoost: Saabas attributions (one pass
  down each tree's decision path; what ``shap_approximate`` computes) from the library: xgboost
  ``pred_contribs=True, approx_contribs=True``, CatBoost ``shap_calc_type="Approximate"``, and for LightGBM,
  which has no such call, ``predict(pred_leaf=True)`` plus a per-leaf table of path contributions built once
  from the trees (:class:`LeafContributions`). Like ``shap_approximate``, an approximation of exact TreeSHAP;
  contributions plus the bias still add up to the raw prediction. For when exact ``native`` does not fit the
  scoring time budget (see ``benchmarks/explain.py``).
* ``auto`` (default): ``native`` for xgboost, LightGBM and CatBoost estimators; else ``shap`` when shap is
  installed and the estimator is supported, else ``perturbation``.

What a contribution refers to: binary classifiers - the second class in ``metadata["classes"]``
(e.g. ``1``/churn); multiclass - the row's predicted class; regression - the prediction.

Pure Python (no Airflow); numpy, pandas, scikit-learn and shap are imported inside functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.model import EXPLAIN_METHODS  # ("auto", "native", "native_approximate", "shap", ...)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["EXPLAIN_METHODS", "ExplainError", "Explainer", "LeafContributions", "NativeExplainer", "explain_columns",
           "make_explainer", "native_library", "top_k"]


#: estimators shap's TreeExplainer handles (class names, scikit-learn and the usual boosting libraries)
TREE_ESTIMATORS = (
    "HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "RandomForestClassifier",
    "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
    "GradientBoostingRegressor", "DecisionTreeClassifier", "DecisionTreeRegressor", "XGBClassifier",
    "XGBRegressor", "LGBMClassifier", "LGBMRegressor", "CatBoostClassifier", "CatBoostRegressor",
)
#: linear models shap's LinearExplainer handles (``coef_`` + ``intercept_``)
LINEAR_ESTIMATORS = (
    "LogisticRegression", "LinearRegression", "Ridge", "RidgeClassifier", "Lasso", "ElasticNet",
    "SGDClassifier", "SGDRegressor", "LinearSVC", "LinearSVR", "BayesianRidge", "HuberRegressor",
)
#: background rows for LinearExplainer (means/covariance of the transformed reference sample)
BACKGROUND_ROWS = 1000


class ExplainError(ValueError):
    """Explanations cannot be produced as configured (method not available for this model)."""


def explain_columns(k: int) -> list[str]:
    """``["explain_1_feature", "explain_1_value", ..., "explain_<k>_value"]``."""
    return [c for i in range(1, k + 1) for c in (f"explain_{i}_feature", f"explain_{i}_value")]


def shap_available() -> bool:
    try:
        import shap  # noqa: F401
    except ImportError:
        return False
    return True


def _estimator_kind(estimator: Any) -> str | None:
    name = type(estimator).__name__
    if name in TREE_ESTIMATORS:
        return "tree"
    if name in LINEAR_ESTIMATORS and hasattr(estimator, "coef_"):
        return "linear"
    return None


def _split(pipeline: Any) -> tuple[Any, Any]:
    """``(preprocessing or None, final estimator)`` of a fitted model."""
    from sklearn.pipeline import Pipeline

    if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
        return pipeline[:-1], pipeline[-1]
    return None, pipeline


def feature_groups(pre: Any, features: Sequence[str], n_out: int) -> np.ndarray:
    """For each transformed column, the index (in ``features``) of the input feature it comes from.

    Works on the project's ``Pipeline([("preprocess", ColumnTransformer), ...])``: one-to-one
    transformers keep their columns, a one-hot encoder contributes ``len(categories)`` (after
    infrequent-category grouping) columns per input feature, in input order.
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    position = {f: i for i, f in enumerate(features)}
    ct = pre
    while isinstance(ct, Pipeline):
        if len(ct.steps) != 1:
            break
        ct = ct.steps[0][1]
    if not isinstance(ct, ColumnTransformer):
        if ct is None or (isinstance(ct, str) and ct == "passthrough") or _keeps_columns(ct, features, n_out):
            return np.arange(n_out)
        raise ExplainError(f"cannot map {n_out} transformed columns back to the {len(features)} input features "
                           f"of a {type(pre).__name__}; use explain.method: perturbation")
    groups = np.full(n_out, -1, dtype=np.int64)
    for name, trans, cols in ct.transformers_:
        sl = ct.output_indices_.get(name)
        if sl is None or sl.stop == sl.start or trans == "drop":
            continue
        cols = [cols] if isinstance(cols, str) else list(cols)
        width = sl.stop - sl.start
        if width == len(cols) and (isinstance(trans, str) or _keeps_columns(trans, cols, width)):
            groups[sl] = [position[c] for c in cols]  # "passthrough" or named one-to-one outputs
            continue
        last = trans.steps[-1][1] if isinstance(trans, Pipeline) else trans
        counts = getattr(last, "_n_features_outs", None)  # OneHotEncoder: outputs per input feature
        if counts is None or sum(counts) != width or len(counts) != len(cols):
            try:
                names = list(last.get_feature_names_out(cols))
            except Exception:  # noqa: BLE001 - a transformer that renames, mixes or does not name its columns
                names = []
            counts = []
            for c in cols:  # outputs are contiguous per input feature, named "<feature>_<category>"
                counts.append(sum(1 for n in names[sum(counts):] if n.startswith(f"{c}_")) if names else 0)
            if sum(counts) != width:
                raise ExplainError(f"cannot map the {width} columns of transformer {name!r} back to {cols}; "
                                   "use explain.method: perturbation")
        start = sl.start
        for c, n in zip(cols, counts):
            groups[start:start + n] = position[c]
            start += n
    if (groups < 0).any():
        raise ExplainError("some transformed columns do not come from a known input feature; "
                           "use explain.method: perturbation")
    return groups


class Explainer:
    """Per-row contributions of each input feature for one model (see the module docstring)."""

    method: str = ""

    def __init__(self, pipeline: Any, features: Sequence[str], task: str, classes: Sequence[Any] | None) -> None:
        self.pipeline = pipeline
        self.features = list(features)
        self.task = task
        self.classes = list(classes) if classes is not None else None

    def contributions(self, frame: pd.DataFrame, transformed: Any = None, prediction: Any = None) -> np.ndarray:
        """``(len(frame), len(features))`` float64 contributions. ``transformed``: the frame already
        run through the preprocessing (saves a pass); ``prediction``: the predicted labels."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"method": self.method}


class ShapExplainer(Explainer):
    """shap TreeExplainer / LinearExplainer on the transformed features, summed per input feature."""

    method = "shap"

    def __init__(self, pipeline: Any, features: Sequence[str], task: str, classes: Sequence[Any] | None,
                 reference: pd.DataFrame | None, approximate: bool = False) -> None:
        super().__init__(pipeline, features, task, classes)
        import numpy as np
        import shap

        self.pre, self.estimator = _split(pipeline)
        self.kind = _estimator_kind(self.estimator)
        self.approximate = approximate
        if approximate:
            self.method = "shap_approximate"
            if self.kind != "tree":
                raise ExplainError(f"explain.method 'shap_approximate' is for tree ensembles; "
                                   f"{type(self.estimator).__name__} is not one (use shap or perturbation)")
            if native_library(self.estimator) == "lightgbm":  # shap asserts on the first batch otherwise
                raise ExplainError("shap has no approximate explainer for LightGBM models; use explain.method "
                                   "native_approximate (the same Saabas attributions, computed from the trees)")
        if self.kind is None:
            raise ExplainError(f"shap has no fast exact explainer for {type(self.estimator).__name__} here "
                               f"(tree ensembles: {', '.join(TREE_ESTIMATORS[:6])}...; linear models); "
                               "use explain.method: perturbation (or auto)")
        #: (n_transformed, n_features) 0/1 matrix: shap values @ it = per input feature sums
        self.group_matrix = group_matrix(self.pre, self.features, reference)
        if self.kind == "tree":
            self.explainer = shap.TreeExplainer(self.estimator)
        else:
            if reference is None or not len(reference):
                raise ExplainError("LinearExplainer needs the model's reference sample as background")
            bg = reference[self.features].head(BACKGROUND_ROWS)
            bg_t = np.asarray(self.pre.transform(bg) if self.pre is not None else bg, dtype="float64")
            self.explainer = shap.LinearExplainer(self.estimator, shap.maskers.Independent(bg_t, max_samples=len(bg_t)))

    def describe(self) -> dict[str, Any]:
        out = {"method": self.method, "explainer": "TreeExplainer" if self.kind == "tree" else "LinearExplainer"}
        if self.approximate:
            out["approximation"] = "Saabas (approximate=True)"
        return out

    def contributions(self, frame: pd.DataFrame, transformed: Any = None, prediction: Any = None) -> np.ndarray:
        import numpy as np

        if transformed is None:
            transformed = self.pre.transform(frame[self.features]) if self.pre is not None else frame[self.features]
        xt = np.asarray(transformed, dtype="float64")
        if self.kind == "tree":
            values = self.explainer.shap_values(xt, check_additivity=False, approximate=self.approximate)
        else:
            values = self.explainer.shap_values(xt)
        values = _select_output(values, self.task, self.classes, getattr(self.estimator, "classes_", None),
                                prediction, len(xt))
        summed: np.ndarray = values @ self.group_matrix  # sum the transformed columns of each input feature
        return summed


def _keeps_columns(pre: Any, features: Sequence[str], n_out: int) -> bool:
    """Whether a transformer outside a ColumnTransformer keeps the input features as its columns, in order:
    its output names (``get_feature_names_out``) are the feature names. Same width alone proves nothing (a
    team's transformer may mix or replace columns), so an unnamed output is not mapped."""
    if n_out != len(features):
        return False
    try:
        names = [str(n) for n in pre.get_feature_names_out(list(features))]
    except Exception:  # noqa: BLE001 - no names, or names that need fitted state it does not have
        return False
    return names == list(features)


def group_matrix(pre: Any, features: Sequence[str], reference: pd.DataFrame | None) -> np.ndarray:
    """``(n_transformed, n_features)`` 0/1 matrix mapping the preprocessing's output columns to the input
    feature each comes from: per-column contributions ``@`` it are per-feature sums."""
    import numpy as np

    if pre is not None:
        sample = reference[list(features)].head(2) if reference is not None and len(reference) else None
        if sample is None:
            raise ExplainError("the model's reference sample is empty; cannot size the transformed features")
        n_out = int(np.asarray(pre.transform(sample)).shape[1])
        groups = feature_groups(pre, features, n_out)
    else:
        groups = np.arange(len(features))
    matrix = np.zeros((len(groups), len(features)), dtype="float64")
    matrix[np.arange(len(groups)), groups] = 1.0
    return matrix


#: the estimator's top-level package -> its native contribution call (see :class:`NativeExplainer`)
NATIVE_LIBRARIES = ("xgboost", "lightgbm", "catboost")


def native_library(estimator: Any) -> str | None:
    """``xgboost``, ``lightgbm`` or ``catboost`` when the estimator comes from that library, else None."""
    package = type(estimator).__module__.split(".", 1)[0]
    return package if package in NATIVE_LIBRARIES else None


class NativeExplainer(Explainer):
    """TreeSHAP values from the gradient-boosting library itself, summed per input feature; with
    ``approximate=True`` Saabas attributions (one pass down each tree's decision path)."""

    method = "native"

    def __init__(self, pipeline: Any, features: Sequence[str], task: str, classes: Sequence[Any] | None,
                 reference: pd.DataFrame | None, approximate: bool = False) -> None:
        super().__init__(pipeline, features, task, classes)
        self.pre, self.estimator = _split(pipeline)
        self.approximate = approximate
        if approximate:
            self.method = "native_approximate"
        library = native_library(self.estimator)
        if library is None:
            raise ExplainError(f"explain.method {self.method!r} is for xgboost, LightGBM and CatBoost estimators; "
                               f"{type(self.estimator).__name__} is not one (use auto, shap or perturbation)")
        self.library = library
        self.group_matrix = group_matrix(self.pre, self.features, reference)
        self._leaf_tables: LeafContributions | None = None
        if approximate and library == "lightgbm":
            self._leaf_tables = LeafContributions(self.estimator.booster_)

    def describe(self) -> dict[str, Any]:
        if self.approximate:
            call = {"xgboost": "Booster.predict(pred_contribs=True, approx_contribs=True)",
                    "lightgbm": "predict(pred_leaf=True) + per-leaf path contributions",
                    "catboost": "get_feature_importance(type='ShapValues', shap_calc_type='Approximate')"}
            return {"method": self.method, "explainer": f"{self.library} {call[self.library]}",
                    "approximation": "Saabas (decision-path attributions)"}
        call = {"xgboost": "Booster.predict(pred_contribs=True)", "lightgbm": "predict(pred_contrib=True)",
                "catboost": "get_feature_importance(type='ShapValues')"}
        return {"method": self.method, "explainer": f"{self.library} {call[self.library]}"}

    def raw_contributions(self, xt: np.ndarray) -> np.ndarray:
        """The library's answer as ``(n, k, n_transformed + 1)`` (k = 1 for binary and regression), the last
        column being the expected value (bias)."""
        import numpy as np

        n = len(xt)
        if self.library == "xgboost":
            import xgboost

            booster = self.estimator.get_booster()
            types = booster.feature_types  # "c": category codes (estimator.categorical native)
            matrix = xgboost.DMatrix(xt, feature_types=types, enable_categorical=bool(types and "c" in types))
            out = booster.predict(matrix, pred_contribs=True, approx_contribs=self.approximate)
        elif self._leaf_tables is not None:
            out = self._leaf_tables.contributions(self.estimator.predict(xt, pred_leaf=True))
        elif self.library == "lightgbm":
            out = self.estimator.predict(xt, pred_contrib=True)
        else:
            from catboost import Pool

            cat = list(self.estimator.get_cat_feature_indices())  # string columns (estimator.categorical native)
            out = self.estimator.get_feature_importance(
                data=Pool(xt, cat_features=cat or None), type="ShapValues",
                shap_calc_type="Approximate" if self.approximate else "Regular")
        arr = np.asarray(out, dtype="float64")
        width = xt.shape[1] + 1
        return arr.reshape(n, -1, width)

    def contributions(self, frame: pd.DataFrame, transformed: Any = None, prediction: Any = None) -> np.ndarray:
        import numpy as np

        if transformed is None:
            transformed = self.pre.transform(frame[self.features]) if self.pre is not None else frame[self.features]
        # category labels stay strings for CatBoost's own categorical features; everything else is numbers
        xt = np.asarray(transformed, dtype=object if self.library == "catboost" and
                        self.estimator.get_cat_feature_indices() else "float64")
        per_class = self.raw_contributions(xt)[:, :, :-1]  # drop the bias column
        values = _select_output(np.transpose(per_class, (0, 2, 1)), self.task, self.classes,
                                getattr(self.estimator, "classes_", None), prediction, len(xt))
        summed: np.ndarray = values @ self.group_matrix
        return summed


class LeafContributions:
    """Saabas attributions of a LightGBM model, which has no approximate contribution call: for every leaf of
    every tree, the contribution of each feature along the path from the root (``value(child) - value(node)``
    summed per split feature) plus the root's value as the bias, built once from ``Booster.dump_model()``.
    A row's contributions are then the sum, over trees, of its leaves' rows (leaves from
    ``predict(pred_leaf=True)``, about the cost of a prediction): one sparse row-by-leaf product per class."""

    def __init__(self, booster: Any) -> None:

        model = booster.dump_model()
        if str(booster.params.get("linear_tree", "false")).lower() in ("true", "1"):
            raise ExplainError("explain.method 'native_approximate' cannot attribute LightGBM linear trees "
                               "(leaves hold linear models); use native")
        self.n_features = int(model["max_feature_idx"]) + 1
        self.per_iteration = int(model.get("num_tree_per_iteration", 1))
        self.average = bool(model.get("average_output", False))  # boosting: rf averages its trees
        #: per tree: (n_leaves, n_features + 1) float64, last column the root value
        self.tables: list[np.ndarray] = [self._table(info) for info in model["tree_info"]]

    def _table(self, info: dict[str, Any]) -> np.ndarray:
        import numpy as np

        width = self.n_features + 1
        table = np.zeros((max(int(info.get("num_leaves", 1)), 1), width), dtype="float64")
        root = info["tree_structure"]
        root_value = float(root.get("internal_value", root.get("leaf_value", 0.0)))
        stack: list[tuple[dict[str, Any], np.ndarray]] = [(root, np.zeros(width))]
        while stack:
            node, path = stack.pop()
            if "leaf_value" in node:
                row = path.copy()
                row[-1] = root_value
                table[int(node.get("leaf_index", 0))] = row
                continue
            value, feature = float(node["internal_value"]), int(node["split_feature"])
            for side in ("left_child", "right_child"):
                child = node[side]
                child_value = float(child["leaf_value"] if "leaf_value" in child else child["internal_value"])
                step = path.copy()
                step[feature] += child_value - value
                stack.append((child, step))
        return table

    def contributions(self, leaves: Any) -> np.ndarray:
        """``(n, k * (n_features + 1))`` like LightGBM's ``pred_contrib`` output, from the ``(n, n_trees)`` leaf
        indices of ``predict(pred_leaf=True)`` (the trees that prediction used)."""
        import numpy as np
        from scipy import sparse

        leaves = np.asarray(leaves, dtype=np.int64)
        n, used = leaves.shape
        k, width = self.per_iteration, self.n_features + 1
        out = np.empty((n, k, width), dtype="float64")
        for c in range(k):
            trees = list(range(c, used, k))
            tables = [self.tables[t] for t in trees]
            offsets = np.cumsum([0] + [len(t) for t in tables[:-1]], dtype=np.int64)
            columns = (leaves[:, trees] + offsets).ravel()
            rows = sparse.csr_matrix((np.ones(columns.size), columns, np.arange(0, columns.size + 1, len(trees))),
                                     shape=(n, int(offsets[-1]) + len(tables[-1])))
            out[:, c, :] = rows @ np.vstack(tables)
        if self.average:
            out /= max(used // k, 1)
        return out.reshape(n, k * width)


def _select_output(values: Any, task: str, classes: Sequence[Any] | None, est_classes: Any, prediction: Any,
                   n: int) -> np.ndarray:
    """The ``(n, n_transformed)`` slice of shap values for the explained output."""
    import numpy as np

    if isinstance(values, list):  # older shap: one array per class
        values = np.stack(values, axis=-1)
    arr: np.ndarray = np.asarray(values, dtype="float64")
    if arr.ndim == 2:
        return arr
    # (n, p, k): one slice per class
    k = arr.shape[2]
    if task == "binary" or k == 1:
        return np.asarray(arr[:, :, k - 1])
    labels = list(est_classes) if est_classes is not None else list(classes or [])
    pos = {_key(c): i for i, c in enumerate(labels)}
    idx = np.array([pos.get(_key(p), 0) for p in prediction], dtype=np.int64) if prediction is not None \
        else np.zeros(n, dtype=np.int64)
    return np.asarray(arr[np.arange(n), :, idx])


def _key(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


class PerturbationExplainer(Explainer):
    """``f(x) - f(x with feature j set to its reference value)`` for every feature j."""

    method = "perturbation"

    def __init__(self, pipeline: Any, features: Sequence[str], task: str, classes: Sequence[Any] | None,
                 reference: pd.DataFrame) -> None:
        super().__init__(pipeline, features, task, classes)
        import pandas as pd

        if reference is None or not len(reference):
            raise ExplainError("perturbation explanations need the model's reference sample (reference.parquet)")
        self.baseline: dict[str, Any] = {}
        for f in self.features:
            col = reference[f]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                self.baseline[f] = col.median()
            else:
                mode = col.dropna().mode()
                self.baseline[f] = mode.iloc[0] if len(mode) else None
        self.has_proba = task != "regression" and hasattr(pipeline, "predict_proba")
        self._class_pos = {_key(c): i for i, c in enumerate(getattr(pipeline, "classes_", classes or []))}

    def _f(self, X: pd.DataFrame, target_idx: np.ndarray | None) -> np.ndarray:
        import numpy as np

        if not self.has_proba:
            return np.asarray(self.pipeline.predict(X), dtype="float64")
        proba = np.asarray(self.pipeline.predict_proba(X), dtype="float64")
        if target_idx is None:
            return np.asarray(proba[:, -1])
        return np.asarray(proba[np.arange(len(X)), target_idx])

    def contributions(self, frame: pd.DataFrame, transformed: Any = None, prediction: Any = None) -> np.ndarray:
        import numpy as np

        X = frame[self.features].copy()
        target_idx = None
        if self.has_proba and self.task == "multiclass":
            pred = prediction if prediction is not None else self.pipeline.predict(X)
            target_idx = np.array([self._class_pos.get(_key(p), 0) for p in pred], dtype=np.int64)
        base = self._f(X, target_idx)
        out = np.empty((len(X), len(self.features)), dtype="float64")
        for j, f in enumerate(self.features):
            original = X[f]
            X[f] = self.baseline[f] if self.baseline[f] is not None else original
            out[:, j] = base - self._f(X, target_idx)
            X[f] = original
        return out

    def describe(self) -> dict[str, Any]:
        return {"method": "perturbation", "baseline": "reference median / most frequent value"}


def make_explainer(pipeline: Any, meta: dict[str, Any], reference: pd.DataFrame | None,
                   method: str = "auto") -> Explainer:
    """The explainer for a fitted model (``meta``: its ``metadata.json``) and its reference sample.

    ``method="shap"`` raises :class:`ExplainError` when shap is not installed or has no explainer
    for the estimator; ``"auto"`` then uses the perturbation method.
    """
    if method not in EXPLAIN_METHODS:
        raise ExplainError(f"explain.method must be one of {EXPLAIN_METHODS}, not {method!r}")
    features = list(meta.get("features") or [])
    task = meta.get("task", "binary")
    classes = meta.get("classes")
    name = f"{meta.get('name')} v{meta.get('version')}"
    _, final = _split(pipeline)
    if method == "native_approximate":
        try:
            return NativeExplainer(pipeline, features, task, classes, reference, approximate=True)
        except ExplainError as e:
            raise ExplainError(f"{name}: {e}") from None
    if method == "native" or (method == "auto" and native_library(final) is not None):
        try:
            return NativeExplainer(pipeline, features, task, classes, reference)
        except ExplainError as e:
            if method == "native":
                raise ExplainError(f"{name}: {e}") from None
            # e.g. a team's preprocess factory whose output columns do not map back to the input features
            log.warning("%s: native contributions not used (%s); trying the next method", name, e)
    if method == "shap_approximate":
        if not shap_available():
            raise ExplainError("explain.method is 'shap_approximate' but shap is not installed; "
                               "pip install 'airflow-mlops[explain]'")
        try:
            return ShapExplainer(pipeline, features, task, classes, reference, approximate=True)
        except ExplainError as e:
            raise ExplainError(f"{name}: {e}") from None
    if method in ("auto", "shap"):
        if not shap_available():
            if method == "shap":
                raise ExplainError("explain.method is 'shap' but shap is not installed; "
                                   "pip install 'airflow-mlops[explain]' (or use method: auto/perturbation)")
        else:
            _, est = _split(pipeline)
            if _estimator_kind(est) is not None:
                try:
                    return ShapExplainer(pipeline, features, task, classes, reference)
                except ExplainError as e:
                    if method == "shap":
                        raise ExplainError(f"{name}: {e}") from None
                    log.warning("%s: shap not used (%s); explaining by perturbation", name, e)
            elif method == "shap":
                raise ExplainError(f"{name}: explain.method is 'shap' but shap has no exact explainer for "
                                   f"{type(est).__name__}; use method: auto or perturbation")
    return PerturbationExplainer(pipeline, features, task, classes, reference)


def top_k(contributions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(feature_index, value)``, each ``(n, min(k, n_features))``: the ``k`` largest absolute
    contributions per row, largest first (ties: lower feature index first)."""
    import numpy as np

    k = min(k, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(contributions, order, axis=1)
