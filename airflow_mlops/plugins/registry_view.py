"""The model registry page, its JSON API and the report server: a FastAPI app mounted at ``/mlops``.

Everything goes through :class:`~airflow_mlops.registry.model_registry.ModelRegistry` on the store of
``[mlops] storage_uri`` (default ``file://$AIRFLOW_HOME/mlops``); nothing is read from the filesystem
directly.

Routes (all below the mount point ``/mlops``):

``GET  /``                                            HTML: every model the user may read
``GET  /models/{name}``                               HTML: one model
``GET  /files/{key}``                                 a report from the store (see :func:`match_report_key`)
``GET  /api/csrf``                                    JSON: the CSRF token of the authenticated user
``GET  /api/models``                                  JSON: models, versions, aliases
``GET  /api/models/{name}``                           JSON: versions with metrics, data fingerprint,
                                                      approval, lifecycle, aliases, reports; drift reports;
                                                      audit log
``POST /api/models/{name}/versions/{v}/approve``      JSON ``{"reason": ..., "status": "approved"|"rejected"}``
``POST /api/models/{name}/rollback``                  JSON ``{"alias": "champion", "to_version": n|null,
                                                      "reason": ...}``
``POST /models/{name}/versions/{v}/approve``          the same from the page's forms (form-encoded, CSRF token)
``POST /models/{name}/rollback``

Authentication is Airflow's own: the ``get_user`` dependency of the API server, i.e. a JWT in
``Authorization: Bearer`` or in the ``_token`` cookie the Airflow UI sets at login. Authorization asks
the configured auth manager about the model's training Dag (``<model>_training``): reading a model needs
``GET`` on that Dag, approving and rolling back need ``PUT`` (edit). Approvals and rollbacks are recorded
in the registry's audit log with the authenticated user's name as actor.

Every state-changing request (the POST routes) must carry the user's CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``, from the page or ``GET /api/csrf``) unless the client itself sent
``Authorization: Bearer``. A bearer header the simple auth manager's all-admins middleware appends to every
request does not count (see :func:`client_sent_bearer`): in that mode a credential-less cross-site form post
arrives with one.

Banners on the page come from fixed texts: a successful action redirects with ``?done=<audit seq>`` and the
page describes that audit entry of the model; a refused action renders the page with an error code's text
(plus, for registry refusals, the registry's own message). Nothing from the query string is shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from airflow_mlops.links import URL_PREFIX
from airflow_mlops.plugins.report_files import SymlinkRefused, read_report
from airflow_mlops.registry.model_registry import (
    AliasNotFoundError,
    ApprovalError,
    IntegrityError,
    LifecycleError,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
    VersionNotFoundError,
)
from airflow_mlops.store.artifacts import ArtifactNotFoundError, ArtifactStore, StorageError, join
from airflow_mlops.store.layout import match_report_key, monitoring_root, validation_prefix

if TYPE_CHECKING:
    import jinja2
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod

log = logging.getLogger(__name__)

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MAX_HTML_AUDIT = 200
MAX_DRIFT_REPORTS = 60
MAX_VERSIONS = 100  # newest first; the rest are counted in ``versions_total``
MAX_FORM_BYTES = 64 * 1024
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

#: Served reports run in a sandbox (an opaque origin): their scripts (plotly in evidently reports) work,
#: but they cannot act on the Airflow API with the viewer's cookie.
REPORT_CSP = ("sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-downloads; "
              "frame-ancestors 'self'")
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'self'; base-uri 'none'")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}


# ------------------------------------------------------------------------------------------
# store, registry, auth helpers
# ------------------------------------------------------------------------------------------
_lock = threading.Lock()
_registries: dict[str, ModelRegistry] = {}


def get_registry() -> ModelRegistry:
    """The registry on ``[mlops] storage_uri`` (one per root URI per process)."""
    from airflow_mlops.store.artifacts import default_storage_uri

    root = default_storage_uri()
    with _lock:
        reg = _registries.get(root)
        if reg is None:
            reg = _registries[root] = ModelRegistry(ArtifactStore(root))
        return reg


def training_dag_id(model: str) -> str:
    """The Dag whose permissions govern a model (built by the DAG factory as ``<model>_training``)."""
    return f"{model}_training"


def is_authorized(user: BaseUser, model: str, method: ResourceMethod) -> bool:
    """Ask Airflow's auth manager whether ``user`` may ``method`` (GET: read, PUT: edit) the model's Dag."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.configuration import conf

    dag_id = training_dag_id(model)
    team_name = None
    if conf.getboolean("core", "multi_team", fallback=False):
        from airflow.models.dag import DagModel

        team_name = DagModel.get_team_name(dag_id)
    return bool(get_auth_manager().is_authorized_dag(method=method, details=DagDetails(id=dag_id, team_name=team_name),
                                                     user=user))


