"""A team's own estimator, kept in a module beside the Dag files (copied there by the test): the kind of class
a data scientist hands over. Plain numpy, scikit-learn's estimator protocol, no ``_parameter_constraints``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class ScaledCentroidClassifier(ClassifierMixin, BaseEstimator):
    """Gaussian-like class centroids on standardised features; ``temperature`` softens the probabilities."""

    def __init__(self, temperature: float = 1.0, shrink: float = 0.0) -> None:
        self.temperature = temperature
        self.shrink = shrink

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.classes_, index = np.unique(np.asarray(y), return_inverse=True)
        mean = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-9
        self.centroids_ = np.vstack([(1 - self.shrink) * X[index == k].mean(axis=0) + self.shrink * mean
                                     for k in range(len(self.classes_))])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        d = (((X[:, None, :] - self.centroids_[None, :, :]) / self.scale_) ** 2).sum(axis=2)
        logits = -0.5 * d / (self.temperature * X.shape[1])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
