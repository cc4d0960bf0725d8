"""Test-only trusted types whose output depends on state that skops does not persist.

``CachedScaler`` is a feature transform that divides by per-column scales computed in ``fit`` but kept
in an attribute its ``__getstate__`` drops as a "cache"; after a save/load round trip it silently
falls back to a scale of 1, so the reloaded pipeline scores differently from the trained one.
``CachedScalingClassifier`` is the same transform folded into a LogisticRegression, so it can be
named as the configured estimator of a model config.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression

TRUSTED = ("volatile_model.CachedScaler", "volatile_model.CachedScalingClassifier")


def _drop_cache(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("_scale_cache")}


class CachedScaler(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        X = np.asarray(X, dtype="float64")
        self._scale_cache = np.nanstd(X, axis=0) * 10.0 + 1.0
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype="float64") / getattr(self, "_scale_cache", 1.0)

    def __getstate__(self):
        return _drop_cache(super().__getstate__())


class CachedScalingClassifier(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X, dtype="float64")
        self._scale_cache = np.nanstd(X, axis=0) * 10.0 + 1.0
        return super().fit(X / self._scale_cache, y, sample_weight=sample_weight)

    def _scaled(self, X):
        return np.asarray(X, dtype="float64") / getattr(self, "_scale_cache", 1.0)

    def decision_function(self, X):
        return super().decision_function(self._scaled(X))

    def predict(self, X):
        return super().predict(self._scaled(X))

    def predict_proba(self, X):
        return super().predict_proba(self._scaled(X))

    def __getstate__(self):
        return _drop_cache(super().__getstate__())
