"""REST routes for data sources and versioned datasets (mounted under /api/v1); each is one call into
``ws.data``.

Sources name their credentials by secret name; no route returns a secret's value, and a file source's
server folder is shown relative to the project. Sources that read the server's own files (a local
folder outside the project, SQLite/DuckDB URLs, Spark) or run arbitrary queries with stored
credentials (test, preview) need more than reading: ``data:write``, and ``data:admin`` for the former.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, Response

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.paths import project_path
from shipyard.auth.permissions import Action, Resource
from shipyard.config import Settings
from shipyard.data.sources import SourceRecord
from shipyard.errors import InvalidInput
from shipyard.http_util import RequestBody

PREVIEW_MAX_ROWS = 1000


# the names the catalog accepts (data/sources.py), published in the document
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"


class SourceIn(RequestBody):
    name: str = Field(pattern=NAME_PATTERN)
    kind: str = Field(pattern="^(file|sql|spark)$")
    spec: dict[str, Any] = Field(default_factory=dict)
    description: str = Field(default="", max_length=4000)
    replace: bool = False


class DatasetIn(RequestBody):
    name: str = Field(pattern=NAME_PATTERN)
    source: str = Field(pattern=NAME_PATTERN)
    spec: dict[str, Any]
    description: str = Field(default="", max_length=4000)
    replace: bool = False


class PreviewIn(RequestBody):
    query: str | None = Field(default=None, max_length=100_000)
    table: str | None = Field(default=None, max_length=255)
    path: str | None = Field(default=None, max_length=1024)
    limit: int = Field(default=20, ge=1, le=PREVIEW_MAX_ROWS)


class RefreshIn(RequestBody):
    force: bool = False
    chunk_rows: int = Field(default=100_000, ge=1, le=10_000_000)


def _shown(record: SourceRecord, project_dir: Path) -> dict[str, Any]:
    """A source as the API shows it: a local root relative to the project, never a server path."""
    out = record.to_dict()
    root = str(out["spec"].get("root") or "")
    if root and "://" not in root:
        path = Path(root)
        out["spec"] = {**out["spec"], "root": str(path.relative_to(project_dir)) if path.is_relative_to(project_dir)
                       else "(a folder outside the project)"}
    return out


def _reads_server_files(kind: str, spec: dict[str, Any], settings: Settings) -> bool:
    if kind == "spark":
        return True  # Spark SQL reads any path the server can
    if kind == "sql":
        try:
            backend = sa.make_url(str(spec.get("url") or "")).get_backend_name()
        except sa.exc.ArgumentError:
            return False  # refused with a clear error by the core call
        return backend in ("sqlite", "duckdb")
    root = str(spec.get("root") or "")
    if not root:
        return True  # paths would be the server's own
    if "://" in root and not root.startswith("file://"):
        return False
    return project_path(settings, root) is None


def _table_json(table: Any) -> dict[str, Any]:
    frame = table.to_pandas()
    return {"columns": [str(c) for c in frame.columns],
            "rows": frame.astype(object).where(frame.notna(), None).values.tolist(), "count": len(frame)}


def router() -> APIRouter:
    api = APIRouter(tags=["data"])

    # -- sources -----------------------------------------------------------------------------------
    @api.get("/data/sources")
    def list_sources(ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> list[dict[str, Any]]:
        project = ctx.ws.settings.project_dir
        return [_shown(s, project) for s in ctx.ws.data.list_sources()]

    @api.post("/data/sources", status_code=201)
    def add_source(body: SourceIn, ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> dict[str, Any]:
        project = ctx.ws.settings.project_dir
        if _reads_server_files(body.kind, body.spec, ctx.ws.settings):
            ctx.require(Resource.DATA, Action.ADMIN)
        record = ctx.ws.data.add_source(body.name, body.kind, body.spec, actor=ctx.actor,
                                        description=body.description, replace=body.replace)
        ctx.audit(after={"name": record.name, "kind": record.kind, "secrets": record.spec.get("secrets", {})})
        return _shown(record, project)

    @api.get("/data/sources/{name}")
    def get_source(name: str, ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> dict[str, Any]:
        return _shown(ctx.ws.data.get_source(name), ctx.ws.settings.project_dir)

    @api.delete("/data/sources/{name}", status_code=204)
    def delete_source(name: str, ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> Response:
        ctx.ws.data.delete_source(name, actor=ctx.actor)
        return Response(status_code=204)

    @api.post("/data/sources/{name}/test")
    def test_source(name: str, ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> dict[str, Any]:
        result = ctx.ws.data.test_source(name)
        ctx.audit(ok=result.ok)
        return result.to_dict()

    @api.post("/data/sources/{name}/preview")
    def preview(name: str, body: PreviewIn, ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> dict[str, Any]:
        what = {k: v for k, v in (("query", body.query), ("table", body.table), ("path", body.path)) if v}
        return _table_json(ctx.ws.data.preview(name, what, body.limit))

    # -- datasets ----------------------------------------------------------------------------------
    @api.get("/datasets")
    def list_datasets(ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> list[dict[str, Any]]:
        return [d.to_dict() for d in ctx.ws.data.list_datasets()]

    @api.post("/datasets", status_code=201)
    def create_dataset(body: DatasetIn, ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> dict[str, Any]:
        record = ctx.ws.data.create_dataset(body.name, body.source, body.spec, actor=ctx.actor,
                                            description=body.description, replace=body.replace)
        ctx.audit(after={"name": record.name, "source": record.source})
        return record.to_dict()

    @api.get("/datasets/{name}")
    def get_dataset(name: str, ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> dict[str, Any]:
        out = ctx.ws.data.get_dataset(name).to_dict()
        out["versions"] = [v.to_dict() for v in ctx.ws.data.list_versions(name)]
        return out

    @api.post("/datasets/{name}/refresh")
    async def refresh(name: str, body: RefreshIn | None = None,
                      ctx: RequestContext = allow(Resource.DATA, Action.WRITE)) -> dict[str, Any]:
        options = body or RefreshIn()
        result = await run_in_threadpool(ctx.ws.data.refresh, name, actor=ctx.actor, chunk_rows=options.chunk_rows,
                                         force=options.force)
        ctx.audit(after={"version": result.version.version, "created": result.created})
        return result.to_dict()

    @api.get("/datasets/{name}/versions")
    def versions(name: str, ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> list[dict[str, Any]]:
        return [v.to_dict() for v in ctx.ws.data.list_versions(name)]

    @api.get("/datasets/{name}/versions/{version}")
    def version(name: str, version: str, ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> dict[str, Any]:
        return ctx.ws.data.version(name, version).to_dict()

    @api.get("/datasets/{name}/versions/{version}/rows")
    def rows(name: str, version: str, limit: int = Query(20, ge=1, le=PREVIEW_MAX_ROWS),
             ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> dict[str, Any]:
        found = ctx.ws.data.version(name, version)
        return _table_json(ctx.ws.data.versions.read_table(found).slice(0, limit))

    @api.get("/datasets/{name}/versions/{version}/profile")
    def profile(name: str, version: str, format: str = Query("json", pattern="^(json|html)$"),  # noqa: A002
                ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> Response:
        found = ctx.ws.data.version(name, version)
        data = ctx.ws.data.versions.profile_document(found, format)
        if format == "html":
            return HTMLResponse(data.decode())
        return Response(data, media_type="application/json")

    @api.get("/datasets/{name}/diff")
    def diff(name: str, a: str | None = None, b: str | None = None,
             ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> dict[str, Any]:
        if a is not None and b is None:
            raise InvalidInput("give b with a, or neither (previous against latest)", {"field": "b"})
        return ctx.ws.data.diff(name, a, b).to_dict()

    @api.get("/datasets/{name}/lineage")
    def lineage(name: str, ctx: RequestContext = allow(Resource.DATA, Action.READ)) -> JSONResponse:
        return JSONResponse(ctx.ws.data.lineage(name))

    return api
