#!/usr/bin/env bash
# airflow-init of docker/docker-compose.yaml: runs once, as root, before the other Airflow services start.
#
#   1. volume ownership: the shared logs and auth volumes belong to ${AIRFLOW_UID}:0;
#   2. metadata DB: `airflow db migrate` (the image's /entrypoint first waits for Postgres);
#   3. admin user: SimpleAuthManager (Airflow 3's default) reads passwords from
#      [core] simple_auth_manager_passwords_file; this writes it from _AIRFLOW_WWW_USER_USERNAME/PASSWORD
#      (the user/role list itself is [core] simple_auth_manager_users, set in the compose file);
#   4. artifact store: with the Airflow connection [mlops] storage_conn_id, writes, reads and deletes a
#      probe under [mlops] storage_uri and checks the conditional writes the model registry relies on
#      (exclusive create = If-None-Match: *, compare-and-swap = If-Match). A wrong endpoint, missing
#      bucket, bad credentials or an S3 server without conditional writes fails here, not in a task.
set -euo pipefail

# Defaults for running it outside the compose file (which sets all of them); exported for python below.
export AIRFLOW_UID="${AIRFLOW_UID:-50000}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-/opt/airflow/auth/simple_auth_manager_passwords.json}"
export _AIRFLOW_WWW_USER_USERNAME="${_AIRFLOW_WWW_USER_USERNAME:-airflow}"
export _AIRFLOW_WWW_USER_PASSWORD="${_AIRFLOW_WWW_USER_PASSWORD:-airflow}"

if [[ "${AIRFLOW_UID}" == "0" ]]; then
  echo "WARNING: AIRFLOW_UID=0; the Airflow services will run as root. Set AIRFLOW_UID=\$(id -u) in docker/.env." >&2
fi

echo "== 1/4 volumes: ownership ${AIRFLOW_UID}:0"
auth_dir="$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")"
mkdir -p /opt/airflow/logs "${auth_dir}"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs "${auth_dir}"
chmod 0770 "${auth_dir}"

echo "== 2/4 metadata database: airflow db migrate"
/entrypoint airflow version
/entrypoint airflow db migrate

echo "== 3/4 admin user '${_AIRFLOW_WWW_USER_USERNAME}' (SimpleAuthManager)"
# json.dumps: a password may contain any character. Rewritten on every start, so changing
# _AIRFLOW_WWW_USER_PASSWORD in docker/.env and re-running `up` changes the password.
python - "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}" <<'PY'
import json, os, sys
user, password = os.environ["_AIRFLOW_WWW_USER_USERNAME"], os.environ["_AIRFLOW_WWW_USER_PASSWORD"]
if not user or not password:
    sys.exit("_AIRFLOW_WWW_USER_USERNAME and _AIRFLOW_WWW_USER_PASSWORD must not be empty")
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({user: password}) + "\n")
PY
chown "${AIRFLOW_UID}:0" "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"
chmod 0600 "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"

echo "== 4/4 artifact store ${AIRFLOW__MLOPS__STORAGE_URI:-<unset>} via connection ${AIRFLOW__MLOPS__STORAGE_CONN_ID:-aws_default}"
# tests/test_compose.py runs this snippet (between the STORAGE_CHECK markers) against a moto S3 server.
STORAGE_CHECK=$(cat <<'PY'
# --- STORAGE_CHECK begin ---
import os, sys, uuid

from airflow_mlops.store.artifacts import (
    ArtifactExistsError, ArtifactStore, PreconditionFailedError, StorageError,
)

root = os.environ.get("AIRFLOW__MLOPS__STORAGE_URI", "")
if not root:
    sys.exit("AIRFLOW__MLOPS__STORAGE_URI is not set")
store = ArtifactStore(root)
key = f"_healthcheck/airflow-init-{uuid.uuid4().hex}"
try:
    store.create_bytes(key, b"1")
    if store.read_bytes(key) != b"1":
        sys.exit(f"{store.uri(key)}: read back something else than was written")
    try:
        store.create_bytes(key, b"2")
    except ArtifactExistsError:
        pass
    else:
        sys.exit(f"{root}: the server ignored If-None-Match: * (exclusive create); "
                 "the model registry needs S3 conditional writes")
    _, etag = store.read_versioned(key)
    store.write_bytes_if_match(key, b"3", etag)
    try:
        store.write_bytes_if_match(key, b"4", etag)  # etag is stale now
    except PreconditionFailedError:
        pass
    else:
        sys.exit(f"{root}: the server ignored If-Match (compare-and-swap); "
                 "the model registry needs S3 conditional writes")
    store.delete([key])
except StorageError as e:
    sys.exit(f"artifact store {root} is not usable: {e}")
print(f"artifact store {store.uri()} OK: read/write, exclusive create, compare-and-swap")
# --- STORAGE_CHECK end ---
PY
)
# /entrypoint puts the airflow user's site-packages on PYTHONPATH for root.
/entrypoint python -c "${STORAGE_CHECK}"

echo "airflow-init done"
