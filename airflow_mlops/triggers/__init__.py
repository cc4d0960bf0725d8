"""Triggers of airflow-mlops (run in the triggerer for deferred sensors)."""

from __future__ import annotations

from airflow_mlops import lazy_exports

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "ApprovalEvent": "airflow_mlops.triggers.registry",
    "ApprovalTrigger": "airflow_mlops.triggers.registry",
    "DataPartitionEvent": "airflow_mlops.triggers.storage",
    "DataPartitionTrigger": "airflow_mlops.triggers.storage",
    "StorageKeyEvent": "airflow_mlops.triggers.storage",
    "StorageKeyTrigger": "airflow_mlops.triggers.storage",
}

__all__ = sorted(_MODULES)
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
