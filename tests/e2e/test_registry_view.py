"""The ``mlops`` plugin's FastAPI app in-process (no Airflow server): report serving rules, integrity checks,
authorization, CSRF, actions and the extra links' URLs. Airflow's ``get_user`` dependency is replaced by a
test user taken from the ``X-Test-User: name:role`` header and the auth-manager call by a role table; the
real dependency and the simple auth manager are exercised by test_standalone.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi import FastAPI, HTTPException, Request

from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore

DS = "2024-01-02"


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = "file://" + str(tmp_path / "store")
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_URI", root)
    store = ArtifactStore(root)
    reg = ModelRegistry(store)
    meta = {"primary_metric": "roc_auc",
            "metrics": {"holdout": {"roc_auc": 0.8125, "accuracy": 0.75}, "baseline": {"roc_auc": 0.5},
                        "cv": {"roc_auc": {"mean": 0.81, "std": 0.01}}},
            "training_data": {"uri": root + "/data/churn", "partitions": ["2023-12-27", DS], "window_end": DS,
                              "fingerprint": {"rows": 10500, "content_hash": "ab" * 32, "schema_hash": "cd" * 32}},
            "estimator": "sklearn.linear_model.LogisticRegression"}
    for _ in range(2):
        mv = reg.register("churn", {"weights": [1.0, 2.0]}, metadata=meta, actor="trainer",
                          artifacts={"reports/evaluation.html": b"<html><body>evaluation</body></html>"})
        reg.add_report("churn", mv.version, "promotion.html", b"<html>promotion</html>")
    reg.set_alias("churn", "champion", 1, actor="trainer", reason="first")
    reg.set_alias("churn", "champion", 2, actor="trainer", reason="better")
    # v3 awaits a required approval (the only version with review forms); it never held an alias
    reg.register("churn", {"weights": [3.0]}, metadata=meta, actor="trainer", require_approval=True,
                 artifacts={"reports/evaluation.html": b"<html><body>evaluation v3</body></html>"})
    store.write_bytes(f"validation/churn/ds={DS}/report.html", b"<html>validation</html>")
    store.write_bytes(f"monitoring/churn/ds={DS}/drift.html", b"<html>drift</html>")
    store.write_json(f"monitoring/churn/ds={DS}/drift.json", {"version": 2, "share_drifted": 0.5, "threshold": 0.5,
                                                              "dataset_drift": True})
    store.write_bytes("registry/churn/versions/1/secret.txt", b"not a report")
    return store


ROLES = {"viewer": {"GET"}, "admin": {"GET", "PUT"}, "trainer": {"GET", "PUT"}, "outsider": set()}


@pytest.fixture
def client(store, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_mlops.plugins import registry_view as rv

    rv._registries.clear()
    monkeypatch.setattr(rv, "is_authorized", lambda user, model, method: method in ROLES.get(user.role, set()))

    def fake_user(request: Request):
        who = request.headers.get("X-Test-User")
        if not who:
            raise HTTPException(401, "Not authenticated")
        name, _, role = who.partition(":")
        return SimpleAuthManagerUser(username=name, role=role or name)

    sub = rv.create_app()
    sub.dependency_overrides[get_user] = fake_user
    root = FastAPI()
    root.mount("/mlops", sub)
    c = TestClient(root)
    c.rv = rv
    c.user = lambda name: SimpleAuthManagerUser(username=name, role=name)
    yield c
    rv._registries.clear()


def as_(user: str, bearer: bool = True) -> dict[str, str]:
    h = {"X-Test-User": user}
    if bearer:
        h["Authorization"] = "Bearer test"
    return h


def test_page_shows_versions_metrics_aliases_reports(client):
    r = client.get("/mlops/", headers=as_("admin"))
    assert r.status_code == 200
    page = r.text
    assert "champion → v2" in page and ">v1<" in page and ">v2<" in page and ">v3<" in page
    assert "0.8125" in page and "10500 rows" in page and "abababababababab" in page
    assert "/mlops/files/registry/churn/versions/1/reports/evaluation.html" in page
    assert f"/mlops/files/validation/churn/ds={DS}/report.html" in page
    assert f"/mlops/files/monitoring/churn/ds={DS}/drift.html" in page
    assert page.count('class="chip sig-verified"') == 3 and "✔ sha256" in page
    # review forms only for the pending version; rollback offers only former champions
    assert page.count("Approve</button>") == 1 and "/mlops/models/churn/versions/3/approve" in page
    assert "/versions/1/approve" not in page and "/versions/2/approve" not in page
    assert "Roll back</button>" in page
    options = page[page.index('name="to_version"'):]
    options = options[:options.index("</select>")]
    assert '<option value="1">v1</option>' in options and 'value="3"' not in options and 'value="2"' not in options
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'self'" in csp
    viewer = client.get("/mlops/models/churn", headers=as_("viewer")).text
    assert ">v2<" in viewer and "Approve</button>" not in viewer and "Roll back</button>" not in viewer


def test_json_api(client):
    models = client.get("/mlops/api/models", headers=as_("viewer")).json()["models"]
    assert models == [{"name": "churn", "versions": [1, 2, 3], "latest_version": 3, "aliases": {"champion": 2},
                       "champion": 2}]
    m = client.get("/mlops/api/models/churn", headers=as_("viewer")).json()
    v3, v2, v1 = m["versions"]
    assert v3["approval"]["status"] == "pending" and v3["reviewable"] is True
    assert v2["approval"]["status"] == "not_required" and v2["reviewable"] is False
    assert v2["signature"]["status"] == "verified" and v2["signature"]["key_id"]
    assert m["rollback_targets"] == {"champion": [1]}
    assert v2["aliases"] == ["champion"] and v1["aliases"] == []
    assert v2["primary"] == {"holdout": 0.8125, "baseline": 0.5, "cv_mean": 0.81, "cv_std": 0.01}
    assert v2["data"]["rows"] == 10500 and v2["data"]["content_hash"] == "ab" * 32
    reports = {r["name"]: r for r in v2["reports"]}
    assert reports["evaluation.html"]["verified"] is True and reports["promotion.html"]["verified"] is False
    assert f"drift ds={DS}" in reports and f"validation ds={DS}" in reports
    assert m["drift_reports"][0]["version"] == 2
    assert [e["action"] for e in m["audit"]] == ["register", "register", "set_alias", "set_alias", "register"]
    assert client.get("/mlops/api/models/nope", headers=as_("admin")).status_code == 404
    assert client.get("/mlops/api/models/..%2Fregistry", headers=as_("admin")).status_code == 404
    assert client.get("/mlops/models/_lineage", headers=as_("admin")).status_code == 404


def test_registry_artifacts_are_hash_verified(client, store):
    url = "/mlops/files/registry/churn/versions/1/reports/evaluation.html"
    r = client.get(url, headers=as_("viewer"))
    assert r.status_code == 200 and r.text == "<html><body>evaluation</body></html>"
    assert r.headers["x-mlops-integrity"].startswith("sha256-verified ")
    assert r.headers["content-security-policy"].startswith("sandbox")
    with open(store.local_path("registry/churn/versions/1/reports/evaluation.html"), "wb") as f:
        f.write(b"<html><script>tampered</script></html>")
    r = client.get(url, headers=as_("viewer"))
    assert r.status_code == 409 and "<script>" not in r.text
    assert "hash mismatch" in r.json()["detail"]
    r = client.get("/mlops/files/registry/churn/versions/1/reports/promotion.html", headers=as_("viewer"))
    assert r.status_code == 200 and r.headers["x-mlops-integrity"].startswith("unverified")


@pytest.mark.parametrize("key", [
    "registry/churn/versions/1/secret.txt",
    "registry/churn/versions/1/model.skops",
    "registry/churn/versions/1/metadata.json",
    "registry/churn/state.json",
    "data/churn/ds=2024-01-02/part.parquet",
    "validation/churn/ds=2024-01-02/..%2F..%2F..%2Fregistry%2Fchurn%2Fstate.json",
    "%2E%2E/%2E%2E/etc/passwd",
    "%2Fetc%2Fpasswd",
    "validation/churn/ds=2024-01-02/report.html%00.txt",
    "registry/churn/versions/1/reports/%5C..%5Cmetadata.json",
])
def test_only_report_keys_inside_the_store_are_served(client, key):
    r = client.get(f"/mlops/files/{key}", headers=as_("admin"))
    assert r.status_code == 404, (key, r.status_code, r.text[:200])
    assert "aliases" not in r.text and "root:" not in r.text


def test_symlinks_are_never_followed(client, store, tmp_path):
    outside = tmp_path / "outside.html"
    outside.write_text("<html>outside the store</html>")
    link = store.local_path("validation/churn/ds=2024-01-03/report.html")
    os.makedirs(os.path.dirname(link))
    os.symlink(outside, link)
    r = client.get("/mlops/files/validation/churn/ds=2024-01-03/report.html", headers=as_("admin"))
    assert r.status_code == 404 and "outside the store" not in r.text
    assert "is a symbolic link" in r.json()["detail"]
    # inside the store too: a report that links to the model file is not served
    inside = store.local_path(f"validation/churn/ds={DS}/result.json")
    os.symlink(store.local_path("registry/churn/versions/1/model.skops"), inside)
    r = client.get(f"/mlops/files/validation/churn/ds={DS}/result.json", headers=as_("admin"))
    assert r.status_code == 404 and "is a symbolic link" in r.json()["detail"]


def test_authentication_and_authorization(client):
    assert client.get("/mlops/api/models").status_code == 401
    html = client.get("/mlops/", headers={"Accept": "text/html"})
    assert html.status_code == 401 and html.headers["content-type"].startswith("text/html") and "401" in html.text
    assert client.get("/mlops/api/models", headers=as_("outsider")).json()["models"] == []
    assert client.get("/mlops/api/models/churn", headers=as_("outsider")).status_code == 403
    assert client.get("/mlops/files/registry/churn/versions/1/reports/evaluation.html",
                      headers=as_("outsider")).status_code == 403
    r = client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "x"}, headers=as_("viewer"))
    assert r.status_code == 403
    r = client.post("/mlops/api/models/churn/rollback", json={"reason": "x"}, headers=as_("viewer"))
    assert r.status_code == 403


def test_approve_rollback_and_their_audit_entries(client, store):
    r = client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "self"}, headers=as_("trainer"))
    assert r.status_code == 409 and "may not approve" in r.json()["detail"]  # four eyes
    r = client.post("/mlops/api/models/churn/versions/1/approve", json={"reason": "x", "status": "rejected"},
                    headers=as_("admin"))
    assert r.status_code == 409 and "does not require an approval" in r.json()["detail"]
    r = client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "ok", "status": "rejected"},
                    headers=as_("admin"))
    assert r.status_code == 200 and r.json()["approval"]["status"] == "rejected"
    r = client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": ""}, headers=as_("admin"))
    assert r.status_code == 422
    r = client.post("/mlops/api/models/churn/rollback", json={"reason": "x", "to_version": 3}, headers=as_("admin"))
    assert r.status_code == 409 and "never held alias" in r.json()["detail"]
    r = client.post("/mlops/api/models/churn/rollback", json={"reason": "bad v2"}, headers=as_("admin"))
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 1}
    assert r.json()["event"]["from"] == 2 and r.json()["event"]["to"] == 1
    r = client.post("/mlops/api/models/churn/rollback", json={"reason": "x", "to_version": 7}, headers=as_("admin"))
    assert r.status_code == 404
    r = client.post("/mlops/api/models/churn/rollback", json={"reason": "x", "alias": "nope"}, headers=as_("admin"))
    assert r.status_code == 404
    audit = ModelRegistry(store).audit_log("churn")
    assert [(e["actor"], e["action"]) for e in audit[-2:]] == [("admin", "rejected"), ("admin", "rollback")]


def test_cookie_authenticated_forms_need_the_csrf_token(client, store):
    url = "/mlops/models/churn/versions/3/approve"
    r = client.post(url, data={"reason": "no token"}, headers=as_("admin", bearer=False), follow_redirects=False)
    assert r.status_code == 403 and "CSRF token" in r.json()["detail"]
    r = client.post(url, data={"reason": "wrong", "csrf_token": "0" * 40}, headers=as_("admin", bearer=False),
                    follow_redirects=False)
    assert r.status_code == 403
    token = client.rv.csrf_token(client.user("admin"))
    assert token in client.get("/mlops/", headers=as_("admin", bearer=False)).text
    assert client.get("/mlops/api/csrf", headers=as_("admin", bearer=False)).json()["csrf_token"] == token
    r = client.post("/mlops/api/models/churn/versions/3/approve", json={"reason": "api with the cookie"},
                    headers=as_("admin", bearer=False))
    assert r.status_code == 403
    r = client.post(url, data={"reason": "looks good", "decision": "approve", "csrf_token": token},
                    headers=as_("admin", bearer=False), follow_redirects=False)
    seq = ModelRegistry(store).audit_log("churn")[-1]["seq"]
    assert r.status_code == 303 and r.headers["location"] == f"/mlops/models/churn?done={seq}"
    page = client.get(r.headers["location"], headers=as_("admin", bearer=False)).text
    assert f'<div class="banner ok" id="message">Audit #{seq}: admin approved v3.</div>' in page
    assert "Approve</button>" not in page  # decided: no review form any more
    r = client.post("/mlops/models/churn/rollback", data={"reason": "", "csrf_token": token},
                    headers=as_("admin", bearer=False), follow_redirects=False)
    assert r.status_code == 400 and "Give a reason: it goes to the audit log." in r.text
    r = client.post("/mlops/models/churn/rollback", data={"reason": "pin", "to_version": "1", "csrf_token": token},
                    headers=as_("admin", bearer=False), follow_redirects=False)
    assert r.status_code == 303 and "?done=" in r.headers["location"]
    page = client.get(r.headers["location"], headers=as_("admin", bearer=False)).text
    assert "rolled champion back from v2 to v1." in page
    r = client.post(url, data={"reason": "x" * 3000, "csrf_token": token}, headers=as_("admin", bearer=False),
                    follow_redirects=False)
    assert r.status_code == 400 and "The reason must be 1 to 2000 characters." in r.text  # a message, not a 500
    r = client.post("/mlops/models/churn/versions/1/approve", data={"reason": "x", "csrf_token": token},
                    headers=as_("admin", bearer=False), follow_redirects=False)
    assert r.status_code == 409 and "The registry refused the action:" in r.text
    assert "does not require an approval" in r.text
    assert client.rv.csrf_token(client.user("viewer")) != token
    audit = ModelRegistry(store).audit_log("churn")
    assert [(e["actor"], e["action"], e["reason"]) for e in audit[-2:]] == [
        ("admin", "approve", "looks good"), ("admin", "rollback", "pin")]


def test_extra_link_urls(store, monkeypatch):
    from airflow_mlops import links

    root = store.root
    assert links.report_url(root + "/registry/churn/versions/1/reports/evaluation.html") == \
        "/mlops/files/registry/churn/versions/1/reports/evaluation.html"
    assert links.report_url(root + f"/validation/churn/ds={DS}/report.html") == \
        f"/mlops/files/validation/churn/ds={DS}/report.html"
    assert links.report_url(root + "/registry/churn/versions/1/model.skops") == ""  # not a report
    assert links.report_url("file:///elsewhere/validation/churn/ds=2024-01-02/report.html") == ""  # other store
    assert links.report_url(None) == ""
    assert links.registry_url("churn", 2) == "/mlops/models/churn#churn-v2"

    summaries = {"train": {"model": "churn", "version": 1,
                           "evaluation_report": root + "/registry/churn/versions/1/reports/evaluation.html"},
                 "validate": {"report_uri": root + f"/validation/churn/ds={DS}/report.html"},
                 "promote": {"model": "churn", "version": 1, "alias": "champion"}}
    monkeypatch.setattr(links, "task_summary", lambda ti_key: summaries.get(ti_key.task_id, {}))

    class Key:
        def __init__(self, task_id):
            self.task_id = task_id

    assert links.EvaluationReportLink().get_link(None, ti_key=Key("train")).endswith("/reports/evaluation.html")
    assert links.ValidationReportLink().get_link(None, ti_key=Key("validate")).endswith("/report.html")
    assert links.PromotionReportLink().get_link(None, ti_key=Key("promote")) == \
        "/mlops/files/registry/churn/versions/1/reports/promotion.html"
    assert links.ModelRegistryLink().get_link(None, ti_key=Key("promote")) == "/mlops/models/churn#churn-v1"
    assert links.DriftReportLink().get_link(None, ti_key=Key("other")) == ""

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert links.registry_url("churn") == "https://airflow.example.com/mlops/models/churn"


def test_plugin_import_is_cheap_and_attaches_links():
    code = ("import sys, airflow_mlops.plugins as p\n"
            "assert 'fastapi' not in sys.modules and 'airflow_mlops.operators' not in sys.modules, 'eager import'\n"
            "assert p.MLOpsPlugin.name == 'mlops' and p.MLOpsPlugin.external_views[0]['href'] == '/mlops/'\n"
            "links = {l.name: sorted(o.__name__ for o in l.operators) for l in p.MLOpsPlugin.operator_extra_links}\n"
            "assert links['Evaluation report'] == ['RegisterExternalModelOperator', 'TrainModelOperator'], links\n"
            "assert links['Validation report'] == ['DataValidationOperator'], links\n"
            "assert 'PromoteModelOperator' in links['Promotion decision'], links\n"
            "app = p.MLOpsPlugin.fastapi_apps[0]\n"
            "assert app['url_prefix'] == '/mlops' and type(app['app']).__name__ == 'FastAPI'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_signature_status_per_version(client, store):
    path = store.local_path("registry/churn/versions/1/metadata.json")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b'"roc_auc": 0.8125', b'"roc_auc": 0.9999'))
    m = client.get("/mlops/api/models/churn", headers=as_("viewer")).json()
    sig = {v["version"]: v["signature"] for v in m["versions"]}
    assert sig[2]["status"] == sig[3]["status"] == "verified"
    assert sig[1]["status"] == "invalid" and sig[1]["detail"]
    page = client.get("/mlops/models/churn", headers=as_("admin")).text
    assert page.count('class="chip sig-verified"') == 2 and page.count('class="chip sig-invalid"') == 1
    assert "0.9999" not in page  # the tampered metadata is not shown as if it were valid
