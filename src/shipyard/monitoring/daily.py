"""The daily model report of a scene: computed once per day, stored, rendered with 30-day trends.

``build(scene, day)`` reads the day's prediction log once (:func:`daylog.collect`), runs the
built-in metrics and the scene's custom plugins (each inside an error boundary), stores the day's
row in the statistics middle table (``monitoring_daily_stats``: a small summary, per-column counts
and each plugin's day statistics) and renders the self-contained HTML report and its JSON twin
into the artifact store — every generation is kept, ``history`` lists them. Trends read the stored
rows of earlier days (30 small rows), never their logs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from shipyard.artifacts import ArtifactStore
from shipyard.errors import InvalidInput
from shipyard.monitoring.baseline import Baseline
from shipyard.monitoring.builtin import BUILTIN
from shipyard.monitoring.daylog import DayLog, DayStats, collect, read_columns
from shipyard.monitoring.labels import LabelStore
from shipyard.monitoring.plugins import Plugin, PluginResult, load_plugin, run_plugin
from shipyard.monitoring.scenes import SceneSettings, SceneStore
from shipyard.monitoring.series import MINUTE_MS, SeriesStore
from shipyard.reports import Metrics, Section, Table, Text, dumps_json, line_chart, render_report, report_dict
from shipyard.store import MetadataStore
from shipyard.store.database import now_ms
from shipyard.store.schema import monitoring_daily_stats as D
from shipyard.store.schema import monitoring_reports as R

TREND_DAYS = 30
Progress = Callable[[int, int], None]


def parse_day(day: str | dt.date | None) -> str:
    if day is None:
        return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    if isinstance(day, dt.date):
        return day.isoformat()
    try:
        return dt.date.fromisoformat(str(day)).isoformat()
    except ValueError:
        raise InvalidInput(f"day {day!r} is not a date; use YYYY-MM-DD", {"field": "date"}) from None


@dataclass
class DailyReport:
    scene: str
    day: str
    rows: int
    html: str
    data: dict[str, Any]
    html_path: str | None = None
    json_path: str | None = None
    plugin_errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def save_html(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.html, encoding="utf-8")
        return out

    def save_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps_json(self.data), encoding="utf-8")
        return out


class DailyReports:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, scenes: SceneStore, series: SeriesStore,
                 labels: LabelStore) -> None:
        self.store = store
        self.artifacts = artifacts
        self.scenes = scenes
        self.series = series
        self.labels = labels

    # -- stored rows ------------------------------------------------------------------------------
    def stored(self, scene: str, since: str, until: str, *, detail: bool = False) -> list[dict[str, Any]]:
        cols = [D.c.day, D.c.rows, D.c.baseline, D.c.summary, D.c.plugins, D.c.computed_at]
        if detail:
            cols.append(D.c.detail)
        with self.store.read() as conn:
            rows = conn.execute(sa.select(*cols).where((D.c.scene == scene) & (D.c.day >= since) & (D.c.day <= until))
                                .order_by(D.c.day)).mappings().all()
        return [dict(r) for r in rows]

    def trend(self, scene: str, days: int = TREND_DAYS, until: str | None = None) -> pd.DataFrame:
        """One row per stored day up to ``until``: volume, approval rate, score and PSI figures, plugins."""
        end = parse_day(until) if until else dt.datetime.now(dt.UTC).date().isoformat()
        start = (dt.date.fromisoformat(end) - dt.timedelta(days=days - 1)).isoformat()
        out = []
        for r in self.stored(scene, start, end):
            s = r["summary"]
            row = {"day": r["day"], "rows": r["rows"], "requests": s.get("requests"),
                   "approval_rate": s.get("approval_rate"), "fallback_rate": s.get("fallback_rate"),
                   "score_mean": s.get("score_mean"), "score_psi": s.get("score_psi"),
                   "max_psi": s.get("max_psi"), "drifted": s.get("drifted"),
                   "latency_p99_ms": s.get("latency_p99_ms")}
            for plugin, stats in (r["plugins"] or {}).items():
                for k, v in (stats or {}).items():
                    row[f"{plugin}.{k}"] = v
            out.append(row)
        return pd.DataFrame(out)

    def _history(self, scene: str, day: str, plugin: str) -> pd.DataFrame:
        start = (dt.date.fromisoformat(day) - dt.timedelta(days=TREND_DAYS)).isoformat()
        prev = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
        rows = [{"day": r["day"], **((r["plugins"] or {}).get(plugin) or {})} for r in self.stored(scene, start, prev)]
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["day"])

    def history(self, scene: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(R).where(R.c.scene == scene).order_by(R.c.day.desc(), R.c.id.desc())
                                ).mappings().all()
        return [dict(r) for r in rows]

    def history_entry(self, report_id: int) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            row = conn.execute(sa.select(R).where(R.c.id == report_id)).mappings().first()
        return [dict(row)] if row else []

    # -- building ---------------------------------------------------------------------------------
    def plugins_of(self, settings: SceneSettings) -> list[Plugin]:
        return [*BUILTIN.values(), *[self._load(ref.name, ref.path) for ref in settings.plugins]]

    @staticmethod
    def _load(name: str, path: str | None) -> Plugin:
        try:
            return load_plugin(name, path)
        except Exception as exc:  # a plugin that cannot even load still gets its section with the error
            message = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"

            def broken(*_a: Any, _m: str = message) -> Any:
                raise RuntimeError(f"could not load the plugin: {_m}")

            return Plugin(name, broken, broken, name, f"path {path}" if path else "unknown")

    def build(self, scene: str, day: str | dt.date | None, actor: str, *, baseline: Baseline | None = None,
              save: bool = True, progress: Progress | None = None) -> DailyReport:
        day = parse_day(day)
        settings = self.scenes.settings(scene)
        if baseline is None and settings.baseline:
            baseline = self.scenes.baseline(settings.baseline)
        stats, seen = collect(self.artifacts, scene, day, baseline, score=settings.score, decision=settings.decision,
                              progress=progress)
        labels = self.labels.day_labels(scene, day)
        day_log = DayLog(stats, baseline, seen,
                         lambda cols: read_columns(self.artifacts, scene, day, baseline, cols), labels)
        day_log.settings = settings  # type: ignore[attr-defined]
        bins = baseline.bins_frame() if baseline is not None else pd.DataFrame(
            columns=["column", "kind", "bin", "lower", "upper", "expected_count", "expected_pct"])
        results: list[PluginResult] = []
        for plugin in self.plugins_of(settings):
            results.append(run_plugin(plugin, self._history(scene, day, plugin.name), day_log, bins))
        summary = stats.summary(settings.approve)
        by_name = {r.name: r.day_stats for r in results}
        summary.update(score_psi=(by_name.get("score") or {}).get("psi"),
                       max_psi=(by_name.get("psi") or {}).get("max_psi"),
                       drifted=(by_name.get("psi") or {}).get("drifted"),
                       columns=_column_drift(baseline, stats))
        self._store_day(scene, day, baseline, stats, summary, results, actor)
        sections = self._sections(scene, day, stats, summary, results, baseline)
        title = f"Daily report · {scene} · {day}"
        meta = {"scene": scene, "day": day, "rows": stats.rows,
                "baseline": baseline.name if baseline else "none"}
        html = render_report(title, sections, meta=meta)
        data = report_dict(title, sections, meta=meta)
        data["day_stats"] = {"summary": summary, "plugins": by_name}
        report = DailyReport(scene, day, stats.rows, html, data,
                             plugin_errors={r.name: r.error for r in results if r.error},
                             warnings=list(stats.warnings))
        if save:
            stamp = now_ms()
            folder = f"monitoring/reports/{_safe(scene)}/{day}/{stamp}"
            report.html_path = self.artifacts.put_bytes(f"{folder}.html", html.encode()).path
            report.json_path = self.artifacts.put_bytes(f"{folder}.json", dumps_json(data).encode()).path
            with self.store.begin() as conn:
                conn.execute(R.insert().values(scene=scene, day=day, html_path=report.html_path,
                                               json_path=report.json_path, rows=stats.rows, created_at=stamp,
                                               created_by=actor))
        return report

    def _store_day(self, scene: str, day: str, baseline: Baseline | None, stats: DayStats,
                   summary: dict[str, Any], results: list[PluginResult], actor: str) -> None:
        from shipyard.reports import to_jsonable

        values = {"baseline": baseline.name if baseline else None, "rows": stats.rows,
                  "summary": to_jsonable(summary), "detail": to_jsonable(stats.detail()),
                  "plugins": to_jsonable({r.name: r.day_stats for r in results if r.error is None}),
                  "computed_at": now_ms(), "computed_by": actor}
        with self.store.begin() as conn:
            conn.execute(D.delete().where((D.c.scene == scene) & (D.c.day == day)))
            conn.execute(D.insert().values(scene=scene, day=day, **values))

    def _sections(self, scene: str, day: str, stats: DayStats, summary: dict[str, Any],
                  results: list[PluginResult], baseline: Baseline | None) -> list[Section]:
        head: list[Any] = []
        if stats.rows == 0:
            head.append(Text(f"No traffic on {day}: the prediction log holds no served records of scene "
                             f"{scene!r} for this day."))
        head.append(Metrics({"records": stats.rows, "requests": stats.requests,
                             "versions": ", ".join(sorted(stats.by_version)) or "—",
                             "fallback rate": summary.get("fallback_rate"),
                             "approval rate": summary.get("approval_rate"),
                             "score PSI": summary.get("score_psi"), "max input PSI": summary.get("max_psi"),
                             "drifted inputs": summary.get("drifted"),
                             "p99 latency (ms)": summary.get("latency_p99_ms")}))
        head.append(Text(f"Baseline: {baseline.name} ({baseline.rows:,} rows)." if baseline else
                         "No baseline is set for this scene: drift sections are empty. Set one with "
                         "'shipyard monitor baseline'."))
        for w in stats.warnings:
            head.append(Text("Warning: " + w))
        sections = [Section("Overview", head)]
        sections.extend(r.section() for r in results)
        sections.append(self._trend_section(scene, day))
        sections.append(self._ops_section(scene, day))
        sections.append(self._labels_section(scene, day))
        return sections

    def _trend_section(self, scene: str, day: str) -> Section:
        frame = self.trend(scene, TREND_DAYS, day)
        if frame.empty:
            return Section("Trends (30 days)", [Text("No stored days yet.")])
        x = list(range(len(frame)))
        blocks: list[Any] = []
        from shipyard.reports import Chart

        if len(frame) < 2:
            blocks.append(Text("One stored day so far: the charts start with the second."))
        charts = (("rows", "Records per day"), ("approval_rate", "Approval rate"), ("score_psi", "Score PSI"),
                  ("max_psi", "Largest input PSI"), ("score_mean", "Mean score"))
        for col, title in charts if len(frame) >= 2 else ():
            if col in frame.columns and frame[col].notna().any():
                ys = pd.to_numeric(frame[col], errors="coerce").tolist()
                blocks.append(Chart(line_chart({col: (x, ys)}, title=f"{title} (day index from {frame['day'].iloc[0]})"),
                                    title, {"day": frame["day"].tolist(), col: ys}))
        keep = [c for c in ("day", "rows", "approval_rate", "score_mean", "score_psi", "max_psi", "drifted",
                            "latency_p99_ms") if c in frame.columns]
        blocks.append(Table.from_frame(frame[keep], name="trend"))
        return Section("Trends (30 days)", blocks)

    def _ops_section(self, scene: str, day: str) -> Section:
        start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)
        res = self.series.query(scene, start, start + 86_400_000, step_ms=60 * MINUTE_MS)
        if not res.points:
            return Section("Operations", [Text("No operational series recorded for this day.")])
        total = res.total().to_dict()
        keep = ("requests", "errors", "error_rate", "fallbacks", "latency_p50_ms", "latency_p99_ms",
                "features_latency_p99_ms", "model_latency_p99_ms", "instances")
        rows = []
        for p in res.points:
            d = p.to_dict()
            rows.append({"hour": time.strftime("%H:00", time.gmtime(d["t"] / 1000)), **{k: d[k] for k in keep}})
        return Section("Operations", [Metrics({k: total[k] for k in keep}),
                                      Table.from_records(rows, title="Per hour (UTC)", name="operations")])

    def _labels_section(self, scene: str, day: str) -> Section:
        start = (dt.date.fromisoformat(day) - dt.timedelta(days=TREND_DAYS - 1)).isoformat()
        m = self.labels.metrics(scene, start, day)
        if m.matched == 0:
            return Section("Performance (labels)", [Text(f"No labels matched yet ({m.unmatched} unmatched).")])
        return Section("Performance (labels)", [
            Metrics({"labelled": m.matched, "unmatched labels": m.unmatched}),
            Table.from_frame(m.by_version, title="By version", name="labels_by_version"),
            Table.from_frame(m.by_day, title="By version and day", name="labels_by_day")])


def _column_drift(baseline: Baseline | None, stats: DayStats) -> dict[str, dict[str, float | None]]:
    """Per column: PSI, JS, Wasserstein (baseline columns) and missing rate — what alert rules read."""
    from shipyard.monitoring.baseline import compare

    out: dict[str, dict[str, float | None]] = {}
    for name, st in stats.columns.items():
        entry: dict[str, float | None] = {"missing_rate": st.missing_rate}
        base = baseline.columns.get(name) if baseline is not None else None
        if base is not None:
            r = compare(base, st)
            entry.update(psi=r["psi"], js=r["js"], wasserstein=r["wasserstein"], ks=r["ks"])
        out[name] = entry
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
