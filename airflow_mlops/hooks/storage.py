"""``ArtifactStoreHook``: the Airflow face of :class:`~airflow_mlops.store.artifacts.ArtifactStore`.

It owns the ``mlops_storage`` connection type (host = the store root URI, extra ``aws_conn_id`` for ``s3://``
roots) and is what operators, sensors and notifiers use to reach the store (``self.hook.get_conn()``). The
plain :class:`ArtifactStore` underneath stays free of Airflow imports.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.store.artifacts import ArtifactStore


class ArtifactStoreHook(BaseHook):
    """An :class:`ArtifactStore` from Airflow configuration and connections.

    The root is, in order: ``storage_uri``; the ``host`` of the connection ``mlops_conn_id`` (type
    ``mlops_storage``; its extra may name ``aws_conn_id``); ``[mlops] storage_uri``.

    :param storage_uri: root URI override (``file:///path`` or ``s3://bucket/prefix``).
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots; default ``[mlops] storage_conn_id``.
    :param mlops_conn_id: optional ``mlops_storage`` connection holding the root URI.
    """

    conn_name_attr = "mlops_conn_id"
    default_conn_name = "mlops_default"
    conn_type = "mlops_storage"
    hook_name = "MLOps artifact store"

    def __init__(self, storage_uri: str | None = None, aws_conn_id: str | None = None,
                 mlops_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage_uri = storage_uri
        self.aws_conn_id = aws_conn_id
        self.mlops_conn_id = mlops_conn_id

    def get_conn(self) -> ArtifactStore:
        """The store; the connection (when named) is read on each call, so a rotated root takes effect."""
        uri, aws_conn_id = self.storage_uri, self.aws_conn_id
        if not uri and self.mlops_conn_id:
            conn = self.get_connection(self.mlops_conn_id)
            uri = conn.host
            aws_conn_id = aws_conn_id or (conn.extra_dejson or {}).get("aws_conn_id")
        return ArtifactStore(uri, conn_id=aws_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form: only the host (relabelled as the storage URI) and the extra."""
        return {"hidden_fields": ["port", "schema", "login", "password"],
                "relabeling": {"host": "Storage URI (file:///path or s3://bucket/prefix)"}}


__all__ = ["ArtifactStore", "ArtifactStoreHook"]