_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def require(user: BaseUser, model: str, method: ResourceMethod) -> None:
    if not _MODEL_NAME.fullmatch(model or ""):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not a model name (letters, digits, '_', '.', '-')")
    if not is_authorized(user, model, method):
        what = "read" if method == "GET" else "change"
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{user.get_name()!r} may not {what} model {model!r} (needs {method} access to Dag "
                            f"{training_dag_id(model)!r})")


def actor_of(user: BaseUser) -> str:
    return str(user.get_name() or user.get_id())


def _signing_key() -> bytes:
    from airflow.configuration import conf

    key = conf.get("api", "secret_key", fallback="") or ""
    if not key:  # the API server generates one per process when unset; so do we (stable for this process)
        key = _process_key()
    return key.encode()


@lru_cache(maxsize=1)
def _process_key() -> str:
    return os.urandom(32).hex()


def csrf_token(user: BaseUser) -> str:
    """Per-user token the page's forms carry: a cross-site form cannot know it (HMAC with ``[api] secret_key``)."""
    msg = f"mlops-csrf|{user.get_id()}|{user.get_name()}".encode()
    return hmac.new(_signing_key(), msg, hashlib.sha256).hexdigest()[:40]


#: Auth-manager middlewares known to append an ``Authorization: Bearer`` header to every request.
_INJECTING_MIDDLEWARES = {("airflow.api_fastapi.auth.managers.simple.middleware", "SimpleAllAdminMiddleware")}


def injected_authorization_headers() -> int:
    """How many ``Authorization`` headers the API server's auth-manager middlewares append to every request.

    The simple auth manager in all-admins mode (``[core] simple_auth_manager_all_admins = True``) installs
    ``SimpleAllAdminMiddleware``, which appends ``authorization: Bearer <admin JWT>`` to the request's headers
    (after whatever the client sent). When the auth manager cannot be asked (not initialised), the setting
    alone decides, so the check fails closed.
    """
    from airflow.configuration import conf

    try:
        from airflow.api_fastapi.app import get_auth_manager

        middlewares = get_auth_manager().get_fastapi_middlewares()
    except Exception:
        return 1 if conf.getboolean("core", "simple_auth_manager_all_admins", fallback=False) else 0
    return sum(1 for cls, _ in middlewares
               if (getattr(cls, "__module__", ""), getattr(cls, "__name__", "")) in _INJECTING_MIDDLEWARES)


def client_sent_bearer(request: Request) -> bool:
    """Whether the client itself sent ``Authorization: Bearer`` (the header Airflow's ``get_user`` reads).

    Injected headers are appended last, so they are dropped from the end; what remains is what the client
    sent, and ``get_user`` authenticates the first of those. A browser never adds a bearer header to a
    cross-site form post or navigation, so a client-sent one shows the request is not a forged one.
    """
    values = [v for k, v in request.scope.get("headers", []) if k.lower() == b"authorization"]
    injected = injected_authorization_headers()
    if injected:
        values = values[:-injected]
    return bool(values) and values[0][:7].lower() == b"bearer "


def check_csrf(request: Request, user: BaseUser, submitted: str | None) -> None:
    """State-changing requests need the user's CSRF token unless the client sent its own bearer token."""
    if client_sent_bearer(request):
        return
    if not submitted or not hmac.compare_digest(submitted.encode(), csrf_token(user).encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"missing or wrong CSRF token: reload the registry page and submit the form again "
                            f"(API clients: send your JWT as 'Authorization: Bearer', or send the {CSRF_HEADER} "
                            f"header with the token from GET {URL_PREFIX}/api/csrf)")


