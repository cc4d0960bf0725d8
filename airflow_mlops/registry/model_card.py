"""Model cards: one Markdown and one HTML page per registered version, under its ``reports/``.

The card is a *view* of the registry, rendered from the version's ``metadata.json`` (hash-committed,
immutable) and the model's ``state.json`` (aliases, approvals, lifecycle, audit log); it holds
nothing that is not stored there. It is written at registration and re-rendered after every
promotion decision and approval, and after a rollback for both versions whose aliases changed
(:func:`airflow_mlops.registry.lifecycle.refresh_cards`); its status names the registry change its aliases are as
of ("aliases as of"), so a card not yet re-rendered never passes off a stale alias as current. It is
the one artifact of a version that is replaced: it is
**not** listed in ``metadata.json``'s ``artifacts`` (their sha256 stay valid) and the report server
marks it "unverified: attached after registration". The card names the sha256 of the
``metadata.json`` it was rendered from.

Sections: status (aliases, lifecycle, approval), overview (owner, description, intended use,
limitations, task, estimator), training data (URI, fingerprint, date window), metrics beside the naive
baseline (and CV), per-class metrics (classifiers), permutation feature importance, smoke test and
resource profile, fairness (groups and gaps, when ``sensitive_features`` is set), the latest promotion
decision with its reasons and each check (broken constraints with value and limit), and the approval
and alias history of the version.

:func:`write_model_card` writes ``reports/model_card.md`` and ``reports/model_card.html``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from airflow_mlops.registry.model_registry import ModelRegistry

CARD_MD = "reports/model_card.md"
CARD_HTML = "reports/model_card.html"
IMPORTANCE_ROWS = 15


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def _md_text(text: str) -> str:
    """Free text (names, reasons typed by users) made inert in Markdown: ``&`` and ``<`` as HTML entities
    (Markdown renderers pass raw HTML through; with no ``<`` no tag can start, and entities show as the
    characters; ``>`` stays readable, as in "value > limit") and ``[``, ``]`` backslash-escaped (no links)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("[", "\\[").replace("]", "\\]")


def _md_cell(v: Any) -> str:
    return _md_text(_fmt(v)).replace("|", "\\|").replace("\n", " ")


def latest_decision(state: Mapping[str, Any], version: int) -> dict[str, Any] | None:
    """The last promotion decision about ``version`` recorded in the audit log (alias set to it by
    the gate, with its details), or ``None``."""
    ev: dict[str, Any]
    for ev in reversed(state.get("audit") or []):
        if (ev.get("action") == "set_alias" and ev.get("version") == version
                and ev.get("alias") in ("champion", "challenger") and ev.get("details")):
            return ev
    return None


def version_history(state: Mapping[str, Any], version: int) -> list[dict[str, Any]]:
    """Audit events about ``version``: registration, aliases, approvals/rejections, lifecycle."""
    return [ev for ev in state.get("audit") or [] if ev.get("version") == version]


