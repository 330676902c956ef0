"""HTML and JSON rendering of a :class:`~shipyard.data.profile.DataProfile` via ``shipyard.reports``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from shipyard.reports import (
    Chart,
    Metrics,
    Section,
    Table,
    Text,
    bar_chart,
    heatmap,
    histogram,
    render_report,
    to_jsonable,
)

if TYPE_CHECKING:
    from shipyard.data._columns import ColumnProfile
    from shipyard.data.profile import DataProfile

__all__ = ["profile_html", "profile_report_dict"]

_STAT_ORDER = ["min", "p1", "p5", "p25", "p50", "p75", "p95", "p99", "max", "mean", "std", "iqr", "zeros",
               "negatives", "infinite", "outliers_iqr", "outlier_rate"]


def _column_section(c: ColumnProfile) -> Section:
    blocks: list[Any] = [Metrics({
        "kind": c.kind, "missing": c.missing, "missing rate": c.missing_rate, "distinct": c.distinct,
        **({"IV": c.target["iv"]} if c.target else {}),
        **({"flags": ", ".join(c.flags)} if c.flags else {}),
    })]
    stats = [{"statistic": k, "value": c.stats[k]} for k in _STAT_ORDER if k in c.stats]
    stats += [{"statistic": k, "value": v} for k, v in c.stats.items()
              if k not in _STAT_ORDER and not isinstance(v, list)]
    if stats:
        blocks.append(Table.from_records(stats, "Statistics"))
    if c.histogram:
        blocks.append(Chart(histogram([], counts=c.histogram["counts"], edges=c.histogram["edges"],
                                      title=f"{c.name}: distribution", width=420, height=240),
                            "Histogram (20 equal-width bins)"))
    elif c.top_values:
        tv = c.top_values
        blocks.append(Chart(bar_chart([str(t["value"]) for t in tv], [t["count"] for t in tv],
                                      title=f"{c.name}: top values", y_label="count", width=420, height=260),
                            "Top values"))
    if c.target:
        bins = c.target["bins"]
        blocks.append(Chart(bar_chart([str(b["bin"]) for b in bins], [b["count"] for b in bins],
                                      title=f"{c.name}: count and bad rate", y_label="count",
                                      line=[b["bad_rate"] for b in bins], line_label="bad rate",
                                      width=460, height=300), "Target rate by bin"))
        blocks.append(Table.from_records(bins, f"Target rate, WOE and IV by bin (IV = {c.target['iv']:.4f})"))
    if c.top_values:
        blocks.append(Table.from_records(c.top_values, "Top values"))
    return Section(f"{c.name}", blocks, collapsed=True)


def _sections(p: DataProfile) -> list[Section]:
    ov = p.overview()
    alerts = [{"column": c.name, "flag": f} for c in p.columns.values() for f in c.flags]
    head = [Metrics(ov, "Overview")]
    if p.target_summary:
        head.append(Metrics({k: v for k, v in p.target_summary.items() if k not in ("woe", "smoothing")},
                            "Target"))
    head.append(Text(
        "Missing rate = nulls / rows; distinct excludes missing; quantiles interpolate linearly; std uses "
        "ddof = 1; IQR outliers lie outside [Q1 − 1.5·IQR, Q3 + 1.5·IQR]; infinities are counted and left "
        "out of moments. " + (f"Target analysis: WOE = ln(bad% / good%), quantile bins ({p.settings['target_bins']} "
                              "per numeric column), a bin with no bads or no goods gets 0.5 added to both counts."
                              if p.target else "")
    ))
    sections = [Section("Overview", head)]
    sections.append(Section("Alerts", [Table.from_records(alerts, f"{len(alerts)} flags", "alerts")
                                       if alerts else Text("No column raised a flag.")]))
    sections.append(Section("Columns", [Table.from_frame(p.summary_table(), "Summary per column", "columns")]))
    if len(p.corr_columns) > 1:
        corr_blocks: list[Any] = [
            Text(f"Pearson correlation over pairwise-complete rows for {len(p.corr_columns)} numeric columns; "
                 f"pairs with |r| ≥ {p.settings['corr_threshold']:g} are listed."),
            Table.from_records(p.high_corr, "Highly correlated pairs", "high_corr") if p.high_corr
            else Text("No highly correlated pairs."),
            Chart(heatmap(p.corr, p.corr_columns, title="Correlation matrix"), "Correlation matrix"),
        ]
        sections.append(Section("Correlations", corr_blocks))
    if p.target:
        iv = p.iv_table()
        sections.append(Section("Information value", [
            Chart(bar_chart(list(iv["column"][:30]), iv["iv"][:30].to_numpy(), title="IV by column (top 30)",
                            y_label="IV", width=720, height=340), "IV ranking"),
            Table.from_frame(iv, "IV per column", "iv"),
        ]))
    sections.append(Section("Column details", subsections=[_column_section(c) for c in p.columns.values()]))
    return sections


def profile_html(p: DataProfile) -> str:
    """Self-contained HTML data-quality report."""
    meta = {"source": p.source or "in-memory data", "rows": p.n_rows, "columns": p.n_columns,
            "target": p.target or "—", "computed in (s)": round(p.elapsed_s, 2)}
    return render_report("Data-quality report", _sections(p), meta=meta)


def profile_report_dict(p: DataProfile) -> dict[str, Any]:
    """JSON twin: overview, per-column profiles, correlations and IV with the same numbers as the HTML."""
    return to_jsonable({
        "title": "Data-quality report",
        "source": p.source,
        "overview": p.overview(),
        "settings": p.settings,
        "target": p.target_summary,
        "columns": {name: c.to_dict() for name, c in p.columns.items()},
        "correlation": {"method": "pearson", "columns": p.corr_columns,
                        "matrix": pd.DataFrame(p.corr).to_numpy().tolist(), "high_pairs": p.high_corr},
        "iv": p.iv_table().to_dict(orient="records") if p.target else [],
        "elapsed_s": p.elapsed_s,
    })
