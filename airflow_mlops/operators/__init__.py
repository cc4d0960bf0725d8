"""Operators of airflow-mlops. Importing this package is cheap: heavy libraries load in execute()."""

from airflow_mlops.operators.registry import (
    ApproveModelOperator,
    NotifyPromotionOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)
from airflow_mlops.operators.training import TrainModelOperator
from airflow_mlops.operators.validation import DataValidationOperator

__all__ = ["ApproveModelOperator", "DataValidationOperator", "NotifyPromotionOperator", "PromoteModelOperator",
           "RollbackModelOperator", "TrainModelOperator"]
