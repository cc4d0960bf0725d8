"""``[core] hostname_callable`` for several Celery workers on one machine.

Airflow records the host that ran each task instance (``task_instance.hostname``) from
``[core] hostname_callable`` (default: the machine's FQDN). Two workers on the same machine would
both report that FQDN; ``scripts/celery_multiworker.py`` starts each worker with
``MLOPS_WORKER_NAME=workerN``, ``PYTHONPATH=scripts`` and
``AIRFLOW__CORE__HOSTNAME_CALLABLE=celery_worker_hostname.hostname`` so the recorded hostname is the
worker's Celery node name (``workerN@<host>``).
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``$MLOPS_WORKER_NAME@<host>``, or the plain FQDN when the variable is not set."""
    name = os.environ.get("MLOPS_WORKER_NAME", "").strip()
    host = socket.gethostname()
    return f"{name}@{host}" if name else socket.getfqdn()
