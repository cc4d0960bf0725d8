"""Ready-made airflow-mlops DAGs of the churn model, from configs/churn.yaml.

Yields churn_training, churn_batch_scoring and churn_monitoring. A broken config shows up as an
import error of this file only. Set MLOPS_CONFIGS_DIR to read the config from another folder.
"""

from airflow_mlops.dag_factory import dags_for_file

globals().update(dags_for_file(__file__))
