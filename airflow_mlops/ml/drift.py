"""Feature and prediction drift with evidently (``DataDriftPreset``), summarised as plain JSON.

Pure Python, no Airflow imports. evidently (about 4.5 s to import) is imported lazily inside
:func:`compute_drift`, so importing this module is cheap.

What :func:`compute_drift` does (see ``docs/drift.md`` for the full description):

1. **Sampling.** Each side (reference, current) with more than ``sample_size`` rows is reduced to
   exactly ``sample_size`` rows drawn uniformly without replacement by
   ``numpy.random.default_rng([seed, 0])`` for the reference and ``[seed, 1]`` for the current
   data (row order is kept). Same data + same seed -> same sample -> same summary.
   ``sample_size=None`` disables sampling.
2. **evidently.** One ``Report([DataDriftPreset(columns=features + [prediction])])`` run over a
   ``DataDefinition`` that declares every column's type explicitly (no type inference). evidently
   picks the statistical test per column from the *reference* size (after sampling):

   ============================  ==================================  ============================
   column                        reference <= 1000 rows              reference > 1000 rows
   ============================  ==================================  ============================
   numeric, > 5 distinct values  K-S p_value (drift if p < 0.05)      Wasserstein distance (normed)
                                                                      (drift if >= 0.1)
   numeric, 3-5 distinct         chi-square p_value (p < 0.05)      Jensen-Shannon distance (>= 0.1)
   numeric, <= 2 distinct        Z-test p_value (p < 0.05)          Jensen-Shannon distance (>= 0.1)
   categorical, > 2 distinct     chi-square p_value (p < 0.05)      Jensen-Shannon distance (>= 0.1)
   categorical, <= 2 distinct    Z-test p_value (p < 0.05)          Jensen-Shannon distance (>= 0.1)
   ============================  ==================================  ============================

   ``stattest_threshold`` replaces the per-column threshold of *every* test (it is a p-value for
   the p-value tests, a distance for the distance tests). Missing values are dropped per column
   by evidently before testing.
3. **Summary.** Per column: name, kind, stattest, score, threshold, drifted. The share of drifted
   columns counts the *features only*; the prediction column is reported separately as
   ``prediction_drift``. ``dataset_drift = share_drifted >= threshold`` (``>=``, the same rule
   evidently uses for its own dataset drift).

A column whose values are all missing on one side and not on the other cannot be tested; it is
reported with ``stattest: null, score: null, drifted: true`` (all missing on both sides:
``drifted: false``) and counted as a feature.

The summary never contains row values: only column names, test names, scores, thresholds and
counts. The optional HTML is evidently's own report, which does show values (histograms,
category names); its embedded data is re-encoded by
:func:`airflow_mlops.ml.html_safety.sanitize_evidently_html`, so names and values cannot run as
script when the file is opened (the statistics are computed on the data as given).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["DriftResult", "compute_drift", "slice_drift", "sample_rows", "MAX_CATEGORICAL_PREDICTION_VALUES",
           "SMALL_REFERENCE_ROWS"]

#: evidently switches from distance tests to p-value tests at or below this many reference rows.
SMALL_REFERENCE_ROWS = 1000

#: An integer ``prediction`` column with at most this many distinct values (both sides together)
#: is treated as a class label (categorical); more, or a float column, as numeric (regression).
MAX_CATEGORICAL_PREDICTION_VALUES = 20


@dataclass(frozen=True)
class DriftResult:
    """The result of :func:`compute_drift`.

    Attributes:
        summary: JSON-safe dict (schema in ``docs/drift.md``); identical whether or not HTML
            was requested.
        html: evidently's standalone HTML report (embedded data escaped for ``<script>``), or
            ``None`` when ``html=False``.
    """

    summary: dict
    html: str | None = None

    @property
    def dataset_drift(self) -> bool:
        return bool(self.summary["dataset_drift"])

    @property
    def drifted_columns(self) -> list[str]:
        """Drifted feature columns (the prediction column is not included)."""
        return [c["column"] for c in self.summary["columns"] if c["drifted"]]


def sample_rows(df: pd.DataFrame, sample_size: int | None, seed: int, stream: int = 0) -> pd.DataFrame:
    """``df`` itself when it has at most ``sample_size`` rows (or ``sample_size`` is None), else
    ``sample_size`` rows drawn without replacement by ``numpy.random.default_rng([seed, stream])``,
    in their original order."""
    import numpy as np

    if sample_size is None or len(df) <= sample_size:
        return df
    rng = np.random.default_rng([seed, stream])
    idx = np.sort(rng.choice(len(df), size=sample_size, replace=False))
    return df.iloc[idx]


def _select(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df if list(df.columns) == columns else df[columns]


def _unique(seq: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(seq))


def _json_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _prediction_kind(reference: pd.DataFrame, current: pd.DataFrame, column: str) -> str:
    import pandas as pd

    dtype = reference[column].dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "categorical"
    if pd.api.types.is_integer_dtype(dtype):
        distinct = pd.concat([reference[column], current[column]], ignore_index=True).nunique()
        if distinct <= MAX_CATEGORICAL_PREDICTION_VALUES:
            return "categorical"
    return "numeric"


def _check_args(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str],
                categorical: Sequence[str], prediction_column: str | None, threshold: float,
                stattest_threshold: float | None, sample_size: int | None) -> None:
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"column(s) listed as both numeric and categorical: {', '.join(both)}")
    if not (0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if stattest_threshold is not None and not stattest_threshold > 0:
        raise ValueError(f"stattest_threshold must be > 0 or None, got {stattest_threshold!r}")
    if sample_size is not None and sample_size < 1:
        raise ValueError(f"sample_size must be >= 1 or None, got {sample_size!r}")
    wanted = [*numeric, *categorical] + ([prediction_column] if prediction_column else [])
    for side, df in (("reference", reference), ("current", current)):
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise ValueError(f"{side} data is missing column(s): {', '.join(missing)}; "
                             f"available: {', '.join(map(str, df.columns))}")
        if len(df) == 0:
            raise ValueError(f"{side} data has no rows")


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction_column: str | None = "prediction",
    threshold: float = 0.5,
    stattest_threshold: float | None = None,
    sample_size: int | None = 100_000,
    seed: int = 0,
    html: bool = True,
) -> DriftResult:
    """Drift of ``current`` against ``reference`` (features and, optionally, predictions).

    Args:
        reference: the baseline, e.g. ``ModelRegistry.load_reference(name, version)``.
        current: the data to check (same columns).
        numeric: numeric feature columns.
        categorical: categorical feature columns.
        prediction_column: the model output column, tested like a feature but excluded from the
            drift share and reported as ``prediction_drift``; ``None`` (or a column missing from
            *both* frames) to skip it. Its kind follows ``numeric``/``categorical`` when listed
            there (it is then not counted as a feature); otherwise bool/string/object columns and
            integer columns with at most :data:`MAX_CATEGORICAL_PREDICTION_VALUES` distinct values
            are categorical (class labels), everything else numeric (regression).
        threshold: dataset drift when ``share_drifted >= threshold`` (share of drifted features).
        stattest_threshold: per-column threshold passed to evidently for every test (``None``:
            each test's default, 0.05 for p-values and 0.1 for distances).
        sample_size: sample each side to at most this many rows (``None``: no sampling).
        seed: sampling seed.
        html: also render evidently's HTML report (the summary is the same either way).

    Raises:
        ValueError: a listed column is missing, a column is both numeric and categorical, a side
            has no rows, or a parameter is out of range.
    """
    import pandas as pd

    numeric = _unique(numeric)
    categorical = _unique(categorical)
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"column(s) listed as both numeric and categorical: {', '.join(both)}")
    pred = prediction_column
    if pred and pred not in reference.columns and pred not in current.columns:
        pred = None
    if pred:
        if pred in numeric:
            pred_kind = "numeric"
            numeric = [c for c in numeric if c != pred]
        elif pred in categorical:
            pred_kind = "categorical"
            categorical = [c for c in categorical if c != pred]
        else:
            pred_kind = ""  # decided below, once the columns are known to exist
    _check_args(reference, current, numeric, categorical, pred, threshold, stattest_threshold, sample_size)
    if pred and not pred_kind:
        pred_kind = _prediction_kind(reference, current, pred)
    features = [*numeric, *categorical]
    if not features and not pred:
        raise ValueError("no columns to test: numeric and categorical are empty and there is no prediction column")
    kinds = {**{c: "numeric" for c in numeric}, **{c: "categorical" for c in categorical}}
    if pred:
        kinds[pred] = pred_kind
    columns = [*features, *([pred] if pred else [])]

    # Sample the rows first, then select the columns: no copy of unsampled rows.
    ref = _select(sample_rows(reference, sample_size, seed, stream=0), columns)
    cur = _select(sample_rows(current, sample_size, seed, stream=1), columns)

    # Columns evidently cannot test (all values missing on a side).
    untestable: dict[str, dict[str, Any]] = {}
    for col in columns:
        ref_empty = bool(ref[col].isna().all())
        cur_empty = bool(cur[col].isna().all())
        if ref_empty or cur_empty:
            where = "both" if ref_empty and cur_empty else ("reference" if ref_empty else "current")
            untestable[col] = {"drifted": ref_empty != cur_empty, "note": f"all values missing in {where}"}
    tested = [c for c in columns if c not in untestable]
    if len(ref) <= SMALL_REFERENCE_ROWS:
        log.info("reference has %d rows (<= %d): evidently uses p-value tests (K-S, chi-square, Z) instead of "
                 "distances; expect more per-column false alarms (see docs/drift.md)", len(ref), SMALL_REFERENCE_ROWS)

    results: dict[str, dict[str, Any]] = {}
    html_str: str | None = None
    if tested:
        results, html_str = _run_evidently(ref, cur, tested, kinds, threshold, stattest_threshold, html)

    entries: dict[str, dict[str, Any]] = {}
    for col in columns:
        if col in untestable:
            entries[col] = {"column": col, "kind": kinds[col], "stattest": None, "score": None,
                            "threshold": None, "drifted": untestable[col]["drifted"],
                            "note": untestable[col]["note"]}
        else:
            entries[col] = {"column": col, "kind": kinds[col], **results[col]}

    feature_entries = [entries[c] for c in features]
    n_drifted = sum(1 for e in feature_entries if e["drifted"])
    share = n_drifted / len(feature_entries) if feature_entries else 0.0
    prediction_drift = None
    if pred:
        e = entries[pred]
        prediction_drift = {"column": pred, "kind": e["kind"], "stattest": e["stattest"], "score": e["score"],
                            "threshold": e["threshold"], "drifted": e["drifted"]}
        if "note" in e:
            prediction_drift["note"] = e["note"]

    summary = {
        "columns": feature_entries,
        "n_features": len(feature_entries),
        "n_drifted": n_drifted,
        "share_drifted": share,
        "threshold": float(threshold),
        "dataset_drift": bool(feature_entries) and share >= threshold,
        "prediction_drift": prediction_drift,
        "stattest_threshold": _json_float(stattest_threshold),
        "rows": {"reference": len(reference), "current": len(current),
                 "reference_sampled": len(ref), "current_sampled": len(cur)},
        "sampled": len(ref) < len(reference) or len(cur) < len(current),
        "sample_size": sample_size,
        "seed": seed,
        "evidently_version": _evidently_version(),
    }
    return DriftResult(summary=summary, html=html_str if html else None)


def _evidently_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evidently")
    except PackageNotFoundError:  # pragma: no cover
        import evidently

        return str(evidently.__version__)


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, columns: list[str], kinds: dict[str, str],
                   threshold: float, stattest_threshold: float | None,
                   html: bool) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Run ``DataDriftPreset`` over ``columns``; per-column results (from the snapshot's public
    ``dict()``: metric config + value, test status) and the HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in columns if kinds[c] == "numeric"]
    categorical = [c for c in columns if kinds[c] == "categorical"]
    # Every type list is given (even empty) so evidently does not infer column types.
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, text_columns=[],
                                datetime_columns=[], unknown_columns=[], list_columns=[])
    preset = DataDriftPreset(columns=columns, drift_share=threshold, threshold=stattest_threshold)
    # include_tests=True gives each ValueDrift a pass/fail test: evidently's own "drifted" verdict,
    # which knows whether the score is a p-value (drift below) or a distance (drift above).
    report = Report([preset], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(_select(cur, columns), data_definition=definition),
        reference_data=Dataset.from_pandas(_select(ref, columns), data_definition=definition),
    )
    data = snapshot.dict()
    by_id: dict[str, dict[str, Any]] = {}
    for metric in data["metrics"]:
        config = metric.get("config") or {}
        if config.get("type", "").endswith(":ValueDrift"):
            by_id[metric["id"]] = {"column": config["column"], "stattest": config.get("method"),
                                   "score": _json_float(metric.get("value")),
                                   "threshold": _json_float(config.get("threshold"))}
    status: dict[str, str] = {}
    for test in data["tests"]:
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id in by_id:
            st = test.get("status")
            status[metric_id] = str(getattr(st, "value", st))  # a TestStatus enum in 0.7
    out: dict[str, dict[str, Any]] = {}
    for metric_id, r in by_id.items():
        st = status.get(metric_id)
        if st not in ("FAIL", "SUCCESS"):
            raise RuntimeError(f"evidently gave no drift verdict for column {r['column']!r} (test status {st!r})")
        out[r.pop("column")] = {**r, "drifted": st == "FAIL"}
    missing = [c for c in columns if c not in out]
    if missing:
        raise RuntimeError(f"evidently returned no drift result for column(s): {', '.join(missing)}")
    if not html:
        return out, None
    from airflow_mlops.ml.html_safety import sanitize_evidently_html

    # evidently embeds column names and category values unescaped in an inline <script>; re-encode
    # them so the page cannot run injected script wherever it is opened (see html_safety).
    return out, sanitize_evidently_html(snapshot.get_html_str(as_iframe=False))


def slice_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    slice_column: str,
    min_rows: int = 100,
    **kw: Any,
) -> dict[str, dict]:
    """:func:`compute_drift` per value of ``slice_column`` (e.g. region, segment).

    Returns ``{str(slice_value): summary}`` sorted by key, for every value present on either
    side (missing values of ``slice_column`` are ignored). A slice with fewer than ``min_rows``
    rows on either side is not tested; its entry is
    ``{"skipped": True, "reason": ..., "rows": {"reference": n, "current": m}, "min_rows": k}``.
    Tested slices get the :func:`compute_drift` summary plus ``"skipped": False``. ``kw`` goes to
    :func:`compute_drift` (``html`` is forced to False); ``slice_column`` is dropped from the
    feature lists since it is constant inside a slice.
    """
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows!r}")
    for side, df in (("reference", reference), ("current", current)):
        if slice_column not in df.columns:
            raise ValueError(f"{side} data has no slice column {slice_column!r}")
    kw = dict(kw)
    kw["html"] = False
    for key in ("numeric", "categorical"):
        if key in kw:
            kw[key] = [c for c in kw[key] if c != slice_column]
    ref_groups = {k: g for k, g in reference.groupby(slice_column, sort=False, observed=True)}
    cur_groups = {k: g for k, g in current.groupby(slice_column, sort=False, observed=True)}
    out: dict[str, dict] = {}
    for value in sorted(set(ref_groups) | set(cur_groups), key=str):
        ref_g, cur_g = ref_groups.get(value), cur_groups.get(value)
        n_ref = 0 if ref_g is None else len(ref_g)
        n_cur = 0 if cur_g is None else len(cur_g)
        key = str(value)
        if n_ref < min_rows or n_cur < min_rows:
            out[key] = {"skipped": True,
                        "reason": f"fewer than {min_rows} rows (reference {n_ref}, current {n_cur})",
                        "rows": {"reference": n_ref, "current": n_cur}, "min_rows": min_rows}
            continue
        summary = compute_drift(ref_g, cur_g, **kw).summary
        out[key] = {"skipped": False, **summary}
    return out
