"""``search.method: optuna``: TPE trials seeded with ``training.seed``, reproducible, failed trials kept and never
chosen, and the config error when optuna is not installed. Small synthetic data, real training."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.training.trainer import TrainingError, train_model

pytest.importorskip("optuna")

HGB = {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 15}}
LOGREG = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}}
TRIAL_KEYS = {"trial", "params", "cv_mean", "cv_std", "fit_seconds", "rank"}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread (a small, shared machine); the estimators are imported first so that their OpenMP
    runtime is loaded, and limited, before the first fit."""
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def frame(n: int = 240, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logit = 2.0 * x1 - 1.5 * x2
    return pd.DataFrame({"customer_id": np.arange(n), "ds": "2024-01-01", "x1": x1, "x2": x2,
                         "noise": rng.normal(size=n), "plan": rng.choice(["basic", "pro"], size=n),
                         "churned": rng.random(n) < 1.0 / (1.0 + np.exp(-logit))})


def raw_config(estimator: dict[str, Any], space: dict[str, Any], n_iter: int, seed: int = 7) -> dict[str, Any]:
    return {"name": "optuna_test", "owner": "tests@example.com", "data": {"dataset": "synthetic"},
            "keys": ["customer_id"], "target": "churned", "task": "binary", "estimator": estimator,
            "search": {"method": "optuna", "n_iter": n_iter, "space": space},
            "training": {"cv_folds": 3, "seed": seed, "test_size": 0.25, "reference_sample_size": 50}}


def config(estimator: dict[str, Any], space: dict[str, Any], n_iter: int, seed: int = 7) -> Any:
    return parse_model_config(raw_config(estimator, space, n_iter, seed))


def test_optuna_trials_have_the_search_shape_and_the_best_is_refit() -> None:
    space = {"learning_rate": {"distribution": "loguniform", "low": 0.03, "high": 0.3},
             "max_leaf_nodes": {"distribution": "randint", "low": 4, "high": 12},
             "l2_regularization": {"distribution": "uniform", "low": 0.0, "high": 1.0},
             "max_depth": [2, 3, None], "early_stopping": ["auto", False]}
    cfg = config(HGB, space, n_iter=6)
    assert cfg.search is not None and cfg.search.method == "optuna"
    result = train_model(cfg, frame(), importance=False)
    info = result.search
    assert info is not None
    assert {k: info[k] for k in ("method", "n_candidates", "n_failed", "metric", "sampler", "seed")} == {
        "method": "optuna", "n_candidates": 6, "n_failed": 0, "metric": "roc_auc", "sampler": "TPESampler",
        "seed": 7}
    trials = info["trials"]
    assert [t["trial"] for t in trials] == list(range(6))
    for t in trials:
        assert set(t) == TRIAL_KEYS and set(t["params"]) == set(space)
        assert 0.03 <= t["params"]["learning_rate"] <= 0.3
        assert type(t["params"]["max_leaf_nodes"]) is int and 4 <= t["params"]["max_leaf_nodes"] <= 12
        assert 0.0 <= t["params"]["l2_regularization"] <= 1.0
        assert t["params"]["max_depth"] in (2, 3, None) and t["params"]["early_stopping"] in ("auto", False)
        assert 0.5 < t["cv_mean"] <= 1.0 and t["cv_std"] >= 0.0 and t["fit_seconds"] > 0
    # rank 1 = highest CV roc_auc; the best trial's parameters are the ones refit
    assert sorted(t["rank"] for t in trials)[0] == 1
    best = min(trials, key=lambda t: (t["rank"], t["trial"]))
    assert best["cv_mean"] == max(t["cv_mean"] for t in trials) == pytest.approx(info["best_score"])
    assert best["params"] == info["best_params"] == result.best_params
    for name, value in result.best_params.items():
        assert result.params[name] == (pytest.approx(value) if isinstance(value, float) else value)
    from airflow_mlops.reports.html import evaluation_html

    assert "Search trials (optuna, 6 candidates, CV roc_auc)" in evaluation_html(
        {**result.summary(), "name": "m", "version": 1})


def test_optuna_search_is_reproducible_and_follows_the_seed() -> None:
    space = {"C": {"distribution": "loguniform", "low": 0.001, "high": 10.0}, "fit_intercept": [True, False]}
    df = frame(n=200)

    def run(seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        result = train_model(config(LOGREG, space, n_iter=5, seed=seed), df, importance=False)
        # fit seconds are wall-clock times: everything else must be identical
        return [{k: v for k, v in t.items() if k != "fit_seconds"} for t in result.search["trials"]], \
            result.best_params

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert [t["params"] for t in first[0]] != [t["params"] for t in other[0]]


def test_failed_trials_are_kept_and_never_chosen() -> None:
    # max_leaf_nodes must be >= 2: a trial drawing 0 or 1 fails on every fold (the parser does not check the
    # values a distribution can draw)
    space = {"max_leaf_nodes": {"distribution": "randint", "low": 0, "high": 4}}
    with pytest.warns(Warning, match="optuna trials failed"):
        result = train_model(config(HGB, space, n_iter=8), frame(n=160), importance=False)
    trials = result.search["trials"]
    failed = [t for t in trials if t["cv_mean"] is None]
    ok = [t for t in trials if t["cv_mean"] is not None]
    assert failed and ok and result.search["n_failed"] == len(failed) and len(trials) == 8
    assert all(t["params"]["max_leaf_nodes"] < 2 for t in failed)
    assert all(t["params"]["max_leaf_nodes"] >= 2 for t in ok)
    assert min(t["rank"] for t in failed) > max(t["rank"] for t in ok)  # failed last
    assert all(set(t) == TRIAL_KEYS for t in trials)
    assert result.best_params["max_leaf_nodes"] >= 2

    every_fit_fails = {"max_leaf_nodes": {"distribution": "randint", "low": 0, "high": 1}}
    with pytest.raises(TrainingError, match="every search candidate failed"):
        train_model(config(HGB, every_fit_fails, n_iter=2), frame(n=120), importance=False)


def test_optuna_missing_is_a_config_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "optuna" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    raw = raw_config(LOGREG, {"C": [0.1, 1.0]}, n_iter=3)
    with pytest.raises(ConfigError) as info:
        parse_model_config(raw)
    assert info.value.field == "search.method" and "airflow-mlops[optuna]" in str(info.value)
    # the other methods do not need it, and parsing a Dag file (structure only) checks no library
    parse_model_config({**raw, "search": {**raw["search"], "method": "random"}})
    assert parse_model_config(raw, check_estimator=False).search.method == "optuna"


def test_unknown_method_lists_optuna() -> None:
    raw = raw_config(LOGREG, {"C": [0.1, 1.0]}, n_iter=3)
    with pytest.raises(ConfigError, match="optuna") as info:
        parse_model_config({**raw, "search": {**raw["search"], "method": "bayes"}})
    assert info.value.field == "search.method"


def test_the_documented_optuna_examples_parse() -> None:
    import re
    from pathlib import Path

    import yaml

    docs = Path(__file__).resolve().parents[2] / "docs"
    section = (docs / "model-config.md").read_text().split("### `optuna`", 1)[1].split("\n## ", 1)[0]
    block = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, flags=re.S)[0])
    raw = raw_config({"class": "sklearn.ensemble.HistGradientBoostingClassifier"}, {}, n_iter=1)
    cfg = parse_model_config({**raw, "search": block["search"], "training": block["training"]})
    assert cfg.search is not None and (cfg.search.method, cfg.search.n_iter) == ("optuna", 40)
    assert set(cfg.search.space) == {"learning_rate", "max_leaf_nodes", "l2_regularization", "max_depth"}

    inline = re.search(r"`(search: \{method: optuna.*?\}\}\})`", (docs / "bring-your-own-model.md").read_text(),
                       flags=re.S)
    assert inline is not None
    pytest.importorskip("xgboost")
    search = yaml.safe_load(inline.group(1))["search"]
    cfg = parse_model_config({**raw, "estimator": {"class": "xgboost.XGBClassifier"}, "search": search})
    assert cfg.search is not None and cfg.search.method == "optuna"
    assert set(cfg.search.space) == {"max_depth", "learning_rate"}


def test_importing_the_search_module_does_not_import_optuna() -> None:
    code = "import sys, airflow_mlops.training.search, airflow_mlops.config.parser; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
