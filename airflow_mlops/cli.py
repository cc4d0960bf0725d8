"""Command line for registry decisions that need a human, and for governance questions.

    python -m airflow_mlops.cli approve churn 3 --as alice --reason "reviewed the model card"
    python -m airflow_mlops.cli reject churn 3 --as alice --reason "fails the fairness review"
    python -m airflow_mlops.cli rollback churn --alias champion [--to-version 2] --as bob --reason "bad scores"
    python -m airflow_mlops.cli show churn
    python -m airflow_mlops.cli lifecycle churn 2 deprecated --as risk --reason "uses the old tariff feature"
    python -m airflow_mlops.cli lifecycle churn 2 retired --as risk --reason "biased against region=south" [--force]
    python -m airflow_mlops.cli disable churn --as oncall --reason "incident 123: scores look wrong"
    python -m airflow_mlops.cli enable churn --as oncall --reason "incident 123 resolved"
    python -m airflow_mlops.cli sign churn --as ops --reason "key rotation" [--adopt-unsigned]
    python -m airflow_mlops.cli verify churn
    python -m airflow_mlops.cli lineage s3://bucket/mlops/data/churn/ds=2024-01-03   # or a fingerprint
    python -m airflow_mlops.cli reproduce churn 1 [--tolerance 1e-9]
    python -m airflow_mlops.cli scaffold-dag dags/configs/churn.yaml [--dags-folder dags]
    python -m airflow_mlops.cli init --data file:///srv/data/churn --target churned [--name churn] [--keys id,...]
        [--task binary|multiclass|regression] [--owner NAME] [--config-dir DIR] [--dags-folder DIR] [--force]
    python -m airflow_mlops.cli check dags/configs/churn.yaml [--data]
    python -m airflow_mlops.cli mlflow-sync churn
    python -m airflow_mlops.cli register-external dags/configs/churn.yaml models:/churn_notebook/3 --ds 2024-01-07
        --as alice [--no-promote]

``init`` reads the latest ``ds=YYYY-MM-DD`` partition of a dataset folder (or one parquet/CSV file), infers the
task from the target column, the keys and the features, and writes a commented config
``<config-dir>/<name>.yaml`` (default ``<dags-folder>/configs``) and the model's Dag file
``<dags-folder>/<name>.py`` (default ``[core] dags_folder``). It never overwrites either without ``--force``.
``check`` validates a config; with ``--data`` also against the latest partition of its dataset (columns,
target, dtypes, task).

The store is ``--storage-uri`` or ``[mlops] storage_uri``; every change lands in the audit log as the
``--as`` identity, with the OS user running the command beside it (``details.os_user``). ``--actor`` and
``--approver`` are older spellings of ``--as``.
Exit codes: 0 ok; 2 a registry/storage error (message on stderr); 3 ``reproduce`` did not
reproduce (mismatch or data changed: the verdict is in the JSON output), or ``sign``/``verify`` found a
version whose signature is missing or does not verify; 5 the MLflow server could not be written or read
(``mlflow-sync``, ``register-external`` of an MLflow URI: nothing of ours changed, run it again).

``mlflow-sync`` makes a team's MLflow agree with our registry (every version's run and model version, the gate's
decisions as run tags, the aliases) and prints what it changed; a second run changes nothing.
``register-external`` sends a model trained elsewhere (an MLflow model URI or a ``.skops`` file) through the
smoke test, then the promotion gate (unless ``--no-promote``), like a training run for ``--ds``.
``check``: 0 the config is valid (and fits the data with ``--data``); 2 it is not: stderr names the config
file and the field (and with ``--data`` the partition file and the column); 4 the data cannot be read (no
partition, unreadable or empty file, storage error). ``init``: 0 written; 2 refused (ambiguous task or keys,
missing target column, an existing file without ``--force``: stderr says what to pass); 4 the data cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from airflow_mlops.registry.model_registry import ModelRegistry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m airflow_mlops.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage-uri", help="artifact store root (default: [mlops] storage_uri)")
    p.add_argument("--aws-conn-id", help="Airflow AWS connection for s3:// roots")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("approve", "reject"):
        s = sub.add_parser(name, help=f"{name} a version")
        s.add_argument("model")
        s.add_argument("version", type=int)
        _identity(s)
        s.add_argument("--reason", default="")
        s.add_argument("--allow-self-approval", action="store_true")
    s = sub.add_parser("rollback", help="re-point an alias to an earlier version")
    s.add_argument("model")
    s.add_argument("--alias", default="champion")
    s.add_argument("--to-version", type=int, help="a version that held the alias before (default: the latest "
                                                  "one the promotion policy allows)")
    _identity(s)
    s.add_argument("--reason", required=True)
    s = sub.add_parser("show", help="versions, aliases, approvals, lifecycle states, kill switch")
    s.add_argument("model")
    s = sub.add_parser("lifecycle", help="set a version's lifecycle state: active, deprecated, retired")
    s.add_argument("model")
    s.add_argument("version", type=int)
    s.add_argument("state", choices=("active", "deprecated", "retired"))
    _identity(s)
    s.add_argument("--reason", default="", help="required for deprecated/retired")
    s.add_argument("--force", action="store_true", help="retire even if the version is the current champion")
    for name, text in (("disable", "turn the model's kill switch on (scoring falls back)"),
                       ("enable", "turn the model's kill switch off")):
        s = sub.add_parser(name, help=text)
        s.add_argument("model")
        _identity(s)
        s.add_argument("--reason", default="", help="required for disable")
    s = sub.add_parser("sign", help="sign every version and the state with the current key (after a key rotation, "
                                    "or once for a store from before signatures with --adopt-unsigned)")
    s.add_argument("model")
    _identity(s)
    s.add_argument("--reason", required=True)
    s.add_argument("--adopt-unsigned", action="store_true",
                   help="also sign unsigned versions whose artifacts match their recorded sha256")
    s = sub.add_parser("verify", help="signature status of every version (exit 3 when one does not verify)")
    s.add_argument("model")
    s = sub.add_parser("lineage", help="every version trained on a dataset URI or fingerprint")
    s.add_argument("dataset", help="dataset URI (root or ds= partition) or fingerprint content hash (or a prefix "
                                   "of at least 8 hex digits)")
    s = sub.add_parser("reproduce", help="retrain a version from its metadata and compare the metrics")
    s.add_argument("model")
    s.add_argument("version", type=int)
    s.add_argument("--tolerance", type=float, default=1e-9, help="absolute tolerance per metric (default 1e-9)")
    s.add_argument("--config", help="model config YAML, used only if metadata.json has no config snapshot")
    s.add_argument("--as", "--actor", dest="as_", help="who asks (recorded in the report)")
    s.add_argument("--full", action="store_true", help="print the whole report, not the summary")
    s = sub.add_parser("scaffold-dag", help="write the per-model DAG file <dags-folder>/<model>.py for a config")
    s.add_argument("config", help="the model config, e.g. dags/configs/churn.yaml")
    s.add_argument("--dags-folder", help="default: the parent folder of the config's folder")
    s = sub.add_parser("init", help="write a commented model config and its Dag file from a dataset")
    s.add_argument("--data", required=True, help="dataset location: a file:// or s3:// folder of ds=YYYY-MM-DD "
                                                 "partitions, or a single .parquet/.csv file")
    s.add_argument("--target", required=True, help="the label column")
    s.add_argument("--name", help="model name, [a-z0-9_]+ (default: from the dataset folder or file name)")
    s.add_argument("--keys", help="comma-separated key columns (default: the one unique id-like column)")
    s.add_argument("--task", choices=("binary", "multiclass", "regression"), help="default: inferred from the target")
    s.add_argument("--owner", help="team or e-mail (default: the OS user)")
    s.add_argument("--config-dir", help="default: <dags-folder>/configs")
    s.add_argument("--dags-folder", help="default: [core] dags_folder")
    s.add_argument("--conn-id", help="Airflow AWS connection for an s3:// --data")
    s.add_argument("--force", action="store_true", help="overwrite an existing config / Dag file")
    s = sub.add_parser("mlflow-sync", help="make the team's MLflow agree with our registry; prints what changed")
    s.add_argument("model")
    s = sub.add_parser("register-external", help="register a model trained elsewhere through the smoke test and the "
                                                 "promotion gate")
    s.add_argument("config", help="the model's config (what it predicts, from which data, its gate)")
    s.add_argument("source", help="models:/<name>/<version>, models:/<name>@<alias>, models:/<logged model id>, "
                                  "runs:/<run id>/<path> or a .skops file")
    s.add_argument("--ds", required=True, help="the logical date whose data window evaluates it (YYYY-MM-DD)")
    _identity(s)
    s.add_argument("--no-promote", action="store_true", help="register only; leave the gate to a later run")
    s = sub.add_parser("check", help="validate a model config (exit 0 ok, 2 invalid, 4 data unreadable)")
    s.add_argument("config")
    s.add_argument("--data", action="store_true", help="also check it against the latest partition of its data")
    return p


def _identity(s: argparse.ArgumentParser) -> None:
    s.add_argument("--as", "--actor", "--approver", dest="as_", required=True, metavar="NAME",
                   help="who you are; written to the audit log together with the OS user")


def main(argv: list[str] | None = None) -> int:
    from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError
    from airflow_mlops.store.artifacts import ArtifactStore, StorageError

    a = _parser().parse_args(argv)
    import contextlib

    with contextlib.suppress(ImportError):  # Airflow's config sets up logging on import: do it before redirecting
        import airflow.configuration  # noqa: F401
    _logs_to_stderr()
    if a.command == "scaffold-dag":
        return _scaffold(a)
    if a.command == "init":
        return _init(a, argv)
    if a.command == "check":
        return _check(a)
    from airflow_mlops.trust.signing import SigningError

    reg = ModelRegistry(ArtifactStore(a.storage_uri, conn_id=a.aws_conn_id))
    answer = sys.stdout  # the JSON answer only; anything printed while working (provider logs) goes to stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            out, code = _run(reg, a)
    except (RegistryError, StorageError, SigningError, ValueError) as e:  # ValueError: DataError, ConfigError, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, default=str), file=answer)
    return code


def _run(reg: ModelRegistry, a: argparse.Namespace) -> tuple[object, int]:
    from airflow_mlops.trust.identity import cli_identity

    code = 0
    out: Any  # the JSON answer: a dict or a list, depending on the command
    actor, details = cli_identity(a.as_) if getattr(a, "as_", None) is not None else (None, {})
    from airflow_mlops.registry.lifecycle import refresh_cards  # decisions show on the cards of the versions they touch

    if a.command in ("approve", "reject"):
        out = reg.approve(a.model, a.version, approver=actor, reason=a.reason,
                          allow_self_approval=a.allow_self_approval,
                          status="approved" if a.command == "approve" else "rejected", details=details)
        refresh_cards(reg, a.model, [a.version])
    elif a.command == "rollback":
        out = reg.rollback(a.model, a.alias, a.to_version, actor=actor, reason=a.reason, details=details)
        refresh_cards(reg, a.model, [out.get("from"), out.get("to")])
    elif a.command == "lifecycle":
        out = reg.set_lifecycle(a.model, a.version, a.state, actor=actor, reason=a.reason, force=a.force,
                                details=details)
        refresh_cards(reg, a.model, [a.version])
    elif a.command in ("disable", "enable"):
        out = reg.set_model_disabled(a.model, a.command == "disable", actor=actor, reason=a.reason, details=details)
    elif a.command == "sign":
        out = reg.sign_versions(a.model, actor=actor, reason=a.reason, adopt_unsigned=a.adopt_unsigned,
                                details=details)
        code = 3 if out["invalid"] or out["unsigned"] else 0
    elif a.command == "verify":
        out = {str(v): reg.verify_version(a.model, v) for v in reg.list_versions(a.model)}
        code = 0 if all(s["status"] == "verified" for s in out.values()) else 3
    elif a.command == "lineage":
        out = reg.lineage(a.dataset)
    elif a.command == "reproduce":
        out, code = _reproduce(reg, a)
    elif a.command in ("mlflow-sync", "register-external"):
        out, code = _mlflow(reg, a, actor)
    else:
        out = _show(reg, a.model)
    return out, code


def _scaffold(a: argparse.Namespace) -> int:
    import os

    from airflow_mlops.config.model import ConfigError
    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.dag_factory import write_dag_file

    folder = a.dags_folder or os.path.dirname(os.path.dirname(os.path.abspath(a.config)))
    try:
        load_model_config(a.config)  # a broken config is reported now, not at parse time
        path = write_dag_file(a.config, folder)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"dag_file": path, "config": os.path.abspath(a.config)}, indent=2))
    return 0


def _default_dags_folder() -> str:
    import os

    folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "").strip()
    if not folder:
        try:
            from airflow.configuration import conf

            folder = conf.get("core", "dags_folder", fallback="") or ""
        except Exception:  # Airflow not configured: the working directory's dags/
            folder = ""
    return os.path.expanduser(folder or "dags")


def _init(a: argparse.Namespace, argv: list[str] | None) -> int:
    import os
    import shlex
    import tempfile
    from pathlib import Path

    from airflow_mlops.config.data_check import check_config_against_data
    from airflow_mlops.config.infer import InitError, propose_config, read_sample, render_config
    from airflow_mlops.config.model import ConfigError
    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.dag_factory import DAG_FILE_TEMPLATE, write_dag_file

    dags_folder = os.path.abspath(a.dags_folder or _default_dags_folder())
    config_dir = os.path.abspath(a.config_dir or os.path.join(dags_folder, "configs"))
    keys = [k.strip() for k in a.keys.split(",") if k.strip()] if a.keys else None
    try:
        with contextlib_redirect():
            sample = read_sample(a.data, conn_id=a.conn_id)
    except InitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    try:
        proposal = propose_config(sample, target=a.target, name=a.name, keys=keys, task=a.task, owner=a.owner)
    except InitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config_path = os.path.join(config_dir, proposal.name + ".yaml")
    dag_path = os.path.join(dags_folder, proposal.name + ".py")
    dag_text = DAG_FILE_TEMPLATE.format(stem=proposal.name)
    existing = [p for p in (config_path, os.path.join(config_dir, proposal.name + ".yml")) if os.path.exists(p)]
    if os.path.exists(dag_path) and Path(dag_path).read_text(encoding="utf-8") != dag_text:
        existing.append(dag_path)
    if existing and not a.force:
        print(f"error: {', '.join(existing)} exist(s); not overwriting: pass --force to replace, or --name for "
              f"another model", file=sys.stderr)
        return 2
    command = "python -m airflow_mlops.cli " + " ".join(shlex.quote(x) for x in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    text = render_config(proposal, command=command)
    os.makedirs(config_dir, exist_ok=True)
    os.makedirs(dags_folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{proposal.name}-", suffix=".yaml", dir=config_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:  # what init writes must load and fit the sample: a failure here is a bug of init, not of the user
            config = load_model_config(tmp)
            check_config_against_data(config, sample.schema, sample.frame[proposal.target])
        except ConfigError as e:
            print(f"error: the proposed config does not validate ({e}); please report this", file=sys.stderr)
            return 2
        os.replace(tmp, config_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if a.force and os.path.exists(dag_path):
        os.unlink(dag_path)
    write_dag_file(config_path, dags_folder)
    out: dict[str, Any] = {
        "config": config_path, "dag_file": dag_path, "model": proposal.name, "task": proposal.task,
        "keys": proposal.keys, "target": proposal.target, "features": proposal.features,
        "categorical_features": proposal.categorical, "excluded": proposal.excluded,
        "sample": {"source": sample.source, "rows": len(sample.frame)}, "notes": list(proposal.notes),
        "dags": [f"{proposal.name}_{kind}" for kind in ("training", "batch_scoring", "monitoring")]}
    if config_dir != os.path.join(dags_folder, "configs"):
        out["notes"].append(f"the Dag file reads configs from {os.path.join(dags_folder, 'configs')}: set "
                            f"MLOPS_CONFIGS_DIR={config_dir} for the dag-processor and workers")
    print(json.dumps(out, indent=2))
    return 0


def contextlib_redirect() -> contextlib.redirect_stdout[TextIO]:
    """Provider logs printed while reading data go to stderr: stdout is for the JSON answer."""
    return contextlib.redirect_stdout(sys.stderr)


def _check(a: argparse.Namespace) -> int:
    import os

    from airflow_mlops.config.model import ConfigError
    from airflow_mlops.config.parser import load_model_config

    try:
        config = load_model_config(a.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot read {a.config}: {e}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"config": os.path.abspath(a.config), "model": config.name, "task": config.task,
                           "valid": True}
    if a.data:  # the same check the validate task runs on its partition, here on the latest one
        from airflow_mlops.config.locations import Locations
        from airflow_mlops.store.artifacts import ArtifactStore
        from airflow_mlops.store.datasets import DataMismatchError
        from airflow_mlops.validation.partition import check_partition

        try:
            with contextlib_redirect():
                dataset = Locations(config, ArtifactStore(a.storage_uri, conn_id=a.aws_conn_id)).input
                parts = dataset.partitions()
                if not parts:
                    raise ValueError(f"{dataset.uri()} has no ds=YYYY-MM-DD partitions (data.uri / data.dataset "
                                     f"in {a.config})")
                out["data"] = {**check_partition(config, dataset, parts[-1]), "partitions": len(parts)}
        except DataMismatchError as e:  # readable, but does not fit the config
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # DataError, StorageError, ArtifactNotFoundError, ValueError: cannot read
            print(f"error: {e}", file=sys.stderr)
            return 4
    print(json.dumps(out, indent=2))
    return 0


def _logs_to_stderr() -> None:
    """Keep stdout for the JSON answer: log handlers writing to stdout (Airflow's default) go to stderr."""
    import logging

    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
            h.setStream(sys.stderr)


def _show(reg: ModelRegistry, model: str) -> dict[str, Any]:
    versions = reg.list_versions(model)
    aliases = reg.get_aliases(model)
    lifecycle = reg.lifecycles(model)
    return {
        "versions": versions, "aliases": aliases, "disabled": reg.is_model_disabled(model),
        "approvals": {str(v): reg.approval(model, v) for v in versions},
        "lifecycle": {str(v): lifecycle[v] for v in versions},
        "table": [{"version": v, "state": lifecycle[v]["state"],
                   "aliases": sorted(al for al, av in aliases.items() if av == v),
                   "reason": lifecycle[v].get("reason", ""), "by": lifecycle[v].get("by")} for v in versions],
    }


def _reproduce(reg: ModelRegistry, a: argparse.Namespace) -> tuple[dict[str, Any], int]:
    from airflow_mlops.governance.reproduce import reproduce_version, summary_for_xcom

    config = None
    if a.config:
        from airflow_mlops.config.parser import load_model_config

        config = load_model_config(a.config)
    report = reproduce_version(reg, a.model, a.version, tolerance=a.tolerance, config=config, actor=a.as_)
    out = report if a.full else {**summary_for_xcom(report),
                                 "metrics": [r for r in report["metrics"] if not r["within_tolerance"]] or
                                 f"all {len(report['metrics'])} within tolerance",
                                 "libraries": report["libraries"]["differing"], "data": report["data"]}
    return out, 0 if report["verdict"] == "reproduced" else 3


def _mlflow(reg: ModelRegistry, a: argparse.Namespace, actor: str | None) -> tuple[dict[str, Any], int]:
    """``mlflow-sync`` and ``register-external``; a server that fails is exit 5 with the reason on stderr."""
    from airflow_mlops.tracking.mlflow import TrackingError

    try:
        if a.command == "mlflow-sync":
            from airflow_mlops.registry.mirror import sync_mlflow

            return dict(sync_mlflow(reg, a.model)), 0
        from airflow_mlops.config.parser import load_model_config
        from airflow_mlops.registry.external import register_external
        from airflow_mlops.registry.lifecycle import promote_candidate
        from airflow_mlops.store.dates import logical_ds

        config = load_model_config(a.config)
        summary = register_external(config, reg.store, a.source, logical_ds(a.ds), actor=actor)
        out: dict[str, Any] = {"registered": summary}
        if not a.no_promote:
            out["promotion"] = promote_candidate(config, reg.store, summary["version"], actor=actor)
        return out, 0
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return {"error": str(e)}, 5
    except Exception as e:  # the MLflow client's connection and server errors; anything else is raised
        if type(e).__module__.startswith(("mlflow", "requests", "urllib3")) or isinstance(e, ConnectionError):
            print(f"error: MLflow: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                  file=sys.stderr)
            return {"error": f"MLflow: {type(e).__name__}"}, 5
        raise


if __name__ == "__main__":
    code = main()
    # The answer is complete once main() returns: flush it and leave without interpreter teardown. A native
    # library's thread torn down at exit has aborted the process ("terminate called without an active
    # exception") after a correct answer, turning exit code 0 into 134 for scripts and CI.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)

