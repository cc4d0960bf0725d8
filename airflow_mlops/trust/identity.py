"""Who is acting, as far as it can be known.

* An Airflow task acts as the user who triggered its Dag run (``dag_run.triggering_user_name``, which
  Airflow records for runs triggered in the UI, through the REST API or the CLI); runs the scheduler
  created (cron, asset events, catchup) act as ``scheduler``; ``dag.test()``/``airflow dags test`` runs
  act as ``dag_test:<OS user>``.
* The registry UI acts as the signed-in Airflow user.
* The CLI acts as its explicit ``--as`` identity; the OS user running it goes to the audit log beside it.

What can and cannot be proved is in docs/security.md: on the embedded default anyone who can write the
store or run the CLI can claim a name; the signature keeps them from forging *versions*, not names.
"""

from __future__ import annotations

import getpass
from typing import Any

#: The identity of Dag runs nobody triggered by hand.
SCHEDULER = "scheduler"


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "unknown"


def run_identity(context: Any) -> str:
    """The identity a task of this Dag run acts as (see the module docstring)."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    user = getattr(dag_run, "triggering_user_name", None)
    if user == "dag_test":
        return f"dag_test:{os_user()}"
    if user:
        return str(user)
    return SCHEDULER


def cli_identity(claimed: str) -> tuple[str, dict[str, str]]:
    """``(actor, audit details)`` for a CLI action: the claimed ``--as`` name and the OS user running it."""
    name = (claimed or "").strip()
    if not name:
        raise ValueError("say who you are: --as <your name> (it goes to the audit log with the OS user)")
    return name, {"via": "cli", "os_user": os_user()}


__all__ = ["SCHEDULER", "cli_identity", "os_user", "run_identity"]
