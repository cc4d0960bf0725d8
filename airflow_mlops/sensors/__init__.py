"""Sensors of airflow-mlops (deferrable where waiting is long)."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "DataPartitionSensor": "airflow_mlops.sensors.data",
    "DriftSensor": "airflow_mlops.sensors.drift",
    "ModelApprovalSensor": "airflow_mlops.sensors.registry",
    "PokeOnceThenDefer": "airflow_mlops.sensors.base",
    "PartitionNotArrived": "airflow_mlops.sensors.data",
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
