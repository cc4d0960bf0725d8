"""The pipeline functions under the path models registered by earlier releases name (see :mod:`airflow_mlops.ml`)."""

from airflow_mlops.training.steps import categorical_as_strings, numeric_as_float

__all__ = ["categorical_as_strings", "numeric_as_float"]
