"""Make HTML that embeds data in inline ``<script>`` elements safe to open anywhere.

evidently (0.7) renders its standalone report as one page whose *first* ``<script>`` element holds
the report data as two JavaScript assignments::

    <script>
        var metric_<id> = {JSON};
        var additional_graphs_metric_<id> = {JSON};
    </script>

The JSON is ``json.dumps`` output, which leaves ``<``, ``>`` and ``&`` as they are. A column name
or category value such as ``</script><script>...</script>`` therefore ends the element early and the
rest runs as script (and ``<!--`` can swallow the real ``</script>``), in any browser that opens the
file from disk or S3.

:func:`sanitize_evidently_html` guarantees, or raises :class:`UnsafeReportError`:

* the page outside the two JSON values is byte-for-byte evidently's own template for the same
  dashboard id rendered with *no* data (checked by rendering that template and comparing), so no
  data value can sit anywhere but inside those two JSON values;
* each JSON value is located by parsing (:meth:`json.JSONDecoder.raw_decode` from its known start,
  so the parser, not a pattern, decides where it ends) and re-encoded by :func:`json_for_script`,
  which contains no ``<``, ``>``, ``&``, U+2028/U+2029 or any other non-ASCII character. Without
  ``<`` the HTML tokenizer cannot leave the script element (``</script``) or enter its escaped
  states (``<!--``), whatever the data is;
* the values are unchanged: the re-encoded JSON decodes to the same objects (the escapes are JSON
  string escapes), so the report shows the real names and values.

The summary numbers are computed before and independently of the HTML; nothing here renames data.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["UnsafeReportError", "json_for_script", "sanitize_evidently_html"]

_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


class UnsafeReportError(ValueError):
    """The HTML does not have the structure :func:`sanitize_evidently_html` can prove safe."""


def json_for_script(obj: Any, **kw: Any) -> str:
    """``obj`` as JSON that is safe inside an HTML ``<script>`` element (like Django's
    ``json_script``): ASCII only (so U+2028/U+2029 are escaped too) and ``<``, ``>``, ``&`` written
    as ``\\u003c``, ``\\u003e``, ``\\u0026``. Those three characters can only occur inside JSON
    strings, where the escapes decode to the same characters. ``kw`` goes to :func:`json.dumps`
    (``ensure_ascii`` is always on)."""
    kw["ensure_ascii"] = True
    return json.dumps(obj, **kw).translate(_SCRIPT_ESCAPES)


def _split_data_block(doc: str) -> tuple[str, str, str, Any, Any]:
    """``(dashboard_id, prefix, suffix, dashboard_json, graphs_json)`` of an evidently page: the
    text before the first JSON value, the text after the second, and the two decoded values."""
    opening = "<script>\n    var "
    start = doc.find(opening)
    if start < 0:
        raise UnsafeReportError("no evidently data block (<script> var metric_...) found")
    head = doc[:start + len(opening)]
    if "<script" in doc[:start].lower():
        raise UnsafeReportError("a <script> element precedes evidently's data block")
    id_end = doc.find(" = ", start + len(opening))
    dashboard_id = doc[start + len(opening):id_end] if id_end > 0 else ""
    if not (dashboard_id.startswith("metric_") and dashboard_id[7:].isalnum() and dashboard_id.isascii()):
        raise UnsafeReportError(f"unexpected evidently dashboard id {dashboard_id[:80]!r}")
    decoder = json.JSONDecoder()
    pos = id_end + len(" = ")
    try:
        dashboard, pos = decoder.raw_decode(doc, pos)
    except json.JSONDecodeError as e:
        raise UnsafeReportError(f"evidently's dashboard data is not JSON: {e}") from None
    middle = f";\n    var additional_graphs_{dashboard_id} = "
    if not doc.startswith(middle, pos):
        raise UnsafeReportError("unexpected text after evidently's dashboard data")
    try:
        graphs, pos = decoder.raw_decode(doc, pos + len(middle))
    except json.JSONDecodeError as e:
        raise UnsafeReportError(f"evidently's additional graphs are not JSON: {e}") from None
    return dashboard_id, head + dashboard_id + " = ", doc[pos:], dashboard, graphs


def _empty_template(dashboard_id: str) -> str:
    """evidently's standalone page for ``dashboard_id`` with no widgets and no graphs."""
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    page: str = file_html_template(TemplateParams(dashboard_id=dashboard_id,
                                                  dashboard_info=DashboardInfo(name="Report", widgets=[]),
                                                  additional_graphs={}))
    return page


def sanitize_evidently_html(doc: str) -> str:
    """evidently's standalone report (``snapshot.get_html_str(as_iframe=False)``) with its embedded
    data re-encoded by :func:`json_for_script` (see the module docstring for the guarantee).

    Raises:
        UnsafeReportError: the page is not evidently's template around two JSON values (another
            evidently version, or an iframe rendering); nothing is returned then, so an
            unverified page is never written.
    """
    dashboard_id, prefix, suffix, dashboard, graphs = _split_data_block(doc)
    t_id, t_prefix, t_suffix, _, _ = _split_data_block(_empty_template(dashboard_id))
    if (t_id, t_prefix, t_suffix) != (dashboard_id, prefix, suffix):
        raise UnsafeReportError("evidently's page differs from its template outside the data; "
                                "cannot prove the report safe (evidently version changed?)")
    middle = f";\n    var additional_graphs_{dashboard_id} = "
    return prefix + json_for_script(dashboard) + middle + json_for_script(graphs) + suffix
