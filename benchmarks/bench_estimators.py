"""The ``--estimator`` choices shared by ``batch_scoring.py``, ``training.py`` and ``explain.py``.

``default`` keeps each script's own scikit-learn estimator; ``xgboost`` and ``lightgbm`` set
``estimator.class`` to ``xgboost.XGBClassifier`` / ``lightgbm.LGBMClassifier`` with modest parameters
and ``n_jobs`` threads. The fitted model carries ``n_jobs``, so a plain script and our code that load
(or build) the same model predict with the same number of threads.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

#: values of ``--estimator``
CHOICES = ("default", "xgboost", "lightgbm")


def default_jobs() -> int:
    """Threads for the boosting libraries: every core (2 on the development VM)."""
    return os.cpu_count() or 1


def estimator_section(name: str, n_jobs: int) -> dict[str, Any]:
    """The config's ``estimator`` section (``class`` + ``params``) for ``xgboost`` / ``lightgbm``."""
    if name == "xgboost":
        return {"class": "xgboost.XGBClassifier",
                "params": {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist",
                           "n_jobs": n_jobs}}
    if name == "lightgbm":
        return {"class": "lightgbm.LGBMClassifier",
                "params": {"n_estimators": 200, "num_leaves": 31, "learning_rate": 0.1, "n_jobs": n_jobs,
                           "verbose": -1}}
    raise ValueError(f"no estimator section for {name!r} (choices: xgboost, lightgbm)")


def qualified_class(class_path: str) -> str:
    """``module.Class`` as skops names it (the defining module, e.g. ``xgboost.sklearn.XGBClassifier``)."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return f"{cls.__module__}.{cls.__qualname__}"


def trusted_types(class_path: str) -> list[str]:
    """The types a registered model of this estimator may hold beyond scikit-learn's (what
    ``train_and_register`` records in ``metadata["trusted_types"]``)."""
    from airflow_mlops.trust.types import model_trusted_types

    return model_trusted_types(qualified_class(class_path))


def load_class(class_path: str) -> type:
    module_name, _, class_name = class_path.rpartition(".")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
