"""REST routes for pipelines, their runs and schedules (mounted under /api/v1); each is one call into
``ws.pipelines`` or ``ws.schedules``.

A document that names components outside the built-ins runs that code on the server, so saving or
validating it needs ``pipelines:upload_code`` on top of writing; component files and ``load_file``
paths must lie inside the project. A run started here goes on in the background: poll
``GET /pipelines/runs/{id}`` or follow ``GET /pipelines/runs/{id}/events`` (server-sent events: a
``node`` event per status change, ``log`` events with new log text, a last ``run`` event). Responses
never name server paths.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.paths import project_path
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import Forbidden
from shipyard.http_util import RequestBody, add_lifespan
from shipyard.pipelines.components import builtins
from shipyard.pipelines.runs import PipelineRunRecord
from shipyard.workspace import Workspace

EVENT_POLL_S = 0.5
KEEPALIVE_S = 15.0


class DocumentIn(RequestBody):
    document: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)


class PipelineRunIn(RequestBody):
    params: dict[str, Any] = Field(default_factory=dict)
    start: str | None = Field(default=None, alias="from")
    stop: str | None = Field(default=None, alias="to")
    workers: int = Field(default=2, ge=0, le=64)


class ScheduleIn(RequestBody):
    name: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    target: str = Field(default="", max_length=4000)
    cron: str | None = Field(default=None, max_length=255)
    interval_s: float | None = Field(default=None, gt=0)
    timezone: str = Field(default="UTC", max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    missed: str = "skip"
    max_concurrency: int = Field(default=1, ge=1, le=1000)
    max_catchup: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0)
    description: str = Field(default="", max_length=4000)
    replace: bool = False


def _run_dict(record: PipelineRunRecord) -> dict[str, Any]:
    out = record.to_dict()
    for node in out["nodes"]:
        node.pop("log_path", None)  # a server path
    return out


def _check_document(ctx: RequestContext, document: dict[str, Any]) -> None:
    """User code needs upload_code, and every file a document names must be inside the project."""
    known = builtins()
    nodes = document.get("nodes") if isinstance(document, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        ref = str(node.get("component") or "")
        if ref and ref not in known:
            ctx.require(Resource.PIPELINES, Action.UPLOAD_CODE)
            module = ref.rpartition(":")[0]
            if module.endswith(".py") and project_path(ctx.ws.settings, module) is None:
                raise Forbidden(f"node {node.get('id')!r}: component file {module!r} is outside the project "
                                "(or inside .shipyard/)", {"field": "component", "node": node.get("id")})
        path = (node.get("params") or {}).get("path") if ref == "load_file" else None
        if isinstance(path, str) and project_path(ctx.ws.settings, path) is None:
            raise Forbidden(f"node {node.get('id')!r}: load_file path {path!r} is outside the project; add the data "
                            "as a dataset instead", {"field": "params.path", "node": node.get("id")})


def _check_files(ctx: RequestContext, document: dict[str, Any], params: dict[str, Any] | None) -> None:
    """Every ``load_file`` path as the run will read it (``${param}`` replaced by the run's parameters
    or the document's defaults) must lie inside the project."""
    bound = ctx.ws.pipelines.validate(document, params or {})
    for node_id, node in bound.nodes.items():
        path = node.params.get("path") if node.component.name == "load_file" else None
        if isinstance(path, str) and project_path(ctx.ws.settings, path) is None:
            raise Forbidden(f"node {node_id!r}: load_file path {path!r} is outside the project; add the data "
                            "as a dataset instead", {"field": "params.path", "node": node_id})


def _check_schedule(ctx: RequestContext, body: ScheduleIn) -> None:
    if body.kind == "python":
        ctx.require(Resource.PIPELINES, Action.UPLOAD_CODE)
    elif body.kind == "dataset_refresh":
        ctx.require(Resource.DATA, Action.WRITE)
    elif body.kind == "materialize":
        ctx.require(Resource.FEATURES, Action.WRITE)
    if body.kind in ("pipeline", "retrain") and body.target:
        # a schedule runs a stored pipeline by name, never a file the caller points at
        stored = ctx.ws.pipelines.get(body.target)
        params = body.args.get("params")
        _check_files(ctx, stored.document, params if isinstance(params, dict) else None)


def router() -> APIRouter:
    api = APIRouter(tags=["pipelines"])

    # -- documents ---------------------------------------------------------------------------------
    @api.get("/pipelines/components")
    def components(ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> list[dict[str, Any]]:
        return [c.to_dict() for c in ctx.ws.pipelines.components()]

    @api.post("/pipelines/validate")
    def validate(body: DocumentIn, ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        _check_document(ctx, body.document)
        _check_files(ctx, body.document, body.params)
        bound = ctx.ws.pipelines.validate(body.document, body.params)
        return {"valid": True, "order": bound.order,
                "nodes": {n: {"component": b.component.name, "params": b.params,
                              "inputs": {p: f"{s}.{o}" for p, (s, o) in b.inputs.items()}}
                          for n, b in bound.nodes.items()}}

    @api.get("/pipelines")
    def list_pipelines(ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.to_dict().items() if k != "document"} for p in ctx.ws.pipelines.list()]

    @api.post("/pipelines", status_code=201)
    def save(body: DocumentIn, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        _check_document(ctx, body.document)
        _check_files(ctx, body.document, None)
        stored = ctx.ws.pipelines.save(body.document, actor=ctx.actor)
        ctx.audit(after={"name": stored.name, "version": stored.version, "sha256": stored.sha256})
        return stored.to_dict()

    @api.get("/pipelines/runs")
    def runs(pipeline: str | None = None, limit: int = Query(50, ge=1, le=1000),
             ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> list[dict[str, Any]]:
        return [_run_dict(r) for r in ctx.ws.pipelines.runs(pipeline, limit)]

    @api.get("/pipelines/runs/{run_id}")
    def get_run(run_id: str, document: bool = Query(False, description="also the document the run ran"),
                ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        record = ctx.ws.pipelines.get_run(run_id)
        out = _run_dict(record)
        if document:  # a pipeline run from a file is drawn from this (it may never have been saved)
            out["document"] = record.document
        return out

    @api.get("/pipelines/runs/{run_id}/nodes/{node}/logs")
    def logs(run_id: str, node: str, offset: int = Query(0, ge=0, le=2**63 - 1),
             ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        return ctx.ws.pipelines.logs(run_id, node, offset).to_dict()

    @api.get("/pipelines/runs/{run_id}/events")
    async def events(run_id: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> StreamingResponse:
        pipelines = ctx.ws.pipelines
        first = await run_in_threadpool(pipelines.get_run, run_id)
        return StreamingResponse(_event_stream(pipelines, first.id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/pipelines/{name}")
    def get_pipeline(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        return ctx.ws.pipelines.get(name).to_dict()

    @api.post("/pipelines/{name}/runs", status_code=202)
    async def start_run(name: str, body: PipelineRunIn | None = None,
                        ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        options = body or PipelineRunIn()
        stored = await run_in_threadpool(ctx.ws.pipelines.get, name)
        await run_in_threadpool(_check_files, ctx, stored.document, options.params)
        run_id = await run_in_threadpool(
            ctx.ws.pipelines.start, stored.name, actor=ctx.actor, params=options.params, start=options.start,
            stop=options.stop, workers=options.workers)
        ctx.audit(after={"run_id": run_id, "from": options.start, "to": options.stop})
        return {"run_id": run_id, "status": "running"}

    @api.get("/pipelines/{name}/script")
    def script(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> PlainTextResponse:
        stored = ctx.ws.pipelines.get(name)
        return PlainTextResponse(ctx.ws.pipelines.codegen(stored.name, portable=True),
                                 headers={"Content-Disposition": f'attachment; filename="{stored.name}.py"'})

    # -- schedules ---------------------------------------------------------------------------------
    @api.get("/schedules")
    def list_schedules(ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> list[dict[str, Any]]:
        return [s.to_dict() for s in ctx.ws.schedules.list()]

    @api.post("/schedules", status_code=201)
    def add_schedule(body: ScheduleIn, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        _check_schedule(ctx, body)
        values = body.model_dump(exclude={"name", "kind", "target"})
        created = ctx.ws.schedules.add(body.name, body.kind, body.target, actor=ctx.actor, **values)
        ctx.audit(after={"name": created.name, "kind": created.kind, "cron": created.cron,
                         "interval_s": created.interval_s})
        return created.to_dict()

    @api.get("/scheduler/status")
    def status(ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        from shipyard.pipelines.scheduler import scheduler_status

        out = scheduler_status(ctx.ws)
        out["holder"] = str(out["holder"]).split(":")[0] if out["holder"] else None  # the host, not the process
        return out

    @api.get("/schedules/{name}")
    def get_schedule(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> dict[str, Any]:
        return ctx.ws.schedules.get(name).to_dict()

    @api.delete("/schedules/{name}", status_code=204)
    def delete_schedule(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> Response:
        ctx.ws.schedules.delete(name, actor=ctx.actor)
        return Response(status_code=204)

    @api.post("/schedules/{name}/pause")
    def pause(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        return ctx.ws.schedules.pause(name, actor=ctx.actor).to_dict()

    @api.post("/schedules/{name}/resume")
    def resume(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        return ctx.ws.schedules.resume(name, actor=ctx.actor).to_dict()

    @api.post("/schedules/{name}/trigger", status_code=202)
    def trigger(name: str, ctx: RequestContext = allow(Resource.PIPELINES, Action.WRITE)) -> dict[str, Any]:
        return ctx.ws.schedules.trigger(name, actor=ctx.actor).to_dict()

    @api.get("/schedules/{name}/history")
    def history(name: str, limit: int = Query(50, ge=1, le=1000), status: str | None = None,
                ctx: RequestContext = allow(Resource.PIPELINES, Action.READ)) -> list[dict[str, Any]]:
        return [r.to_dict() for r in ctx.ws.schedules.history(name, limit, status)]

    return api


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def _event_stream(pipelines: Any, run_id: str):  # noqa: ANN202 - an async generator of SSE frames
    since = -1
    offsets: dict[str, int] = {}
    quiet = 0.0
    while True:
        record = await run_in_threadpool(pipelines.get_run, run_id)
        sent = False
        for node in record.nodes:
            if node.updated_at > since:
                data = node.to_dict()
                data.pop("log_path", None)
                yield _sse("node", data)
                sent = True
            if node.log_path and (node.status == "running" or node.updated_at > since):
                chunk = await run_in_threadpool(pipelines.logs, run_id, node.node_id, offsets.get(node.node_id, 0))
                if chunk.text:
                    yield _sse("log", {"node": node.node_id, "text": chunk.text, "offset": chunk.offset})
                    sent = True
                offsets[node.node_id] = chunk.offset
        since = max([since, *(n.updated_at for n in record.nodes)])
        if record.status != "running":
            yield _sse("run", {k: v for k, v in _run_dict(record).items() if k != "nodes"})
            return
        quiet = 0.0 if sent else quiet + EVENT_POLL_S
        if quiet >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            quiet = 0.0
        await asyncio.sleep(EVENT_POLL_S)


def install(app: FastAPI, ws: Workspace, **options: Any) -> None:
    """In a running server (``background=True``), one scheduler per project: the lease lets exactly
    one process of the fleet start each schedule's runs. Projects created later get theirs at the
    next start."""
    if not options.get("background"):
        return
    from shipyard.pipelines.scheduler import Scheduler

    projects = app.state.projects
    running: list[Scheduler] = []

    def startup() -> None:
        for name in projects.names():
            scheduler = Scheduler(projects.get(name), warm_workers=False, pipeline_workers=1)
            scheduler.start()
            running.append(scheduler)

    def shutdown() -> None:
        for scheduler in running:
            scheduler.stop(timeout=1.0)  # an interrupted run is marked by the next leader

    add_lifespan(app, startup, shutdown)
