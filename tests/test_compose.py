"""docker/docker-compose.yaml and docker/Dockerfile: static consistency checks (no docker needed).

The compose file is loaded the way Compose reads it: YAML with its ``<<: *anchor`` merge keys resolved
(PyYAML does that), then ``${VAR:-default}`` interpolation with an empty environment, i.e. the
defaults a plain ``docker compose -f docker/docker-compose.yaml up`` uses. One check runs the
artifact-store probe of docker/init.sh against a moto S3 server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
INIT_SCRIPT = DOCKER / "init.sh"
ENV_EXAMPLE = DOCKER / ".env.example"

# ---- loading + Compose-style interpolation ------------------------------------------------------------

_TOKEN = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?|:\+|\+)(.*))?", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR:+r}."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        e = _EXPR.fullmatch(m.group(2))
        assert e, f"unsupported interpolation ${{{m.group(2)}}}"
        name, op, arg = e.groups()
        value, is_set = env.get(name), name in env
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if is_set else arg
        if op in (":?", "?"):
            if (op == ":?" and not value) or not is_set:
                raise AssertionError(f"required variable {name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if is_set else ""  # "+"

    return _TOKEN.sub(sub, text)


def _walk(obj, fn):
    if isinstance(obj, dict):
        return {k: _walk(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk(v, fn) for v in obj]
    if isinstance(obj, str):
        return fn(obj)
    return obj


def load_compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return _walk(raw, lambda s: interpolate(s, env or {}))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(svc: dict) -> str:
    cmd = svc.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def airflow_image(compose) -> str:
    return compose["x-airflow-common"]["image"]


def airflow_services(compose) -> dict[str, dict]:
    """Every service running the Airflow (airflow-mlops) image."""
    return {n: s for n, s in compose["services"].items() if s.get("image") == airflow_image(compose)}


def by_command(services, pattern: str) -> list[str]:
    return [n for n, s in services.items() if re.search(pattern, command_of(s))]


def one_by_image(services, prefix: str) -> str:
    names = [n for n, s in services.items() if str(s.get("image", "")).startswith(prefix)]
    assert len(names) == 1, f"expected one service with image {prefix}*, got {names}"
    return names[0]


def depends_on(svc: dict) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {d: (v or {}).get("condition", "service_started") for d, v in dep.items()}


def minio_endpoint(services) -> tuple[str, int]:
    name = one_by_image(services, "minio/minio:")
    m = re.search(r"--address[ =]\"?[^:\s\"]*:(\d+)", command_of(services[name]))
    return name, int(m.group(1)) if m else 9000


def minio_init(services) -> str:
    return one_by_image(services, "minio/mc:")


# ---- services -----------------------------------------------------------------------------------------

def test_compose_has_every_component(services):
    assert one_by_image(services, "postgres:") == "postgres"
    assert one_by_image(services, "redis:") == "redis"
    assert one_by_image(services, "minio/minio:") == "minio"
    assert minio_init(services)
    for role, pattern in {
        "api-server": r"^api-server$", "scheduler": r"^scheduler$", "dag-processor": r"^dag-processor$",
        "triggerer": r"^triggerer$",
    }.items():
        found = [n for n in by_command(services, pattern) if not services[n].get("profiles")]
        assert len(found) == 1, f"{role}: expected exactly one service, got {found}"
    assert "airflow-init" in services
    assert len(workers(services)) >= 2


def workers(services) -> list[str]:
    return [n for n in by_command(services, r"^celery worker\b") if not services[n].get("profiles")]


def test_compose_workers_run_celery_worker(compose, services):
    names = workers(services)
    assert names == ["airflow-worker-1", "airflow-worker-2"]
    for n in names:
        svc = services[n]
        assert command_of(svc) == "celery worker"
        assert svc["image"] == airflow_image(compose)
        health = " ".join(svc["healthcheck"]["test"])
        assert "celery" in health and "inspect ping" in health
        assert env_of(svc)["DUMB_INIT_SETSID"] == "0"  # warm shutdown, as in the official file
        assert int(env_of(svc)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) >= 1
    hostnames = [services[n].get("hostname") for n in names]
    assert all(hostnames) and len(set(hostnames)) == len(hostnames), hostnames


def test_compose_executor_is_celery_for_all_airflow_services(compose):
    svcs = airflow_services(compose)
    assert len(svcs) >= 7
    for name, svc in svcs.items():
        assert env_of(svc).get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", name


def test_compose_airflow_services_use_the_common_anchor(compose):
    """Same image, build, user and at least the whole common environment on every Airflow service."""
    common = compose["x-airflow-common"]
    common_env = env_of(common)
    for name, svc in airflow_services(compose).items():
        assert svc.get("build") == common["build"], name
        if name != "airflow-init":  # the init runs as root, like the official file's
            assert svc.get("user") == common["user"], name
        env = env_of(svc)
        differing = {k for k, v in common_env.items() if env.get(k) != v}
        assert not differing, f"{name}: {sorted(differing)} differ from x-airflow-common"
        dags = [v for v in svc.get("volumes", []) if isinstance(v, str) and v.split(":")[1:2] == ["/opt/airflow/dags"]]
        assert dags and all(v.endswith(":ro") for v in dags), f"{name}: dags must be mounted read-only: {dags}"
    # services not on the Airflow image carry no Airflow configuration
    for name, svc in compose["services"].items():
        if name not in airflow_services(compose):
            assert not any(k.startswith("AIRFLOW") for k in env_of(svc)), name


def test_compose_depends_on_targets_exist_and_conditions_hold(services):
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is one-shot: no restart"
            # a service that is always started cannot wait for one that only starts under a profile
            if not svc.get("profiles"):
                assert not services[target].get("profiles"), f"{name} -> {target} (profile-only)"
    # no cycles
    state: dict[str, int] = {}

    def visit(n, path):
        assert state.get(n) != 1, f"depends_on cycle: {' -> '.join(path + [n])}"
        if state.get(n) == 2:
            return
        state[n] = 1
        for t in depends_on(services[n]):
            visit(t, path + [n])
        state[n] = 2

    for n in services:
        visit(n, [])


def test_compose_start_order(services):
    """init after the DB, broker and bucket; every other Airflow service after init; workers after the API."""
    init = depends_on(services["airflow-init"])
    assert init["postgres"] == init["redis"] == init["minio"] == "service_healthy"
    assert init[minio_init(services)] == "service_completed_successfully"
    assert depends_on(services[minio_init(services)])["minio"] == "service_healthy"
    for name in [*by_command(services, r"^(api-server|scheduler|dag-processor|triggerer)$"), *workers(services)]:
        assert depends_on(services[name])["airflow-init"] == "service_completed_successfully", name
    for name in workers(services):
        assert depends_on(services[name])["airflow-apiserver"] == "service_healthy", name


def test_compose_long_running_services_have_healthchecks(services):
    for name, svc in services.items():
        if svc.get("restart") == "always":
            assert "test" in svc.get("healthcheck", {}), f"{name} has no healthcheck"
    assert services["minio"]["healthcheck"]["test"]


# ---- volumes ------------------------------------------------------------------------------------------

def _volume_sources(svc: dict) -> list[tuple[str, str]]:
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((v.get("type", "volume"), str(v.get("source", ""))))
            continue
        src = v.split(":")[0]
        kind = "bind" if src.startswith((".", "/", "~")) else "volume"
        out.append((kind, src))
    return out


def test_compose_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = {src for svc in services.values() for kind, src in _volume_sources(svc) if kind == "volume" and src}
    assert used - declared == set(), f"undeclared named volumes: {used - declared}"
    assert declared - used == set(), f"declared but unused volumes: {declared - used}"
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["minio"]["volumes"])


def test_compose_bind_mounts_exist(services):
    for name, svc in services.items():
        for kind, src in _volume_sources(svc):
            if kind == "bind":
                assert (DOCKER / src).resolve().exists(), f"{name}: bind mount source {src} does not exist"
    dags = [v for v in services["airflow-scheduler"]["volumes"] if v.endswith(":/opt/airflow/dags:ro")]
    assert dags and (DOCKER / dags[0].split(":")[0]).resolve() == REPO / "dags"


# ---- storage, connection, bucket ----------------------------------------------------------------------

def storage_uri(compose) -> str:
    uris = {env_of(s).get("AIRFLOW__MLOPS__STORAGE_URI") for s in airflow_services(compose).values()}
    assert len(uris) == 1, f"AIRFLOW__MLOPS__STORAGE_URI differs between Airflow services: {uris}"
    return uris.pop()


def test_compose_storage_uri_is_shared_and_its_bucket_is_created(compose, services):
    uri = storage_uri(compose)
    parts = urlsplit(uri)
    assert parts.scheme == "s3" and parts.netloc, uri
    assert uri == "s3://mlops/artifacts"
    script = command_of(services[minio_init(services)])
    buckets = re.findall(r"mc mb (?:--\S+ )*(\w+)/([a-z0-9.-]+)", script)
    assert buckets, f"no `mc mb` in {minio_init(services)}: {script}"
    assert (re.search(r"mc alias set (\w+) ", script).group(1), parts.netloc) in buckets


def test_compose_aws_connection_points_at_minio(compose, services):
    env = env_of(compose["x-airflow-common"])
    conn_id = env.get("AIRFLOW__MLOPS__STORAGE_CONN_ID", "aws_default")
    conn = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    assert conn["conn_type"] == "aws"
    host, port = minio_endpoint(services)
    endpoint = urlsplit(conn["extra"]["endpoint_url"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", host, port)
    assert conn["extra"]["region_name"]
    minio_env = env_of(services[host])
    assert (conn["login"], conn["password"]) == (minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"])
    assert conn["login"] == "minioadmin"  # the ${MINIO_ROOT_USER:-minioadmin} default, interpolated
    # the bucket is created on the same server
    assert f"http://{host}:{port}" in command_of(services[minio_init(services)])
    assert env_of(services[minio_init(services)])["MINIO_ROOT_USER"] == minio_env["MINIO_ROOT_USER"]


def test_compose_connection_follows_env_overrides():
    env = {"MINIO_ROOT_USER": "someone", "MINIO_ROOT_PASSWORD": "s3cret-pass", "POSTGRES_PASSWORD": "pg-pass"}
    compose = load_compose(env)
    conn = json.loads(env_of(compose["x-airflow-common"])["AIRFLOW_CONN_AWS_DEFAULT"])
    assert (conn["login"], conn["password"]) == ("someone", "s3cret-pass")
    assert env_of(compose["services"]["minio"])["MINIO_ROOT_PASSWORD"] == "s3cret-pass"
    url = urlsplit(env_of(compose["x-airflow-common"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert url.password == "pg-pass" == env_of(compose["services"]["postgres"])["POSTGRES_PASSWORD"]


# ---- database, broker, execution API, secrets, auth ---------------------------------------------------

def test_compose_sql_alchemy_conn_points_at_postgres(compose, services):
    env = env_of(compose["x-airflow-common"])
    pg = env_of(services["postgres"])
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        url = urlsplit(env[key])
        assert url.scheme in ("postgresql+psycopg2", "db+postgresql", "postgresql"), key
        assert url.hostname == "postgres" and (url.port or 5432) == 5432, key
        assert (url.username, url.password, url.path.lstrip("/")) == (
            pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]), key


def test_compose_broker_url_points_at_redis(compose, services):
    url = urlsplit(env_of(compose["x-airflow-common"])["AIRFLOW__CELERY__BROKER_URL"])
    assert url.scheme == "redis" and url.hostname == "redis" and url.port == 6379
    assert "6379" in [str(p) for p in services["redis"].get("expose", [])]


def test_compose_execution_api_points_at_the_api_server(compose, services):
    (api,) = by_command(services, r"^api-server$")
    url = urlsplit(env_of(compose["x-airflow-common"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == api and url.path.rstrip("/") == "/execution"
    container_ports = {int(p.rsplit(":", 1)[1]) for p in services[api]["ports"]}
    assert url.port in container_ports
    assert f"localhost:{url.port}" in " ".join(services[api]["healthcheck"]["test"])


def test_compose_shared_secrets(compose):
    from cryptography.fernet import Fernet

    svcs = airflow_services(compose)
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        values = {env_of(s).get(key) for s in svcs.values()}
        assert len(values) == 1 and all(values), f"{key} must be set and identical on every Airflow service"
    Fernet(env_of(compose["x-airflow-common"])["AIRFLOW__CORE__FERNET_KEY"])  # a valid key


def test_compose_simple_auth_manager_admin(compose, services):
    env = env_of(compose["x-airflow-common"])
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("simple_auth_manager.SimpleAuthManager")
    users = dict(u.split(":")[:2] for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    init_env = env_of(services["airflow-init"])
    assert users[init_env["_AIRFLOW_WWW_USER_USERNAME"]] == "admin"
    assert init_env["_AIRFLOW_WWW_USER_PASSWORD"]
    # the password file lives on a volume that both airflow-init (writer) and the API server (reader) mount
    pw_dir = os.path.dirname(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    (api,) = by_command(services, r"^api-server$")
    mounts = {n: {v.split(":")[0] for v in services[n]["volumes"] if v.split(":")[1] == pw_dir}
              for n in ("airflow-init", api)}
    assert mounts["airflow-init"] and mounts["airflow-init"] == mounts[api], mounts


# ---- ports, images --------------------------------------------------------------------------------------

def _host_ports(svc: dict) -> list[tuple[str, int]]:
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((str(p.get("host_ip", "0.0.0.0")), int(p["published"])))
            continue
        parts = str(p).split(":")
        if len(parts) == 1:
            continue  # container port only: random host port
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((ip, int(parts[-2])))
    return out


def test_compose_host_ports_do_not_collide(services):
    ports = Counter(port for svc in services.values() for _, port in _host_ports(svc))
    assert ports, "no published ports"
    assert [p for p, n in ports.items() if n > 1] == []
    assert 8080 in ports and 9000 in ports and 9001 in ports


def test_compose_images_are_pinned(compose, services):
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7.2-bookworm"
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", services["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", services[minio_init(services)]["image"])


# ---- Dockerfile ---------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def test_compose_dockerfile_from_official_airflow_3_and_installs_the_project(compose):
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    build = compose["x-airflow-common"]["build"]
    assert (DOCKER / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE

    ins = dockerfile_instructions()
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) == 1
    m = re.fullmatch(r"apache/airflow:(3\.\d+\.\d+)-python(3\.\d+)", froms[0])
    assert m, froms[0]
    airflow_version, python_version = Version(m.group(1)), Version(m.group(2))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert python_version in SpecifierSet(pyproject["requires-python"])
    airflow_req = next(d for d in pyproject["dependencies"] if re.match(r"apache-airflow\s*[<>=!~]", d))
    assert airflow_version in SpecifierSet(airflow_req.removeprefix("apache-airflow").strip())

    user = None
    installed = copied_dags = False
    copied: dict[str, str] = {}
    for op, args in ins:
        if op == "USER":
            user = args
        elif op == "COPY":
            parts = [a for a in args.split() if not a.startswith("--")]
            for src in parts[:-1]:
                assert (REPO / src).exists(), f"COPY source {src} does not exist"
                copied[src.rstrip("/")] = parts[-1]
            if parts[:-1] == ["dags/"] and parts[-1].rstrip("/") == "/opt/airflow/dags":
                copied_dags = True
            assert "--chown=airflow:0" in args or "--chown=airflow:root" in args, args
        elif op == "RUN" and "pip install" in args:
            assert user == "airflow", "pip must run as the airflow user (official image convention)"
            assert "--no-cache-dir" in args and "/opt/airflow-mlops" in args
            assert '"apache-airflow==${AIRFLOW_VERSION}"' in args  # never up/downgrade the image's Airflow
            assert {"pyproject.toml", "README.md", "airflow_mlops"} <= set(copied), copied
            installed = True
    assert installed and copied_dags
    assert user == "airflow", "the image must end as the airflow user"


# ---- init script --------------------------------------------------------------------------------------

def test_compose_init_script_is_mounted_and_valid(services):
    init = services["airflow-init"]
    assert init["user"] == "0:0"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    script_in_container = command_of(init).split()[-1]
    assert (DOCKER / mounts[script_in_container]).resolve() == INIT_SCRIPT
    text = INIT_SCRIPT.read_text()
    assert "airflow db migrate" in text and "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in text
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", str(INIT_SCRIPT)], check=True)


def storage_check_source() -> str:
    m = re.search(r"# --- STORAGE_CHECK begin ---\n(.*?)# --- STORAGE_CHECK end ---", INIT_SCRIPT.read_text(), re.S)
    assert m, "STORAGE_CHECK markers missing in docker/init.sh"
    return m.group(1)


def _run_storage_check(root: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRFLOW__MLOPS__STORAGE_URI": root, "AIRFLOW__MLOPS__STORAGE_CONN_ID": "aws_default"}
    return subprocess.run([sys.executable, "-c", storage_check_source()], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.s3
def test_compose_init_storage_check_against_s3(moto_server):
    bucket = f"mlops-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    ok = _run_storage_check(f"s3://{bucket}/artifacts")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "OK: read/write, exclusive create, compare-and-swap" in ok.stdout
    assert moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # the probe is removed

    missing = _run_storage_check(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/artifacts")
    assert missing.returncode != 0
    assert "is not usable" in missing.stderr and "does not exist" in missing.stderr


# ---- docker/.env.example --------------------------------------------------------------------------------

def _compose_defaults() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"\$\{([A-Za-z_]\w*):-([^}]*)\}", COMPOSE_FILE.read_text())}


def test_compose_env_example_matches_the_compose_defaults():
    defaults = _compose_defaults()
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            example[k.strip()] = v.strip()
    assert set(example) == set(defaults), (set(example) ^ set(defaults))
    for k, v in example.items():
        assert v in ("", defaults[k]), f"{k}={v} in .env.example, default {defaults[k]} in the compose file"
    # an .env copied from the example leaves every value at its default (empty means default with :-)
    assert load_compose(example) == load_compose()
