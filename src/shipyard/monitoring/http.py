"""REST routes of monitoring (mounted under /api/v1/monitoring), each one call into ``Monitoring``.

``install`` gives the server's serving metrics a per-minute series recorder (this process's own
instance id), so every server writes its own rows of the operational series; the recorder writes
its last minutes when the app shuts down. Each hosted project the server serves gets its own
recorder, under the same instance id, writing into that project's store.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd
from fastapi import APIRouter, FastAPI, Path, Query
from pydantic import Field
from starlette.responses import HTMLResponse

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.paths import require_project_path
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import InvalidInput
from shipyard.http_util import RequestBody, add_lifespan

if TYPE_CHECKING:
    from shipyard.monitoring.series import SeriesRecorder
    from shipyard.workspace import Workspace


Record = dict[str, Any]


class DriftIn(RequestBody):
    current: list[Record] = Field(min_length=1)
    reference: list[Record] | None = Field(None, description="reference rows; or name a stored baseline")
    baseline: str | None = None
    columns: list[str] | None = None
    bins: int = Field(10, ge=1, le=100)


class PluginIn(RequestBody):
    name: str = Field(min_length=1, max_length=255)
    path: str | None = Field(None, max_length=1024, description=".py file or module on the server (runs code)")


class SettingsIn(RequestBody):
    baseline: str | None = None
    score: str | None = None
    decision: str | None = None
    approve: list[str] | None = None
    entity: str | None = None
    plugins: list[PluginIn] | None = None


class BaselineIn(RequestBody):
    name: str = Field(min_length=1, max_length=255)
    scene: str | None = None
    rows: list[Record] | None = Field(None, description="reference rows; or a window of the scene's log")
    start: str | None = Field(None, description="first day of the log window (YYYY-MM-DD)")
    end: str | None = None
    columns: list[str] | None = None
    bins: int = Field(10, ge=1, le=100)


class DailyIn(RequestBody):
    scene: str = Field(min_length=1, max_length=255)
    date: str | None = Field(None, description="YYYY-MM-DD, default yesterday (UTC)")


class LabelsIn(RequestBody):
    scene: str = Field(min_length=1, max_length=255)
    labels: list[Record] = Field(min_length=1)
    id_column: str = "request_id"
    label_column: str = "bad"
    row_column: str | None = None
    entity_column: str | None = None
    time_column: str | None = None
    tolerance: str = "30d"


class RulesIn(RequestBody):
    document: str | dict[str, Any] = Field(description="the rules YAML text, or the same as JSON")


class SilenceIn(RequestBody):
    rule: str = Field(min_length=1, max_length=255, description="a rule name, or '*' for every rule")
    duration: str = "1h"
    scope: dict[str, str] = Field(default_factory=dict)
    reason: str = Field("", max_length=1000)


def _public_settings(data: dict[str, Any]) -> dict[str, Any]:
    # a plugin's server path is shown by its file name only (routes never show server paths)
    for plugin in data.get("plugins") or []:
        if plugin.get("path") and plugin["path"].endswith(".py"):
            plugin["path"] = PurePosixPath(plugin["path"]).name
    return data


def _check_notifiers(ctx: RequestContext, document: str | dict[str, Any]) -> None:
    """A notifier sends what it names to a host the caller chooses. Naming a stored secret
    (``password_secret``) is reading it, so it needs ``secrets:read``; naming a variable of the server's
    environment (``password_env``, ``header_env``) reads the server's own settings (its secret key,
    database URL, cloud keys), so it needs ``secrets:admin``."""
    from shipyard.monitoring.alerts import load_rules_document

    doc = load_rules_document(document)
    notifiers = doc.get("notifiers") if isinstance(doc, dict) else None
    for spec in notifiers if isinstance(notifiers, list) else []:
        if not isinstance(spec, dict):
            continue
        if spec.get("password_env") or spec.get("header_env"):
            ctx.require(Resource.SECRETS, Action.ADMIN)
        if spec.get("password_secret"):
            ctx.require(Resource.SECRETS, Action.READ)


def router() -> APIRouter:
    api = APIRouter(prefix="/monitoring", tags=["monitoring"])

    @api.post("/drift")
    def drift(body: DriftIn, ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> dict[str, Any]:
        m = ctx.ws.monitoring
        if (body.reference is None) == (body.baseline is None):
            raise InvalidInput("give exactly one of reference (rows) or baseline (a stored baseline's name)",
                               {"field": "reference"})
        reference = m.baseline(body.baseline) if body.baseline else pd.DataFrame(body.reference)
        return m.drift(reference, pd.DataFrame(body.current), columns=body.columns, bins=body.bins).to_dict()

    @api.get("/series")
    def series(scene: str, since: str = "1h", step: str = "1m", version: str | None = None, arm: str | None = None,
               by: str | None = None, ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> dict[str, Any]:
        groups = tuple(b.strip() for b in (by or "").split(",") if b.strip())
        return ctx.ws.monitoring.series(scene, since, step=step, version=version, arm=arm, by=groups).to_dict()

    @api.get("/scenes/{scene}")
    def settings(scene: str, ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> dict[str, Any]:
        return _public_settings(ctx.ws.monitoring.settings(scene).to_dict())

    @api.put("/scenes/{scene}")
    def configure(scene: str, body: SettingsIn,
                  ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        if body.plugins and any(p.path for p in body.plugins):
            # a plugin given by path or module is code the server will run; a file must be the project's
            ctx.require(Resource.MONITORING, Action.UPLOAD_CODE)
            for plugin in body.plugins:
                if plugin.path and plugin.path.endswith(".py"):
                    plugin.path = str(require_project_path(ctx.ws.settings, plugin.path, "plugins.path",
                                                           "plugin file"))
        m = ctx.ws.monitoring
        before = m.settings(scene).to_dict()
        changes = body.model_dump(exclude_none=True)
        after = m.configure(scene, ctx.actor, **changes).to_dict()
        ctx.audit(before=_public_settings(before), after=_public_settings(dict(after)))
        return _public_settings(after)

    @api.get("/baselines")
    def baselines(ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> list[dict[str, Any]]:
        # a file baseline's source names a path on the machine that built it: left out
        return [{**b, "source": {k: v for k, v in (b["source"] or {}).items() if k != "path"}}
                for b in ctx.ws.monitoring.baselines()]

    @api.post("/baselines", status_code=201)
    def create_baseline(body: BaselineIn,
                        ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        m = ctx.ws.monitoring
        if body.rows is not None:
            base = m.create_baseline(body.name, pd.DataFrame(body.rows), ctx.actor, scene=body.scene,
                                     columns=body.columns, bins=body.bins, source={"kind": "api"})
        elif body.scene and body.start and body.end:
            base = m.baseline_from_log(body.name, body.scene, body.start, body.end, ctx.actor, columns=body.columns,
                                       bins=body.bins)
        else:
            raise InvalidInput("give rows, or scene with start and end (a window of the scene's prediction log)",
                               {"field": "rows"})
        ctx.audit(after={"name": base.name, "rows": base.rows, "columns": list(base.columns)})
        return {"name": base.name, "rows": base.rows, "columns": list(base.columns), "source": base.source}

    @api.post("/reports/daily", status_code=201)
    def daily(body: DailyIn, ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        report = ctx.ws.monitoring.daily_report(body.scene, body.date, ctx.actor)
        ctx.audit(after={"scene": body.scene, "day": report.day, "rows": report.rows})
        return {"scene": report.scene, "day": report.day, "rows": report.rows, "html_path": report.html_path,
                "json_path": report.json_path, "warnings": report.warnings, "plugin_errors": report.plugin_errors,
                "report": report.data}

    @api.get("/reports")
    def reports(scene: str, ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> list[dict[str, Any]]:
        return ctx.ws.monitoring.reports(scene)

    @api.get("/reports/{report_id}/html", response_class=HTMLResponse)
    def report_html(report_id: int = Path(ge=1, le=2**31 - 1), *,
                    ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> HTMLResponse:
        return HTMLResponse(ctx.ws.monitoring.report_html(report_id))

    @api.get("/trend")
    def trend(scene: str, days: int = Query(30, ge=1, le=3660), until: str | None = None,
              ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> list[dict[str, Any]]:
        from shipyard.reports import to_jsonable

        return to_jsonable(ctx.ws.monitoring.trend(scene, days, until))

    @api.post("/labels", status_code=201)
    def labels(body: LabelsIn, ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        result = ctx.ws.monitoring.ingest_labels(
            body.scene, pd.DataFrame(body.labels), id_column=body.id_column, label_column=body.label_column,
            row_column=body.row_column, entity_column=body.entity_column, time_column=body.time_column,
            tolerance=body.tolerance, source=f"api:{ctx.actor}")
        ctx.audit(after=result.to_dict())
        return result.to_dict()

    @api.get("/labels/metrics")
    def label_metrics(scene: str, since: str | None = None, until: str | None = None,
                      ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> dict[str, Any]:
        return ctx.ws.monitoring.label_metrics(scene, since, until).to_dict()

    @api.post("/alerts/rules", status_code=201)
    def apply_rules(body: RulesIn, ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        _check_notifiers(ctx, body.document)
        m = ctx.ws.monitoring
        before = [r.to_dict() for r in m.alerts.rules()]
        out = m.apply_rules(body.document, ctx.actor)
        ctx.audit(before={"rules": [r["name"] for r in before]}, after=out)
        return out

    @api.get("/alerts/rules")
    def rules(ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> dict[str, Any]:
        return ctx.ws.monitoring.alerts.overview()

    @api.delete("/alerts/rules/{name}")
    def delete_rule(name: str, ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        closed = ctx.ws.monitoring.delete_rule(name, ctx.actor)
        ctx.audit(before={"rule": name}, after={"closed_alerts": closed})
        return {"deleted": name, "closed_alerts": closed}

    @api.get("/alerts/history")
    def history(rule: str | None = None, status: str | None = None, limit: int = Query(100, ge=1, le=1000),
                ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> list[dict[str, Any]]:
        return ctx.ws.monitoring.alerts.history(rule=rule, status=status, limit=min(max(limit, 1), 1000))

    @api.get("/alerts/silences")
    def silences(ctx: RequestContext = allow(Resource.MONITORING, Action.READ)) -> list[dict[str, Any]]:
        return ctx.ws.monitoring.alerts.silences()

    @api.post("/alerts/silences", status_code=201)
    def silence(body: SilenceIn, ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> dict[str, Any]:
        out = ctx.ws.monitoring.alerts.silence(body.rule, body.duration, ctx.actor, scope=body.scope,
                                               reason=body.reason)
        ctx.audit(after=out)
        return out

    @api.post("/alerts/evaluate")
    def evaluate(ctx: RequestContext = allow(Resource.MONITORING, Action.WRITE)) -> list[dict[str, Any]]:
        events = [e.to_dict() for e in ctx.ws.monitoring.evaluator().evaluate_once()]
        ctx.audit(after={"events": len(events)})
        return events

    return api


def install(app: FastAPI, ws: Workspace, **options: Any) -> None:
    if options.get("background"):
        _evaluate_alerts(app, float(options.get("alert_interval_s", 60.0)))
    serving = getattr(app.state, "serving", None)
    metrics = getattr(serving, "metrics", None)
    if metrics is None or getattr(metrics, "series", None) is not None:
        return
    # the current minute is written too: scene status and rollouts read the fleet's numbers from these rows
    every = options.get("series_flush_interval") or ws.settings.series_flush_s
    recorder = ws.monitoring.recorder(flush_interval=float(every), live=True)
    metrics.series = recorder

    def series_for(project: Workspace) -> SeriesRecorder:
        # a hosted project's requests go to its own store, under the same instance id
        return project.monitoring.recorder(instance=recorder.instance, flush_interval=float(every), live=True)

    metrics.series_for = series_for
    app.state.monitoring_recorder = recorder
    add_lifespan(app, lambda: None, recorder.close)


def _evaluate_alerts(app: FastAPI, interval_s: float) -> None:
    """In a running server (``background=True``), every project's alert rules are evaluated every
    ``interval_s`` seconds. Several servers may do so at once: an open alert is unique per rule and
    scope and sending is claimed by a conditional update, so each notification goes out once."""
    projects = app.state.projects
    running: list[Any] = []

    def startup() -> None:
        for name in projects.names():
            evaluator = projects.get(name).monitoring.evaluator(interval_s=interval_s)
            evaluator.start()
            running.append(evaluator)

    def shutdown() -> None:
        for evaluator in running:
            evaluator.stop(timeout=1.0)

    add_lifespan(app, startup, shutdown)
