"""Operators of airflow-mlops. Importing this package is cheap: each operator's module loads on first use."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "ApproveModelOperator": "airflow_mlops.operators.registry",
    "BatchInferenceOperator": "airflow_mlops.operators.inference",
    "DataQualityMonitorOperator": "airflow_mlops.operators.data_quality",
    "DataValidationOperator": "airflow_mlops.operators.validation",
    "DriftDetectionOperator": "airflow_mlops.operators.monitoring",
    "MLOpsBaseOperator": "airflow_mlops.operators.base",
    "MergePredictionPartsOperator": "airflow_mlops.operators.inference",
    "NotifyPromotionOperator": "airflow_mlops.operators.registry",
    "PerformanceMonitorOperator": "airflow_mlops.operators.monitoring",
    "PromoteModelOperator": "airflow_mlops.operators.registry",
    "ReproduceModelOperator": "airflow_mlops.operators.reproduce",
    "RollbackModelOperator": "airflow_mlops.operators.registry",
    "SeedExampleDataOperator": "airflow_mlops.operators.example_data",
    "TrainModelOperator": "airflow_mlops.operators.training",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = getattr(importlib.import_module(_MODULES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
