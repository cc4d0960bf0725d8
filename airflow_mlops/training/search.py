"""Hyperparameter search over the estimator's parameters (``search:`` in the model config): random search,
successive halving, Bayesian search with optuna's TPE sampler (:func:`optuna_search`), and every trial kept
(:func:`search_trials`) for metadata.json and the evaluation report.

``scorer`` is the trainer's metric scorer: a scikit-learn scorer with ``metric`` (its name) and ``sign``
(+1 for higher-is-better metrics, -1 otherwise; scores are ``sign * value``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.config.model import ModelConfig, thaw
from airflow_mlops.training.errors import TrainingError
from airflow_mlops.training.steps import json_safe


def run_search(config: ModelConfig, pipeline: Any, X: Any, y: Any, splitter: Any, scorer: Any,
               fit_params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the configured search; returns ``(best estimator params, search summary)``."""
    import warnings

    import numpy as np

    search_cfg = config.search
    assert search_cfg is not None
    if search_cfg.method == "optuna":
        return optuna_search(config, pipeline, X, y, splitter, scorer, fit_params)
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
        search.fit(X, y, **(fit_params or {}))
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


def optuna_search(config: ModelConfig, pipeline: Any, X: Any, y: Any, splitter: Any, scorer: Any,
                  fit_params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``search.method: optuna``: ``n_iter`` trials of optuna's TPE sampler seeded with ``training.seed``, run one
    after the other so that the same config and data give the same trials, parameters and best. Each trial
    cross-validates a clone of ``pipeline`` on ``splitter`` (the objective, maximised, is the mean of the
    scorer's ``sign * metric``); a trial whose fits fail or score NaN is kept as failed and never chosen.
    Returns what :func:`run_search` returns, the trials in the shape of :func:`search_trials`."""
    import math
    import warnings

    import numpy as np
    import optuna
    from optuna.trial import TrialState
    from sklearn.base import clone
    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import cross_validate

    search_cfg = config.search
    assert search_cfg is not None
    seed = config.training.seed
    space = {name: thaw(spec) for name, spec in search_cfg.space.items()}
    # candidate lists optuna cannot hold as its own choices (1 and True, duplicates, lists): chosen by index
    by_index = {name: not _plain_choices(spec) for name, spec in space.items() if not isinstance(spec, dict)}
    # TPE models the space after its random start-up trials: a third of the budget (at most 10, its default)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, search_cfg.n_iter // 3)))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial
    raw_params: list[dict[str, Any]] = []
    results: list[tuple[float, float, float]] = []  # (mean score, std, mean fit seconds per fold)
    errors: list[str] = []
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for _ in range(search_cfg.n_iter):
            trial = study.ask()
            params: dict[str, Any] = {}
            for name, spec in space.items():
                if isinstance(spec, dict):
                    low, high = spec["low"], spec["high"]
                    if spec["distribution"] == "randint":
                        params[name] = trial.suggest_int(name, int(low), int(high))
                    else:
                        params[name] = trial.suggest_float(name, float(low), float(high),
                                                           log=spec["distribution"] == "loguniform")
                elif by_index[name]:
                    params[name] = spec[trial.suggest_categorical(name, list(range(len(spec))))]
                else:
                    params[name] = trial.suggest_categorical(name, spec)
            raw_params.append(params)
            estimator = clone(pipeline).set_params(**{f"estimator__{k}": v for k, v in params.items()})
            mean = std = fit_seconds = math.nan
            with warnings.catch_warnings(record=True) as caught:
                # a fold that fails: one FitFailedWarning per trial, reported once below
                warnings.simplefilter("always", FitFailedWarning)
                try:
                    cv = cross_validate(estimator, X, y, cv=splitter, scoring=scorer, n_jobs=search_cfg.n_jobs,
                                        error_score=np.nan, params=dict(fit_params or {}))
                except ValueError as exc:  # scikit-learn raises when every fold's fit failed
                    errors.append(str(exc))
                else:
                    scores = np.asarray(cv["test_score"], dtype="float64")
                    mean, std = float(scores.mean()), float(scores.std())
                    fit_seconds = float(np.mean(cv["fit_time"]))
            for w in caught:
                if issubclass(w.category, FitFailedWarning):
                    errors.append(str(w.message))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            results.append((mean, std, fit_seconds))
            if math.isfinite(mean):
                study.tell(trial, mean)
            else:
                study.tell(trial, state=TrialState.FAIL)
    finally:
        optuna.logging.set_verbosity(verbosity)

    means = np.array([r[0] for r in results], dtype="float64")
    finite = np.isfinite(means)
    if not finite.any():
        detail = f": {_last_line(errors[0])}" if errors else ""
        raise TrainingError(f"every search candidate failed or scored NaN on {scorer.metric}{detail}")
    n_failed = int((~finite).sum())
    if n_failed:
        first = f"; first error: {_last_line(errors[0])}" if errors else ""
        warnings.warn(f"{n_failed} of {len(means)} optuna trials failed or scored NaN on {scorer.metric} and were "
                      f"not chosen{first}", FitFailedWarning, stacklevel=2)
    ranks = _ranks(means)
    best_index = int(np.flatnonzero(ranks == 1)[0])  # the earliest of equally good trials, like scikit-learn
    trials = [{"trial": i, "params": {k: json_safe(v) for k, v in params.items()},
               "cv_mean": scorer.sign * mean if math.isfinite(mean) else None,
               "cv_std": std if math.isfinite(std) else None,
               "fit_seconds": round(fit_seconds, 4) if math.isfinite(fit_seconds) else None,
               "rank": int(ranks[i])}
              for i, (params, (mean, std, fit_seconds)) in enumerate(zip(raw_params, results))]
    best = raw_params[best_index]
    info = {
        "method": "optuna",
        "n_candidates": len(trials),
        "n_failed": n_failed,
        "metric": scorer.metric,
        "best_score": float(scorer.sign * means[best_index]),
        "sampler": type(sampler).__name__,
        "seed": seed,
        "trials": trials,
        "best_params": {k: json_safe(v) for k, v in best.items()},
    }
    return dict(best), info


def _plain_choices(values: list[Any]) -> bool:
    """Whether optuna can keep ``values`` as categorical choices and give each back as itself: None, bool, int,
    float and str only, none equal to an earlier one (``1`` and ``True`` are equal, so is ``1.0``)."""
    return all(v is None or type(v) in (bool, int, float, str) for v in values) and all(
        values.index(v) == i for i, v in enumerate(values))


def _last_line(error: str) -> str:
    """The exception line closing scikit-learn's fit-failure report (which quotes whole tracebacks)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


def _ranks(means: Any) -> Any:
    """scikit-learn's ``rank_test_score``: 1 = best (ties share the smallest rank), failed candidates last."""
    import numpy as np
    from scipy.stats import rankdata

    finite = np.isfinite(means)
    filled = np.where(finite, means, np.nanmin(means) - 1 if finite.any() else 0.0)
    return np.asarray(rankdata(-filled, method="min"), dtype=int)


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


__all__ = ["run_search", "optuna_search", "search_trials"]
