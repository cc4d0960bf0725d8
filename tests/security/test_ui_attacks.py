"""Attacks on the registry UI (``/mlops``): forged writes, spoofed banners, report-server escapes.

The plugin's FastAPI app runs in-process behind Airflow's real authentication: the API server's
``get_user`` dependency (JWT in ``Authorization: Bearer`` or the ``_token`` cookie, validated by the simple
auth manager), the simple auth manager's authorization by role, and, for all-admins mode, Airflow's own
``SimpleAllAdminMiddleware`` on the root app, which appends an admin bearer header to every request exactly as
in ``airflow standalone``. The store is the seeded one of tests/e2e/test_registry_view.py (``churn``: v1 and v2
``not_required`` with champion history 1 -> 2, v3 ``pending`` that never held an alias).

Every attack must be refused with a clear status and message AND leave the store byte-for-byte unchanged:
the sha256 of every file under the store root (and the target of every symlink) is compared before and after.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from test_registry_view import DS, store  # noqa: E402,F401 - the seeded store fixture, reused

from airflow_mlops.registry.model_registry import ModelRegistry  # noqa: E402

USERS = {"admin": "ADMIN", "viewer": "VIEWER", "trainer": "USER", "mallory": "USER"}
EVIL = "https://evil.example"


# ------------------------------------------------------------------------------------------
# the store's fingerprint
# ------------------------------------------------------------------------------------------
def snapshot(root: str) -> dict[str, str]:
    """sha256 of every regular file under ``root``; symlinks by their target (never followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "symlink -> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


class UI:
    """The app behind Airflow's auth; ``all_admins`` adds the simple auth manager's all-admins middleware."""

    def __init__(self, seeded, all_admins: bool) -> None:
        from airflow.api_fastapi.app import create_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        from airflow_mlops.plugins import registry_view as rv

        self.store, self.root, self.rv = seeded, seeded.local_path(""), rv
        self.am = create_auth_manager()
        self.am.init()
        app = FastAPI()
        if all_admins:
            from airflow.api_fastapi.auth.managers.simple.middleware import SimpleAllAdminMiddleware

            app.add_middleware(SimpleAllAdminMiddleware)
        app.mount("/mlops", rv.create_app())
        self.client = TestClient(app)
        self._user = lambda name: SimpleAuthManagerUser(username=name, role=USERS.get(name, "VIEWER"))

    def token(self, name: str) -> str:
        return self.am.generate_jwt(self._user(name))

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    def cookie(self, name: str) -> dict[str, str]:
        return {"Cookie": f"_token={self.token(name)}"}

    def csrf(self, name: str) -> str:
        return self.rv.csrf_token(self._user(name))

    def state(self) -> dict:
        return ModelRegistry(self.store).state("churn")

    def snapshot(self) -> dict[str, str]:
        return snapshot(self.root)


@pytest.fixture
def airflow_auth(monkeypatch):
    """The simple auth manager with four users, JWTs it validates, and the one table its validation reads."""
    from airflow import settings
    from airflow.models.revoked_token import RevokedToken

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                       ",".join(f"{u}:{r.lower()}" for u, r in USERS.items()))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__API__HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "ui-attack-tests-" + "k" * 48)
    RevokedToken.__table__.create(settings.engine, checkfirst=True)  # get_user_from_token checks revocations
    yield monkeypatch


@pytest.fixture
def ui(store, airflow_auth):  # noqa: F811 - pytest fixture argument
    from airflow_mlops.plugins import registry_view as rv

    rv._registries.clear()
    yield UI(store, all_admins=False)
    rv._registries.clear()


@pytest.fixture
def ui_all_admins(store, airflow_auth):  # noqa: F811
    """``airflow standalone`` as ``make standalone`` runs it: every request is the admin ``Anonymous``."""
    from airflow_mlops.plugins import registry_view as rv

    airflow_auth.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    rv._registries.clear()
    yield UI(store, all_admins=True)
    rv._registries.clear()


def unchanged(ui: UI, before: dict[str, str]) -> None:
    after = ui.snapshot()
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


