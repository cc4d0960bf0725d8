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
   ``prediction_drift`` (evidently's HTML counts the same columns: the features go to
   ``DataDriftPreset``, the prediction to its own ``ValueDrift``). ``share_drift = share_drifted >=
   threshold`` (``>=``, the same rule evidently uses for its own dataset drift).
4. **Verdict** (``rule``, :func:`drift_verdict`). ``dataset_drift`` is true when any clause of the
   rule fires: ``share`` (``share_drift``), ``prediction`` (the prediction column drifted) or
   ``top_features`` (any of the ``top_k`` most important features drifted, importance from the
   version's ``feature_importance``). ``rule="share"`` (this function's default) is the share alone;
   ``"combined"`` (the model config's default) is all three. ``summary["verdict"]`` names the clauses
   that fired and why.

A column whose values are all missing on one side and not on the other cannot be tested; it is
reported with ``stattest: null, score: null, drifted: true`` (all missing on both sides:
``drifted: false``) and counted as a feature.

The summary never contains row values: only column names, test names, scores, thresholds and
counts. The optional HTML is evidently's own report, which does show values (histograms,
category names); its embedded data is re-encoded by
:func:`airflow_mlops.reports.sanitize.sanitize_evidently_html`, so names and values cannot run as
script when the file is opened (the statistics are computed on the data as given).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.model import DRIFT_CLAUSES, DRIFT_RULES

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["DriftResult", "compute_drift", "slice_drift", "sample_rows", "MAX_CATEGORICAL_PREDICTION_VALUES",
           "SMALL_REFERENCE_ROWS", "DRIFT_CLAUSES", "DRIFT_RULES", "rule_clauses", "top_features", "drift_verdict",
           "COUNTED", "verdict_section_html"]

#: evidently switches from distance tests to p-value tests at or below this many reference rows.
SMALL_REFERENCE_ROWS = 1000

#: An integer ``prediction`` column with at most this many distinct values (both sides together)
#: is treated as a class label (categorical); more, or a float column, as numeric (regression).
MAX_CATEGORICAL_PREDICTION_VALUES = 20


#: What ``n_features`` / ``n_drifted`` / ``share_drifted`` count, stated in every summary.
COUNTED = "features only (the prediction column is tested and reported apart as prediction_drift, not counted)"


def rule_clauses(rule: str | Sequence[str]) -> tuple[str, ...]:
    """The clauses of ``rule``: a name of :data:`DRIFT_RULES` or a list of :data:`DRIFT_CLAUSES`."""
    if isinstance(rule, str):
        if rule not in DRIFT_RULES:
            raise ValueError(f"unknown drift rule {rule!r}; expected one of {', '.join(DRIFT_RULES)} or a list of "
                             f"clauses ({', '.join(DRIFT_CLAUSES)})")
        return DRIFT_RULES[rule]
    clauses = tuple(dict.fromkeys(rule))
    bad = [c for c in clauses if c not in DRIFT_CLAUSES]
    if bad or not clauses:
        raise ValueError(f"drift rule clauses must be a non-empty list of {', '.join(DRIFT_CLAUSES)}; "
                         f"got {list(rule)!r}")
    return tuple(c for c in DRIFT_CLAUSES if c in clauses)


def _rule_name(rule: str | Sequence[str]) -> str:
    if isinstance(rule, str):
        return rule
    clauses = rule_clauses(rule)
    named = [n for n, c in DRIFT_RULES.items() if c == clauses]
    return named[0] if named else "+".join(clauses)


def top_features(importance: Sequence[dict[str, Any]] | None, features: Sequence[str], k: int) -> list[str]:
    """The ``k`` most important of ``features`` by ``importance_mean`` (rows of a version's
    ``feature_importance``: ``{feature, importance_mean, ...}``); features with an importance of 0 or
    less (the model does not use them) are never "important". Ties: by name."""
    if k <= 0 or not importance:
        return []
    wanted = set(features)
    rows = [r for r in importance if r.get("feature") in wanted and _json_float(r.get("importance_mean")) is not None
            and float(r["importance_mean"]) > 0]
    rows.sort(key=lambda r: (-float(r["importance_mean"]), str(r["feature"])))
    return [str(r["feature"]) for r in rows[:k]]


