"""REST routes for run tracking (mounted under /api/v1). Each route is one call into ``Tracking``."""

from __future__ import annotations

import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from shipyard.artifacts import safe_relpath
from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import InvalidInput
from shipyard.http_multipart import FILES_BODY, UploadedFile, receive_files
from shipyard.http_util import BINARY_RESPONSE, INT64_MAX, INT64_MIN, MAX_INT32, RequestBody, read_body
from shipyard.tracking.core import DEFAULT_EXPERIMENT, Tracking
from shipyard.tracking.entities import FINISHED, RunArtifact, RunRecord

Scalar = str | int | float | bool
# the limits Tracking checks (tracking/validation.py), published in the document
Key = Annotated[str, Field(min_length=1, max_length=255)]
ExperimentRef = Annotated[str, Field(min_length=1, max_length=255)] | Annotated[int, Field(ge=0, le=MAX_INT32)]
RunId = Annotated[str, Path(min_length=1, max_length=64, description="a run id, or a prefix only it starts with")]
ArtifactPath = Annotated[str, Query(min_length=1, max_length=1024, description="a path relative to the run's artifacts")]


class ExperimentIn(RequestBody):
    name: str = Field(min_length=1, max_length=255)
    tags: dict[Key, Scalar] = Field(default_factory=dict)


class RunIn(RequestBody):
    experiment: str = Field(default=DEFAULT_EXPERIMENT, min_length=1, max_length=255)
    name: str | None = Field(default=None, min_length=1, max_length=255)
    parent_run_id: str | None = Field(default=None, min_length=1, max_length=64)
    tags: dict[Key, Scalar] = Field(default_factory=dict)
    source_name: str | None = Field(default=None, max_length=4096)
    source_git_commit: str | None = Field(default=None, max_length=64)


class MetricIn(RequestBody):
    key: Key
    value: float  # NaN and infinities are refused by Tracking, naming the metric
    step: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    timestamp: int | None = Field(default=None, ge=0, le=INT64_MAX, description="milliseconds since the epoch")


class LogBatchIn(RequestBody):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: dict[Key, Scalar] = Field(default_factory=dict)
    tags: dict[Key, Scalar] = Field(default_factory=dict)


class ParamsIn(RequestBody):
    params: dict[Key, Scalar]


class TagsIn(RequestBody):
    tags: dict[Key, Scalar]


# statuses are case-insensitive (Tracking upper-cases them)
Ending = Literal["FINISHED", "FAILED", "KILLED", "finished", "failed", "killed"]
Status = Literal["RUNNING", "SCHEDULED", "running", "scheduled"] | Ending


class EndIn(RequestBody):
    status: Ending = FINISHED


class RunUpdateIn(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    status: Status | None = None


class SearchIn(RequestBody):
    experiment: ExperimentRef | list[ExperimentRef] | None = Field(None, description="names or ids")
    filter: str | None = Field(default=None, max_length=10_000)
    order_by: list[str] | None = None
    max_results: int = Field(default=1000, ge=1, le=50_000)
    offset: int = Field(default=0, ge=0, le=MAX_INT32)
    include_deleted: bool = False
    include_total: bool = Field(default=False, description="also count every matching run (for a paged table)")


class CompareIn(RequestBody):
    run_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=1000)


def _store_uploads(tracking: Tracking, run_id: str, folder: str | None,
                   files: list[UploadedFile]) -> list[RunArtifact]:
    rels = [safe_relpath("/".join(p for p in (folder, f.filename) if p)) for f in files]
    twice = sorted({r for r in rels if rels.count(r) > 1})
    if twice:
        raise InvalidInput(f"the upload names {twice[0]!r} more than once; give each file its own path",
                           {"field": "file", "path": twice[0]})
    return [tracking.log_file(run_id, f.path, rel) for f, rel in zip(files, rels, strict=True)]


