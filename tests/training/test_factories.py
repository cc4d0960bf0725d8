"""The team's feature engineering inside the model: ``preprocess: {factory: ...}`` and ``pipeline: {factory: ...}``
parsed with errors naming the field, built into the same two-step pipeline as the built-in preprocessing, trained,
searched, saved with skops and explained (auto falls back when the factory's columns do not map back)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.training.trainer import train_model

TEAM = textwrap.dedent('''
    import numpy as np
    import pandas as pd
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler
    from sklearn.linear_model import LogisticRegression

    CALLS = []

    class DaysSince(TransformerMixin, BaseEstimator):
        """Days between a timestamp column and the latest timestamp seen in training."""
        def __init__(self, unit_days=1.0):
            self.unit_days = unit_days
        def fit(self, X, y=None):
            # fitted state as plain numbers (skops rebuilds numbers and arrays, not a pandas Timestamp)
            self.latest_ns_ = int(pd.to_datetime(pd.DataFrame(X).iloc[:, 0]).max().value)
            return self
        def transform(self, X):
            ts = pd.to_datetime(pd.DataFrame(X).iloc[:, 0]).astype("datetime64[ns]").astype("int64").to_numpy()
            return ((self.latest_ns_ - ts) / 86400e9 / self.unit_days)[:, None]

    def squash(X):
        return np.tanh(np.asarray(X, dtype="float64"))

    def features(numeric, categorical, unit_days=1.0):
        CALLS.append((list(numeric), list(categorical)))
        return ColumnTransformer([
            ("age", DaysSince(unit_days=unit_days), ["signed_up"]),
            ("nums", FunctionTransformer(squash), [c for c in numeric if c != "signed_up"]),
            ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                     encoded_missing_value=-2), [c for c in categorical if c != "signed_up"]),
        ])

    def whole(features, C=1.0):
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=C, max_iter=500))])

    def not_a_transformer():
        return 42

    def with_estimator():
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])

    def broken():
        raise RuntimeError("feature store unreachable")

    def sneaky():
        import builtins
        return FunctionTransformer(None, inverse_func=builtins.eval, check_inverse=False)
''')


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def team(tmp_path, monkeypatch):
    (tmp_path / "team_fe.py").write_text(TEAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    sys.modules.pop("team_fe", None)
    return importlib.import_module("team_fe")


def _raw(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "fe", "owner": "tests@example.com", "data": {"dataset": "synthetic"}, "keys": ["customer_id"],
        "target": "churned", "task": "binary",
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "training": {"cv_folds": 3, "seed": 5, "test_size": 0.25, "reference_sample_size": 50},
    }
    raw.update(extra)
    return raw


def _frame(n: int = 360, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 400, size=n)
    x1 = rng.normal(size=n)
    plan = rng.choice(["basic", "pro", None], size=n)
    logit = 2.0 * x1 + (days - 200) / 80.0 + np.where(plan == "pro", 1.0, 0.0)
    return pd.DataFrame({
        "customer_id": np.arange(n),
        # a timestamp: the built-in preprocessing refuses it, the team's factory turns it into an age
        "signed_up": pd.Timestamp("2024-06-01") - pd.to_timedelta(days, unit="D"),
        "x1": x1, "plan": plan,
        "churned": rng.random(n) < 1.0 / (1.0 + np.exp(-logit)),
    })


# -- parsing ----------------------------------------------------------------------------------------------


def test_builtin_is_the_default_and_round_trips(team):
    config = parse_model_config(_raw())
    assert config.preprocess is None and config.pipeline is None and config.builtin_preprocess
    assert config.to_dict()["preprocess"] == "builtin" and config.to_dict()["pipeline"] is None
    custom = parse_model_config(_raw(preprocess={"factory": "team_fe:features", "params": {"unit_days": 7}}))
    assert custom.preprocess.path == "team_fe:features" and dict(custom.preprocess.params) == {"unit_days": 7}
    assert parse_model_config(custom.to_dict()) == custom


@pytest.mark.parametrize("section, field, match", [
    ("weird", "preprocess", "must be 'builtin' or"),
    ({"factory": "team_fe.features"}, "preprocess.factory", "must be 'package.module:function'"),
    ({"factory": "team_fe:featurs"}, "preprocess.factory", r"no attribute 'featurs' \(did you mean team_fe:features"),
    ({"factory": "team_nowhere:features"}, "preprocess.factory", "cannot import 'team_nowhere:features'"),
    ({"factory": "team_fe:features", "params": {"unit_day": 2}}, "preprocess.params.unit_day",
     r"takes no parameter 'unit_day' \(did you mean 'unit_days'\?\)"),
    ({"factory": "team_fe:features", "params": {"numeric": ["x1"]}}, "preprocess.params.numeric",
     "filled in with the model's column list"),
    ({"factory": "team_fe:features", "colour": 1}, "preprocess.colour", "colour"),
])
def test_preprocess_errors_name_the_field(team, section, field, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_model_config(_raw(preprocess=section))
    assert info.value.field == field


def test_pipeline_rules(team):
    with pytest.raises(ConfigError, match="not both") as info:
        parse_model_config(_raw(preprocess={"factory": "team_fe:features"}, pipeline={"factory": "team_fe:whole"}))
    assert info.value.field == "pipeline"
    raw = _raw(pipeline={"factory": "team_fe:whole"})
    raw.pop("estimator")
    with pytest.raises(ConfigError, match="name the class of the Pipeline's last step") as info:
        parse_model_config(raw)
    assert info.value.field == "estimator.class"


def test_dag_parsing_imports_nothing(team, tmp_path):
    import sys

    sys.modules.pop("team_fe", None)
    config = parse_model_config(_raw(preprocess={"factory": "team_fe:features"}), check_estimator=False)
    assert config.preprocess.path == "team_fe:features" and "team_fe" not in sys.modules
    with pytest.raises(ConfigError, match="no module named 'team_gone'"):
        parse_model_config(_raw(preprocess={"factory": "team_gone:features"}), check_estimator=False)


# -- training -----------------------------------------------------------------------------------------------


def test_a_preprocess_factory_trains_on_columns_the_builtin_refuses(team):
    df = _frame()
    with pytest.raises(ConfigError, match="unsupported dtype: signed_up"):
        train_model(parse_model_config(_raw()), df)
    config = parse_model_config(_raw(preprocess={"factory": "team_fe:features", "params": {"unit_days": 30}}))
    result = train_model(config, df)
    # the factory got the model's column lists (the timestamp counts as neither numeric nor string: numeric list)
    numeric, categorical = team.CALLS[-1]
    assert "x1" in numeric and categorical == ["plan"]
    pre = result.pipeline.named_steps["preprocess"]
    assert [name for name, *_ in pre.transformers_][:3] == ["age", "nums", "codes"]
    assert pre.named_transformers_["age"].unit_days == 30
    assert list(result.pipeline.named_steps) == ["preprocess", "estimator"]
    # the age feature carries the signal: it beats the naive baseline clearly
    assert result.metrics["holdout"]["roc_auc"] > result.metrics["baseline"]["roc_auc"] + 0.2
    assert {r["feature"] for r in result.feature_importance} == {"signed_up", "x1", "plan"}
    # predictions go through the team's transforms: the same rows give the same answer from the fitted pipeline
    again = result.pipeline.predict_proba(result.holdout[result.features])[:, 1]
    assert np.allclose(again, result.holdout_proba[:, 1])


def test_a_pipeline_factory_takes_estimator_params_and_search(team):
    df = _frame().drop(columns=["signed_up", "plan"])
    config = parse_model_config(_raw(
        estimator={"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
        pipeline={"factory": "team_fe:whole", "params": {"C": 9.0}},
        search={"method": "random", "n_iter": 3, "space": {"C": [0.01, 0.1, 1.0]}}))
    result = train_model(config, df)
    steps = result.pipeline.named_steps
    assert list(steps) == ["preprocess", "estimator"]
    assert [name for name, _ in steps["preprocess"].steps] == ["scale"]
    assert result.best_params["C"] in (0.01, 0.1, 1.0) and steps["estimator"].C == result.best_params["C"]
    assert len(result.search["trials"]) == 3
    no_search = train_model(parse_model_config(_raw(
        estimator={"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
        pipeline={"factory": "team_fe:whole", "params": {"C": 9.0}})), df)
    assert no_search.pipeline.named_steps["estimator"].C == 0.5  # estimator.params apply on top of the factory's


@pytest.mark.parametrize("section, factory, field, match", [
    ("preprocess", "team_fe:not_a_transformer", "preprocess.factory", "returned builtins.int, not a scikit-learn"),
    ("preprocess", "team_fe:with_estimator", "preprocess.factory", "use pipeline: {factory: team_fe:with_estimator}"),
    ("preprocess", "team_fe:broken", "preprocess.factory", "team_fe:broken failed: RuntimeError: feature store"),
    ("pipeline", "team_fe:not_a_transformer", "pipeline.factory", "not an unfitted sklearn.pipeline.Pipeline"),
])
def test_factory_results_are_checked(team, section, factory, field, match):
    config = parse_model_config(_raw(**{section: {"factory": factory}}))
    with pytest.raises(ConfigError, match=match) as info:
        train_model(config, _frame().drop(columns=["signed_up"]))
    assert info.value.field == field


def test_a_pipeline_whose_last_step_is_not_the_named_class_is_refused(team):
    config = parse_model_config(_raw(estimator={"class": "sklearn.ensemble.RandomForestClassifier"},
                                     pipeline={"factory": "team_fe:whole"}))
    with pytest.raises(ConfigError, match="last step .* is sklearn.linear_model._logistic.LogisticRegression, but "
                                          "estimator.class names sklearn.ensemble.RandomForestClassifier") as info:
        train_model(config, _frame().drop(columns=["signed_up", "plan"]))
    assert info.value.field == "estimator.class"


def test_the_model_file_names_the_teams_types_and_loads_only_when_they_are_trusted(team):
    from airflow_mlops.registry.model_registry import UntrustedModelError, dump_skops_bytes, load_skops_bytes
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.trust.types import referenced_types

    config = parse_model_config(_raw(preprocess={"factory": "team_fe:features"}))
    result = train_model(config, _frame(), importance=False)
    data = dump_skops_bytes(result.pipeline)
    assert {"team_fe.DaysSince", "team_fe.squash"} <= referenced_types(data)
    with pytest.raises(UntrustedModelError, match=r"team_fe\.DaysSince.*team_fe\.squash"):
        load_skops_bytes(data, trusted_types=PIPELINE_CUSTOM_TYPES)
    team_types = ["team_fe.DaysSince", "team_fe.squash"]
    model = load_skops_bytes(data, trusted_types=[*PIPELINE_CUSTOM_TYPES, *team_types])
    X = result.holdout[result.features]
    assert np.array_equal(model.predict_proba(X), result.pipeline.predict_proba(X))


# -- explanations -------------------------------------------------------------------------------------------


def test_explanations_fall_back_when_the_factorys_columns_do_not_map_back(team):
    from airflow_mlops.scoring.explain import ExplainError, PerturbationExplainer, make_explainer

    pytest.importorskip("xgboost")
    config = parse_model_config(_raw(estimator={"class": "xgboost.XGBClassifier", "params": {"n_estimators": 20}},
                                     preprocess={"factory": "team_fe:features"}))
    result = train_model(config, _frame(), importance=False)
    meta = {"features": result.features, "task": "binary", "classes": result.classes, "name": "fe", "version": 1}
    # the squash step does not name its output columns: they cannot be summed back per input feature
    with pytest.raises(ExplainError, match="cannot map"):
        make_explainer(result.pipeline, meta, result.reference, method="native")
    explainer = make_explainer(result.pipeline, meta, result.reference, method="auto")
    assert isinstance(explainer, PerturbationExplainer)
    values = explainer.contributions(result.holdout[result.features].head(20))
    assert values.shape == (20, 3) and np.isfinite(values).all()


def test_the_factory_examples_of_the_bring_your_own_model_page_train(tmp_path, monkeypatch):
    """docs/bring-your-own-model.md, feature engineering: the team module of the page, written to a file, and each
    YAML section, merged into the churn config, trains on churn data; the model files load with the listed
    types trusted and with nothing else refused."""
    import copy
    import re
    import sys
    from pathlib import Path

    import yaml

    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.registry.model_registry import UntrustedModelError, dump_skops_bytes, load_skops_bytes
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.trust.types import model_trusted_types

    pytest.importorskip("xgboost")
    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "bring-your-own-model.md").read_text().split("## Your team's feature engineering")[1]
    doc = doc.split("\n## ")[0]
    (python_block,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    (tmp_path / "team_features.py").write_text(python_block)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("team_features", None)
    base = yaml.safe_load((repo / "dags" / "configs" / "churn.yaml").read_text())
    base.pop("search", None)
    base["training"] = {**(base.get("training") or {}), "cv_folds": 2, "reference_sample_size": 50}
    df = churn_day("2024-01-01", rows=600, seed=4)
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)]
    assert [("preprocess" in b, "pipeline" in b) for b in blocks] == [(True, False), (False, True)]
    for block in blocks:
        raw = copy.deepcopy(base)
        raw.update(block)
        if "pipeline" in block:  # numeric features only, as the page says
            raw["features"] = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]
        config = parse_model_config(raw)
        result = train_model(config, df, importance=False)
        assert result.metrics["holdout"]["roc_auc"] > 0.6, block
        data = dump_skops_bytes(result.pipeline)
        own = model_trusted_types(config.estimator.class_path.replace("xgboost.", "xgboost.sklearn."),
                                  config.estimator.trusted_types)
        model = load_skops_bytes(data, trusted_types=[*PIPELINE_CUSTOM_TYPES, *own])
        X = result.holdout[result.features]
        assert np.array_equal(model.predict_proba(X), result.pipeline.predict_proba(X))
        with pytest.raises(UntrustedModelError, match="team_features.signed_log"):
            load_skops_bytes(data, trusted_types=[*PIPELINE_CUSTOM_TYPES,
                                                   *[t for t in own if t != "team_features.signed_log"]])


def test_registration_with_a_team_type_left_out_of_trusted_types_fails_and_registers_nothing(team, tmp_path):
    """The fresh-process smoke test loads the model file with the config's trusted types only: a class of the
    factory's module that the config does not list fails the registration, naming it; no version appears.
    Listed, the same model registers, and its fresh-process load is the smoke test's proof that the team's
    transforms travel inside the model."""
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelNotFoundError, ModelRegistry
    from airflow_mlops.registry.smoke import SmokeTestError
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    store = ArtifactStore("file://" + str(tmp_path / "store"))
    Dataset.for_name(store, "synthetic").write("2024-06-01", _frame())
    raw = _raw(preprocess={"factory": "team_fe:features"},
               estimator={"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500},
                          "trusted_types": ["team_fe.squash"]})
    raw["data"]["training_window_days"] = 1
    with pytest.raises(SmokeTestError, match=r"team_fe\.DaysSince.*estimator\.trusted_types"):
        train_and_register(parse_model_config(raw), store, "2024-06-01")
    registry = ModelRegistry(store)
    with pytest.raises(ModelNotFoundError, match="no committed version"):
        registry.list_versions("fe")
    raw["estimator"]["trusted_types"] = ["team_fe.squash", "team_fe.DaysSince"]
    summary = train_and_register(parse_model_config(raw), store, "2024-06-01")
    meta = registry.get_metadata("fe", summary["version"])
    assert set(meta["trusted_types"]) == {"team_fe.squash", "team_fe.DaysSince"}
    from airflow_mlops.registry.smoke import PROBA_TOLERANCE

    assert meta["profile"]["rows_checked"] > 0 and meta["profile"]["max_abs_proba_diff"] <= PROBA_TOLERANCE


def test_a_factory_that_puts_code_running_functions_in_the_model_never_gets_a_version(team, tmp_path):
    """The team's factory runs at training time (it is their code), but what it leaves in the model file is checked
    like any file: a function that can run code is refused by the fresh-process load, and no config can trust it."""
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelNotFoundError, ModelRegistry
    from airflow_mlops.registry.smoke import SmokeTestError
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    with pytest.raises(ConfigError, match="can run code") as info:
        parse_model_config(_raw(estimator={"class": "sklearn.linear_model.LogisticRegression",
                                           "trusted_types": ["builtins.eval"]}))
    assert info.value.field.startswith("estimator.trusted_types")
    store = ArtifactStore("file://" + str(tmp_path / "store"))
    Dataset.for_name(store, "synthetic").write("2024-06-01", _frame().drop(columns=["signed_up", "plan"]))
    raw = _raw(preprocess={"factory": "team_fe:sneaky"})
    raw["data"]["training_window_days"] = 1
    with pytest.raises(SmokeTestError, match=r"builtins\.eval.*can run code|can run code.*builtins\.eval"):
        train_and_register(parse_model_config(raw), store, "2024-06-01")
    with pytest.raises(ModelNotFoundError):
        ModelRegistry(store).list_versions("fe")