UserDep = Annotated[BaseUser, Depends(get_user)]


# ------------------------------------------------------------------------------------------
# views of the registry (shared by the HTML page and the JSON API)
# ------------------------------------------------------------------------------------------
def _fmt_metric(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4f}" if isinstance(value, float) else str(value)
    return str(value)


def _file_url(base: str, key: str) -> str:
    return f"{base}/files/{quote(key, safe='/=')}"


def _drift_counts(s: dict[str, Any]) -> dict[str, Any]:
    """The counts of a ``drift.json`` as drift.json and drift.html state them (features only, the
    prediction column apart) and the clauses of the drift rule that fired (known names only)."""
    from airflow_mlops.monitoring.drift import DRIFT_CLAUSES

    def count(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    raw_verdict = s.get("verdict")
    verdict: dict[str, Any] = raw_verdict if isinstance(raw_verdict, dict) else {}
    raw_fired = verdict.get("fired")
    fired: list[Any] = raw_fired if isinstance(raw_fired, list) else []
    rule = verdict.get("rule") if isinstance(verdict.get("rule"), str) else None
    return {"n_drifted": count(s.get("n_drifted")), "n_features": count(s.get("n_features")),
            "prediction_drifted": (s.get("prediction_drift") or {}).get("drifted") is True
            if isinstance(s.get("prediction_drift"), dict) else None,
            "fired": [c for c in DRIFT_CLAUSES if c in fired],
            "rule": rule if rule in ("share", "combined") or (rule and set(rule.split("+")) <= set(DRIFT_CLAUSES))
            else None}


def _drift_reports(reg: ModelRegistry, name: str, base: str) -> list[dict[str, Any]]:
    store = reg.store
    keys = store.list(monitoring_root(name))
    key_set = set(keys)
    out = []
    for key in sorted((k for k in keys if k.endswith("/drift.html")), reverse=True)[:MAX_DRIFT_REPORTS]:
        parts = match_report_key(key)
        if not parts:
            continue
        item: dict[str, Any] = {"ds": parts["ds"], "key": key, "url": _file_url(base, key)}
        summary_key = key[: -len("drift.html")] + "drift.json"
        if summary_key in key_set:
            item["summary_url"] = _file_url(base, summary_key)
            try:
                s = json.loads(read_report(store, summary_key))
                if not isinstance(s, dict):
                    raise ValueError("not a JSON object")
                item.update({"version": s.get("version"), "share_drifted": s.get("share_drifted"),
                             "dataset_drift": s.get("dataset_drift"), "threshold": s.get("threshold")})
                item.update(_drift_counts(s))
            except (StorageError, ValueError) as e:
                item["error"] = str(e)
        out.append(item)
    return out


def version_view(reg: ModelRegistry, name: str, version: int, state: dict[str, Any], base: str,
                 drift: list[dict[str, Any]]) -> dict[str, Any]:
    """One version: metrics, data fingerprint, approval, lifecycle, aliases, report links."""
    aliases = sorted(a for a, v in state.get("aliases", {}).items() if int(v) == version)
    try:
        meta = reg.get_metadata(name, version)
    except (RegistryError, StorageError, ValueError) as e:
        return {"version": version, "error": str(e), "aliases": aliases,
                "signature": signature_status(reg, name, version), "reviewable": False}
    metrics = meta.get("metrics") or {}
    primary = meta.get("primary_metric")
    cv = (metrics.get("cv") or {}).get(primary) or {}
    fp = ((meta.get("training_data") or {}).get("fingerprint")) or {}
    td = meta.get("training_data") or {}
    partitions = td.get("partitions") or []
    approval = (state.get("approvals", {}).get(str(version))
                or dict(meta.get("approval") or {"status": "not_required"}))
    approval.setdefault("required", bool((meta.get("approval") or {}).get("required", False)))
    lifecycle = state.get("lifecycle", {}).get(str(version)) or {"state": "active"}
    listed = meta.get("artifacts") or {}

    reports: list[dict[str, Any]] = []
    try:
        rels = reg.list_reports(name, version)
    except StorageError:
        rels = []
    order = {"evaluation.html": 0, "promotion.html": 1}
    for rel in sorted(rels, key=lambda r: (order.get(r, 5), r)):
        key = join(reg.prefix, name, "versions", str(version), "reports", rel)
        if not match_report_key(key):
            continue
        reports.append({"name": rel, "kind": rel.rsplit(".", 1)[0].replace("_", " "), "key": key,
                        "url": _file_url(base, key), "verified": f"reports/{rel}" in listed})
    ds = td.get("window_end")
    if ds:
        vkey = join(validation_prefix(name, ds), "report.html")
        if match_report_key(vkey) and reg.store.exists(vkey):
            reports.append({"name": f"validation ds={ds}", "kind": "validation", "key": vkey,
                            "url": _file_url(base, vkey), "verified": False})
    for d in drift:
        if d.get("version") is not None and int(d["version"]) == version:
            reports.append({"name": f"drift ds={d['ds']}", "kind": "drift", "key": d["key"], "url": d["url"],
                            "verified": False})

    return {
        "version": version,
        "created_at": meta.get("created_at"),
        "registered_by": meta.get("registered_by"),
        "owner": meta.get("owner"),
        "estimator": meta.get("estimator"),
        "task": meta.get("task"),
        "primary_metric": primary,
        "primary": {"holdout": (metrics.get("holdout") or {}).get(primary),
                    "baseline": (metrics.get("baseline") or {}).get(primary),
                    "cv_mean": cv.get("mean"), "cv_std": cv.get("std")},
        "metrics": {"holdout": metrics.get("holdout") or {}, "baseline": metrics.get("baseline") or {},
                    "cv": metrics.get("cv") or {}},
        "data": {"uri": td.get("uri"), "rows": fp.get("rows"), "content_hash": fp.get("content_hash"),
                 "schema_hash": fp.get("schema_hash"), "window_end": ds,
                 "partitions": {"count": len(partitions), "first": partitions[0] if partitions else None,
                                "last": partitions[-1] if partitions else None}},
        "run": {"dag_id": meta.get("dag_id"), "run_id": meta.get("run_id"), "task_id": meta.get("task_id")},
        "approval": approval,
        "lifecycle": lifecycle,
        "signature": signature_status(reg, name, version),
        "aliases": aliases,
        "reports": reports,
        # which review actions apply: a decision only while the required approval is still pending
        "reviewable": bool(approval.get("required")) and approval.get("status") == "pending",
    }


def signature_status(reg: ModelRegistry, name: str, version: int) -> dict[str, Any]:
    """``{"status": "verified"|"unsigned"|"invalid"|"error", "key_id", "detail"}`` of a version's signature
    (:meth:`ModelRegistry.verify_version`; ``error`` when it could not be checked, e.g. the store failed)."""
    try:
        out = dict(reg.verify_version(name, version))
    except (RegistryError, StorageError, ValueError) as e:
        return {"status": "error", "key_id": None, "detail": str(e)}
    out.setdefault("key_id", None)
    out.setdefault("detail", "")
    return out


def rollback_targets(reg: ModelRegistry, name: str, alias: str) -> list[int]:
    """Versions ``alias`` may be rolled back to now (the registry's policy: former holders that are active,
    not rejected and approved where required), oldest first; none when the registry cannot tell (e.g. a
    former holder's metadata fails its signature check: the version rows show why)."""
    try:
        return [int(v) for v in reg.rollback_targets(name, alias=alias)]
    except (RegistryError, StorageError) as e:
        log.warning("mlops: no rollback targets for %s:%s: %s", name, alias, e)
        return []


def model_view(reg: ModelRegistry, name: str, base: str, max_versions: int = MAX_VERSIONS) -> dict[str, Any]:
    versions = sorted(reg.list_versions(name), reverse=True)  # ModelNotFoundError for an unknown model
    state = reg.state(name)
    drift = _drift_reports(reg, name, base)
    aliased = {int(v) for v in state.get("aliases", {}).values()}
    shown = [v for i, v in enumerate(versions) if i < max_versions or v in aliased]  # aliased ones always
    aliases = {a: int(v) for a, v in sorted(state.get("aliases", {}).items())}
    return {
        "name": name,
        "training_dag_id": training_dag_id(name),
        "aliases": aliases,
        "rollback_targets": {a: rollback_targets(reg, name, a) for a in aliases},
        "versions_total": len(versions),
        "versions": [version_view(reg, name, v, state, base, drift) for v in shown],
        "drift_reports": drift,
        "audit": list(state.get("audit", [])),
    }


def models_summary(reg: ModelRegistry, user: BaseUser) -> list[dict[str, Any]]:
    out = []
    for name in reg.list_models():
        if not is_authorized(user, name, "GET"):
            continue
        try:
            versions = reg.list_versions(name)
            aliases = reg.get_aliases(name)
        except RegistryError:
            continue
        out.append({"name": name, "versions": versions, "latest_version": max(versions) if versions else None,
                    "aliases": aliases, "champion": aliases.get("champion")})
    return out


# ------------------------------------------------------------------------------------------
# actions
# ------------------------------------------------------------------------------------------
class ApproveBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why (goes to the audit log)")
    status: str = Field(default="approved", pattern="^(approved|rejected)$")


class RollbackBody(BaseModel):
    alias: str = Field(default="champion", min_length=1, max_length=128)
    to_version: int | None = Field(default=None, ge=1, description="default: the version the alias held before")
    reason: str = Field(min_length=1, max_length=2000)


def _registry_error(e: Exception) -> HTTPException:
    if isinstance(e, (ModelNotFoundError, VersionNotFoundError, AliasNotFoundError)):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(e))
    if isinstance(e, (ApprovalError, LifecycleError)):
        return HTTPException(status.HTTP_409_CONFLICT, str(e))
    if isinstance(e, RegistryError):
        return HTTPException(status.HTTP_409_CONFLICT, str(e))
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"artifact store error: {e}")