def card_sections(meta: Mapping[str, Any], state: Mapping[str, Any],
                  decision: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """The card as ``[(title, content)]``; content is a ``str`` paragraph, a ``dict`` (key/value
    table) or ``(header, rows)`` (table). Shared by the Markdown and HTML renderers."""
    from airflow_mlops.evaluation.metrics import higher_is_better

    version = int(meta["version"])
    aliases = sorted(a for a, v in (state.get("aliases") or {}).items() if int(v) == version)
    # the card is a snapshot: say as of which registry change its aliases are (a later alias change made
    # elsewhere, e.g. a rollback, shows in the registry before this card is re-rendered)
    audit = state.get("audit") or []
    aliases_as_of = audit[-1].get("at") if audit else None
    approval = (state.get("approvals") or {}).get(str(version)) or meta.get("approval") or {}
    lifecycle = (state.get("lifecycle") or {}).get(str(version)) or {"state": "active"}
    metrics = meta.get("metrics") or {}
    primary = meta.get("primary_metric")
    sections: list[tuple[str, Any]] = [
        ("Status", {"aliases": ", ".join(aliases) or "none",
                    "aliases as of": (f"{aliases_as_of} (registry state when this card was rendered; the "
                                      "registry's aliases are authoritative)") if aliases_as_of else None,
                    "lifecycle": lifecycle.get("state"),
                    "approval": approval.get("status"), "approval required": approval.get("required"),
                    "registered": meta.get("created_at"), "registered by": meta.get("registered_by")}),
        ("Overview", {"owner": meta.get("owner"), "description": meta.get("description") or "(not given)",
                      "intended use": meta.get("intended_use") or "(not given)",
                      "limitations": meta.get("limitations") or "(not given)",
                      "task": meta.get("task"), "target": meta.get("target"),
                      "features": ", ".join(meta.get("features") or []),
                      "estimator": meta.get("estimator"), "params": meta.get("params"),
                      "best params (search)": meta.get("best_params"),
                      "trained by": " / ".join(str(meta.get(k)) for k in ("dag_id", "run_id", "task_id")
                                               if meta.get(k)) or "a script"}),
    ]
    origin = meta.get("origin") or {}
    if origin:  # a model trained elsewhere: where it came from (it was evaluated, not trained, here)
        sections.append(("Trained elsewhere", {
            "source": origin.get("uri"), "kind": origin.get("kind"), "MLflow server": origin.get("tracking_uri"),
            "MLflow run": origin.get("run_id"),
            "MLflow model version": (f"{origin['registered_model']} v{origin.get('model_version')}"
                                     if origin.get("registered_model") else None),
            "format": " / ".join(str(origin[k]) for k in ("flavor", "format") if origin.get(k)) or None,
            "file sha256": origin.get("sha256"),
            "evaluated here": "on the holdout of the data window below; no cross-validation"}))
    td = meta.get("training_data") or {}
    fp = td.get("fingerprint") or {}
    parts = td.get("partitions") or []
    sections.append(("Training data", {
        "URI": td.get("uri"), "date window": f"{parts[0]} .. {parts[-1]} ({len(parts)} partitions)" if parts else None,
        "window end": td.get("window_end"), "rows": fp.get("rows"), "content hash": fp.get("content_hash"),
        "schema hash": fp.get("schema_hash"), "split": meta.get("split"), "cv": meta.get("cv_scheme"),
    }))
    holdout, baseline, cv = metrics.get("holdout") or {}, metrics.get("baseline") or {}, metrics.get("cv") or {}
    rows = []
    for name in dict.fromkeys([*holdout, *baseline]):
        h, b = holdout.get(name), baseline.get(name)
        lift = None
        if isinstance(h, (int, float)) and isinstance(b, (int, float)):
            try:
                lift = (h - b) if higher_is_better(name) else (b - h)
            except ValueError:
                lift = None
        c = cv.get(name) or {}
        rows.append([name + (" (primary)" if name == primary else ""), h, b, lift, c.get("mean"), c.get("std")])
    sections.append(("Metrics (holdout, beside the naive baseline)",
                     (["metric", "holdout", "naive baseline", "better than baseline by", "cv mean", "cv std"], rows)))
    if metrics.get("per_class"):
        sections.append(("Per-class metrics (holdout)", (
            ["class", "precision", "recall", "f1", "support"],
            [[c, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support")]
             for c, v in metrics["per_class"].items()])))
    if meta.get("feature_importance"):
        sections.append((f"Feature importance (permutation on the holdout, {meta.get('importance_metric')})", (
            ["feature", "importance mean", "std"],
            [[r["feature"], r.get("importance_mean"), r.get("importance_std")]
             for r in meta["feature_importance"][:IMPORTANCE_ROWS]])))
    profile = meta.get("profile")
    if profile:
        lat = profile.get("latency_ms") or {}
        sections.append(("Smoke test and resource profile (fresh process)", {
            "predictions reproduced": f"{profile.get('rows_checked')} rows, labels equal, max abs probability "
                                      f"diff {_fmt(profile.get('max_abs_proba_diff'))}",
            **{f"latency, batch of {int(k):,} rows (ms)": v for k, v in sorted(lat.items(), key=lambda kv: int(kv[0]))},
            "latency_ms_per_10k_rows": profile.get("latency_ms_per_10k_rows"),
            "model_bytes": profile.get("model_bytes"), "model_size_mb": profile.get("model_size_mb"),
            "peak_rss_mb (absolute)": profile.get("peak_rss_mb"),
            "peak_rss_delta_mb (above import baseline)": profile.get("peak_rss_delta_mb"),
            "load seconds": profile.get("load_seconds"), "python": profile.get("python"),
        }))
    else:
        sections.append(("Smoke test and resource profile (fresh process)", "not measured for this version"))
    fair = meta.get("fairness")
    if fair:
        primary_f = fair.get("primary_metric")
        cols = ["group", "count", "selection_rate", "true_positive_rate", "false_positive_rate", primary_f]
        sections.append((f"Fairness ({', '.join(fair.get('sensitive_features') or [])})", {
            fair.get("metric"): f"{_fmt(fair.get('gap'))} (limit max_gap {_fmt(fair.get('max_gap'))})",
            f"{primary_f} gap between groups": f"{_fmt(fair.get('primary_gap'))} "
                                               f"(limit max_primary_gap {_fmt(fair.get('max_primary_gap'))})",
            "rows": fair.get("rows"), "note": fair.get("note"), "computed with": fair.get("library"),
        }))
        sections.append(("Fairness by group", (cols, [[g.get(c) for c in cols] for g in fair.get("groups") or []])))
    ev = None
    if decision is None:
        ev = latest_decision(state, version)
        decision = (ev or {}).get("details", {}).get("decision") if ev else None
    if decision:
        checks = decision.get("checks") or []
        sections.append(("Promotion decision", {
            "verdict": decision.get("summary") or (ev or {}).get("reason"),
            "alias": decision.get("alias") or (ev or {}).get("alias"),
            "champion compared": decision.get("champion_version"),
            "decided by": decision.get("decided_by") or (ev or {}).get("actor"),
            "broken constraints": "; ".join(decision.get("violations") or []) or "none",
        }))
        if checks:
            sections.append(("Gate checks", (
                ["constraint", "metric", "value", "limit", "result"],
                [[c.get("constraint"), c.get("metric"), c.get("value"), c.get("limit"),
                  "ok" if c.get("passed") else f"BROKEN: {c.get('violation', '')}"] for c in checks])))
        if decision.get("reasons"):
            sections.append(("Reasons", "\n".join(f"- {r}" for r in decision["reasons"])))
    else:
        sections.append(("Promotion decision", "no promotion decision yet"))
    history = version_history(state, version)
    sections.append(("Approval and alias history", (
        ["at", "actor", "action", "alias", "from", "to", "reason"],
        [[e.get("at"), e.get("actor"), e.get("action"), e.get("alias"), e.get("from"), e.get("to"), e.get("reason")]
         for e in history]) if history else "no events"))
    return sections


def render_markdown(meta: Mapping[str, Any], state: Mapping[str, Any], decision: Mapping[str, Any] | None = None,
                    *, metadata_sha256: str | None = None) -> str:
    """The card as Markdown; every value goes through :func:`_md_text` (no raw HTML, no links)."""
    lines = [f"# Model card: {_md_cell(meta.get('name'))} v{_md_cell(meta.get('version'))}", ""]
    for title, content in card_sections(meta, state, decision):
        lines += [f"## {_md_cell(title)}", ""]
        if isinstance(content, str):
            lines.append(_md_text(content))
        elif isinstance(content, Mapping):
            lines += ["| field | value |", "|---|---|"]
            lines += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in content.items() if v not in (None, "")]
        else:
            header, rows = content
            lines += ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
        lines.append("")
    if metadata_sha256:
        lines.append(f"_Rendered from metadata.json sha256 `{_md_cell(metadata_sha256)}`._")
    return "\n".join(lines) + "\n"


def render_html(meta: Mapping[str, Any], state: Mapping[str, Any], decision: Mapping[str, Any] | None = None,
                *, metadata_sha256: str | None = None) -> str:
    """The card as one self-contained HTML page (every value escaped)."""
    from airflow_mlops.reports import html as reports

    out: list[tuple[str, str]] = []
    for title, content in card_sections(meta, state, decision):
        if isinstance(content, str):
            items = content.splitlines()
            if items and all(i.startswith("- ") for i in items):
                html = "<ul>" + "".join(f"<li>{reports.esc(i[2:])}</li>" for i in items) + "</ul>"
            else:
                html = f"<p>{reports.esc(content)}</p>"
        elif isinstance(content, Mapping):
            html = reports.kv_table({k: v for k, v in content.items() if v not in (None, "")})
        else:
            header, rows = content
            html = reports.table([["" if c is None else c for c in r] for r in rows], header)
        if title == "Promotion decision" and isinstance(content, Mapping):
            cls = "bad" if content.get("broken constraints") not in (None, "none") else "ok"
            html = f"<div class='{cls}'>{html}</div>"
        out.append((title, html))
    if metadata_sha256:
        out.append(("Provenance",
                    f"<p>Rendered from metadata.json sha256 <code>{reports.esc(metadata_sha256)}</code>.</p>"))
    return reports.page(f"Model card: {meta.get('name')} v{meta.get('version')}", out)


def write_model_card(registry: ModelRegistry, name: str, version: int,
                     decision: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Render and (re)write ``reports/model_card.md`` and ``.html`` of a committed version.

    Returns ``{"model_card_md": uri, "model_card": html uri}``. Atomic replace through the artifact
    store; the hashed artifacts of ``metadata.json`` are untouched.
    """
    from airflow_mlops.store.artifacts import join

    meta_key = join(registry.prefix, name, "versions", str(int(version)), "metadata.json")
    raw = registry.store.read_bytes(meta_key)
    meta = json.loads(raw)
    state = registry.state(name)
    digest = hashlib.sha256(raw).hexdigest()
    out = {}
    for rel, text, field in ((CARD_MD, render_markdown(meta, state, decision, metadata_sha256=digest), "model_card_md"),
                             (CARD_HTML, render_html(meta, state, decision, metadata_sha256=digest), "model_card")):
        key = join(registry.prefix, name, "versions", str(int(version)), rel)
        out[field] = registry.store.write_bytes(key, text.encode())
    return out


def card_uri(registry: ModelRegistry, name: str, version: int, html: bool = True) -> str:
    return registry.version_uri(name, version, CARD_HTML if html else CARD_MD)


__all__: Sequence[str] = ["CARD_HTML", "CARD_MD", "card_sections", "card_uri", "latest_decision",
                          "render_html", "render_markdown", "version_history", "write_model_card"]
