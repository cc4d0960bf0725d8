"""Airflow hooks of airflow-mlops.

* :class:`~airflow_mlops.hooks.storage.ArtifactStoreHook` (connection type ``mlops_storage``): the artifact store.
* :class:`~airflow_mlops.hooks.registry.ModelRegistryHook`: the model registry on that store.

Both return the plain classes of :mod:`airflow_mlops.store` and :mod:`airflow_mlops.registry` from ``get_conn()``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArtifactStoreHook", "ModelRegistryHook"]


def __getattr__(name: str) -> Any:  # importing the package stays cheap; the hook modules import airflow.sdk
    if name == "ArtifactStoreHook":
        from airflow_mlops.hooks.storage import ArtifactStoreHook

        return ArtifactStoreHook
    if name == "ModelRegistryHook":
        from airflow_mlops.hooks.registry import ModelRegistryHook

        return ModelRegistryHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