def do_approve(user: BaseUser, name: str, version: int, body: ApproveBody) -> dict[str, Any]:
    require(user, name, "PUT")
    reg = get_registry()
    try:
        event = reg.approve(name, version, approver=actor_of(user), reason=body.reason.strip(), status=body.status)
        approval = reg.approval(name, version)
    except (RegistryError, StorageError) as e:
        raise _registry_error(e) from None
    log.info("mlops: %s %s %s v%d: %s", actor_of(user), body.status, name, version, body.reason)
    _refresh_cards(reg, name, [version, event.get("version")])
    return {"event": event, "approval": approval}


def _refresh_cards(reg: ModelRegistry, name: str, versions: list[Any]) -> None:
    """Re-render the model cards a decision changed (approval history, aliases); never fails the request."""
    from airflow_mlops.registry.lifecycle import refresh_cards

    refresh_cards(reg, name, versions)


def do_rollback(user: BaseUser, name: str, body: RollbackBody) -> dict[str, Any]:
    require(user, name, "PUT")
    reg = get_registry()
    try:
        aliases = reg.get_aliases(name)
        reg.list_versions(name)
        if body.alias not in aliases:
            raise AliasNotFoundError(f"model {name!r} has no alias {body.alias!r}; aliases: {aliases or 'none'}")
        event = reg.rollback(name, body.alias, body.to_version, actor=actor_of(user), reason=body.reason.strip())
        aliases = reg.get_aliases(name)
    except (RegistryError, StorageError) as e:
        raise _registry_error(e) from None
    log.info("mlops: %s rolled back %s:%s %s -> %s", actor_of(user), name, body.alias, event.get("from"),
             event.get("to"))
    _refresh_cards(reg, name, [event.get("from"), event.get("to")])
    return {"event": event, "aliases": aliases}


