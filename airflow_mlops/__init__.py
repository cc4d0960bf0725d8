"""airflow-mlops: an Apache Airflow provider for the closed MLOps loop.

validate -> train -> register -> gated promotion -> score -> monitor drift -> retrain,
with an embedded default (local files + SQLite Airflow) and ``s3://`` for production.

Importing this package is cheap: heavy libraries (pandas, sklearn, great_expectations,
evidently) are imported lazily inside the functions that need them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info", "lazy_exports"]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-mlops",
        "name": "MLOps",
        "description": "The closed ML loop for Apache Airflow: data validation, training, model registry, "
        "gated promotion, batch inference, drift and performance monitoring, drift-triggered retraining.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "MLOps", "external-doc-url": "https://example.invalid/airflow-mlops",
             "tags": ["software"]},
        ],
        "hooks": [
            {"integration-name": "MLOps", "python-modules": [
                "airflow_mlops.hooks.storage", "airflow_mlops.hooks.registry"]},
        ],
        "operators": [
            {"integration-name": "MLOps", "python-modules": [
                "airflow_mlops.operators.validation", "airflow_mlops.operators.training",
                "airflow_mlops.operators.registry", "airflow_mlops.operators.inference",
                "airflow_mlops.operators.monitoring", "airflow_mlops.operators.data_quality",
                "airflow_mlops.operators.reproduce", "airflow_mlops.operators.example_data"]},
        ],
        "notifications": [
            "airflow_mlops.notifications.webhook.MLOpsWebhookNotifier",
            "airflow_mlops.notifications.mlops.MLOpsAlertNotifier",
        ],
        "sensors": [
            {"integration-name": "MLOps", "python-modules": [
                "airflow_mlops.sensors.data", "airflow_mlops.sensors.drift", "airflow_mlops.sensors.registry"]},
        ],
        "triggers": [
            {"integration-name": "MLOps",
             "python-modules": ["airflow_mlops.triggers.storage", "airflow_mlops.triggers.registry"]},
        ],
        "asset-uris": [{"schemes": ["mlops"], "handler": None}],
        "extra-links": [
            "airflow_mlops.links.ValidationReportLink", "airflow_mlops.links.EvaluationReportLink",
            "airflow_mlops.links.PromotionReportLink", "airflow_mlops.links.DriftReportLink",
            "airflow_mlops.links.ModelRegistryLink", "airflow_mlops.links.MLOpsReportLink",
            "airflow_mlops.links.ModelCardLink",
        ],
        "connection-types": [
            {"connection-type": "mlops_storage", "hook-class-name": "airflow_mlops.hooks.storage.ArtifactStoreHook",
             "hook-name": "MLOps artifact store"},
        ],
        "config": {
            "mlops": {
                "description": "Settings of the airflow-mlops provider.",
                "options": {
                    "storage_uri": {
                        "description": "Root URI of the artifact store (datasets, registry, reports). "
                        "file:///path for the embedded default, s3://bucket/prefix for production. "
                        "Empty means file://$AIRFLOW_HOME/mlops.",
                        "version_added": "0.1.0", "type": "string", "example": "s3://ml-artifacts/mlops",
                        "default": "",
                    },
                    "storage_conn_id": {
                        "description": "Airflow AWS connection used for s3:// storage.",
                        "version_added": "0.1.0", "type": "string", "example": "aws_default",
                        "default": "aws_default",
                    },
                    "signing_conn_id": {
                        "description": "Airflow connection holding the registry signing key (password; extra "
                        "previous_keys lists keys that still verify during a rotation). Empty: the key file "
                        "signing_key_file. See docs/security.md.",
                        "version_added": "0.2.0", "type": "string", "example": "mlops_signing", "default": "",
                    },
                    "signing_key_file": {
                        "description": "Key file of the embedded default (first line the current key, further "
                        "lines previous keys; created with mode 0600 on first use; must be outside the store). "
                        "Empty means $AIRFLOW_HOME/mlops-signing.key.",
                        "version_added": "0.2.0", "type": "string", "example": "/etc/airflow/mlops-signing.key",
                        "default": "",
                    },
                    "mlflow_conn_id": {
                        "description": "Airflow connection of a team's MLflow tracking server (host with its scheme, "
                        "port; login/password for basic auth). When it exists, every registered training version "
                        "is logged there as a run. See docs/mlflow.md.",
                        "version_added": "0.3.0", "type": "string", "example": "mlflow_default",
                        "default": "mlflow_default",
                    },
                    "mlflow_strict": {
                        "description": "Fail the training task when MLflow cannot be written (default: one warning, "
                        "the version stays registered and the run is recorded as pending).",
                        "version_added": "0.3.0", "type": "boolean", "example": "False", "default": "False",
                    },
                    "allow_unsigned_versions": {
                        "description": "Load model versions and registry state written before signatures existed "
                        "(each load logs a warning). Prefer signing them once: python -m airflow_mlops.cli sign "
                        "<model> --adopt-unsigned --as <you> --reason ...",
                        "version_added": "0.2.0", "type": "boolean", "example": "True", "default": "False",
                    },
                },
            }
        },
    }


def lazy_exports(package: str, modules: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a subpackage whose public names (``modules``: name -> defining module)
    load on first access, so importing the subpackage imports none of its modules."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = getattr(importlib.import_module(modules[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *modules})

    return __getattr__, __dir__
