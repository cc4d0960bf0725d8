"""Operators of airflow-mlops. Importing this package is cheap: each operator's module loads on first use."""

from __future__ import annotations

from airflow_mlops import lazy_exports

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
    "RegisterExternalModelOperator": "airflow_mlops.operators.training",
    "ReproduceModelOperator": "airflow_mlops.operators.reproduce",
    "RollbackModelOperator": "airflow_mlops.operators.registry",
    "SeedExampleDataOperator": "airflow_mlops.operators.example_data",
    "TrainModelOperator": "airflow_mlops.operators.training",
}

__all__ = sorted(_MODULES)
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
