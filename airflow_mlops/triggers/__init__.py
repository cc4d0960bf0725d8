"""Triggers of airflow-mlops (run in the triggerer for deferred sensors)."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "ApprovalTrigger": "airflow_mlops.triggers.registry",
    "DataPartitionTrigger": "airflow_mlops.triggers.storage",
    "StorageKeyTrigger": "airflow_mlops.triggers.storage",
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
