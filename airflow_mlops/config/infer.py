"""Propose a model config from a sample of a dataset (``python -m airflow_mlops.cli init``).

:func:`read_sample` reads the latest ``ds=YYYY-MM-DD`` partition of a dataset folder (``file://`` or
``s3://``), or a single parquet/CSV file; :func:`propose_config` infers the task from the target column,
the features and the keys, and refuses ambiguous cases with an :class:`InitError` that says what to
choose; :func:`render_config` writes the proposal as YAML with a comment on every key.

Plain Python (pandas/pyarrow): no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_mlops.config.data_check import is_categorical_dtype, is_numeric_dtype
from airflow_mlops.config.model import DATASET_RE, DEFAULT_ESTIMATORS, DEFAULT_PRIMARY_METRIC, NAME_RE, RESERVED_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["InitError", "DataSample", "Proposal", "read_sample", "propose_config", "render_config",
           "MAX_SAMPLE_ROWS", "MAX_CLASSES", "AMBIGUOUS_INT_CLASSES"]

#: Rows of the partition (or file) kept for inference.
MAX_SAMPLE_ROWS = 100_000
#: A string target with more distinct values than this is refused (too many classes).
MAX_CLASSES = 50
#: An integer (or integral float) target with this many distinct values could be classes or a quantity.
AMBIGUOUS_INT_CLASSES = range(3, 21)
#: Integer features with at most this many distinct values are mentioned as possible category codes.
CODE_MAX_VALUES = 10

_ID_RE = re.compile(r"(^(id|key|uuid|guid)$)|([_ .-](id|key|uuid|guid)$)|(^(id|key)[_ .-])", re.IGNORECASE)
_ID_CAMEL = re.compile(r"[a-z0-9](Id|ID|Key)$")  # customerId, orderID (case-sensitive: not "paid", "turkey")


class InitError(ValueError):
    """The data does not allow a safe proposal; the message says what to pass."""


@dataclass
class DataSample:
    """A sample of the dataset: the frame, its Arrow schema, where it came from and how to read the dataset."""

    frame: pd.DataFrame
    schema: dict[str, str]
    source: str  # the file or partition read
    data_uri: str  # the dataset root for ``data.uri``
    fmt: str  # parquet | csv
    partitions: list[str] = field(default_factory=list)  # dates present (empty for a single file)


@dataclass
class Proposal:
    name: str
    dataset: str
    data_uri: str
    fmt: str
    target: str
    task: str
    task_reason: str
    keys: list[str]
    keys_reason: str
    features: list[str]
    feature_notes: dict[str, str]
    excluded: dict[str, str]
    categorical: list[str]
    code_candidates: list[str]
    owner: str
    sample: DataSample
    notes: list[str] = field(default_factory=list)
    cv_folds: int = 5


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _split_location(location: str) -> tuple[str, str]:
    """``(root uri, last path component)`` of a location (a plain path becomes ``file://``)."""
    loc = location.rstrip("/")
    if "://" not in loc:
        loc = "file://" + os.path.abspath(os.path.expanduser(loc))
    if not loc.startswith(("file://", "s3://")):
        raise InitError(f"--data must be a file:// or s3:// location (or a local path), got {location!r}")
    parent, _, leaf = loc.rpartition("/")
    return parent, leaf


def read_sample(location: str, *, conn_id: str | None = None, max_rows: int = MAX_SAMPLE_ROWS) -> DataSample:
    """Read the latest partition of a ``ds=YYYY-MM-DD`` dataset folder, or one parquet/CSV file."""
    import pyarrow as pa

    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import DataError, Dataset

    parent, leaf = _split_location(location)
    lower = leaf.lower()
    if lower.endswith((".parquet", ".pq", ".csv")):
        fmt = "csv" if lower.endswith(".csv") else "parquet"
        store = ArtifactStore(parent, conn_id=conn_id)
        ds = Dataset(store, "", fmt)
        try:
            table = ds._read_file(leaf, None)
        except Exception as e:  # ArtifactNotFoundError, StorageError, DataError
            raise InitError(f"cannot read {parent}/{leaf}: {e}") from None
        source, data_uri, partitions = f"{parent}/{leaf}", parent, []
        grand, _, folder = parent.rpartition("/")
        if re.fullmatch(r"ds=\d{4}-\d{2}-\d{2}", folder):  # a file inside a partition: the dataset is above it
            data_uri, partitions = grand, [folder[3:]]
    else:
        root = f"{parent}/{leaf}"
        store = ArtifactStore(root, conn_id=conn_id)
        try:
            partitions = Dataset(store, "", "parquet").partitions()
        except Exception as e:
            raise InitError(f"cannot list {root}: {e}") from None
        if not partitions:
            raise InitError(f"{root} has no ds=YYYY-MM-DD partitions; pass a folder of partitions "
                            f"(<root>/ds=2024-01-01/part-0.parquet) or a single .parquet/.csv file")
        fmt = "parquet"
        ds = Dataset(store, "", fmt)
        if not ds.files(partitions[-1]):
            csv = Dataset(store, "", "csv")
            if csv.files(partitions[-1]):
                ds, fmt = csv, "csv"
        try:
            table = ds.read_table(partitions[-1])
        except DataError as e:
            raise InitError(str(e)) from None
        source, data_uri = ds.uri(partitions[-1]), root
    if table.num_rows == 0:
        raise InitError(f"{source} has no rows; init needs data to infer from")
    if table.num_rows > max_rows:
        table = table.slice(0, max_rows)
    schema = {f.name: str(f.type) for f in table.schema}
    try:
        frame = table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InitError(f"cannot convert {source} to a data frame: {e}") from None
    return DataSample(frame=frame, schema=schema, source=source, data_uri=data_uri, fmt=fmt, partitions=partitions)


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------


def _sanitize_name(text: str) -> str:
    text = re.sub(r"\.(parquet|pq|csv)$", "", text, flags=re.IGNORECASE)
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return name or "model"


def _infer_task(values: pd.Series, dtype: str, target: str) -> tuple[str, str]:
    import pandas as pd

    non_null = values.dropna()
    if non_null.empty:
        raise InitError(f"target {target!r} has no values in the sample; pick another --target")
    n = int(non_null.nunique())
    shown = ", ".join(sorted(map(str, non_null.unique()[:8]))) + (", ..." if n > 8 else "")
    if n < 2:
        raise InitError(f"target {target!r} has a single value ({shown}) in the sample; nothing to learn — "
                        f"pick another --target or sample a partition with both outcomes")
    if n == 2:
        return "binary", f"{target!r} has 2 distinct values ({shown})"
    numeric = is_numeric_dtype(dtype)
    if not numeric:
        if n > MAX_CLASSES:
            raise InitError(f"target {target!r} ({dtype}) has {n} distinct values; more than {MAX_CLASSES} classes "
                            f"is not a classification target this package supports — pick another --target")
        return "multiclass", f"{target!r} is a {dtype} column with {n} distinct values ({shown})"
    as_float = pd.to_numeric(non_null, errors="coerce").astype("float64")
    integral = bool((as_float == as_float.round()).all())
    if integral and n in AMBIGUOUS_INT_CLASSES:
        raise InitError(f"target {target!r} ({dtype}) has {n} distinct integer values ({shown}): multiclass or "
                        f"regression? pass --task multiclass (class codes) or --task regression (a quantity)")
    return "regression", (f"{target!r} is numeric ({dtype}) with {n} distinct values"
                          + ("" if integral else ", not all integral"))


def _check_task(task: str, values: pd.Series, dtype: str, target: str) -> str:
    n = int(values.dropna().nunique())
    if task == "regression" and not is_numeric_dtype(dtype):
        raise InitError(f"--task regression needs a numeric target; {target!r} has dtype {dtype} "
                        f"(pass --task binary or --task multiclass)")
    if task == "binary" and n != 2:
        raise InitError(f"--task binary needs exactly 2 distinct target values; {target!r} has {n}")
    if task == "multiclass" and n < 3:
        raise InitError(f"--task multiclass needs at least 3 classes; {target!r} has {n} (use --task binary)")
    return f"chosen with --task ({target!r} has {n} distinct values, dtype {dtype})"


def _looks_like_id(name: str) -> bool:
    return bool(_ID_RE.search(name) or _ID_CAMEL.search(name))


def _infer_keys(frame: pd.DataFrame, schema: dict[str, str], target: str) -> tuple[list[str], str]:
    columns = [c for c in frame.columns if c != target and c not in RESERVED_COLUMNS]
    named = [c for c in columns if _looks_like_id(c)]
    unique = [c for c in named if frame[c].notna().all() and frame[c].is_unique]
    if len(unique) == 1:
        return unique, (f"{unique[0]!r} looks like an id and is unique and never null in the {len(frame)} "
                        f"sampled rows")
    if len(unique) > 1:
        raise InitError(f"several key candidates ({', '.join(unique)}): pass --keys with the column(s) that "
                        f"identify a row, e.g. --keys {unique[0]}")
    hint = f"; id-like columns that are not unique or have nulls: {', '.join(named)}" if named else ""
    raise InitError(f"no unique key candidate (a unique, never-null column named like an id){hint}: pass --keys "
                    f"col,... with the column(s) that identify a row (add a row id upstream if there is none); "
                    f"columns: {', '.join(columns)}")


def propose_config(sample: DataSample, *, target: str, name: str | None = None, keys: list[str] | None = None,
                   task: str | None = None, owner: str | None = None) -> Proposal:
    """Infer task, keys and features for ``target`` from ``sample``; :class:`InitError` when ambiguous."""
    frame, schema = sample.frame, sample.schema
    columns = list(frame.columns)
    if target not in schema:
        raise InitError(f"target column {target!r} is not in {sample.source}; columns: {', '.join(columns)}")
    if target in RESERVED_COLUMNS:
        raise InitError(f"{target!r} is the partition column and cannot be the target; columns: {', '.join(columns)}")
    leaf = sample.data_uri.rstrip("/").rpartition("/")[2] if sample.partitions else \
        sample.source.rpartition("/")[2]
    name = name or _sanitize_name(leaf)
    if not NAME_RE.match(name):
        raise InitError(f"--name {name!r} must match [a-z0-9_]+ (it names the model and prefixes its Dag ids)")
    dataset = leaf if sample.partitions and DATASET_RE.match(leaf) else name

    values = frame[target]
    if task is None:
        task, task_reason = _infer_task(values, schema[target], target)
    else:
        task_reason = _check_task(task, values, schema[target], target)

    if keys:
        missing = [k for k in keys if k not in schema]
        if missing:
            raise InitError(f"--keys column(s) not in {sample.source}: {', '.join(missing)}; "
                            f"columns: {', '.join(columns)}")
        if target in keys:
            raise InitError(f"--keys must not contain the target {target!r}")
        keys_reason = "chosen with --keys"
        if frame.duplicated(subset=keys).any():
            keys_reason += f" (note: not unique in the {len(frame)} sampled rows)"
    else:
        keys, keys_reason = _infer_keys(frame, schema, target)

    features, notes, excluded, categorical, codes = [], {}, {}, [], []
    for col in columns:
        if col in keys or col == target or col in RESERVED_COLUMNS or col.startswith("__index_level_"):
            continue
        dtype = schema[col]
        if not (is_numeric_dtype(dtype) or is_categorical_dtype(dtype)):
            excluded[col] = f"dtype {dtype} is not usable as a feature (derive a numeric/string column upstream)"
            continue
        s = frame[col]
        if s.isna().all():
            excluded[col] = "always null in the sample"
            continue
        features.append(col)
        parts = [dtype]
        if is_categorical_dtype(dtype):
            categorical.append(col)
            parts.append(f"categorical, {int(s.nunique())} values (one-hot encoded)")
        else:
            parts.append("numeric")
            n = int(s.dropna().nunique())
            if dtype.lower().startswith(("int", "uint")) and n <= CODE_MAX_VALUES:
                codes.append(col)
                parts.append(f"{n} distinct values: a count or category codes?")
        missing_share = float(s.isna().mean())
        if missing_share:
            parts.append(f"{missing_share:.1%} missing (imputed)")
        notes[col] = "; ".join(parts)
    if not features:
        raise InitError(f"no usable feature columns left in {sample.source} after keys ({', '.join(keys)}), "
                        f"target ({target}) and ds; excluded: {excluded or 'none'}")

    proposal = Proposal(
        name=name, dataset=dataset, data_uri=sample.data_uri, fmt=sample.fmt, target=target, task=task,
        task_reason=task_reason, keys=list(keys), keys_reason=keys_reason, features=features, feature_notes=notes,
        excluded=excluded, categorical=categorical, code_candidates=codes, owner=owner or _default_owner(),
        sample=sample,
    )
    n_target_missing = int(values.isna().sum())
    if n_target_missing:
        proposal.notes.append(f"{n_target_missing} sampled rows have no {target!r}; training drops such rows")
    if not sample.partitions:
        proposal.notes.append(f"{sample.source} is a single file: the Dags read daily partitions "
                              f"{sample.data_uri}/ds=YYYY-MM-DD/*.{sample.fmt}; put the data there")
    if len(frame) < 1000:
        proposal.cv_folds = 3
    if task != "regression":
        smallest = int(values.value_counts().min())
        if smallest < proposal.cv_folds * 2:
            proposal.notes.append(f"the rarest class of {target!r} has {smallest} sampled rows; "
                                  f"stratified {proposal.cv_folds}-fold CV needs more over the training window")
    return proposal


def _default_owner() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return "unknown-owner"


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _q(value: str) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    import json

    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", value) and value.lower() not in (
            "null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"):
        return value
    return json.dumps(value)


