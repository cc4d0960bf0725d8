"""Airflow UI integration: the ``mlops`` plugin (model registry page + report server).

Registered two ways (see docs/ui.md):

* entry point ``airflow.plugins``: ``mlops = "airflow_mlops.plugins:MLOpsPlugin"`` (always loaded), and
* ``get_provider_info()["plugins"]`` (loaded only with ``[core] lazy_discover_providers = False``).

Importing this module is cheap: every Airflow process (scheduler, task processes rendering macros)
imports the plugins it finds, so the FastAPI app (``registry_view``) is built only when the API server
iterates :attr:`MLOpsPlugin.fastapi_apps`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

try:  # Airflow 3 task SDK (what providers inherit from)
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[no-redef,attr-defined]

#: Where the plugin's FastAPI app is mounted in the Airflow API server.
URL_PREFIX = "/mlops"

#: Store keys the report route serves (besides nothing else): registry reports, validation and drift reports.
_REPORT_KEY_PATTERNS = (
    # registry/<model>/versions/<n>/reports/<file>
    re.compile(r"registry/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/versions/(?P<version>[0-9]{1,9})/"
               r"(?P<rel>reports/[A-Za-z0-9_.=-]+(?:/[A-Za-z0-9_.=-]+)*\.(?:html|json))"),
    # validation/<model>/ds=YYYY-MM-DD/{report.html,result.json}
    re.compile(r"(?P<area>validation)/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/ds=(?P<ds>\d{4}-\d{2}-\d{2})/"
               r"(?P<rel>[A-Za-z0-9_.-]+\.(?:html|json))"),
    # monitoring/<model>/ds=YYYY-MM-DD/{drift.html,drift.json,...}
    re.compile(r"(?P<area>monitoring)/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/ds=(?P<ds>\d{4}-\d{2}-\d{2})/"
               r"(?P<rel>[A-Za-z0-9_.-]+\.(?:html|json))"),
)


def match_report_key(key: str) -> dict[str, str] | None:
    """The parts of a store key the report route may serve, or ``None``.

    Only ``registry/<model>/versions/<n>/reports/...``, ``validation/<model>/ds=<ds>/...`` and
    ``monitoring/<model>/ds=<ds>/...`` HTML/JSON files qualify; anything else (datasets, models, the
    registry state, ``..`` segments, absolute paths) does not.
    """
    if not isinstance(key, str) or not key or len(key) > 1024:
        return None
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in key or "\x00" in key:
        return None
    for pattern in _REPORT_KEY_PATTERNS:
        m = pattern.fullmatch(key)
        if m:
            parts = m.groupdict()
            if ".." in parts["rel"]:
                return None
            parts.setdefault("area", "registry")
            return {k: v for k, v in parts.items() if v is not None}
    return None


def report_path(key: str, base: str = "") -> str:
    """Path (under the API server, prefixed with ``base``) at which the plugin serves store ``key``."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}{URL_PREFIX}/files/{quote(key, safe='/=')}"


def model_path(model: str, base: str = "") -> str:
    from urllib.parse import quote

    return f"{base.rstrip('/')}{URL_PREFIX}/models/{quote(model, safe='')}"


class _Lazy(Sequence):
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

    def __getitem__(self, index):  # type: ignore[override]
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
    fastapi_apps = _Lazy("fastapi_apps", _fastapi_apps)
    #: report links on the task instances of the airflow-mlops operators (see airflow_mlops.links)
    operator_extra_links = _Lazy("operator_extra_links", _operator_extra_links)
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
