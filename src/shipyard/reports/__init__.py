"""Shared rendering of self-contained HTML reports (inline CSS + SVG) and their JSON twins.

Used by data-quality profiles, model reports, monitoring and the feature store::

    from shipyard.reports import Section, Metrics, Table, Chart, line_chart, render_report
    html = render_report("My report", [Section("Summary", [Metrics({"auc": 0.78})])])
"""

from shipyard.reports.charts import bar_chart, heatmap, histogram, line_chart
from shipyard.reports.render import (
    Chart,
    Metrics,
    Section,
    Table,
    Text,
    dumps_json,
    render_report,
    report_dict,
    to_jsonable,
)

__all__ = [
    "Chart",
    "Metrics",
    "Section",
    "Table",
    "Text",
    "bar_chart",
    "dumps_json",
    "heatmap",
    "histogram",
    "line_chart",
    "render_report",
    "report_dict",
    "to_jsonable",
]
