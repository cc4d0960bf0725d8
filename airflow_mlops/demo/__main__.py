"""``python -m airflow_mlops.demo``: see :mod:`airflow_mlops.demo.runner`."""

from airflow_mlops.demo.runner import main

if __name__ == "__main__":
    main()
