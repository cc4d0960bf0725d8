"""Module paths of earlier releases that stored models still name.

A skops model file records the full path of every function inside its pipeline. Models registered before the
capability packages existed name ``airflow_mlops.ml.training.categorical_as_strings`` and
``...numeric_as_float``; :mod:`airflow_mlops.ml.training` keeps that path importable so those versions keep
loading (and scoring) unchanged. Nothing else lives here; new code imports :mod:`airflow_mlops.training.steps`.
"""
