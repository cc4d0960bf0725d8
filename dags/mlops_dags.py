"""Ready-made airflow-mlops DAGs: one set per model config in dags/configs/*.yaml.

Set MLOPS_CONFIGS_DIR to read the configs from another folder.
"""

import os

from airflow_mlops.dag_factory import build_dags

CONFIGS_DIR = os.environ.get("MLOPS_CONFIGS_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

globals().update(build_dags(CONFIGS_DIR))