# ------------------------------------------------------------------------------------------
# forged writes
# ------------------------------------------------------------------------------------------
def test_cross_site_form_post_in_all_admins_mode_is_refused(ui_all_admins):
    """A page on another site auto-submits the review/rollback forms: no credentials, no token. The all-admins
    middleware injects an admin bearer header, which must not count as the client's."""
    ui = ui_all_admins
    before = ui.snapshot()
    page = ui.client.get("/mlops/models/churn")  # the middleware makes everyone an admin: reads work
    assert page.status_code == 200 and "signed in as <strong id=\"user\">Anonymous</strong>" in page.text
    for url, form in (("/mlops/models/churn/versions/3/approve", {"reason": "csrf", "decision": "approve"}),
                      ("/mlops/models/churn/versions/3/approve", {"reason": "csrf", "decision": "reject"}),
                      ("/mlops/models/churn/rollback", {"reason": "csrf", "alias": "champion", "to_version": "1"})):
        r = ui.client.post(url, data=form, headers={"Origin": EVIL, "Referer": EVIL + "/"}, follow_redirects=False)
        assert r.status_code == 403, (url, r.status_code, r.text[:300])
        assert "missing or wrong CSRF token" in r.json()["detail"] and "/mlops/api/csrf" in r.json()["detail"]
    unchanged(ui, before)
    assert ui.state()["aliases"] == {"champion": 2}


def test_json_post_with_only_the_injected_bearer_and_no_csrf_header_is_refused(ui_all_admins):
    ui = ui_all_admins
    before = ui.snapshot()
    r = ui.client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "forged"})
    assert r.status_code == 403 and "CSRF token" in r.json()["detail"]
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "forged", "to_version": 1})
    assert r.status_code == 403 and "CSRF token" in r.json()["detail"]
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "forged", "to_version": 1},
                       headers={"X-CSRF-Token": "0" * 40})
    assert r.status_code == 403
    unchanged(ui, before)


def test_all_admins_clients_get_the_token_from_the_api_or_send_their_own_bearer(ui_all_admins):
    """The controls of the two attacks above: the same requests with the token, or with a bearer token the
    client sent itself (it comes first; the middleware's is appended after it), are accepted."""
    ui = ui_all_admins
    token = ui.client.get("/mlops/api/csrf").json()
    assert token["csrf_token"] == ui.csrf("Anonymous") and token["header"] == "X-CSRF-Token"
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "pin v1", "to_version": 1},
                       headers={"X-CSRF-Token": token["csrf_token"]})
    assert r.status_code == 200 and r.json()["event"]["actor"] == "Anonymous"
    r = ui.client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "reviewed"},
                       headers=ui.bearer("admin"))
    assert r.status_code == 200 and r.json()["event"]["actor"] == "admin"  # the client's token, not Anonymous
    # a client-sent bearer is authenticated, not just counted: a forged one is refused before anything else
    before = ui.snapshot()
    r = ui.client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "forged"},
                       headers={"Authorization": "Bearer forged.jwt.value"})
    assert r.status_code == 403 and r.json()["detail"] == "Invalid JWT token"
    unchanged(ui, before)


def test_form_post_with_a_wrong_or_foreign_users_token_is_refused(ui):
    """The admin's browser (cookie) posts a form carrying someone else's token, or a made-up one."""
    before = ui.snapshot()
    for token in (ui.csrf("mallory"), ui.csrf("viewer"), "0" * 40, "", ui.csrf("admin")[:-1]):
        for url in ("/mlops/models/churn/versions/3/approve", "/mlops/models/churn/rollback"):
            r = ui.client.post(url, data={"reason": "forged", "to_version": "1", "csrf_token": token},
                               headers=ui.cookie("admin"), follow_redirects=False)
            assert r.status_code == 403, (token, url, r.status_code)
            assert "missing or wrong CSRF token" in r.json()["detail"]
    unchanged(ui, before)


