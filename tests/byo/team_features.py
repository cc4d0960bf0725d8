"""A team's own feature engineering, kept in a module beside the Dag files (copied there by the test): a
preprocessing factory (``preprocess: {factory: team_features:penguin_features}``) and a whole-pipeline factory
(``pipeline: {factory: team_features:diabetes_pipeline}``). They use a transformer class and a function of this
module, so the model files name ``team_features.BillShape`` and ``team_features.signed_log``: the configs list
them under ``estimator.trusted_types``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder


def signed_log(X):
    """``sign(x) * log1p(|x|)``, column by column."""
    X = np.asarray(X, dtype="float64")
    return np.sign(X) * np.log1p(np.abs(X))


class BillShape(TransformerMixin, BaseEstimator):
    """Bill length / depth ratio and the body mass per flipper millimetre, clipped at ``clip`` standard
    deviations of the training data (missing inputs give missing outputs)."""

    def __init__(self, clip: float = 3.0) -> None:
        self.clip = clip

    def _raw(self, X):
        X = pd.DataFrame(X).astype("float64")
        ratio = X["bill_length_mm"] / X["bill_depth_mm"]
        mass = X["body_mass_g"] / X["flipper_length_mm"]
        return np.column_stack([ratio.to_numpy(), mass.to_numpy()])

    def fit(self, X, y=None):
        raw = self._raw(X)
        self.mean_ = np.nanmean(raw, axis=0)
        self.scale_ = np.nanstd(raw, axis=0) + 1e-9
        self.n_features_in_ = 4
        return self

    def transform(self, X):
        z = (self._raw(X) - self.mean_) / self.scale_
        return np.clip(z, -self.clip, self.clip)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(["bill_ratio", "mass_per_flipper_mm"], dtype=object)


def penguin_features(numeric, categorical, clip: float = 3.0):
    """The unfitted preprocessing for the penguins: the shape features, imputed raw numbers, and ordinal codes
    for the string columns (unknown and missing values get their own code)."""
    shape = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    return ColumnTransformer([
        ("shape", Pipeline([("ratios", BillShape(clip=clip)), ("impute", SimpleImputer(strategy="median"))]), shape),
        ("numbers", SimpleImputer(strategy="median"), list(numeric)),
        ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2),
         list(categorical)),
    ], remainder="drop", sparse_threshold=0.0)


def diabetes_pipeline(features, n_estimators: int = 80):
    """The whole unfitted pipeline for the diabetes data: signed-log of every feature next to the raw values, then
    an XGBoost regressor."""
    from xgboost import XGBRegressor

    return Pipeline([
        ("expand", ColumnTransformer([
            ("raw", "passthrough", list(features)),
            ("log", FunctionTransformer(signed_log), list(features)),
        ])),
        ("model", XGBRegressor(n_estimators=n_estimators, max_depth=3, learning_rate=0.1, n_jobs=1)),
    ])
