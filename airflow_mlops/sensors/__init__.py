"""Sensors of airflow-mlops (deferrable where waiting is long)."""

from __future__ import annotations

from airflow_mlops import lazy_exports

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "DataPartitionSensor": "airflow_mlops.sensors.data",
    "DriftSensor": "airflow_mlops.sensors.drift",
    "ModelApprovalSensor": "airflow_mlops.sensors.registry",
    "PokeOnceThenDefer": "airflow_mlops.sensors.base",
    "PartitionNotArrived": "airflow_mlops.sensors.data",
}

__all__ = sorted(_MODULES)
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
