# The two commands of the README: `make demo` and `make test`. Each creates .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo demo-mlflow test lint clean standalone scale-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv
	@# --compile-bytecode: every Airflow task is a fresh interpreter; without .pyc files each one recompiles Airflow.
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -e ".[dev]"
	@touch $@

demo: install
	$(PY) -m airflow_mlops.demo

# The demo with a local MLflow server (its own environment, created once under ~/.cache/airflow-mlops):
# every version is an MLflow run, the aliases follow ours; MLflow's champion is checked against the registry's.
demo-mlflow: install
	$(PY) -m airflow_mlops.demo --mlflow

test: install lint
	@sh scripts/ensure-chromium.sh || echo "chromium unavailable: the browser test will be skipped"
	$(PY) -m pytest tests $(PYTEST_ARGS)

# ruff (lint + import order) and mypy (config in pyproject.toml); the import layering is a test
# (tests/architecture/test_layering.py), also run here first because it is instant.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --python-executable $(PY)
	$(PY) -m pytest -q -p no:cacheprovider tests/architecture

# CeleryExecutor with two workers on this machine (Postgres, Redis, moto S3): see docs/deploy.md.
scale-demo: install
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -e ".[dev,celery]"
	$(PY) scripts/celery_multiworker.py $(SCALE_ARGS)

clean:
	rm -rf .demo build dist *.egg-info

# Airflow UI + API server, scheduler, dag-processor and triggerer on the demo's home (or $AIRFLOW_HOME).
# Every request is an admin (simple auth manager, all-admins mode): the API server listens on HOST, this
# machine only by default. HOST=0.0.0.0 exposes an unauthenticated admin server to the network (docs/ui.md).
PORT ?= 8080
HOST ?= 127.0.0.1
standalone: install
	AIRFLOW_HOME=$${AIRFLOW_HOME:-$(CURDIR)/.demo/airflow} \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=$(HOST) AIRFLOW__API__PORT=$(PORT) AIRFLOW__API__BASE_URL=http://localhost:$(PORT) \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
	$(VENV)/bin/airflow standalone