def drift_verdict(summary: dict[str, Any], rule: str | Sequence[str] = "share", *, top_k: int = 3,
                  importance: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The verdict of ``rule`` on a :func:`compute_drift` summary (its ``columns``, ``share_drifted``,
    ``threshold`` and ``prediction_drift``): ``{rule, clauses, fired, drift, reason, share, prediction,
    top_features}`` where each clause entry says whether it fired and on what. Every clause is
    evaluated and reported, also those not in the rule (``in_rule: false``); only clauses of the rule
    decide ``drift``."""
    clauses = rule_clauses(rule)
    drifted = {c["column"] for c in summary.get("columns", []) if c.get("drifted")}
    share, threshold = float(summary.get("share_drifted") or 0.0), float(summary["threshold"])
    n_features = int(summary.get("n_features") or 0)
    share_fired = n_features > 0 and share >= threshold
    share_entry = {"in_rule": "share" in clauses, "fired": share_fired, "n_drifted": summary.get("n_drifted"),
                   "n_features": n_features, "share_drifted": share, "threshold": threshold,
                   "reason": (f"{summary.get('n_drifted')}/{n_features} features drifted (share {share:.2f} "
                              f"{'>=' if share_fired else '<'} threshold {threshold:.2f})")}
    pd_ = summary.get("prediction_drift")
    if pd_ is None:
        pred_entry = {"in_rule": "prediction" in clauses, "fired": False, "column": None,
                      "reason": "no prediction column tested"}
    else:
        hit = bool(pd_.get("drifted"))
        score = pd_.get("score")
        how = (f"{pd_.get('stattest')} {score:.3g}, threshold {pd_.get('threshold'):.3g}"
               if score is not None and pd_.get("threshold") is not None else pd_.get("note", "untestable"))
        pred_entry = {"in_rule": "prediction" in clauses, "fired": hit, "column": pd_.get("column"),
                      "stattest": pd_.get("stattest"), "score": score, "threshold": pd_.get("threshold"),
                      "reason": f"prediction column {pd_.get('column')!r} {'drifted' if hit else 'did not drift'} "
                                f"({how})"}
    features = [c["column"] for c in summary.get("columns", [])]
    top = top_features(importance, features, top_k)
    top_drifted = [f for f in top if f in drifted]
    if top_k <= 0:
        why = "top_k is 0"
    elif not importance:
        why = "no feature importance for this model version (feature_importance is empty)"
    elif not top:
        why = "no feature with an importance above 0"
    else:
        why = (f"top-{top_k} important feature(s) {', '.join(top)}: "
               + (f"drifted: {', '.join(top_drifted)}" if top_drifted else "none drifted"))
    top_entry = {"in_rule": "top_features" in clauses, "fired": bool(top_drifted), "k": int(top_k),
                 "features": top, "drifted": top_drifted, "reason": why}
    entries: dict[str, dict[str, Any]] = {"share": share_entry, "prediction": pred_entry, "top_features": top_entry}
    fired = [c for c in clauses if entries[c]["fired"]]
    if fired:
        reason = "; ".join(entries[c]["reason"] for c in fired)
    else:
        reason = "no clause fired: " + "; ".join(entries[c]["reason"] for c in clauses)
    return {"rule": _rule_name(rule), "clauses": list(clauses), "fired": fired, "drift": bool(fired),
            "reason": reason, **entries}


def verdict_section_html(summary: dict[str, Any]) -> str:
    """A self-styled HTML block for the top of the drift report: the verdict, the clause(s) that
    fired and the counts of ``drift.json`` with what they count (names escaped)."""
    from html import escape

    v = summary.get("verdict") or {}
    n, k = summary.get("n_features"), summary.get("n_drifted")
    verdict = "DRIFT" if summary.get("dataset_drift") else "no drift"
    fired = ", ".join(v.get("fired") or []) or "none"
    rows = "".join(
        f"<tr><td>{escape(c)}</td><td>{'yes' if v[c].get('in_rule') else 'no'}</td>"
        f"<td>{'FIRED' if v[c].get('fired') else '-'}</td><td>{escape(str(v[c].get('reason', '')))}</td></tr>"
        for c in DRIFT_CLAUSES if c in v)
    untestable = [c["column"] for c in summary.get("columns", []) if c.get("stattest") is None]
    note = (f"<p>Untestable feature(s) (all values missing on a side), counted here but not in evidently's table: "
            f"{escape(', '.join(untestable))}</p>" if untestable else "")
    pred = (summary.get("prediction_drift") or {}).get("column")
    pred_note = (f" The prediction column <code>{escape(str(pred))}</code> is tested on its own (the "
                 f"&quot;Value drift&quot; panel) and not counted." if pred else "")
    return ("<div id='mlops-drift-verdict' style='font-family:system-ui,sans-serif;margin:2em'>"
            f"<h2>Verdict: {verdict}</h2>"
            f"<p>Rule <code>{escape(str(v.get('rule', '')))}</code> (drift when any of "
            f"{escape(', '.join(v.get('clauses') or []))} fires); fired: <b>{escape(fired)}</b>.</p>"
            f"<p>Counted: <b>{k} of {n} features drifted</b> (share {float(summary.get('share_drifted') or 0):.4f}, "
            f"threshold {float(summary.get('threshold') or 0):.2f}): features only, as in drift.json and the registry "
            f"page; evidently's dataset drift panel below counts the same feature columns.{pred_note}</p>{note}"
            "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
            "<tr><th>clause</th><th>in rule</th><th>fired</th><th>detail</th></tr>"
            f"{rows}</table></div>")


def _insert_after_body(report_html: str, section_html: str) -> str:
    """``section_html`` right after the opening ``<body ...>`` tag (prepended if there is none)."""
    import re

    m = re.search(r"<body\b[^>]*>", report_html, flags=re.IGNORECASE)
    return section_html + report_html if m is None else report_html[:m.end()] + section_html + report_html[m.end():]


@dataclass(frozen=True)
class DriftResult:
    """The result of :func:`compute_drift`.

    Attributes:
        summary: JSON-safe dict (schema in ``docs/drift.md``); identical whether or not HTML
            was requested.
        html: evidently's standalone HTML report (embedded data escaped for ``<script>``), or
            ``None`` when ``html=False``.
    """

    summary: dict[str, Any]
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
    rule: str | Sequence[str] = "share",
    top_k: int = 3,
    importance: Sequence[dict[str, Any]] | None = None,
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
        threshold: the ``share`` clause fires when ``share_drifted >= threshold`` (share of drifted
            features).
        stattest_threshold: per-column threshold passed to evidently for every test (``None``:
            each test's default, 0.05 for p-values and 0.1 for distances).
        sample_size: sample each side to at most this many rows (``None``: no sampling).
        seed: sampling seed.
        html: also render evidently's HTML report (the summary is the same either way), with the
            verdict and the counts of the summary at its top.
        rule: ``"share"`` (default here: the share clause alone), ``"combined"`` (share OR
            prediction OR top features; the model config's default) or a list of clauses of
            :data:`DRIFT_CLAUSES`; see :func:`drift_verdict`. Decides ``dataset_drift``.
        top_k: how many of the most important features the ``top_features`` clause watches.
        importance: the version's ``feature_importance`` rows (``{feature, importance_mean}``);
            without them the ``top_features`` clause cannot fire.

    Raises:
        ValueError: a listed column is missing, a column is both numeric and categorical, a side
            has no rows, or a parameter is out of range.
    """

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
    clauses = rule_clauses(rule)
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k!r}")
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
        results, html_str = _run_evidently(ref, cur, tested, kinds, threshold, stattest_threshold, html,
                                           prediction_column=pred)

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
        "counted": COUNTED,
        "threshold": float(threshold),
        "share_drift": bool(feature_entries) and share >= threshold,
        "dataset_drift": False,  # the rule's verdict, set below
        "prediction_drift": prediction_drift,
        "stattest_threshold": _json_float(stattest_threshold),
        "rows": {"reference": len(reference), "current": len(current),
                 "reference_sampled": len(ref), "current_sampled": len(cur)},
        "sampled": len(ref) < len(reference) or len(cur) < len(current),
        "sample_size": sample_size,
        "seed": seed,
        "evidently_version": _evidently_version(),
    }
    verdict = drift_verdict(summary, clauses if not isinstance(rule, str) else rule, top_k=top_k,
                            importance=importance)
    summary["rule"] = verdict["rule"]
    summary["verdict"] = verdict
    summary["dataset_drift"] = verdict["drift"]
    if html and html_str is not None:
        html_str = _insert_after_body(html_str, verdict_section_html(summary))
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
                   html: bool, prediction_column: str | None = None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Run ``DataDriftPreset`` over the feature columns of ``columns`` and a separate ``ValueDrift`` over
    ``prediction_column`` (so evidently's "dataset drift" panel counts the features only, like the
    summary); per-column results (from the snapshot's public ``dict()``: metric config + value, test
    status) and the HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    numeric = [c for c in columns if kinds[c] == "numeric"]
    categorical = [c for c in columns if kinds[c] == "categorical"]
    # Every type list is given (even empty) so evidently does not infer column types.
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, text_columns=[],
                                datetime_columns=[], unknown_columns=[], list_columns=[])
    feature_columns = [c for c in columns if c != prediction_column]
    metrics: list[Any] = []
    if feature_columns:
        metrics.append(DataDriftPreset(columns=feature_columns, drift_share=threshold, threshold=stattest_threshold))
    if prediction_column in columns:
        # method=None: evidently picks the test as the preset would (same type, size and threshold rules)
        metrics.append(ValueDrift(column=prediction_column, threshold=stattest_threshold))
    # include_tests=True gives each ValueDrift a pass/fail test: evidently's own "drifted" verdict,
    # which knows whether the score is a p-value (drift below) or a distance (drift above).
    report = Report(metrics, include_tests=True)
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
    from airflow_mlops.reports.sanitize import sanitize_evidently_html

    # evidently embeds column names and category values unescaped in an inline <script>; re-encode
    # them so the page cannot run injected script wherever it is opened (see html_safety).
    return out, sanitize_evidently_html(snapshot.get_html_str(as_iframe=False))


def slice_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    slice_column: str,
    min_rows: int = 100,
    **kw: Any,
) -> dict[str, dict[str, Any]]:
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
    out: dict[str, dict[str, Any]] = {}
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
