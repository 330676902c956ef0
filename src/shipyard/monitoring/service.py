"""``Monitoring``: the one object the shells call (``ws.monitoring``), over narrow dependencies."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from shipyard.artifacts import ArtifactStore
from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring import alerts as al
from shipyard.monitoring.baseline import Baseline
from shipyard.monitoring.daily import DailyReport, DailyReports, parse_day
from shipyard.monitoring.drift import DriftReport, TableSource, read_table
from shipyard.monitoring.drift import drift as _drift
from shipyard.monitoring.labels import IngestResult, LabelMetrics, LabelStore
from shipyard.monitoring.logread import log_days
from shipyard.monitoring.notifiers import SecretResolver
from shipyard.monitoring.plugins import available, check_plugin_path
from shipyard.monitoring.scenes import PluginRef, SceneSettings, SceneStore
from shipyard.monitoring.series import MINUTE_MS, SeriesRecorder, SeriesResult, SeriesStore
from shipyard.store import MetadataStore
from shipyard.store.schema import monitoring_scenes as MONITORING_SCENES
from shipyard.store.schema import scenes as SERVING_SCENES

Progress = Callable[[int, int], None]
FeatureMonitor = Callable[[list[str]], dict[str, Any]]
ModelLineage = Callable[[str, str], dict[str, Any]]
# reads version N of a versioned dataset (the data subsystem's ``read``)
DatasetReader = Callable[[str, int], pd.DataFrame]
_DATASET_REF = re.compile(r"^([A-Za-z0-9_.\-]+)@(\d+)$")


class Monitoring:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, *, feature_monitor: FeatureMonitor | None = None,
                 model_lineage: ModelLineage | None = None, secrets: SecretResolver | None = None,
                 dataset_reader: DatasetReader | None = None) -> None:
        self.store = store
        self.artifacts = artifacts
        self.feature_monitor = feature_monitor
        self.model_lineage = model_lineage
        self.dataset_reader = dataset_reader
        self.secrets = secrets

    @cached_property
    def scenes(self) -> SceneStore:
        return SceneStore(self.store)

    @cached_property
    def series_store(self) -> SeriesStore:
        return SeriesStore(self.store)

    @cached_property
    def labels(self) -> LabelStore:
        return LabelStore(self.store, self.artifacts)

    @cached_property
    def daily(self) -> DailyReports:
        return DailyReports(self.store, self.artifacts, self.scenes, self.series_store, self.labels)

    @cached_property
    def alerts(self) -> al.AlertStore:
        return al.AlertStore(self.store, self.secrets, self.known_plugins)

    # -- drift ----------------------------------------------------------------------------------------
    @staticmethod
    def drift(reference: TableSource | Baseline, current: TableSource, **options: Any) -> DriftReport:
        return _drift(reference, current, **options)

    # -- baselines and settings -------------------------------------------------------------------------
    def create_baseline(self, name: str, data: TableSource, actor: str, *, scene: str | None = None,
                        columns: Sequence[str] | None = None, bins: int = 10,
                        source: dict[str, Any] | None = None) -> Baseline:
        """A baseline from a DataFrame or file (a training set, a chosen dataset)."""
        frame = read_table(data, "data")
        src = dict(source or {"kind": "data", "path": str(data)} if isinstance(data, str | Path) else source or
                   {"kind": "frame"})
        base = Baseline.from_frame(frame, name, columns=list(columns) if columns else None, bins=bins, source=src)
        return self.scenes.save_baseline(base, actor, scene)

    def baseline_from_log(self, name: str, scene: str, start: str, end: str, actor: str, *,
                          columns: Sequence[str] | None = None, bins: int = 10) -> Baseline:
        """A baseline from a reference window of the scene's own prediction log (days inclusive)."""
        from shipyard.monitoring.daylog import read_columns

        first, last = _day(start, "start"), _day(end, "end")
        if first > last:
            raise InvalidInput(f"start {first} is after end {last}; give the window's first day first",
                               {"field": "start"})
        days = [d for d in log_days(self.artifacts, scene) if first <= d <= last]
        frames = [read_columns(self.artifacts, scene, d, None, None) for d in days]
        frames = [f for f in frames if len(f)]
        if not frames:
            raise InvalidInput(f"scene {scene!r} has no logged traffic from {start} to {end}; choose a window "
                               "with traffic", {"field": "start"})
        frame = pd.concat(frames, ignore_index=True)
        from shipyard.monitoring.logread import META

        keep = list(columns) if columns else [c for c in frame.columns if c not in META]
        return self.create_baseline(name, frame[keep], actor, scene=scene, bins=bins,
                                    source={"kind": "prediction_log", "scene": scene, "start": start, "end": end})

    def baseline_from_model(self, name: str, model: str, version: str, actor: str, *, scene: str | None = None,
                            columns: Sequence[str] | None = None, bins: int = 10) -> Baseline:
        """A baseline from a model version's training data, as its lineage records it
        (``dataset_version``: ``dataset@version`` of a versioned dataset, as pipelines record it, or a
        Parquet/CSV path in the artifact store or on this machine)."""
        if self.model_lineage is None:
            raise InvalidInput("no model registry is connected; open monitoring from a workspace", {"field": "model"})
        lineage = self.model_lineage(model, str(version))
        where = lineage.get("dataset_version")
        if not where:
            raise InvalidInput(f"model {model} version {version} records no training data (lineage.dataset_version); "
                               "register it with lineage={'dataset_version': PATH} or give --data",
                               {"field": "lineage.dataset_version"})
        where = str(where)
        refs = [_DATASET_REF.match(part.strip()) for part in where.split(",")]
        if all(refs) and self.dataset_reader is not None:
            if len(refs) > 1:
                raise InvalidInput(f"model {model} version {version} was trained on several datasets "
                                   f"({', '.join(part.strip() for part in where.split(','))}); give the training "
                                   "data with --data", {"field": "lineage.dataset_version"})
            dataset, number = where.strip().split("@")
            frame = self.dataset_reader(dataset, int(number))
        elif self.artifacts.exists(where):
            import io

            raw = io.BytesIO(self.artifacts.get_bytes(where))
            frame = pd.read_csv(raw) if where.endswith(".csv") else pd.read_parquet(raw)
        elif Path(where).exists():
            frame = read_table(where, "lineage.dataset_version")
        else:
            raise NotFound(f"the training data {where!r} of model {model} version {version} is neither in the artifact "
                           "store nor on this machine", {"field": "lineage.dataset_version"})
        return self.create_baseline(name, frame, actor, scene=scene, columns=columns, bins=bins,
                                    source={"kind": "model", "model": model, "version": str(version),
                                            "dataset_version": where})

    def baseline(self, name: str) -> Baseline:
        return self.scenes.baseline(name)

    def configure(self, scene: str, actor: str, *, add_plugins: Sequence[Any] = (),
                  remove_plugins: Sequence[str] = (), **changes: Any) -> SceneSettings:
        """Set a scene's baseline, score, decision, approve values, entity field or plugins.

        ``plugins`` replaces the scene's plugin list; ``add_plugins`` then adds to it (a plugin of the
        same name is replaced, not listed twice) and ``remove_plugins`` takes plugins out by name."""
        current = self.scenes.settings(scene)
        allowed = {"baseline", "score", "decision", "approve", "entity", "plugins"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InvalidInput(f"unknown setting(s) {unknown}; use {sorted(allowed)}", {"field": unknown[0]})
        data = current.to_dict()
        for k, v in changes.items():
            if v is None:
                continue
            if k == "plugins":
                v = [_plugin_ref(p) for p in v]
            data[k] = list(v) if k == "approve" else v
        plugins = list(data.get("plugins") or [])
        for p in add_plugins:
            ref = _plugin_ref(p)
            plugins = [q for q in plugins if q["name"] != ref["name"]] + [ref]
        for given in remove_plugins:
            name = str(_plugin_ref(given)["name"])  # a plugin named by its .py path or module works too
            if not any(q["name"] == name for q in plugins):
                listed = ", ".join(str(q["name"]) for q in plugins) or "none"
                raise InvalidInput(f"plugin {name!r} is not configured for scene {scene!r} (configured: {listed})",
                                   {"field": "remove_plugins"})
            plugins = [q for q in plugins if q["name"] != name]
        data["plugins"] = plugins
        return self.scenes.save_settings(SceneSettings.from_dict(data), actor)

    def settings(self, scene: str) -> SceneSettings:
        return self.scenes.settings(scene)

    # -- series ---------------------------------------------------------------------------------------
    def recorder(self, *, instance: str | None = None, flush_interval: float = 10.0,
                 live: bool = False) -> SeriesRecorder:
        return SeriesRecorder(self.series_store, instance=instance, flush_interval=flush_interval, live=live)

    def series(self, scene: str, since: str | float | None = "1h", until: float | None = None, *,
               step: str = "1m", version: str | None = None, arm: str | None = None,
               by: Sequence[str] = ()) -> SeriesResult:
        end = int((until if until is not None else time.time()) * 1000)
        start = _since_ms(since, end)
        step_ms = al.parse_duration(step, "step") * 1000
        return self.series_store.query(scene, start, end + MINUTE_MS, step_ms=step_ms, version=version, arm=arm,
                                       by=tuple(by))

    def prune(self, keep_days: float = 30.0) -> int:
        """Retention of the per-minute series: drop minutes older than ``keep_days``."""
        if keep_days <= 0:
            raise InvalidInput(f"keep_days must be positive, got {keep_days}", {"field": "keep_days"})
        return self.series_store.prune(int((time.time() - keep_days * 86400) * 1000))

    # -- daily reports --------------------------------------------------------------------------------
    def daily_report(self, scene: str, day: str | dt.date | None = None, actor: str = "system", *,
                     save: bool = True, progress: Progress | None = None) -> DailyReport:
        self.require_scene(scene)
        return self.daily.build(scene, day, actor, save=save, progress=progress)

    def require_scene(self, scene: str) -> None:
        """Refuse a scene nothing knows: one that was never applied to serving, configured for monitoring
        or served (a mistyped name would otherwise get a stored report of zero records)."""
        with self.store.read() as conn:
            applied = conn.execute(sa.select(SERVING_SCENES.c.name).where(SERVING_SCENES.c.name == scene)).first()
            configured = conn.execute(sa.select(MONITORING_SCENES.c.scene)
                                      .where(MONITORING_SCENES.c.scene == scene)).first()
        if applied or configured or log_days(self.artifacts, scene):
            return
        raise NotFound(f"scene {scene!r} does not exist: it was never applied, configured for monitoring or "
                       "served; list the scenes with 'shipyard scenes list' (GET /api/v1/scenes)",
                       {"field": "scene", "scene": scene})

    def trend(self, scene: str, days: int = 30, until: str | None = None) -> pd.DataFrame:
        return self.daily.trend(scene, days, until)

    def reports(self, scene: str) -> list[dict[str, Any]]:
        return self.daily.history(scene)

    def report_html(self, report_id: int) -> str:
        """The stored HTML of one generated daily report (ids from ``reports``)."""
        for entry in self.daily.history_entry(report_id):
            return self.artifacts.get_bytes(entry["html_path"]).decode()
        raise NotFound(f"no daily report with id {report_id}; list them with reports(scene)",
                       {"field": "report_id"})

    def baselines(self) -> list[dict[str, Any]]:
        return self.scenes.baselines()

    def report_bytes(self, path: str) -> bytes:
        if not path.startswith("monitoring/reports/"):
            raise NotFound(f"{path!r} is not a monitoring report", {"field": "path"})
        return self.artifacts.get_bytes(path)

    # -- labels ---------------------------------------------------------------------------------------
    def ingest_labels(self, scene: str, labels: TableSource | list[dict[str, Any]], *, id_column: str = "request_id", label_column: str = "bad",
                      row_column: str | None = None, entity_column: str | None = None, time_column: str | None = None,
                      tolerance: str = "30d", source: str = "", progress: Progress | None = None) -> IngestResult:
        frame = read_table(labels, "labels") if not isinstance(labels, list) else pd.DataFrame(labels)
        return self.labels.ingest(scene, frame, self.scenes.settings(scene), id_column=id_column,
                                  label_column=label_column, row_column=row_column, entity_column=entity_column,
                                  time_column=time_column, tolerance_s=al.parse_duration(tolerance, "tolerance"),
                                  source=source or (str(labels) if isinstance(labels, str | Path) else "api"),
                                  progress=progress)

    def ingest_labels_from_table(self, scene: str, url: str, table: str, **options: Any) -> IngestResult:
        """Labels from a database table (any SQLAlchemy URL the installed drivers support)."""
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise InvalidInput(f"url {url!r} is not a usable database URL ({exc}); use e.g. "
                               "postgresql+psycopg://user@host/db", {"field": "url"}) from None
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(table):
                    raise InvalidInput(f"table {table!r} does not exist in {engine.url.render_as_string()}",
                                       {"field": "table"})
                frame = pd.read_sql_table(table, conn)
        finally:
            engine.dispose()
        options.setdefault("source", f"table {table}")
        return self.ingest_labels(scene, frame, **options)

    def label_metrics(self, scene: str, since: str | None = None, until: str | None = None) -> LabelMetrics:
        return self.labels.metrics(scene, since, until)

    # -- alerts ---------------------------------------------------------------------------------------
    def known_plugins(self, scene: str | None) -> set[str]:
        names = set(available())
        if scene:
            names |= {p.name for p in self.scenes.settings(scene).plugins}
        return names

    def apply_rules(self, document: str | dict[str, Any], actor: str) -> dict[str, Any]:
        return self.alerts.apply(document, actor, self.known_plugins)

    def delete_rule(self, name: str, actor: str) -> list[int]:
        """Delete an alert rule and close its open alerts (ids returned); nothing more is sent for them."""
        return self.alerts.delete_rule(name, actor)

    def evaluator(self, interval_s: float = 60.0) -> al.AlertEvaluator:
        return al.AlertEvaluator(self.alerts, self.read_metric, interval_s=interval_s)

    def read_metric(self, rule: al.AlertRule, now_ms: int) -> float | None:
        """The value a rule compares, over its window ending at ``now_ms``; None when there is no data."""
        scope = rule.scope
        window_ms = rule.window_s * 1000
        metric = rule.metric
        if metric.startswith("custom:"):
            plugin, _, key = metric[len("custom:"):].partition(".")
            row = self._latest_day(scope["scene"], now_ms, window_ms)
            return _num(((row or {}).get("plugins") or {}).get(plugin, {}).get(key)) if row else None
        family = al.METRICS[metric].family
        if family == "series":
            start = (now_ms - window_ms) // MINUTE_MS * MINUTE_MS
            res = self.series_store.query(scope["scene"], start, now_ms + 1, step_ms=MINUTE_MS,
                                          version=scope.get("version"), arm=scope.get("arm"))
            total = res.total()
            total.step_ms = max(window_ms, MINUTE_MS)
            return _num(total.to_dict()[metric]) if total.requests else None
        if family == "daily":
            row = self._latest_day(scope["scene"], now_ms, window_ms)
            if row is None:
                return None
            s = row["summary"]
            column = scope.get("column")
            if metric == "volume":
                return float(row["rows"])
            if metric in ("approval_rate", "max_psi"):
                return _num(s.get(metric))
            if metric == "psi" and not column:
                return _num(s.get("score_psi"))
            return _num(((s.get("columns") or {}).get(column) or {}).get(metric))
        if family == "labels":
            since = dt.datetime.fromtimestamp((now_ms - window_ms) / 1000, dt.UTC).date().isoformat()
            until = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().isoformat()
            m = self.labels.metrics(scope["scene"], since, until)
            if scope.get("version") is None:
                table = m.overall()
            else:
                table = m.by_version[m.by_version["version"].astype(str) == scope["version"]]
            if table.empty:
                return None
            return _num(table.iloc[0][metric])
        if family == "features":
            if self.feature_monitor is None:
                return None
            report = self.feature_monitor([scope["view"]])
            view = next((v for v in report.get("views", []) if v.get("view") == scope["view"]), {})
            online = view.get("online") or {}
            if metric == "feature_freshness_seconds":
                return _num(online.get("freshness_seconds"))
            return _num(((online.get("features") or {}).get(scope["feature"]) or {}).get("missing_rate"))
        return None

    def _latest_day(self, scene: str, now_ms: int, window_ms: int) -> dict[str, Any] | None:
        until = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().isoformat()
        since = dt.datetime.fromtimestamp((now_ms - max(window_ms, 86_400_000)) / 1000, dt.UTC).date().isoformat()
        rows = self.daily.stored(scene, since, until)
        return rows[-1] if rows else None


def _plugin_ref(p: Any) -> dict[str, str | None]:
    """A plugin setting from a dict, a PluginRef, a .py path, a module name or an entry-point name."""
    if isinstance(p, dict):
        path = p.get("path")
        return {"name": str(p["name"]), "path": check_plugin_path(str(path)) if path else None}
    if isinstance(p, PluginRef):
        return {"name": p.name, "path": check_plugin_path(p.path) if p.path else None}
    text = str(p)
    if text.endswith(".py"):
        return {"name": Path(text).stem, "path": text}
    # a dotted name is a module; a bare name an entry point or a built-in
    return {"name": text, "path": text if "." in text else None}


def _day(value: Any, field: str) -> str:
    """A day given as text (YYYY-MM-DD), refused naming the field it came in."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(f"{field} is missing; give a day as YYYY-MM-DD", {"field": field})
    try:
        return parse_day(value)
    except InvalidInput:
        raise InvalidInput(f"{field} {value!r} is not a date; use YYYY-MM-DD", {"field": field}) from None


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def _since_ms(since: str | float | None, end_ms: int) -> int:
    if since is None:
        return end_ms - 3_600_000
    if isinstance(since, int | float):
        return int(since * 1000)
    text = str(since).strip()
    if text and text[-1] in "smhd" and text[:-1].replace(".", "", 1).isdigit():
        return end_ms - al.parse_duration(text, "since") * 1000
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"since {since!r} is neither a duration (15m, 6h, 7d) nor a time (2026-01-31T08:00)",
                           {"field": "since"}) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)
