"""Hyperparameter search over the estimator's parameters (``search:`` in the model config): random search,
successive halving, and every trial kept (:func:`search_trials`) for metadata.json and the evaluation report.

``scorer`` is the trainer's metric scorer: a scikit-learn scorer with ``metric`` (its name) and ``sign``
(+1 for higher-is-better metrics, -1 otherwise; scores are ``sign * value``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.config.model import ModelConfig
from airflow_mlops.training.errors import TrainingError
from airflow_mlops.training.steps import json_safe


def run_search(config: ModelConfig, pipeline: Any, X: Any, y: Any, splitter: Any,
            scorer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the configured search; returns ``(best estimator params, search summary)``."""
    import warnings

    import numpy as np

    search_cfg = config.search
    assert search_cfg is not None
    seed = config.training.seed
    distributions = search_cfg.param_distributions(prefix="estimator__")
    common = {"scoring": scorer, "cv": splitter, "random_state": seed, "refit": False, "error_score": np.nan,
              "n_jobs": search_cfg.n_jobs}
    if search_cfg.method == "halving":
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingRandomSearchCV

        search = HalvingRandomSearchCV(pipeline, distributions, n_candidates=search_cfg.n_iter, factor=3,
                                       resource="n_samples", min_resources="exhaust", **common)
    else:
        from sklearn.model_selection import RandomizedSearchCV

        search = RandomizedSearchCV(pipeline, distributions, n_iter=search_cfg.n_iter, **common)
    with warnings.catch_warnings():
        # a small discrete space triggers "grid smaller than n_iter"; failed candidates are
        # reported below through their NaN scores
        warnings.filterwarnings("ignore", message=".*total space of parameters.*")
        search.fit(X, y)
    scores = np.asarray(search.cv_results_["mean_test_score"], dtype="float64")
    if not np.isfinite(scores).any():
        raise TrainingError(f"every search candidate failed or scored NaN on {scorer.metric}")
    best = {k.removeprefix("estimator__"): json_safe(v) for k, v in search.best_params_.items()}
    info = {
        "method": search_cfg.method,
        "n_candidates": int(len(scores)),
        "n_failed": int((~np.isfinite(scores)).sum()),
        "metric": scorer.metric,
        "best_score": float(scorer.sign * search.best_score_),
    }
    if search_cfg.method == "halving":
        info["n_iterations"] = int(search.n_iterations_)
        info["n_resources"] = [int(r) for r in search.n_resources_]
    info["trials"] = search_trials(search.cv_results_, scorer.sign)
    # use the raw best values (not the JSON-safe copies) to refit
    return {k.removeprefix("estimator__"): v for k, v in search.best_params_.items()}, {**info, "best_params": best}


def search_trials(cv_results: Mapping[str, Any], sign: float) -> list[dict[str, Any]]:
    """Every candidate of a search, in the order it was tried: its parameters, the CV mean and standard deviation
    of the search metric (in the metric's own direction; None for a failed candidate), the mean fit seconds per
    fold and its rank; ``iteration`` and ``n_resources`` (rows) for successive halving."""
    import math

    trials = []
    for i, params in enumerate(cv_results["params"]):
        mean, std = float(cv_results["mean_test_score"][i]), float(cv_results["std_test_score"][i])
        trial = {"trial": i, "params": {k.removeprefix("estimator__"): json_safe(v) for k, v in params.items()},
                 "cv_mean": sign * mean if math.isfinite(mean) else None,
                 "cv_std": std if math.isfinite(std) else None,
                 "fit_seconds": round(float(cv_results["mean_fit_time"][i]), 4),
                 "rank": int(cv_results["rank_test_score"][i])}
        if "iter" in cv_results:
            trial.update(iteration=int(cv_results["iter"][i]), n_resources=int(cv_results["n_resources"][i]))
        trials.append(trial)
    return trials


__all__ = ["run_search", "search_trials"]
