"""Airflow hooks of airflow-mlops.

* :class:`~airflow_mlops.hooks.storage.ArtifactStoreHook` (connection type ``mlops_storage``): the artifact store.
* :class:`~airflow_mlops.hooks.registry.ModelRegistryHook`: the model registry on that store.

Both return the plain classes of :mod:`airflow_mlops.store` and :mod:`airflow_mlops.registry` from ``get_conn()``.
"""

from __future__ import annotations

from airflow_mlops import lazy_exports

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "ArtifactStoreHook": "airflow_mlops.hooks.storage",
    "ModelRegistryHook": "airflow_mlops.hooks.registry",
}

__all__ = sorted(_MODULES)
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
