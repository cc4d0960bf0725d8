"""Command line for registry decisions that need a human: approve, reject, rollback, show.

    python -m airflow_mlops.cli approve churn 3 --approver alice --reason "reviewed the model card"
    python -m airflow_mlops.cli reject churn 3 --approver alice --reason "fails the fairness review"
    python -m airflow_mlops.cli rollback churn --alias champion [--to-version 2] --reason "bad scores"
    python -m airflow_mlops.cli show churn

The store is ``--storage-uri`` or ``[mlops] storage_uri``; every change lands in the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from airflow_mlops.hooks.registry import ModelRegistry, RegistryError
    from airflow_mlops.hooks.storage import ArtifactStore, StorageError

    p = argparse.ArgumentParser(prog="python -m airflow_mlops.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage-uri")
    p.add_argument("--aws-conn-id")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("approve", "reject"):
        s = sub.add_parser(name)
        s.add_argument("model")
        s.add_argument("version", type=int)
        s.add_argument("--approver", required=True)
        s.add_argument("--reason", default="")
        s.add_argument("--allow-self-approval", action="store_true")
    s = sub.add_parser("rollback")
    s.add_argument("model")
    s.add_argument("--alias", default="champion")
    s.add_argument("--to-version", type=int)
    s.add_argument("--actor", required=True)
    s.add_argument("--reason", default="")
    s = sub.add_parser("show")
    s.add_argument("model")
    a = p.parse_args(argv)
    reg = ModelRegistry(ArtifactStore(a.storage_uri, conn_id=a.aws_conn_id))
    try:
        if a.command in ("approve", "reject"):
            out = reg.approve(a.model, a.version, approver=a.approver, reason=a.reason,
                              allow_self_approval=a.allow_self_approval,
                              status="approved" if a.command == "approve" else "rejected")
        elif a.command == "rollback":
            out = reg.rollback(a.model, a.alias, a.to_version, actor=a.actor, reason=a.reason)
        else:
            out = {"versions": reg.list_versions(a.model), "aliases": reg.get_aliases(a.model),
                   "approvals": {str(v): reg.approval(a.model, v) for v in reg.list_versions(a.model)}}
    except (RegistryError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
