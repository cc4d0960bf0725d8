"""The model registry UI under a real ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer).

One Airflow instance for the module, on a private PostgreSQL metadata database (started as the Celery script
starts it), in a temporary AIRFLOW_HOME with the simple auth manager and two users
(``admin`` with role ADMIN, ``viewer`` with role VIEWER; passwords from a pre-written password file). The test
talks to it only over HTTP: JWTs from ``POST /auth/token``, the Dag triggered through the REST API v2, the
``mlops`` plugin's page, JSON API, report server and actions; then headless Debian chromium, driven through the
Chrome DevTools protocol, loads the page with the Airflow ``_token`` cookie (as after a UI login), submits the
approval form and saves a screenshot to ``tests/e2e/artifacts/registry.png`` (``MLOPS_E2E_ARTIFACTS`` overrides
the folder).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import requests
import yaml
from airflow_env import BIN, REPO

sys.path.insert(0, str(REPO / "scripts"))
import celery_multiworker  # noqa: E402  - the Postgres server the Celery script starts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DS = "2024-01-02"
RUN_ID = f"e2e_churn_{DS}"
DAG_ID = "churn_training"
ARTIFACTS = Path(os.environ.get("MLOPS_E2E_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT = 240
RUN_TIMEOUT = 360


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process started with start_new_session=True and everything it spawned (its process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # children may outlive the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _plugin_entry_point_installed() -> bool:
    return any(ep.value.startswith("airflow_mlops.plugins") for ep in metadata.entry_points(group="airflow.plugins"))


class Standalone:
    """``airflow standalone`` in its own process group, logging to a file."""

    def __init__(self, root: Path, db_url: str) -> None:
        self.root = root
        self.home = root / "airflow"
        self.home.mkdir(parents=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage_uri = "file://" + str(self.home / "mlops")
        self.passwords = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
        # the registry's signing key, shared by the server's tasks and this test's in-process registry calls
        self.key_file = root / "mlops-signing.key"
        pw_file = root / "passwords.json"
        pw_file.write_text(json.dumps(self.passwords))

        # The model config, without its nightly cron: only the run this test triggers may exist
        # (a scheduled run for today would wait for a partition that never arrives, and max_active_runs=1).
        self.configs = root / "configs"
        shutil.copytree(REPO / "dags" / "configs", self.configs)
        cfg_path = self.configs / "churn.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg.setdefault("schedules", {})["nightly_retraining"] = None
        cfg["schedules"]["training"] = None
        # batch scoring without catch-up: unpaused, it schedules only the latest day; past days come
        # from the backfill test (a catch-up from start_date would queue years of runs)
        cfg["schedules"]["scoring_catchup"] = False
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

        self.plugin_source = "entry point airflow.plugins"
        if not _plugin_entry_point_installed():
            # Until the package declares the entry point, load the plugin from the plugins folder.
            plugins = self.home / "plugins"
            plugins.mkdir()
            (plugins / "mlops_plugin.py").write_text("from airflow_mlops.plugins import MLOpsPlugin  # noqa: F401\n")
            self.plugin_source = "$AIRFLOW_HOME/plugins shim"

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # standalone starts its components as `airflow ...`
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # PostgreSQL, as in production: Airflow refuses backfills on SQLite under concurrent access
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__MLOPS__STORAGE_URI": self.storage_uri,
            "AIRFLOW__MLOPS__SIGNING_KEY_FILE": str(self.key_file),
            "MLOPS_CONFIGS_DIR": str(self.configs),
        })
        self.env = env
        self.log_path = root / "standalone.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=self.env, cwd=self.root,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, n: int = 80) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def task_logs(self, limit: int = 4000) -> str:
        out = []
        for p in sorted((self.home / "logs").rglob("*.log")):
            text = p.read_text(errors="replace")
            out.append(f"--- {p.relative_to(self.home)}\n{text[-limit:]}")
        return "\n".join(out[-6:])

    def component_log(self, component: str, n: int = 40) -> str:
        """The last ``n`` lines one component (``scheduler``, ``dag-processor``, ...) wrote to the standalone log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join([x for x in lines if x.startswith(f"{component} |")][-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def token(self, user: str) -> str:
        r = requests.post(f"{self.url}/auth/token", json={"username": user, "password": self.passwords[user]},
                          timeout=30)
        assert r.status_code == 201, r.text
        return r.json()["access_token"]


def _wait(what: str, check, timeout: float, af: Standalone, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not af.alive():
            raise AssertionError(f"airflow standalone exited while waiting for {what}:\n{af.log_tail()}")
        try:
            result = check()
            if result:
                return result
        except requests.RequestException as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})\n{af.log_tail()}")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def af(tmp_path_factory):
    """A running standalone Airflow with 7 days of churn data (the window ending on DS) in its store."""
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("standalone")
    stack = celery_multiworker.Stack(root / "pg")
    db_url = celery_multiworker.start_postgres(stack, celery_multiworker.ensure_system_packages()[0])
    timings["postgres_up"] = time.monotonic() - t0
    af = Standalone(root, db_url)
    key_env = "AIRFLOW__MLOPS__SIGNING_KEY_FILE"
    previous_key_file = os.environ.get(key_env)
    os.environ[key_env] = str(af.key_file)  # in-process registries (and train_and_register) sign like the server
    data = Dataset.for_name(ArtifactStore(af.storage_uri), "churn")
    start = (dt.date.fromisoformat(DS) - dt.timedelta(days=6)).isoformat()
    for day in date_range(start, 7):
        data.write(day, churn_day(day, rows=1500))
    af.start()
    try:
        _wait("the API server", lambda: requests.get(f"{af.url}/api/v2/monitor/health", timeout=5).ok,
              START_TIMEOUT, af)
        timings["api_server_up"] = time.monotonic() - t0
        af.admin = af.token("admin")
        af.viewer = af.token("viewer")
        _wait(f"Dag {DAG_ID} to be parsed",
              lambda: requests.get(f"{af.url}/api/v2/dags/{DAG_ID}", headers=_auth(af.admin), timeout=10).ok,
              START_TIMEOUT, af)
        timings["dag_parsed"] = time.monotonic() - t0
        af.timings = timings
        yield af
    finally:
        af.stop()
        stack.stop_all()
        shutil.rmtree(stack.pgdir, ignore_errors=True)
        if previous_key_file is None:
            os.environ.pop(key_env, None)
        else:
            os.environ[key_env] = previous_key_file
        print(f"\nstandalone timings (s since start): {af.__dict__.get('timings')}; plugin via {af.plugin_source}; "
              f"log {af.log_path}")


@pytest.fixture(scope="module")
def trained(af):
    """Unpause and trigger churn_training for DS through the REST API; wait for success."""
    t0 = time.monotonic()
    h = _auth(af.admin)
    r = requests.patch(f"{af.url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, headers=h, timeout=30)
    assert r.ok, r.text
    r = requests.post(f"{af.url}/api/v2/dags/{DAG_ID}/dagRuns", headers=h, timeout=30,
                      json={"dag_run_id": RUN_ID, "logical_date": f"{DS}T00:00:00Z", "conf": {}})
    assert r.status_code in (200, 201), r.text

    def state():
        s = requests.get(f"{af.url}/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}", headers=h, timeout=10).json()["state"]
        if s == "failed":
            tis = requests.get(f"{af.url}/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances", headers=h,
                               timeout=10).json()
            states = {t["task_id"]: t["state"] for t in tis.get("task_instances", [])}
            raise AssertionError(f"{DAG_ID} run failed: {states}\n{af.task_logs()}\n{af.log_tail(40)}")
        return s == "success"

    _wait(f"{DAG_ID} run {RUN_ID} to succeed", state, RUN_TIMEOUT, af, interval=3)
    af.timings["dag_run_seconds"] = time.monotonic() - t0
    # the run was triggered through the REST API as "admin": the version is registered by that user
    meta = _registry(af).get_metadata("churn", 1)
    assert meta["registered_by"] == meta["triggered_by"] == "admin", meta["registered_by"]
    return af


def _registry(af: Standalone):
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore

    return ModelRegistry(ArtifactStore(af.storage_uri))


REVIEW_MODEL = "churn_review"


@pytest.fixture(scope="module")
def review(af):
    """A second model with something to review: v1 and v2 (no approval required) were champion in turn; v3 and
    v4 await a required approval (registered by ``trainer``, so ``admin`` may approve them)."""
    reg = _registry(af)
    meta = {"primary_metric": "roc_auc", "metrics": {"holdout": {"roc_auc": 0.7}}}
    for i in range(1, 5):
        reg.register(REVIEW_MODEL, {"weights": [float(i)]}, metadata=meta, actor="trainer", require_approval=i > 2)
    reg.set_alias(REVIEW_MODEL, "champion", 1, actor="e2e", reason="first")
    reg.set_alias(REVIEW_MODEL, "champion", 2, actor="e2e", reason="second")
    return REVIEW_MODEL


# ------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------
def test_plugin_is_loaded_with_its_menu_entry(af):
    r = requests.get(f"{af.url}/api/v2/plugins", headers=_auth(af.admin), timeout=30)
    assert r.ok, r.text
    plugins = {p["name"]: p for p in r.json()["plugins"]}
    assert "mlops" in plugins, sorted(plugins)
    mlops = plugins["mlops"]
    assert [a["url_prefix"] for a in mlops["fastapi_apps"]] == ["/mlops"]
    assert any(v["href"] == "/mlops/" and v["destination"] == "nav" for v in mlops["external_views"])
    links = " ".join(mlops["operator_extra_links"])
    assert "EvaluationReportLink" in links and "ValidationReportLink" in links, links


def test_registry_page_shows_version_metrics_and_champion(trained):
    af = trained
    reg = _registry(af)
    assert reg.list_versions("churn") == [1]
    assert reg.get_aliases("churn") == {"champion": 1}
    meta = reg.get_metadata("churn", 1)
    auc = meta["metrics"]["holdout"]["roc_auc"]

    r = requests.get(f"{af.url}/mlops/", headers=_auth(af.admin), timeout=30)
    assert r.status_code == 200, r.text[:2000]
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "churn" in page and ">v1<" in page
    assert re.search(r"champion\s*→\s*v1", page)
    assert f"{auc:.4f}" in page and "roc_auc" in page
    assert meta["training_data"]["fingerprint"]["content_hash"][:16] in page
    assert "signed in as <strong id=\"user\">admin</strong>" in page

    api = requests.get(f"{af.url}/mlops/api/models/churn", headers=_auth(af.admin), timeout=30).json()
    v1 = api["versions"][0]
    assert v1["version"] == 1 and v1["aliases"] == ["champion"]
    assert v1["primary"]["holdout"] == pytest.approx(auc)
    assert v1["data"]["rows"] == 7 * 1500
    assert v1["approval"]["status"] == "not_required" and v1["lifecycle"]["state"] == "active"
    kinds = {rep["name"] for rep in v1["reports"]}
    assert {"evaluation.html", "promotion.html", f"validation ds={DS}"} <= kinds
    assert [m["name"] for m in requests.get(f"{af.url}/mlops/api/models", headers=_auth(af.admin),
                                            timeout=30).json()["models"]] == ["churn"]


def test_reports_are_served_through_the_store_and_verified(trained):
    af = trained
    api = requests.get(f"{af.url}/mlops/api/models/churn", headers=_auth(af.admin), timeout=30).json()
    reports = {rep["name"]: rep for rep in api["versions"][0]["reports"]}
    ev = requests.get(af.url + reports["evaluation.html"]["url"], headers=_auth(af.admin), timeout=30)
    assert ev.status_code == 200 and ev.headers["x-mlops-integrity"].startswith("sha256-verified ")
    assert ev.content == _registry(af).read_artifact("churn", 1, "reports/evaluation.html")
    assert "sandbox" in ev.headers["content-security-policy"]
    promo = requests.get(af.url + reports["promotion.html"]["url"], headers=_auth(af.admin), timeout=30)
    assert promo.status_code == 200 and promo.headers["x-mlops-integrity"].startswith("unverified")
    val = requests.get(af.url + reports[f"validation ds={DS}"]["url"], headers=_auth(af.admin), timeout=30)
    assert val.status_code == 200 and val.headers["content-type"].startswith("text/html")


def _raw_get(af: Standalone, path: str, token: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", af.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/mlops/files/../../../../etc/passwd",
    "/mlops/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/mlops/files/%2Fetc%2Fpasswd",
    "/mlops/files/validation/churn/ds=2024-01-02/../../../registry/churn/state.json",
    "/mlops/files/validation/churn/ds=2024-01-02/%2e%2e/%2e%2e/%2e%2e/registry/churn/state.json",
    "/mlops/files/registry/churn/state.json",
    "/mlops/files/registry/churn/versions/1/model.skops",
    "/mlops/files/registry/churn/versions/1/metadata.json",
    "/mlops/files/data/churn/ds=2024-01-02/part-0.parquet",
    "/mlops/files/registry/churn/versions/1/reports/..%2F..%2F..%2Fstate.json",
])
def test_key_traversal_and_non_report_keys_are_refused(af, path):
    status, body = _raw_get(af, path, af.admin)
    assert status in (400, 404), (status, body[:300])
    assert b"root:" not in body and b"aliases" not in body and b"sha256" not in body


def test_anonymous_and_forged_requests_are_refused(af):
    for path in ("/mlops/", "/mlops/api/models", "/mlops/api/models/churn", "/mlops/api/csrf",
                 "/mlops/files/registry/churn/versions/1/reports/evaluation.html"):
        r = requests.get(af.url + path, timeout=30)
        assert r.status_code in (401, 403), (path, r.status_code)
    page = requests.get(af.url + "/mlops/", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 401 and "Log in" in page.text
    r = requests.post(f"{af.url}/mlops/api/models/churn/versions/1/approve", json={"reason": "anonymous"}, timeout=30)
    assert r.status_code in (401, 403), r.text
    r = requests.post(f"{af.url}/mlops/api/models/churn/rollback", json={"reason": "anonymous", "to_version": 1},
                      timeout=30)
    assert r.status_code in (401, 403), r.text
    r = requests.post(f"{af.url}/mlops/models/churn/versions/1/approve", data={"reason": "anonymous"}, timeout=30,
                      allow_redirects=False)
    assert r.status_code in (401, 403), r.text
    forged = af.admin[:-4] + ("AAAA" if not af.admin.endswith("AAAA") else "BBBB")
    r = requests.get(f"{af.url}/mlops/api/models", headers=_auth(forged), timeout=30)
    assert r.status_code in (401, 403), r.text
    # cookie-authenticated writes (form or JSON) without the user's CSRF token are refused too
    r = requests.post(f"{af.url}/mlops/models/churn/versions/1/approve", data={"reason": "csrf"}, timeout=30,
                      cookies={"_token": af.admin}, allow_redirects=False)
    assert r.status_code == 403 and "CSRF token" in r.json()["detail"], r.text
    r = requests.post(f"{af.url}/mlops/api/models/churn/rollback", json={"reason": "csrf", "to_version": 1},
                      cookies={"_token": af.admin}, timeout=30)
    assert r.status_code == 403 and "/mlops/api/csrf" in r.json()["detail"], r.text
    # with the token from GET /mlops/api/csrf the request gets past the CSRF check, to the registry (which
    # refuses it: churn v1 needs no approval, or does not exist yet when this test runs alone)
    token = requests.get(f"{af.url}/mlops/api/csrf", cookies={"_token": af.admin}, timeout=30).json()["csrf_token"]
    r = requests.post(f"{af.url}/mlops/api/models/churn/versions/1/approve", json={"reason": "csrf"}, timeout=30,
                      cookies={"_token": af.admin}, headers={"X-CSRF-Token": token})
    assert r.status_code in (404, 409) and "CSRF" not in r.json()["detail"], r.text


def test_viewer_reads_but_may_not_approve_or_roll_back(trained, review):
    af = trained
    r = requests.get(f"{af.url}/mlops/", headers=_auth(af.viewer), timeout=30)
    assert r.status_code == 200 and ">v1<" in r.text
    assert "Approve</button>" not in r.text and "Roll back</button>" not in r.text  # read-only: no forms
    r = requests.post(f"{af.url}/mlops/api/models/{review}/versions/3/approve", json={"reason": "viewer"},
                      headers=_auth(af.viewer), timeout=30)
    assert r.status_code == 403, r.text
    r = requests.post(f"{af.url}/mlops/api/models/churn/rollback", json={"reason": "viewer", "to_version": 1},
                      headers=_auth(af.viewer), timeout=30)
    assert r.status_code == 403, r.text
    assert not [e for e in _registry(af).audit_log("churn") if e["actor"] == "viewer"]
    assert not [e for e in _registry(af).audit_log(review) if e["actor"] == "viewer"]


def test_approve_and_rollback_land_in_the_audit_log_as_the_user(trained, review):
    af = trained
    h = _auth(af.admin)
    page = requests.get(f"{af.url}/mlops/models/{review}", headers=h, timeout=30).text
    assert f"/mlops/models/{review}/versions/3/approve" in page  # pending: a review form
    assert f"/mlops/models/{review}/versions/1/approve" not in page  # no approval required: none
    r = requests.post(f"{af.url}/mlops/api/models/{review}/versions/1/approve", json={"reason": "x"}, headers=h,
                      timeout=30)
    assert r.status_code == 409 and "does not require an approval" in r.json()["detail"], r.text
    r = requests.post(f"{af.url}/mlops/api/models/{review}/versions/3/approve",
                      json={"reason": "e2e: reviewed the evaluation report"}, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["event"]["actor"] == "admin" and r.json()["approval"]["status"] == "approved"
    r = requests.post(f"{af.url}/mlops/api/models/{review}/rollback",
                      json={"alias": "champion", "to_version": 3, "reason": "never champion"}, headers=h, timeout=30)
    assert r.status_code == 409 and "never held alias" in r.json()["detail"], r.text
    r = requests.post(f"{af.url}/mlops/api/models/{review}/rollback",
                      json={"alias": "champion", "to_version": 1, "reason": "e2e: pin v1"}, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["aliases"]["champion"] == 1
    r = requests.post(f"{af.url}/mlops/api/models/{review}/versions/9/approve", json={"reason": "x"}, headers=h,
                      timeout=30)
    assert r.status_code == 404, r.text

    audit = _registry(af).audit_log(review)  # what the registry itself recorded
    approve = [e for e in audit if e["action"] == "approve"][-1]
    assert (approve["actor"], approve["version"], approve["to"]) == ("admin", 3, "approved")
    assert approve["reason"] == "e2e: reviewed the evaluation report"
    rollback = [e for e in audit if e["action"] == "rollback"][-1]
    assert (rollback["actor"], rollback["alias"], rollback["from"], rollback["to"]) == ("admin", "champion", 2, 1)
    page = requests.get(f"{af.url}/mlops/models/{review}", headers=h, timeout=30).text
    assert "e2e: pin v1" in page and "approved" in page


def test_task_extra_links_point_to_the_reports(trained):
    af = trained
    h = _auth(af.admin)
    links = {}
    for task in ("validate", "train", "promote"):
        r = requests.get(f"{af.url}/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/{task}/links", headers=h,
                         timeout=30)
        assert r.ok, r.text
        links[task] = r.json()["extra_links"]
    assert links["train"]["Evaluation report"].endswith(
        "/mlops/files/registry/churn/versions/1/reports/evaluation.html")
    assert links["train"]["Model registry"].endswith("/mlops/models/churn#churn-v1")
    assert links["validate"]["Validation report"].endswith(f"/mlops/files/validation/churn/ds={DS}/report.html")
    assert links["promote"]["Promotion decision"].endswith("/reports/promotion.html")
    for url in (links["train"]["Evaluation report"], links["validate"]["Validation report"],
                links["promote"]["Promotion decision"]):
        full = url if url.startswith("http") else af.url + url
        r = requests.get(full, headers=h, timeout=30)
        assert r.status_code == 200, (url, r.status_code)


# ------------------------------------------------------------------------------------------
# the browser: headless chromium through the Chrome DevTools protocol
# ------------------------------------------------------------------------------------------
class Chromium:
    """Headless Debian chromium with a DevTools websocket to its first page."""

    def __init__(self, user_data_dir: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={user_data_dir}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"chromium did not start (exit code {self.proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = _wait_json(f"http://127.0.0.1:{port}/json/list")
        page = next(t for t in targets if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30)
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self._id += 1
        my_id = self._id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def text(self) -> str:
        return self.eval("document.body.innerText")

    def eval(self, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return res.get("result", {}).get("value")

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        _kill_group(self.proc, grace=5)


def _wait_json(url: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=5).json()
        except (requests.RequestException, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        ensure = REPO / "scripts" / "ensure-chromium.sh"
        subprocess.run(["sh", str(ensure)], check=False, timeout=600)
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed and scripts/ensure-chromium.sh could not install it")
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:  # pragma: no cover
        pytest.skip("the websockets package is needed to drive chromium")
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        yield browser
    finally:
        browser.close()


def test_browser_renders_the_registry_with_the_airflow_cookie(trained, review, chromium):
    af = trained
    b = chromium
    b.send("Page.enable")
    b.send("Network.enable")

    # without the cookie: refused, with a way to log in
    b.navigate(f"{af.url}/mlops/")
    anonymous = b.text()
    assert "401" in anonymous and "Log in" in anonymous, anonymous[:500]

    # the `_token` cookie the Airflow UI sets after login (httpOnly, SameSite=Lax)
    ok = b.send("Network.setCookie", {"name": "_token", "value": af.admin, "url": af.url + "/",
                                      "httpOnly": True, "sameSite": "Lax"})
    assert ok.get("success", True)
    b.navigate(f"{af.url}/mlops/")
    text = b.text()
    assert "MLOps model registry" in text and "signed in as admin" in text, text[:1000]
    assert "churn" in text and re.search(r"\bv1\b", text)
    assert re.search(r"champion\s*→\s*v1", text), text[:1500]
    auc = _registry(af).get_metadata("churn", 1)["metrics"]["holdout"]["roc_auc"]
    assert f"roc_auc {auc:.4f}" in text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (ARTIFACTS / "registry.png").write_bytes(png)

    # the review form (only the pending v4 of the review model has one), submitted by the browser with the
    # cookie and the page's CSRF token; the banner after the redirect describes the audit entry
    b.eval("document.querySelector('tr.review input[name=reason]').value = 'browser: approved in the UI'")
    b.events.clear()
    b.eval("document.querySelector('tr.review button[value=approve]').click()")
    b.wait_event("Page.loadEventFired")
    after = b.text()
    ev = [e for e in _registry(af).audit_log(review) if e["action"] == "approve"][-1]
    assert (ev["actor"], ev["version"], ev["reason"]) == ("admin", 4, "browser: approved in the UI")
    assert f"Audit #{ev['seq']}: admin approved v4." in after, after[:1000]
    assert "browser: approved in the UI" in after

    # the same page inside the Airflow UI (the plugin's external view, menu Browse -> Model registry)
    b.navigate(f"{af.url}/plugin/mlops")
    probe = ("(() => { const f = document.querySelector('iframe'); if (!f) return null;"
             " try { return f.getAttribute('src') + '|' + f.contentDocument.body.innerText; }"
             " catch (e) { return 'error:' + e; } })()")
    deadline = time.monotonic() + 90
    embedded = None
    while time.monotonic() < deadline:
        embedded = b.eval(probe)
        if embedded and "MLOps model registry" in embedded:
            break
        time.sleep(1)
    assert embedded and embedded.startswith("/mlops/") and "champion" in embedded, embedded
    ui = b.send("Page.captureScreenshot", {"format": "png"})
    (ARTIFACTS / "airflow-ui.png").write_bytes(base64.b64decode(ui["data"]))
    print(f"\nscreenshots: {ARTIFACTS / 'registry.png'}, {ARTIFACTS / 'airflow-ui.png'}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v", "-s"]))



# ------------------------------------------------------------------------------------------
# backfill (runs last: it registers a second version)
# ------------------------------------------------------------------------------------------
def test_backfill_through_the_rest_api_scores_each_day_with_that_days_champion(trained):
    """``POST /api/v2/backfills`` (what ``airflow backfill create`` does) over 7 days of
    ``churn_batch_scoring``, run by the scheduler; a promotion effective on day 4 splits the days between
    the two versions, as production would have scored them."""
    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    af = trained
    h = _auth(af.admin)
    store = ArtifactStore(af.storage_uri)
    reg = _registry(af)
    days = date_range("2024-01-03", 7)
    data = Dataset.for_name(store, "churn")
    for day in days:
        data.write(day, churn_day(day, rows=800))
    v1 = reg.alias_as_of("churn", "champion", f"{days[0]}T12:00:00+00:00")
    v2 = train_and_register(load_model_config(af.configs / "churn.yaml"), store, days[2],
                            {"dag_id": "churn_training"})["version"]
    reg.set_alias("churn", "champion", v2, actor="e2e", reason="promoted on day 4",
                  effective_at=f"{days[3]}T00:00:00+00:00")
    dag_id = "churn_batch_scoring"
    r = requests.patch(f"{af.url}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=h, timeout=30)
    assert r.ok, r.text
    body = {"dag_id": dag_id, "from_date": f"{days[0]}T00:00:00Z", "to_date": f"{days[-1]}T00:00:00Z",
            "run_backwards": False, "dag_run_conf": {}, "reprocess_behavior": "none", "max_active_runs": 3}
    for _ in range(30):  # SQLite: Airflow answers 503 "Database is locked" while the scheduler writes
        r = requests.post(f"{af.url}/api/v2/backfills", headers=h, timeout=60, json=body)
        if r.status_code != 503:
            break
        time.sleep(2)
    assert r.status_code in (200, 201), r.text
    backfill_id = r.json()["id"]

    def backfill_runs() -> list[dict]:
        got = requests.get(f"{af.url}/api/v2/dags/{dag_id}/dagRuns", headers=h, timeout=30,
                           params={"run_type": "backfill", "limit": 100}).json()["dag_runs"]
        failed = [x for x in got if x["state"] == "failed"]
        if failed:
            raise AssertionError(f"backfill runs failed: {[(x['logical_date'], x['state']) for x in failed]}\n"
                                 f"{af.task_logs()}")
        return got

    def done():
        got = backfill_runs()
        return len(got) == len(days) and all(x["state"] == "success" for x in got) and got

    def progress() -> str:
        """Each backfill run's state and its task instances' states, and what the scheduler last said."""
        lines = [json.dumps(requests.get(f"{af.url}/api/v2/backfills/{backfill_id}", headers=h, timeout=30).json())]
        for run in requests.get(f"{af.url}/api/v2/dags/{dag_id}/dagRuns", headers=h, timeout=30,
                                params={"limit": 100}).json()["dag_runs"]:
            tis = requests.get(f"{af.url}/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances",
                               headers=h, timeout=30).json().get("task_instances", [])
            lines.append(f"{run['dag_run_id']} {run['run_type']} {run['state']}: "
                         + ", ".join(f"{t['task_id']}={t['state']}" for t in tis))
        return "\n".join(lines) + "\n" + af.component_log("scheduler")

    try:
        runs = _wait(f"backfill {backfill_id} of {dag_id} to succeed", done, 600, af, interval=5)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- backfill progress\n{progress()}") from None
    assert sorted(x["logical_date"][:10] for x in runs) == days
    predictions = Dataset(store, "predictions/churn")
    for i, day in enumerate(days):
        t = predictions.read_table(day).to_pandas()
        assert len(t) == 800 and t["customer_id"].is_unique
        assert set(t["model_version"]) == {v1 if i < 3 else v2}, (day, set(t["model_version"]))
        assert set(t["logical_date"]) == {day}