# ------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _jinja() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["metric"] = _fmt_metric
    env.filters["short"] = lambda s, n=12: (str(s)[:n] + "…") if s and len(str(s)) > n else (s or "")
    env.filters["when"] = _fmt_when
    return env


def _fmt_when(ts: Any) -> str:
    if not ts:
        return ""
    try:
        return dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(ts)


def _render(template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    html = _jinja().get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status_code,
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-store", "Referrer-Policy": "same-origin"})


def _base(request: Request) -> str:
    """Absolute path of this app's mount point (``/mlops``, below any API root path)."""
    return request.url_for("index").path.rstrip("/")


def _login_url(request: Request) -> str | None:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # pragma: no cover - depends on the auth manager
        return None


#: The page's error banners: a code and its fixed text. Only ``refused``/``not_found``/``store`` append a
#: detail, and that detail is the registry's or the store's own message, never text from the request.
ERROR_TEXTS = {
    "reason_required": "Give a reason: it goes to the audit log.",
    "reason_invalid": "The reason must be 1 to 2000 characters.",
    "bad_version": "Pick one of the versions the form offers.",
    "bad_alias": "Pick one of the aliases the form offers.",
    "refused": "The registry refused the action:",
    "not_found": "Not found:",
    "store": "The artifact store is unavailable:",
}
_ERROR_STATUS = {"refused": status.HTTP_409_CONFLICT, "not_found": status.HTTP_404_NOT_FOUND,
                 "store": status.HTTP_503_SERVICE_UNAVAILABLE}
#: The success banner after an action: the audit entry ``?done=<seq>`` names, described from the audit log.
DONE_TEXTS = {
    "approve": "Audit #{seq}: {actor} approved v{version}.",
    "rejected": "Audit #{seq}: {actor} rejected v{version}.",
    "rollback": "Audit #{seq}: {actor} rolled {alias} back from v{from_} to v{to}.",
}
_SEQ = re.compile(r"[0-9]{1,9}")


def done_notice(audit: list[dict[str, Any]], done: str | None) -> str | None:
    """The banner for ``?done=<seq>``: a fixed sentence about that entry of the model's audit log (or nothing)."""
    if not done or not _SEQ.fullmatch(done):
        return None
    for ev in audit:
        if ev.get("seq") == int(done) and ev.get("action") in DONE_TEXTS:
            return DONE_TEXTS[ev["action"]].format(seq=int(ev["seq"]), actor=ev.get("actor"), version=ev.get("version"),
                                                   alias=ev.get("alias"), from_=ev.get("from"), to=ev.get("to"))
    return None


def _error_code(e: HTTPException) -> str:
    return {status.HTTP_404_NOT_FOUND: "not_found", status.HTTP_503_SERVICE_UNAVAILABLE: "store"}.get(
        e.status_code, "refused")


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    body = raw.decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


# ------------------------------------------------------------------------------------------
# the app
# ------------------------------------------------------------------------------------------
def create_app() -> FastAPI:
    app = FastAPI(
        title="airflow-mlops model registry",
        description="Model registry page, JSON API and report server of the airflow-mlops provider. "
        "Authenticate like the Airflow API: `Authorization: Bearer <JWT from POST /auth/token>` or the "
        "Airflow UI's `_token` cookie.",
        docs_url=None, redoc_url=None,
    )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        wants_html = ("/api/" not in request.url.path
                      and "text/html" in request.headers.get("accept", "")
                      and not request.url.path.startswith(f"{_base(request)}/files/"))
        if not wants_html:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        login = _login_url(request) if exc.status_code == status.HTTP_401_UNAUTHORIZED else None
        return _render("error.html", status_code=exc.status_code, code=exc.status_code, detail=exc.detail,
                       login_url=login, base=_base(request))

    _add_api_routes(app)
    _add_file_route(app)
    _add_page_routes(app)
    return app


def _add_api_routes(app: FastAPI) -> None:
    """The JSON API under ``/api``: the CSRF token, models, one model, its audit log, approve and rollback."""
    # ---- JSON API ---------------------------------------------------------------------
    @app.get("/api/csrf")
    def api_csrf(user: UserDep) -> JSONResponse:
        """The authenticated user's CSRF token, for clients that authenticate with the ``_token`` cookie (or in
        all-admins mode without credentials) and POST: send it as ``X-CSRF-Token``. Other sites cannot read
        it (no CORS on this app)."""
        return JSONResponse({"csrf_token": csrf_token(user), "header": CSRF_HEADER, "form_field": CSRF_FIELD,
                             "user": actor_of(user)},
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.get("/api/models")
    def api_models(request: Request, user: UserDep) -> dict[str, Any]:
        reg = get_registry()
        try:
            models = models_summary(reg, user)
        except StorageError as e:
            raise _registry_error(e) from None
        return {"storage_uri": reg.store.root, "user": actor_of(user), "models": models}

    @app.get("/api/models/{name}")
    def api_model(name: str, request: Request, user: UserDep) -> dict[str, Any]:
        require(user, name, "GET")
        try:
            return model_view(get_registry(), name, _base(request))
        except (RegistryError, StorageError) as e:
            raise _registry_error(e) from None

    @app.get("/api/models/{name}/audit")
    def api_audit(name: str, user: UserDep) -> list[dict[str, Any]]:
        require(user, name, "GET")
        try:
            return get_registry().audit_log(name)
        except (RegistryError, StorageError) as e:
            raise _registry_error(e) from None

    @app.post("/api/models/{name}/versions/{version}/approve")
    def api_approve(name: str, version: int, body: ApproveBody, request: Request, user: UserDep) -> dict[str, Any]:
        check_csrf(request, user, request.headers.get(CSRF_HEADER))
        return do_approve(user, name, version, body)

    @app.post("/api/models/{name}/rollback")
    def api_rollback(name: str, body: RollbackBody, request: Request, user: UserDep) -> dict[str, Any]:
        check_csrf(request, user, request.headers.get(CSRF_HEADER))
        return do_rollback(user, name, body)


def _add_file_route(app: FastAPI) -> None:
    """``/files/<key>``: reports read through the store (verified, sandboxed), never other keys."""
    @app.get("/files/{key:path}", name="serve_file")
    def serve_file(key: str, user: UserDep) -> Response:
        parts = match_report_key(key)
        if parts is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                "not a report key: only registry/<model>/versions/<n>/reports/*, "
                                "validation/<model>/ds=<date>/* and monitoring/<model>/ds=<date>/* HTML/JSON "
                                "files are served")
        model = parts["model"]
        require(user, model, "GET")
        reg = get_registry()
        store = reg.store
        try:
            if parts["area"] == "registry":
                version = int(parts["version"])
                meta = reg.get_metadata(model, version)
                data = read_report(store, key)  # file:// stores: no symlink anywhere below the root
                recorded = (meta.get("artifacts") or {}).get(parts["rel"])
                if recorded is not None:
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != recorded.get("sha256"):
                        raise IntegrityError(
                            f"hash mismatch for {key}: metadata.json records sha256 {recorded.get('sha256')}, "
                            f"the file has {actual}")
                    integrity = f"sha256-verified {recorded['sha256']}"
                else:
                    integrity = "unverified: report attached after registration (append-only)"
            else:
                data = read_report(store, key)
                integrity = "not a registry artifact"
        except IntegrityError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, f"refusing to serve a tampered artifact: {e}") from None
        except SymlinkRefused as e:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
        except (ArtifactNotFoundError, ModelNotFoundError, VersionNotFoundError):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{key} does not exist in the artifact store") from None
        except (RegistryError, StorageError) as e:
            raise _registry_error(e) from None
        ext = os.path.splitext(key)[1]
        return Response(data, media_type=MEDIA_TYPES.get(ext, "application/octet-stream"), headers={
            "Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff",
            "X-MLOps-Integrity": integrity, "Cache-Control": "no-store"})


