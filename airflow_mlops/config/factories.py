"""The ``preprocess`` and ``pipeline`` sections of a model config: the team's feature engineering, built by a
function of their own code and saved inside the model (see docs/bring-your-own-model.md).

``preprocess: builtin`` (the default) is the package's preprocessing; ``preprocess: {factory:
package.module:function, params: {...}}`` returns an unfitted scikit-learn transformer that replaces it;
``pipeline: {factory: ..., params: {...}}`` returns the whole unfitted ``Pipeline`` whose last step is an
instance of ``estimator.class``. While a Dag file is parsed only the structure is checked and the module is
looked up without being imported; the task that trains imports the function and checks ``params`` against
its signature.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Mapping
from typing import Any

from airflow_mlops.config.estimators import module_exists
from airflow_mlops.config.fields import FieldParser
from airflow_mlops.config.model import FactoryConfig, freeze

#: ``package.module:function``
FACTORY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")

#: the column lists a factory receives when its signature names them (not settable through ``params``)
COLUMN_ARGUMENTS = ("features", "numeric", "categorical")


class FactoryParser(FieldParser):
    """``preprocess`` and ``pipeline``, on top of the field checks."""

    def parse_factories(self, raw: Mapping[str, Any]) -> tuple[FactoryConfig | None, FactoryConfig | None]:
        """``(preprocess, pipeline)`` of the top-level config ``raw`` (None: not set / builtin)."""
        preprocess_raw = raw.get("preprocess")
        if preprocess_raw is None or preprocess_raw == "builtin":
            preprocess = None
        elif isinstance(preprocess_raw, str):
            raise self.error("preprocess", f"must be 'builtin' or {{factory: package.module:function, params: "
                                           f"{{...}}}}, got {preprocess_raw!r}")
        else:
            preprocess = self.parse_factory(preprocess_raw, "preprocess")
        pipeline = None if raw.get("pipeline") is None else self.parse_factory(raw["pipeline"], "pipeline")
        estimator = raw.get("estimator")
        if preprocess is not None and pipeline is not None:
            raise self.error("pipeline", "set either preprocess (the feature engineering before the estimator) or "
                                         "pipeline (the whole Pipeline), not both")
        if pipeline is not None:
            if not isinstance(estimator, Mapping) or "class" not in estimator:
                raise self.error("estimator.class", "with pipeline.factory, name the class of the Pipeline's last "
                                                    "step (e.g. xgboost.XGBClassifier): it is checked against what "
                                                    "the factory returns and trusted when the model is loaded")
        if (preprocess or pipeline) and isinstance(estimator, Mapping) and estimator.get("categorical") not in (
                None, "auto"):
            raise self.error("estimator.categorical", "applies to the built-in preprocessing only; with a "
                                                      "preprocess or pipeline factory your code encodes categories")
        return preprocess, pipeline

    def parse_factory(self, raw: Any, name: str) -> FactoryConfig:
        sec = self.mapping(raw, name, ("factory", "params"))
        path = self.string(self.get(sec, "factory", name), f"{name}.factory")
        if not FACTORY_RE.fullmatch(path):
            raise self.error(f"{name}.factory", f"must be 'package.module:function', got {path!r}")
        params = {} if sec.get("params") is None else dict(self.mapping(sec["params"], f"{name}.params", None))
        for pname in params:
            if pname in COLUMN_ARGUMENTS:
                raise self.error(f"{name}.params.{pname}", f"{pname!r} is filled in with the model's column list; "
                                                           "it cannot be set here")
        module_name, _, function_name = path.partition(":")
        config = FactoryConfig(path=path, params=freeze(params))
        if not self.check_estimator:  # structure only (Dag parsing): nothing is imported
            if not module_exists(module_name):
                raise self.error(f"{name}.factory", f"cannot import {path!r}: no module named {module_name!r}")
            return config
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(f"{name}.factory", f"cannot import {path!r}: {type(exc).__name__}: {exc}") from exc
        function = getattr(module, function_name, None)
        if function is None:
            public = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(function_name, public, n=1)
            hint = f" (did you mean {module_name}:{close[0]}?)" if close else ""
            raise self.error(f"{name}.factory", f"module {module_name!r} has no attribute {function_name!r}{hint}")
        if not callable(function) or isinstance(function, type):
            raise self.error(f"{name}.factory", f"{path!r} must be a function returning an unfitted "
                                                f"{'transformer' if name == 'preprocess' else 'Pipeline'}")
        self.check_factory_params(function, params, name)
        return config

    def check_factory_params(self, function: Any, params: Mapping[str, Any], name: str) -> None:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return
        accepted = [p for p, v in signature.parameters.items()
                    if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY) and p not in COLUMN_ARGUMENTS]
        if any(v.kind is v.VAR_KEYWORD for v in signature.parameters.values()):
            return
        for pname in params:
            if pname not in accepted:
                close = difflib.get_close_matches(pname, accepted, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(f"{name}.params.{pname}", f"{function.__name__}() takes no parameter {pname!r}"
                                                           f"{hint}; it takes {accepted}")
        missing = [p for p, v in signature.parameters.items()
                   if v.default is v.empty and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)
                   and p not in COLUMN_ARGUMENTS and p not in params]
        if missing:
            raise self.error(f"{name}.params", f"{function.__name__}() needs {missing}; set them under {name}.params")


__all__ = ["COLUMN_ARGUMENTS", "FACTORY_RE", "FactoryParser"]