def test_cookie_authenticated_json_post_without_the_csrf_header_is_refused(ui):
    before = ui.snapshot()
    r = ui.client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "forged"},
                       headers={**ui.cookie("admin"), "Origin": EVIL})
    assert r.status_code == 403 and "CSRF token" in r.json()["detail"]
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "forged", "to_version": 1},
                       headers={**ui.cookie("admin"), "X-CSRF-Token": ui.csrf("mallory")})
    assert r.status_code == 403
    unchanged(ui, before)


def test_missing_or_forged_credentials_are_refused(ui):
    before = ui.snapshot()
    for url, kw in (("/mlops/api/models/churn/versions/3/approve", {"json": {"reason": "anon"}}),
                    ("/mlops/api/models/churn/rollback", {"json": {"reason": "anon", "to_version": 1}}),
                    ("/mlops/models/churn/versions/3/approve", {"data": {"reason": "anon"}}),
                    ("/mlops/models/churn/rollback", {"data": {"reason": "anon", "to_version": "1"}})):
        r = ui.client.post(url, follow_redirects=False, **kw)
        assert r.status_code == 401 and r.json()["detail"] == "Not authenticated", (url, r.text[:200])
        forged = ui.token("admin")[:-4] + "AAAA"
        r = ui.client.post(url, headers={"Authorization": f"Bearer {forged}"}, follow_redirects=False, **kw)
        assert r.status_code == 403 and r.json()["detail"] == "Invalid JWT token", (url, r.text[:200])
    unchanged(ui, before)


def test_viewer_may_not_approve_or_roll_back(ui):
    """A read-only user, with a valid token of their own and their own CSRF token."""
    before = ui.snapshot()
    assert ui.client.get("/mlops/models/churn", headers=ui.bearer("viewer")).status_code == 200
    r = ui.client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "viewer"},
                       headers=ui.bearer("viewer"))
    assert r.status_code == 403 and "'viewer' may not change model 'churn'" in r.json()["detail"]
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "viewer", "to_version": 1},
                       headers=ui.bearer("viewer"))
    assert r.status_code == 403 and "needs PUT access to Dag 'churn_training'" in r.json()["detail"]
    for url in ("/mlops/models/churn/versions/3/approve", "/mlops/models/churn/rollback"):
        r = ui.client.post(url, data={"reason": "viewer", "to_version": "1", "csrf_token": ui.csrf("viewer")},
                           headers=ui.cookie("viewer"), follow_redirects=False)
        assert r.status_code == 403 and "may not change model 'churn'" in r.json()["detail"]
    page = ui.client.get("/mlops/models/churn", headers=ui.bearer("viewer")).text
    assert "Approve</button>" not in page and "Roll back</button>" not in page
    unchanged(ui, before)


# ------------------------------------------------------------------------------------------
# spoofed banners
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "msg=Security+review+passed%3A+v3+approved+by+the+CISO",
    "error=Your+session+expired%2C+log+in+at+https%3A%2F%2Fevil.example",
    "msg=%3Cb%3Ebold%3C%2Fb%3E&error=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "done=%3Cscript%3E", "done=99999", "done=1",  # 1 is a registration, not an action
    "done=-1", "done=1e3",
])
def test_banners_are_not_taken_from_the_query_string(ui, query):
    before = ui.snapshot()
    for path in ("/mlops/", "/mlops/models/churn"):
        r = ui.client.get(f"{path}?{query}", headers=ui.bearer("admin"))
        assert r.status_code == 200
        assert 'id="message"' not in r.text and 'id="error"' not in r.text, query
        for text in ("CISO", "evil.example", "session expired", "bold", "alert(1)", "<script>"):
            assert text not in r.text
    unchanged(ui, before)