def _add_page_routes(app: FastAPI) -> None:
    """The HTML pages: the index, one model, and the approve/rollback forms (CSRF token, post-redirect-get)."""
    # ---- HTML -------------------------------------------------------------------------
    def _page(request: Request, user: BaseUser, names: list[str] | None, *, error: str | None = None,
              detail: str = "", status_code: int = status.HTTP_200_OK) -> HTMLResponse:
        reg = get_registry()
        base = _base(request)
        models = []
        notice = None
        try:
            for item in models_summary(reg, user):
                if names is not None and item["name"] not in names:
                    continue
                view = model_view(reg, item["name"], base)
                view["can_write"] = is_authorized(user, item["name"], "PUT")
                view["audit_shown"] = list(reversed(view["audit"]))[:MAX_HTML_AUDIT]
                if names is not None and error is None:
                    notice = done_notice(view["audit"], request.query_params.get("done"))
                models.append(view)
        except (RegistryError, StorageError) as e:
            raise _registry_error(e) from None
        banner = {"code": error, "text": ERROR_TEXTS[error], "detail": detail} if error else None
        return _render("registry.html", status_code=status_code, models=models, base=base, user=actor_of(user),
                       storage_uri=reg.store.root, csrf=csrf_token(user), single=names is not None,
                       notice=notice, error=banner)

    async def _refused(request: Request, user: BaseUser, name: str, code: str, detail: str = "") -> HTMLResponse:
        """The model's page with a fixed error banner (the form's POST answers it directly: nothing in a URL)."""
        from starlette.concurrency import run_in_threadpool

        code_status = _ERROR_STATUS.get(code, status.HTTP_400_BAD_REQUEST)
        return await run_in_threadpool(_page, request, user, [name], error=code, detail=detail,
                                       status_code=code_status)

    @app.get("/", name="index", response_class=HTMLResponse)
    def index(request: Request, user: UserDep) -> HTMLResponse:
        return _page(request, user, None)

    @app.get("/models/{name}", name="model_page", response_class=HTMLResponse)
    def model_page(name: str, request: Request, user: UserDep) -> HTMLResponse:
        require(user, name, "GET")
        try:
            get_registry().list_versions(name)
        except (RegistryError, StorageError) as e:
            raise _registry_error(e) from None
        return _page(request, user, [name])

    def _done(request: Request, name: str, event: dict[str, Any]) -> RedirectResponse:
        url = f"{_base(request)}/models/{quote(name, safe='')}?{urlencode({'done': int(event['seq'])})}"
        return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)

    @app.post("/models/{name}/versions/{version}/approve")
    async def form_approve(name: str, version: int, request: Request, user: UserDep) -> Response:
        form = await _form(request)
        check_csrf(request, user, form.get(CSRF_FIELD))
        require(user, name, "PUT")
        decision = "rejected" if form.get("decision") == "reject" else "approved"
        reason = (form.get("reason") or "").strip()
        if not reason:
            return await _refused(request, user, name, "reason_required")
        from starlette.concurrency import run_in_threadpool

        try:
            body = ApproveBody(reason=reason, status=decision)
        except ValidationError:
            return await _refused(request, user, name, "reason_invalid")
        try:
            out = await run_in_threadpool(do_approve, user, name, version, body)
        except HTTPException as e:
            if e.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
                raise
            return await _refused(request, user, name, _error_code(e), str(e.detail))
        return _done(request, name, out["event"])

    @app.post("/models/{name}/rollback")
    async def form_rollback(name: str, request: Request, user: UserDep) -> Response:
        form = await _form(request)
        check_csrf(request, user, form.get(CSRF_FIELD))
        require(user, name, "PUT")
        reason = (form.get("reason") or "").strip()
        if not reason:
            return await _refused(request, user, name, "reason_required")
        to = (form.get("to_version") or "").strip()
        if to and not re.fullmatch(r"[1-9][0-9]{0,8}", to):
            return await _refused(request, user, name, "bad_version")
        alias = (form.get("alias") or "champion").strip()
        if not _MODEL_NAME.fullmatch(alias):
            return await _refused(request, user, name, "bad_alias")
        from starlette.concurrency import run_in_threadpool

        try:
            body = RollbackBody(alias=alias, to_version=int(to) if to else None, reason=reason)
        except ValidationError:
            return await _refused(request, user, name, "reason_invalid")
        try:
            out = await run_in_threadpool(do_rollback, user, name, body)
        except HTTPException as e:
            if e.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
                raise
            return await _refused(request, user, name, _error_code(e), str(e.detail))
        return _done(request, name, out["event"])


__all__ = ["create_app", "csrf_token", "get_registry", "is_authorized", "model_view", "training_dag_id", "URL_PREFIX"]