def _line(key: str, value: str, comment: str, indent: int = 0, width: int = 34) -> str:
    text = " " * indent + f"{key}: {value}"
    return f"{text.ljust(width)}  # {comment}"


def render_config(p: Proposal, *, command: str = "") -> str:
    """The proposal as YAML, with a comment on every key and the reasons behind the choices."""
    primary = DEFAULT_PRIMARY_METRIC[p.task]
    out = [
        f"# Model config of {p.name!r}, written by `python -m airflow_mlops.cli init` on {dt.date.today()}",
        f"# from a sample of {len(p.sample.frame)} rows of {p.sample.source}.",
    ]
    if command:
        out.append(f"#   {command}")
    out += [
        "# Every field is documented in docs/model-config.md. Review the choices explained below, then run",
        "# `python -m airflow_mlops.cli check <this file> --data` after any edit.",
        "# No `example_rows` here: that field only seeds the shipped example model with synthetic data.",
        _line("name", _q(p.name), f"registry name and prefix of the Dag ids ({p.name}_training, ...)"),
        _line("owner", _q(p.owner), "team or e-mail: Dag owner, model card, alert recipient"),
        _line("description", '""', "what the model predicts (model card)"),
        "data:",
        _line("dataset", _q(p.dataset), "dataset name (assets, lineage)", 2),
        _line("uri", _q(p.data_uri), "root of the ds=YYYY-MM-DD partitions", 2),
        _line("format", p.fmt, "file format of the partitions: parquet or csv", 2),
        _line("training_window_days", "30", "daily partitions concatenated for training", 2),
    ]
    out += [f"# keys: {p.keys_reason}."]
    out.append(_line("keys", "[" + ", ".join(_q(k) for k in p.keys) + "]",
                     "identify a row; never features; copied to every prediction"))
    out.append(_line("target", _q(p.target), "the label column"))
    out.append(f"# task: {p.task_reason}.")
    if p.task == "binary":
        out.append("# The positive class is the second of the sorted labels (1, True or the alphabetically last).")
    out.append(_line("task", p.task, "binary | multiclass | regression"))
    out.append("# features: every column but the keys, the target and ds, listed so that a column added upstream")
    out.append("# later does not silently become a feature. Missing values are imputed (median / most frequent).")
    for col, why in p.excluded.items():
        out.append(f"# left out: {col}: {why}")
    out.append("features:")
    for col in p.features:
        out.append(f"  - {_q(col).ljust(30)}  # {p.feature_notes[col]}")
    if p.code_candidates:
        out.append(f"# Integer columns with few values ({', '.join(p.code_candidates)}) are used as numbers (fine for")
        out.append("# trees). If they are category codes, list categorical_features explicitly: every string/bool")
        out.append("# feature plus those codes.")
    inferred = ", ".join(p.categorical) or "none"
    out.append(_line("categorical_features", "null", f"inferred from dtypes: {inferred}"))
    out += [
        "estimator:",
        _line("class", DEFAULT_ESTIMATORS[p.task], "the task's default; handles missing values", 2),
        _line("params", "{}", "constructor parameters", 2),
        "training:",
        _line("test_size", "0.2", "share of rows held out for the final evaluation", 2),
        _line("cv_folds", str(p.cv_folds), "cross-validation folds on the train part", 2),
        _line("seed", "42", "same config + same data => same metrics", 2),
        "metrics:",
        _line("primary", primary, "compared by the champion/challenger gate", 2),
        _line("floors", "{}", "hard minimums, e.g. {" + primary + ": 0.7}; none until you know the baseline", 2)
        if primary != "rmse" else _line("ceilings", "{}", "hard maximums, e.g. {rmse: 10.0}", 2),
        "promotion:",
        _line("min_improvement", "0.0", "margin over the champion on the primary metric", 2),
        _line("require_approval", "false", "true: promotion waits for a human approval", 2),
        "validation:",
        _line("suite", "infer", "expectations inferred from the champion's training data", 2),
        _line("mostly", "0.99", "share of rows that must pass each row-level expectation", 2),
        "schedules:",
        _line("nightly_retraining", '"0 2 * * *"', "cron of the training Dag (null: only on request)", 2),
        _line("scoring", '"@daily"', "batch scoring of each day's partition", 2),
        _line("monitoring", '"@daily"', "drift monitoring of the predictions", 2),
        "drift:",
        _line("threshold", "0.5", "share of drifted features that requests retraining", 2),
    ]
    for note in p.notes:
        out.append(f"# note: {note}")
    return "\n".join(out) + "\n"