class HistoriesIn(RequestBody):
    run_ids: list[str] = Field(min_length=1, max_length=100)
    keys: list[str] = Field(min_length=1, max_length=100)


def _record(record: RunRecord) -> dict[str, Any]:
    return record.to_dict()


READ = allow(Resource.RUNS, Action.READ)
WRITE = allow(Resource.RUNS, Action.WRITE)


def router() -> APIRouter:
    api = APIRouter(tags=["tracking"])

    @api.get("/experiments")
    def list_experiments(ctx: RequestContext = READ) -> dict[str, Any]:
        return {"experiments": [e.to_dict() for e in ctx.ws.tracking.list_experiments()]}

    @api.post("/experiments", status_code=201)
    def create_experiment(body: ExperimentIn, ctx: RequestContext = WRITE) -> dict[str, Any]:
        return ctx.ws.tracking.create_experiment(body.name, body.tags).to_dict()

    @api.get("/experiments/{name_or_id:path}")
    def get_experiment(name_or_id: str, ctx: RequestContext = READ) -> dict[str, Any]:
        return ctx.ws.tracking.get_experiment(name_or_id).to_dict()

    @api.post("/runs", status_code=201)
    def create_run(body: RunIn, ctx: RequestContext = WRITE) -> dict[str, Any]:
        info = ctx.ws.tracking.create_run(
            body.experiment, name=body.name, parent_run_id=body.parent_run_id, tags=body.tags,
            source_name=body.source_name, source_git_commit=body.source_git_commit, user=ctx.actor,
        )
        return _record(ctx.ws.tracking.get_run(info.id))

    @api.post("/runs/search")
    def search_runs(body: SearchIn, ctx: RequestContext = READ) -> dict[str, Any]:
        found = ctx.ws.tracking.search_runs(
            body.experiment, filter=body.filter, order_by=body.order_by, max_results=body.max_results,
            offset=body.offset, include_deleted=body.include_deleted,
        )
        out: dict[str, Any] = {"runs": [_record(r) for r in found]}
        if body.include_total:
            out["total"] = ctx.ws.tracking.count_runs_matching(body.experiment, filter=body.filter,
                                                               include_deleted=body.include_deleted)
        return out

    @api.post("/runs/metric-histories")
    def metric_histories(body: HistoriesIn, ctx: RequestContext = READ) -> dict[str, Any]:
        """Every point of several metrics of several runs: ``{"histories": {run_id: {key: [...]}}}``."""
        found = ctx.ws.tracking.metric_histories(body.run_ids, body.keys)
        return {"histories": {rid: {k: [m.to_dict() for m in points] for k, points in by_key.items()}
                              for rid, by_key in found.items()}}

    @api.get("/runs/reports")
    def run_reports(limit: int = Query(100, ge=1, le=1000), ctx: RequestContext = READ) -> dict[str, Any]:
        """HTML files logged to runs (model and data-quality reports), newest first."""
        return {"reports": [r.to_dict() for r in ctx.ws.tracking.list_reports(limit)]}

    @api.post("/runs/compare")
    def compare_runs(body: CompareIn, ctx: RequestContext = READ) -> dict[str, Any]:
        frame = ctx.ws.tracking.compare_runs(body.run_ids)
        return {"columns": list(frame.columns), "index": list(frame.index), "data": frame.values.tolist()}

    @api.get("/runs/{run_id}")
    def get_run(run_id: RunId, ctx: RequestContext = READ) -> dict[str, Any]:
        return _record(ctx.ws.tracking.get_run(run_id))

    @api.patch("/runs/{run_id}")
    def update_run(run_id: RunId, body: RunUpdateIn, ctx: RequestContext = WRITE) -> dict[str, Any]:
        return _record(ctx.ws.tracking.update_run(run_id, name=body.name, status=body.status))

    @api.post("/runs/{run_id}/end")
    def end_run(run_id: RunId, body: EndIn, ctx: RequestContext = WRITE) -> dict[str, Any]:
        return _record(ctx.ws.tracking.end_run(run_id, body.status))

    @api.delete("/runs/{run_id}", status_code=204)
    def delete_run(run_id: RunId, ctx: RequestContext = WRITE) -> Response:
        ctx.ws.tracking.delete_run(run_id)
        return Response(status_code=204)

    @api.post("/runs/{run_id}/log-batch", status_code=204)
    def log_batch(run_id: RunId, body: LogBatchIn, ctx: RequestContext = WRITE) -> Response:
        points = [(m.key, m.value, m.step, m.timestamp) for m in body.metrics]
        ctx.ws.tracking.log_batch(run_id, metrics=points, params=body.params, tags=body.tags)
        return Response(status_code=204)

    @api.post("/runs/{run_id}/params", status_code=204)
    def log_params(run_id: RunId, body: ParamsIn, ctx: RequestContext = WRITE) -> Response:
        ctx.ws.tracking.log_batch(run_id, params=body.params)
        return Response(status_code=204)

    @api.post("/runs/{run_id}/tags", status_code=204)
    def set_tags(run_id: RunId, body: TagsIn, ctx: RequestContext = WRITE) -> Response:
        ctx.ws.tracking.log_batch(run_id, tags=body.tags)
        return Response(status_code=204)

    @api.get("/runs/{run_id}/metrics/history")
    def metric_history(run_id: RunId, key: str = Query(min_length=1, max_length=255), ctx: RequestContext = READ) -> dict[str, Any]:
        return {"metrics": [m.to_dict() for m in ctx.ws.tracking.metric_history(run_id, key)]}

    @api.get("/runs/{run_id}/artifacts")
    def list_artifacts(run_id: RunId, path: Annotated[str | None, Query(max_length=1024)] = None, ctx: RequestContext = READ) -> dict[str, Any]:
        return {"artifacts": [a.to_dict() for a in ctx.ws.tracking.list_artifacts(run_id, path)]}

    @api.post("/runs/{run_id}/artifacts", status_code=201, openapi_extra=FILES_BODY)
    async def upload_artifacts(
        run_id: RunId, request: Request,
        path: Annotated[str | None, Query(max_length=1024, description="folder to store the files under")] = None,
        ctx: RequestContext = WRITE,
    ) -> dict[str, Any]:
        """Store files sent as multipart/form-data; each part's filename is its path under ``path``.

        The body is streamed to disk (limit: max_upload_bytes, checked as it arrives)."""
        with tempfile.TemporaryDirectory(prefix="shipyard-upload-") as tmp:
            files = await receive_files(request, FsPath(tmp), limit=ctx.ws.settings.max_upload_bytes)
            stored = await run_in_threadpool(_store_uploads, ctx.ws.tracking, run_id, path, files)
        return {"artifacts": [a.to_dict() for a in stored]}

    @api.put("/runs/{run_id}/artifacts", status_code=201, deprecated=True)
    async def upload_artifact(run_id: RunId, request: Request, response: Response, path: ArtifactPath,
                              ctx: RequestContext = WRITE) -> dict[str, Any]:
        """Store the raw request body as the artifact at ``path`` (held in memory: max_request_bytes).

        Deprecated: POST the files as multipart/form-data to the same path instead, which streams."""
        data = await read_body(request, ctx.ws.settings.max_request_bytes)
        artifact = await run_in_threadpool(ctx.ws.tracking.log_bytes, run_id, data, path)
        response.headers["Deprecation"] = "true"
        response.headers["Link"] = f'</api/v1/runs/{run_id}/artifacts>; rel="successor-version"'
        return artifact.to_dict()

    @api.get("/runs/{run_id}/artifacts/download", response_class=Response, responses=BINARY_RESPONSE)
    def download_artifact(run_id: RunId, path: ArtifactPath, ctx: RequestContext = READ) -> Response:
        data = ctx.ws.tracking.read_artifact(run_id, path)
        return Response(content=data, media_type="application/octet-stream")

    return api