# ------------------------------------------------------------------------------------------
# actions that do not apply
# ------------------------------------------------------------------------------------------
def test_approve_or_reject_of_a_not_required_version_is_refused_and_not_offered(ui):
    page = ui.client.get("/mlops/models/churn", headers=ui.bearer("admin")).text
    assert "/mlops/models/churn/versions/3/approve" in page  # the pending one
    for v in (1, 2):
        assert f"/mlops/models/churn/versions/{v}/approve" not in page
    before = ui.snapshot()
    for v, decision in ((1, "approved"), (2, "rejected"), (1, "rejected")):
        r = ui.client.post(f"/mlops/api/models/churn/versions/{v}/approve", json={"reason": "x", "status": decision},
                           headers=ui.bearer("admin"))
        assert r.status_code == 409 and "does not require an approval" in r.json()["detail"], r.text
        r = ui.client.post(f"/mlops/models/churn/versions/{v}/approve",
                           data={"reason": "x", "decision": decision[:-1] if decision == "approved" else "reject",
                                 "csrf_token": ui.csrf("admin")},
                           headers=ui.cookie("admin"), follow_redirects=False)
        assert r.status_code == 409 and 'data-code="refused"' in r.text
        assert "The registry refused the action:" in r.text and "does not require an approval" in r.text
    unchanged(ui, before)
    assert ui.state()["approvals"] == {}


def test_rollback_to_a_version_that_never_was_champion_is_refused_and_not_offered(ui):
    page = ui.client.get("/mlops/models/churn", headers=ui.bearer("admin")).text
    select = page[page.index('name="to_version"'):]
    select = select[:select.index("</select>")]
    assert '<option value="1">v1</option>' in select and 'value="3"' not in select and 'value="2"' not in select
    before = ui.snapshot()
    r = ui.client.post("/mlops/api/models/churn/rollback", json={"reason": "x", "to_version": 3},
                       headers=ui.bearer("admin"))
    assert r.status_code == 409 and "never held alias 'champion'" in r.json()["detail"]
    r = ui.client.post("/mlops/models/churn/rollback",
                       data={"reason": "x", "alias": "champion", "to_version": "3", "csrf_token": ui.csrf("admin")},
                       headers=ui.cookie("admin"), follow_redirects=False)
    assert r.status_code == 409 and "never held alias" in r.text and 'data-code="refused"' in r.text
    for bad in ("3; DROP", "0", "-1", "1e3", "99999999999"):
        r = ui.client.post("/mlops/models/churn/rollback",
                           data={"reason": "x", "to_version": bad, "csrf_token": ui.csrf("admin")},
                           headers=ui.cookie("admin"), follow_redirects=False)
        assert r.status_code == 400 and "Pick one of the versions the form offers." in r.text, bad
        if len(bad) > 3:
            assert bad not in r.text  # the submitted value is not echoed
    r = ui.client.post("/mlops/models/churn/rollback",
                       data={"reason": "x", "alias": "<b>x</b>", "to_version": "1", "csrf_token": ui.csrf("admin")},
                       headers=ui.cookie("admin"), follow_redirects=False)
    assert r.status_code == 400 and "Pick one of the aliases the form offers." in r.text and "<b>x</b>" not in r.text
    unchanged(ui, before)


def test_oversized_form_is_refused(ui):
    before = ui.snapshot()
    r = ui.client.post("/mlops/models/churn/versions/3/approve", headers=ui.cookie("admin"),
                       data={"reason": "x" * (70 * 1024), "csrf_token": ui.csrf("admin")}, follow_redirects=False)
    assert r.status_code == 413 and r.json()["detail"] == "form too large"
    unchanged(ui, before)


# ------------------------------------------------------------------------------------------
# the report server
# ------------------------------------------------------------------------------------------
def test_html_symlink_to_the_model_file_is_refused(ui):
    model = ui.store.local_path("registry/churn/versions/1/model.skops")
    secret = open(model, "rb").read()
    for key, target in (("registry/churn/versions/1/reports/steal.html", "../model.skops"),
                        (f"validation/churn/ds={DS}/steal.html", model),
                        (f"monitoring/churn/ds={DS}/steal.json", os.path.relpath(
                            ui.store.local_path("registry/churn/state.json"),
                            os.path.dirname(ui.store.local_path(f"monitoring/churn/ds={DS}/steal.json"))))):
        os.symlink(target, ui.store.local_path(key))
        before = ui.snapshot()
        r = ui.client.get(f"/mlops/files/{key}", headers=ui.bearer("admin"))
        assert r.status_code == 404, (key, r.status_code)
        assert r.headers["content-type"].startswith("application/json") and "is a symbolic link" in r.json()["detail"]
        assert secret[:64] not in r.content and b"aliases" not in r.content
        unchanged(ui, before)


