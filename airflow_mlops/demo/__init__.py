"""The closed-loop demo (``python -m airflow_mlops.demo``) and its synthetic churn data.
"""
