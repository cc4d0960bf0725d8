"""Self-contained HTML reports (no external assets, every value escaped, no row values)."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
h2{font-size:1.1em;margin-top:1.5em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f3f3f3}
.ok{color:#080}.bad{color:#b00;font-weight:bold}code{background:#f5f5f5;padding:0 .2em}"""


def esc(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        value = json.dumps(value, default=str)
    return html.escape("" if value is None else str(value))


def table(rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    items: list[Any] = list(rows)
    if items and isinstance(items[0], Mapping):
        header = header or list(items[0].keys())
        items = [[r.get(h) for h in header] for r in items]
    head = "".join(f"<th>{esc(h)}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in items)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def kv_table(data: Mapping[str, Any]) -> str:
    return table([[k, v] for k, v in data.items()], ["", "value"])


def page(title: str, sections: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{esc(h)}</h2>{content}" for h, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>")


def evaluation_html(meta: Mapping[str, Any]) -> str:
    """Evaluation report of a trained version: metrics beside the baseline, CV, importance, data."""
    m = meta.get("metrics", {})
    holdout, baseline, cv = m.get("holdout", {}), m.get("baseline", {}), m.get("cv", {})
    names = list(dict.fromkeys([*holdout, *baseline]))
    rows = [[n, holdout.get(n), baseline.get(n), (cv.get(n) or {}).get("mean"), (cv.get(n) or {}).get("std")]
            for n in names]
    sections = [
        ("Model", kv_table({"name": meta.get("name"), "version": meta.get("version"), "task": meta.get("task"),
                            "estimator": meta.get("estimator"), "primary metric": meta.get("primary_metric"),
                            "owner": meta.get("owner"), "trained by run": meta.get("run_id")})),
        ("Metrics (holdout vs naive baseline, CV on the training split)",
         table(rows, ["metric", "holdout", "baseline", "cv mean", "cv std"])),
    ]
    if m.get("per_class"):
        sections.append(("Per-class metrics", table(
            [{"class": c, **v} for c, v in m["per_class"].items()])))
    if meta.get("feature_importance"):
        sections.append(("Permutation importance (holdout)", table(meta["feature_importance"][:30])))
    td = meta.get("training_data", {})
    fp = td.get("fingerprint", {})
    sections.append(("Training data", kv_table({"uri": td.get("uri"), "partitions": td.get("partitions"),
                                                "rows": fp.get("rows"), "content hash": fp.get("content_hash")})))
    sections.append(("Parameters", kv_table({"params": meta.get("params"), "best_params": meta.get("best_params"),
                                             "cv": meta.get("cv_scheme"), "split": meta.get("split")})))
    search = meta.get("search") or {}
    if search.get("trials"):
        sections.append((f"Search trials ({search.get('method')}, {len(search['trials'])} candidates, "
                         f"CV {search.get('metric')})", search_trials_table(search["trials"])))
    return page(f"Evaluation: {meta.get('name')} v{meta.get('version')}", sections)


def search_trials_table(trials: Sequence[Mapping[str, Any]]) -> str:
    """One row per search candidate, best rank first: rank, CV mean and std, fit seconds, parameters."""
    halving = any("iteration" in t for t in trials)
    header = ["rank", "trial", "cv mean", "cv std", "fit s/fold", *(["iteration", "rows"] if halving else []),
              "params"]
    rows = [[t.get("rank"), t.get("trial"), t.get("cv_mean"), t.get("cv_std"), t.get("fit_seconds"),
             *([t.get("iteration"), t.get("n_resources")] if halving else []), t.get("params")]
            for t in sorted(trials, key=lambda t: (t.get("rank") or 0, t.get("trial") or 0))]
    return table(rows, header)


def decision_html(name: str, version: int, decision: Mapping[str, Any]) -> str:
    checks = [{"constraint": c["constraint"], "metric": c["metric"], "value": c["value"], "limit": c["limit"],
               "result": "ok" if c["passed"] else "BROKEN"} for c in decision.get("checks", [])]
    return page(f"Promotion decision: {name} v{version}", [
        ("Verdict", f"<p class='{'ok' if decision.get('promote') else 'bad'}'>{esc(decision.get('summary'))}</p>"),
        ("Checks", table(checks) if checks else "<p>none</p>"),
        ("Candidate metrics (holdout)", kv_table(decision.get("candidate") or {})),
        ("Champion metrics (same holdout)", kv_table(decision.get("champion") or {})),
    ])


def insert_section(report_html: str, section_html: str) -> str:
    """``section_html`` inserted before the last ``</body>`` of a report (appended if there is none)."""
    i = report_html.lower().rfind("</body>")
    return report_html + section_html if i < 0 else report_html[:i] + section_html + report_html[i:]


def drift_slices_section(slices: Sequence[Mapping[str, Any]], min_slice_size: int | None = None) -> str:
    """A self-styled HTML block with the per-slice drift table (appended to evidently's report)."""
    rows = [[s.get("slice") or s.get("column"), (s.get("rows") or {}).get("reference"),
             (s.get("rows") or {}).get("current"),
             "skipped" if s.get("skipped") else s.get("share_drifted"),
             "" if s.get("skipped") else ("DRIFT" if s.get("dataset_drift") else "no drift"),
             ", ".join(s.get("drifted_columns") or []), s.get("reason", "")] for s in slices]
    body = (table(rows, ["slice", "reference rows", "current rows", "share drifted", "verdict", "drifted columns",
                         "note"]) if rows else "<p>no slices configured (<code>slices</code> in the model config)</p>")
    note = (f"<p>Slices with fewer than {esc(min_slice_size)} rows on either side are reported, not tested or "
            "alerted.</p>" if min_slice_size else "")
    return ("<div style='font-family:system-ui,sans-serif;margin:2em'>"
            f"<h2>Drift per slice</h2>{note}{body}</div>")


def performance_html(summary: Mapping[str, Any]) -> str:
    """Performance report of one window: verdict, coverage, metrics vs floors and the previous
    window, the per-slice table and the alerts. Counts and metrics only, never row values."""
    title = f"Performance: {summary.get('model')} {summary.get('window')}"
    if summary.get("status") == "skipped":
        return page(title, [("Skipped", f"<p>{esc(summary.get('reason'))}</p>"),
                            ("Window", kv_table({"window": summary.get("window"), "dates": summary.get("dates"),
                                                 "ground truth": summary.get("ground_truth_uri")}))])
    alerts = summary.get("alerts") or []
    verdict = (f"<p class='bad'>{len(alerts)} alert(s)</p>" if alerts else "<p class='ok'>no alert</p>")
    floors, ceilings = summary.get("floors") or {}, summary.get("ceilings") or {}
    prev = (summary.get("previous") or {}).get("metrics") or {}
    rows = []
    for metric, value in (summary.get("metrics") or {}).items():
        p = prev.get(metric)
        change = (value - p) / abs(p) if p not in (None, 0) else None
        limit = (f">= {floors[metric]}" if metric in floors else f"<= {ceilings[metric]}" if metric in ceilings else "")
        rows.append([metric, value, p, None if change is None else f"{change:+.1%}", limit])
    r = summary.get("rows") or {}
    sections = [
        ("Verdict", verdict),
        ("Window and coverage", kv_table({
            "window": summary.get("window"), "dates joined": ", ".join((summary.get("dates") or {}).get("joined", [])),
            "logged predictions": r.get("predictions"), "ground-truth rows": r.get("ground_truth"),
            "joined (labelled) rows": r.get("joined"), "coverage": summary.get("coverage"),
            "duplicate ground-truth rows": r.get("duplicate_ground_truth"),
            "labels without a prediction": r.get("unmatched_ground_truth"), "model versions": summary.get("versions"),
            "ground truth": summary.get("ground_truth_uri")})),
        (f"Metrics (previous window {(summary.get('previous') or {}).get('window')}, "
         f"max relative change {summary.get('max_relative_change')})",
         table(rows, ["metric", "window", "previous window", "relative change", "limit"])),
    ]
    slices = summary.get("slices") or []
    names = list(dict.fromkeys([summary.get("primary_metric"), *floors]))
    srows = [[s.get("slice") or s.get("column"), s.get("rows"), *[(s.get("metrics") or {}).get(m) for m in names],
              s.get("previous_rows"), *[(s.get("previous_metrics") or {}).get(m) for m in names],
              "yes" if s.get("alertable") else "no (too small)", "ALERT" if s.get("alert") else s.get("note", "")]
             for s in slices]
    sections.append((f"Per slice (alerted from {summary.get('min_slice_size')} labelled rows)",
                     table(srows, ["slice", "rows", *names, "previous rows", *[f"previous {m}" for m in names],
                                   "alertable", "alert / note"])
                     if srows else "<p>no slices configured (<code>slices</code> in the model config)</p>"))
    sections.append(("Alerts", table([[a.get("slice") or "(all rows)", a.get("message")] for a in alerts],
                                     ["scope", "message"]) if alerts else "<p>none</p>"))
    return page(title, sections)
