"""``ModelRegistryHook``: the Airflow face of :class:`~airflow_mlops.registry.model_registry.ModelRegistry`.

Operators reach the registry through it (``self.registry_hook.get_conn()``); it builds the registry on the
store an :class:`~airflow_mlops.hooks.storage.ArtifactStoreHook` resolves, so both honour the same
``storage_uri`` / ``mlops_storage`` connection / ``[mlops] storage_uri``. The plain :class:`ModelRegistry`
underneath stays free of Airflow imports.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.hooks.storage import ArtifactStoreHook
from airflow_mlops.registry.model_registry import ModelRegistry


class ModelRegistryHook(BaseHook):
    """A :class:`ModelRegistry` on the configured artifact store.

    :param storage_uri: store root override (default: the ``mlops_conn_id`` connection, else
        ``[mlops] storage_uri``).
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots.
    :param mlops_conn_id: optional ``mlops_storage`` connection holding the root URI.
    """

    hook_name = "MLOps model registry"

    def __init__(self, storage_uri: str | None = None, aws_conn_id: str | None = None,
                 mlops_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store_hook = ArtifactStoreHook(storage_uri, aws_conn_id, mlops_conn_id)

    def get_conn(self) -> ModelRegistry:
        """The registry (signing key from ``[mlops] signing_conn_id`` or the key file, verified on read)."""
        return ModelRegistry(self.store_hook.get_conn())


__all__ = ["ModelRegistry", "ModelRegistryHook"]
