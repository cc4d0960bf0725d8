"""Any scikit-learn-compatible estimator in a config: xgboost, lightgbm, catboost (not a BaseEstimator subclass)
and a team's own class without scikit-learn's private ``_parameter_constraints``; parameters checked by name
against ``get_params()`` and the constructor, errors as ConfigError naming the field; ``estimator.trusted_types``."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.trust.types import model_trusted_types

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())


def _config(estimator: dict, **top):
    raw = copy.deepcopy(BASE)
    raw.pop("search", None)
    raw["estimator"] = estimator
    raw.update(top)
    return parse_model_config(raw)


@pytest.fixture
def team_module(tmp_path, monkeypatch):
    (tmp_path / "team_estimators.py").write_text(textwrap.dedent('''
        import numpy as np
        from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

        class MajorityClassifier(ClassifierMixin, BaseEstimator):
            def __init__(self, smoothing=1.0):
                self.smoothing = smoothing
            def fit(self, X, y):
                self.classes_, counts = np.unique(y, return_counts=True)
                self.prior_ = (counts + self.smoothing) / (counts.sum() + self.smoothing * len(counts))
                return self
            def predict_proba(self, X):
                return np.tile(self.prior_, (len(X), 1))
            def predict(self, X):
                return self.classes_[np.full(len(X), self.prior_.argmax())]

        class MeanRegressor(RegressorMixin, BaseEstimator):
            def fit(self, X, y):
                self.mean_ = float(np.mean(y))
                return self
            def predict(self, X):
                return np.full(len(X), self.mean_)

        class NotAnEstimator:
            def transform(self, X):
                return X

        class Ratio:
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "team_estimators"
    sys.modules.pop("team_estimators", None)


@pytest.mark.parametrize("estimator", [
    {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 50, "max_depth": 3}},
    {"class": "lightgbm.LGBMClassifier", "params": {"num_leaves": 15, "verbose": -1}},
    {"class": "catboost.CatBoostClassifier", "params": {"iterations": 50, "depth": 4, "verbose": 0}},
])
def test_gradient_boosting_libraries_parse(estimator):
    pytest.importorskip(estimator["class"].split(".")[0])
    cfg = _config(estimator)
    assert cfg.estimator.class_path == estimator["class"] and dict(cfg.estimator.params) == estimator["params"]
    built = cfg.estimator.build(seed=3)
    assert {k: built.get_params()[k] for k in estimator["params"]} == estimator["params"]


@pytest.mark.parametrize("estimator, field, text", [
    ({"class": "xgboost.XGBClassifier", "params": {"max_detph": 3}}, "estimator.params.max_detph",
     "did you mean 'max_depth'?"),
    ({"class": "lightgbm.LGBMClassifier", "params": {"num_leafs": 3}}, "estimator.params.num_leafs",
     "did you mean 'num_leaves'?"),
    ({"class": "catboost.CatBoostClassifier", "params": {"iteration": 3}}, "estimator.params.iteration",
     "did you mean 'iterations'?"),
    ({"class": "xgboost.XGBRegressor"}, "estimator.class", "task 'binary' needs a classifier"),
])
def test_library_errors_are_config_errors_naming_the_field(estimator, field, text):
    pytest.importorskip(estimator["class"].split(".")[0])
    with pytest.raises(ConfigError) as e:
        _config(estimator)
    assert e.value.field == field and text in str(e.value)


def test_a_teams_own_class_without_parameter_constraints(team_module):
    cfg = _config({"class": f"{team_module}.MajorityClassifier", "params": {"smoothing": 2.0}})
    assert dict(cfg.estimator.params) == {"smoothing": 2.0}
    with pytest.raises(ConfigError) as e:
        _config({"class": f"{team_module}.MajorityClassifier", "params": {"smoothin": 2.0}})
    assert e.value.field == "estimator.params.smoothin" and "did you mean 'smoothing'?" in str(e.value)
    with pytest.raises(ConfigError, match="is not a scikit-learn-compatible estimator class"):
        _config({"class": f"{team_module}.NotAnEstimator"})
    with pytest.raises(ConfigError, match="task 'binary' needs a classifier"):
        _config({"class": f"{team_module}.MeanRegressor"})


def test_trusted_types_are_qualified_importable_and_never_code(team_module):
    cfg = _config({"class": f"{team_module}.MajorityClassifier", "trusted_types": [f"{team_module}.Ratio"]})
    assert cfg.estimator.trusted_types == (f"{team_module}.Ratio",)
    assert parse_model_config(cfg.to_dict()) == cfg
    for bad, text in [("builtins.exec", "can run code"), ("os.system", "can run code"),
                      ("subprocess.Popen", "can run code"), ("numpy", "fully qualified name"),
                      ("team_estimators.*", "fully qualified name"),
                      (f"{team_module}.Missing", "has no attribute 'Missing'"),
                      ("no_such_team_pkg.Thing", "cannot import 'no_such_team_pkg.Thing'")]:
        with pytest.raises(ConfigError) as e:
            _config({"class": f"{team_module}.MajorityClassifier", "trusted_types": ["sklearn.base.BaseEstimator",
                                                                                     bad]})
        assert e.value.field == "estimator.trusted_types[1]" and text in str(e.value), (bad, str(e.value))


def test_model_trusted_types_per_library():
    assert model_trusted_types("sklearn.ensemble._hist_gradient_boosting.gradient_boosting."
                               "HistGradientBoostingClassifier") == []
    assert model_trusted_types("xgboost.sklearn.XGBClassifier") == ["xgboost.sklearn.XGBClassifier",
                                                                    "xgboost.core.Booster"]
    assert model_trusted_types("team.models.Mine", ["team.models.Ratio", "team.models.Mine"]) == [
        "team.models.Mine", "team.models.Ratio"]
    with pytest.raises(ValueError, match="can run code"):
        model_trusted_types("team.models.Mine", ["builtins.eval"])


def test_every_example_of_the_bring_your_own_model_page_parses(tmp_path, monkeypatch):
    """docs/bring-your-own-model.md: each YAML estimator section parses (with its library installed), and the
    team class of the page, written to a module, trains, predicts and parses as `estimator.class`."""
    import re

    import numpy as np

    doc = (REPO / "docs" / "bring-your-own-model.md").read_text()
    doc = doc.split("## Your team's feature engineering")[0]  # factory examples: tests/training/test_factories.py
    python_blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(python_blocks) == 1
    (tmp_path / "team_models.py").write_text(python_blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("team_models", None)
    yaml_blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)]
    assert len(yaml_blocks) == 5
    tasks = {"XGBClassifier": "binary", "LGBMClassifier": "multiclass", "CatBoostRegressor": "regression",
             "ScaledCentroidClassifier": "binary"}
    for block in yaml_blocks:
        estimator = block["estimator"]
        pytest.importorskip(estimator["class"].split(".")[0])
        task = tasks[estimator["class"].rsplit(".", 1)[1]]
        top = {"task": task}
        if task == "regression":
            top.update(target="monthly_charges", metrics={"primary": "rmse"},
                       features=[f for f in BASE["features"] if f != "monthly_charges"])
        elif task == "multiclass":
            top.update(target="contract", features=[f for f in BASE["features"] if f != "contract"],
                       metrics={"primary": "accuracy"})
        cfg = _config(estimator, **top)
        assert cfg.estimator.class_path == estimator["class"]
    import team_models

    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    model = team_models.ScaledCentroidClassifier(temperature=0.5).fit(X, y)
    assert model.predict(X).mean() == pytest.approx(y.mean(), abs=0.2)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
