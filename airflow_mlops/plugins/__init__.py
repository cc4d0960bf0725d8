"""Airflow UI integration: the ``mlops`` plugin (model registry page + report server).

Registered two ways (see docs/ui.md):

* entry point ``airflow.plugins``: ``mlops = "airflow_mlops.plugins:MLOpsPlugin"`` (always loaded), and
* ``get_provider_info()["plugins"]`` (loaded only with ``[core] lazy_discover_providers = False``).

Importing this module is cheap: every Airflow process (scheduler, task processes rendering macros)
imports the plugins it finds, so the FastAPI app (``registry_view``) is built only when the API server
iterates :attr:`MLOpsPlugin.fastapi_apps`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

try:  # Airflow 3 task SDK (what providers inherit from)
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover
    # older Airflow 3 releases: airflow's own (distinct, but equivalent) plugin base class
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

from airflow_mlops.links import URL_PREFIX, model_path, report_path  # noqa: F401 - the plugin's URLs
from airflow_mlops.store.layout import match_report_key  # noqa: F401 - the keys the report route serves


class _Lazy(Sequence[Any]):
    """A plugin attribute built on first use, so that only the processes that read it (the API server,
    ``airflow plugins``) import FastAPI and the operators; the scheduler and task processes, which import
    every plugin, do not."""

    def __init__(self, what: str, build: Callable[[], list[Any]]) -> None:
        self._what, self._build = what, build
        self._items: list[Any] | None = None

    def _load(self) -> list[Any]:
        if self._items is None:
            self._items = list(self._build())
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"<mlops {self._what} ({'built' if self._items is not None else 'not built yet'})>"


def _fastapi_apps() -> list[dict[str, Any]]:
    from airflow_mlops.plugins.registry_view import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "MLOps model registry"}]


def _operator_extra_links() -> list[Any]:
    from airflow_mlops.links import plugin_links

    return plugin_links()


class MLOpsPlugin(AirflowPlugin):
    """The model registry page (``/mlops/``), its JSON API and the report server, plus a menu entry."""

    name = "mlops"
    # ``type: ignore[assignment]``: AirflowPlugin annotates these as lists, but Airflow only iterates them,
    # which the lazy Sequence supports
    fastapi_apps = _Lazy("fastapi_apps", _fastapi_apps)  # type: ignore[assignment]
    #: report links on the task instances of the airflow-mlops operators (see airflow_mlops.links)
    operator_extra_links = _Lazy("operator_extra_links", _operator_extra_links)  # type: ignore[assignment]
    external_views = [
        {
            "name": "Model registry",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlops",
        },
    ]


__all__ = ["URL_PREFIX", "MLOpsPlugin", "match_report_key", "model_path", "report_path"]