def test_symlinked_directory_component_is_refused(ui):
    """A date folder, or a version's ``reports`` folder, that is a link to somewhere else in the store."""
    links = {
        "validation/churn/ds=2024-02-01": ui.store.local_path("registry/churn/versions/1"),  # -> metadata.json
        "monitoring/churn/ds=2024-02-01": ui.store.local_path("registry/churn"),  # -> state.json
    }
    reports = ui.store.local_path("registry/churn/versions/3/reports")
    os.rename(reports, reports + ".orig")
    links["registry/churn/versions/3/reports"] = ui.store.local_path("registry/churn/versions/1")
    for link, target in links.items():
        os.symlink(target, ui.store.local_path(link))
    before = ui.snapshot()
    for key in ("validation/churn/ds=2024-02-01/metadata.json", "validation/churn/ds=2024-02-01/signature.json",
                "monitoring/churn/ds=2024-02-01/state.json",
                "registry/churn/versions/3/reports/metadata.json"):
        r = ui.client.get(f"/mlops/files/{key}", headers=ui.bearer("admin"))
        assert r.status_code == 404, (key, r.status_code, r.text[:200])
        assert "is a symbolic link" in r.json()["detail"]
        assert b"sha256" not in r.content and b"aliases" not in r.content
    unchanged(ui, before)


TRAVERSAL_KEYS = [
    "registry/churn/versions/1/reports/../metadata.json",
    "registry/churn/versions/1/reports/..%2Fmetadata.json",
    "registry/churn/versions/1/reports/%2e%2e/%2e%2e/state.json",
    "validation/churn/ds=2024-01-02/%2E%2E%2F%2E%2E%2F%2E%2E%2Fregistry%2Fchurn%2Fstate.json",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "%2F%2Fetc/passwd",
    "registry/churn/versions/1/reports/%5C..%5Cmetadata.json",
    "registry/churn/versions/1/reports/..%5C..%5Cstate.json",
    "validation\\churn\\ds=2024-01-02\\report.html",
    "validation/churn/ds=2024-01-02/report.html%00.json",
    "validation//churn/ds=2024-01-02/report.html",
]
NON_REPORT_KEYS = [
    "registry/churn/versions/1/model.skops",
    "registry/churn/versions/1/metadata.json",
    "registry/churn/versions/1/signature.json",
    "registry/churn/versions/1/_claim.json",
    "registry/churn/state.json",
    "registry/churn/versions/1/reports.json",
    "registry/churn/versions/1/secret.txt",
    "data/churn/ds=2024-01-02/part-0.parquet",
    "validation/churn/ds=2024-01-02/report.txt",
    "monitoring/churn/ds=2024-01-02/drift.parquet",
    "registry/_lineage/abc/churn@1",
]


@pytest.mark.parametrize("path,traversal", [(k, True) for k in TRAVERSAL_KEYS] + [(k, False) for k in NON_REPORT_KEYS])
def test_traversal_and_non_report_keys_are_refused(ui, path, traversal):
    """Traversal (raw, encoded, absolute, backslash, NUL) may be stopped by the router or by the key check;
    a well-formed key that is not a report always by the key check."""
    before = ui.snapshot()
    r = ui.client.get(f"/mlops/files/{path}", headers=ui.bearer("admin"))
    detail = r.json()["detail"]
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert detail.startswith("not a report key") or (traversal and "Not Found" in detail), (path, detail)
    assert b"root:" not in r.content and b"aliases" not in r.content and b"sha256" not in r.content
    unchanged(ui, before)


def test_reports_are_still_served(ui):
    """The control of the report-server attacks: real reports under the same rules are served."""
    for key in ("registry/churn/versions/1/reports/evaluation.html", f"validation/churn/ds={DS}/report.html",
                f"monitoring/churn/ds={DS}/drift.json"):
        r = ui.client.get(f"/mlops/files/{key}", headers=ui.bearer("viewer"))
        assert r.status_code == 200, (key, r.text[:200])
        assert r.headers["content-security-policy"].startswith("sandbox")
