"""Experiment tracking in a team's MLflow tracking server (:mod:`airflow_mlops.tracking.mlflow`)."""
