"""The ``estimator`` and ``search`` sections of a model config: any scikit-learn-compatible estimator class
(scikit-learn's, xgboost, LightGBM, CatBoost, a team's own), its parameters checked by name against
``get_params()`` and the constructor (and scikit-learn's constraints where the class declares them), and
``estimator.trusted_types``. See docs/bring-your-own-model.md."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from typing import Any

from airflow_mlops.config.fields import SECTION_FIELDS, FieldParser
from airflow_mlops.config.model import (
    CATEGORICAL_ENCODINGS,
    DEFAULT_ESTIMATORS,
    DISTRIBUTIONS,
    NATIVE_CATEGORICAL_LIBRARIES,
    SEARCH_METHODS,
    EstimatorConfig,
    SearchConfig,
    freeze,
    thaw,
)


def module_exists(name: str) -> bool:
    """Whether module ``name`` can be found on ``sys.path``, without executing it or its parent packages."""
    import importlib.machinery
    import sys

    path = None
    parts = name.split(".")
    for i in range(len(parts)):
        qualified = ".".join(parts[:i + 1])
        module = sys.modules.get(qualified)
        if module is not None:
            path = getattr(module, "__path__", None)
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(qualified, path)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        path = spec.submodule_search_locations
        if path is None and i < len(parts) - 1:
            return False
    return True


class EstimatorParser(FieldParser):
    """The estimator and search sections, on top of the field checks."""

    def parse_estimator(self, sec: Mapping[str, Any], task: str) -> tuple[EstimatorConfig, Any]:
        class_path = self.string(sec.get("class", DEFAULT_ESTIMATORS[task]), "estimator.class")
        params_raw = sec.get("params")
        params = {} if params_raw is None else dict(self.mapping(params_raw, "estimator.params", None))
        module_name, _, class_name = class_path.rpartition(".")
        if not module_name:
            raise self.error("estimator.class", f"must be a full import path like "
                                                f"'sklearn.ensemble.HistGradientBoostingClassifier', "
                                                f"got {class_path!r}")
        trusted = self.trusted_types(sec.get("trusted_types"), "estimator.trusted_types")
        categorical = self.string(sec.get("categorical", "auto"), "estimator.categorical",
                                  choices=CATEGORICAL_ENCODINGS)
        library = class_path.split(".", 1)[0]
        if categorical == "native" and library not in NATIVE_CATEGORICAL_LIBRARIES:
            raise self.error("estimator.categorical", f"native categorical splits are for xgboost, LightGBM and "
                                                      f"CatBoost estimators, not {class_path!r} (use auto or onehot)")
        if not self.check_estimator:  # structure only: the task that trains checks class and params
            if not module_exists(module_name):
                raise self.error("estimator.class", f"cannot import {class_path!r}: no module named {module_name!r}")
            return EstimatorConfig(class_path=class_path, params=freeze(params), trusted_types=trusted,
                                   categorical=categorical), None
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error("estimator.class", f"cannot import {class_path!r}: "
                                                f"{type(exc).__name__}: {exc}") from exc
        cls = getattr(module, class_name, None)
        if cls is None:
            public = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(class_name, public, n=1)
            hint = f" (did you mean {module_name}.{close[0]}?)" if close else ""
            raise self.error("estimator.class", f"cannot import {class_path!r}: module {module_name!r} "
                                                f"has no attribute {class_name!r}{hint}")
        if not _is_estimator_class(cls):
            raise self.error("estimator.class", f"{class_path!r} is not a scikit-learn-compatible estimator class "
                                                "(it needs fit, predict, get_params and set_params)")
        try:
            instance = cls()
        except Exception as exc:  # noqa: BLE001 - any constructor failure is a config error
            raise self.error("estimator.class", f"{class_path!r} cannot be constructed without "
                                                f"arguments: {exc}") from exc
        kind = estimator_kind(instance)
        if task in ("binary", "multiclass") and kind != "classifier":
            raise self.error("estimator.class", f"task {task!r} needs a classifier; {class_path!r} is not one")
        if task == "regression" and kind != "regressor":
            raise self.error("estimator.class", f"task 'regression' needs a regressor; {class_path!r} is not one")
        accepted = accepted_params(instance)
        pass_through = takes_extra_params(instance)
        for pname in params:
            if pass_through and pname not in accepted and not difflib.get_close_matches(pname, list(accepted), n=1,
                                                                                       cutoff=0.8):
                continue  # a library parameter the constructor passes on through **kwargs (lightgbm's verbose...)
            self.check_param_name(pname, accepted, class_name, f"estimator.params.{pname}")
        self.check_param_values(instance, params, "estimator.params")
        for i, name in enumerate(trusted):
            self.check_importable(name, f"estimator.trusted_types[{i}]")
        return EstimatorConfig(class_path=class_path, params=freeze(params), trusted_types=trusted,
                                   categorical=categorical), instance

    def trusted_types(self, raw: Any, path: str) -> tuple[str, ...]:
        """Fully qualified type names (``package.module.Class``); never a module prefix, never a type that
        can run code (``builtins.exec``, ``os.system``...: refused whatever the config says)."""
        from airflow_mlops.trust.types import is_dangerous

        if raw is None:
            return ()
        if not isinstance(raw, (list, tuple)):
            raise self.error(path, f"must be a list of fully qualified type names, got {type(raw).__name__}")
        out: list[str] = []
        for i, value in enumerate(raw):
            where = f"{path}[{i}]"
            if not isinstance(value, str) or not QUALIFIED_NAME_RE.fullmatch(value):
                raise self.error(where, f"must be a fully qualified name like 'mypackage.features.Ratio' "
                                        f"(no wildcard, no module prefix), got {value!r}")
            if is_dangerous(value):
                raise self.error(where, f"{value!r} can run code, import modules or touch files and processes; "
                                        "it is never trusted in a model file")
            out.append(value)
        return tuple(dict.fromkeys(out))

    def check_importable(self, qualified: str, path: str) -> None:
        module_name, _, attr = qualified.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(path, f"cannot import {qualified!r}: {type(exc).__name__}: {exc}") from exc
        if not hasattr(module, attr):
            raise self.error(path, f"cannot import {qualified!r}: module {module_name!r} has no attribute {attr!r}")

    def check_param_name(self, pname: str, accepted: Mapping[str, Any], class_name: str, path: str) -> None:
        if pname not in accepted:
            close = difflib.get_close_matches(pname, list(accepted), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(path, f"{class_name} does not accept parameter {pname!r}{hint}; "
                                   f"accepted: {', '.join(sorted(k for k in accepted if '__' not in k))}")

    def check_param_values(self, instance: Any, params: Mapping[str, Any], path: str) -> None:
        """Set the parameters on a copy of the estimator, then run scikit-learn's own parameter validation
        (what ``fit`` would do) when the class declares constraints; classes without them (xgboost,
        lightgbm, catboost, a team's own estimator) are checked by name and by ``set_params`` only."""
        from sklearn.base import clone

        try:
            probe = clone(instance).set_params(**thaw(params))
        except (TypeError, ValueError) as exc:
            raise self.error(path, str(exc)) from exc
        if getattr(type(probe), "_parameter_constraints", None) is None:
            return
        validate = getattr(probe, "_validate_params", None)
        if validate is None:
            return
        try:
            validate()
        except (TypeError, ValueError) as exc:
            match = re.search(r"The '([^']+)' parameter", str(exc))
            where = f"{path}.{match.group(1)}" if match else path
            raise self.error(where, str(exc)) from exc

    def parse_search(self, raw: Any, instance: Any) -> SearchConfig | None:
        if raw is None:
            return None
        sec = self.mapping(raw, "search", SECTION_FIELDS["search"])
        method = self.string(sec.get("method", "random"), "search.method", choices=SEARCH_METHODS)
        import importlib.util

        # found, not imported (the training task imports it); not checked while a Dag file is parsed (structure
        # only), like the estimator's library: the Dag processor need not have it
        if method == "optuna" and self.check_estimator and importlib.util.find_spec("optuna") is None:
            raise self.error("search.method", "method 'optuna' needs the optuna package: install the optional "
                                              "extra `pip install \"airflow-mlops[optuna]\"` on every worker "
                                              "that trains")
        n_iter = self.integer(sec.get("n_iter", 10), "search.n_iter", low=1)
        space = self.mapping(self.get(sec, "space", "search"), "search.space", None)
        if not space:
            raise self.error("search.space", "must define at least one parameter")
        # instance None: the estimator was not checked (structure-only parse), nor are the names and values
        accepted = accepted_params(instance) if instance is not None else None
        class_name = type(instance).__name__
        clean: dict[str, Any] = {}
        for pname, spec in space.items():
            path = f"search.space.{pname}"
            if accepted is not None:
                self.check_param_name(pname, accepted, class_name, path)
            if isinstance(spec, Mapping):
                clean[pname] = self.parse_distribution(spec, path)
            elif isinstance(spec, (list, tuple)):
                if not spec:
                    raise self.error(path, "candidate list must not be empty")
                for value in spec if instance is not None else ():
                    self.check_param_values(instance, {pname: value}, "search.space")
                clean[pname] = list(spec)
            else:
                raise self.error(path, "must be a list of candidate values or "
                                       "{distribution: uniform|loguniform|randint, low: x, high: y}")
        n_jobs = self.integer(sec.get("n_jobs", 1), "search.n_jobs", low=-1)
        if n_jobs == 0:
            raise self.error("search.n_jobs", "must be -1 (every core) or >= 1, got 0")
        return SearchConfig(method=method, n_iter=n_iter, space=freeze(clean), n_jobs=n_jobs)

    def parse_distribution(self, spec: Mapping[str, Any], path: str) -> dict[str, Any]:
        spec = self.mapping(spec, path, ("distribution", "low", "high"))
        kind = self.string(self.get(spec, "distribution", path), f"{path}.distribution", choices=DISTRIBUTIONS)
        if kind == "randint":
            low: float = self.integer(self.get(spec, "low", path), f"{path}.low")
            high: float = self.integer(self.get(spec, "high", path), f"{path}.high")
        else:
            low = self.number(self.get(spec, "low", path), f"{path}.low",
                              low=0.0 if kind == "loguniform" else None, low_open=True)
            high = self.number(self.get(spec, "high", path), f"{path}.high")
        if high < low or (high == low and kind != "randint"):
            raise self.error(f"{path}.high", f"must be greater than low ({low!r}); got {high!r}")
        return {"distribution": kind, "low": low, "high": high}


QUALIFIED_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _is_estimator_class(cls: Any) -> bool:
    """A scikit-learn estimator class, or a class with its protocol (catboost's estimators are not
    :class:`~sklearn.base.BaseEstimator` subclasses but have ``fit``/``predict``/``get_params``/``set_params``)."""
    if not isinstance(cls, type):
        return False
    from sklearn.base import BaseEstimator

    return issubclass(cls, BaseEstimator) or all(
        callable(getattr(cls, m, None)) for m in ("fit", "predict", "get_params", "set_params"))


def estimator_kind(instance: Any) -> str | None:
    """``classifier``, ``regressor`` or None: scikit-learn's tags, else the ``_estimator_type`` attribute
    that scikit-learn-compatible libraries set."""
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(instance):
            return "classifier"
        if is_regressor(instance):
            return "regressor"
    except (AttributeError, TypeError, ValueError):  # a class without scikit-learn's tag machinery
        pass
    kind = getattr(instance, "_estimator_type", None)
    return kind if kind in ("classifier", "regressor") else None


def takes_extra_params(instance: Any) -> bool:
    """Whether the estimator's constructor takes ``**kwargs`` that it passes on to its library (xgboost and
    lightgbm do): names outside :func:`accepted_params` are then accepted unless they look like a misspelt
    accepted name."""
    import inspect

    try:
        signature = inspect.signature(type(instance).__init__)
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def accepted_params(instance: Any) -> dict[str, Any]:
    """The parameter names an estimator accepts: ``get_params(deep=True)`` plus the named parameters of its
    constructor (catboost's ``get_params`` lists only the parameters that were set)."""
    import inspect

    accepted: dict[str, Any] = dict(instance.get_params(deep=True))
    try:
        signature = inspect.signature(type(instance).__init__)
    except (TypeError, ValueError):
        return accepted
    for name, param in signature.parameters.items():
        if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            accepted.setdefault(name, param.default)
    return accepted


__all__ = ["QUALIFIED_NAME_RE", "EstimatorParser", "accepted_params", "estimator_kind", "module_exists",
           "takes_extra_params"]
