"""REST routes of the registry under /api/v1/models; each route is one call into the project's registry.

The acting user is the caller's authenticated identity (``ctx.actor``). Registering a version
uploads code that the server will load, so it needs ``models:upload_code``; approving needs a
reviewer who is not the registrant; moving and rolling back aliases needs ``models:release``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import Forbidden, InvalidInput, PayloadTooLarge
from shipyard.http_util import MAX_INT32, RequestBody, add_lifespan
from shipyard.models.registry.sources import ARTIFACT_SCHEME, RUN_SCHEME, extract_archive, pack_archive
from shipyard.workspace import Workspace

# the names the registry accepts (models/registry/names.py), published in the document
ModelName = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="a model name")]
VersionRef = Annotated[str, PathParam(pattern=r"^([vV]?[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_-]{0,63})$",
                                 description="a version number (1 to 2^31-1), an alias, or 'latest'")]
AliasName = Annotated[str, PathParam(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", description="an alias")]
VersionStatus = Literal["pending", "validating", "validated", "failed", "rejected"]

READ = allow(Resource.MODELS, Action.READ)
WRITE = allow(Resource.MODELS, Action.WRITE)
UPLOAD = allow(Resource.MODELS, Action.UPLOAD_CODE)
APPROVE = allow(Resource.MODELS, Action.APPROVE)
RELEASE = allow(Resource.MODELS, Action.RELEASE)


class CreateModel(RequestBody):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                      description="model name: letters, digits, '_', '-', '.'")
    description: str = Field("", max_length=10_000)
    requires_approval: bool = True
    tags: dict[Annotated[str, Field(min_length=1, max_length=255)], Any] = Field(default_factory=dict)


class RegisterFromSource(RequestBody):
    source: str = Field(description="runs:/<run_id>/<path>, artifacts:/<path>, or a server folder under an "
                                    "admin's register_source_roots", min_length=1, max_length=4096)
    run_id: str | None = Field(None, min_length=1, max_length=64)
    lineage: dict[str, Any] = Field(default_factory=dict)
    tags: dict[Annotated[str, Field(min_length=1, max_length=255)], Any] = Field(default_factory=dict)
    metrics: dict[Annotated[str, Field(min_length=1, max_length=255)], float] = Field(default_factory=dict)
    await_validation: bool = False


class Review(RequestBody):
    comment: str = Field("", max_length=10_000)


class SetAlias(RequestBody):
    version: int = Field(ge=1, le=MAX_INT32)
    force: bool = False


class StressTest(RequestBody):
    rate: float = Field(200.0, ge=0.1, le=100_000, description="calls per second (open loop)")
    count: int = Field(1000, ge=1, le=1_000_000, description="number of calls (count / rate at most 3600 s)")


def router() -> APIRouter:
    api = APIRouter(prefix="/models", tags=["models"])

    @api.get("")
    def list_models(ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [m.to_dict() for m in ctx.ws.registry.list_models()]

    @api.post("", status_code=201)
    def create_model(body: CreateModel, ctx: RequestContext = WRITE) -> dict[str, Any]:
        return ctx.ws.registry.create_model(body.name, body.description, body.requires_approval, body.tags,
                                            actor=ctx.actor).to_dict()

    @api.get("/-/versions")
    def search_versions(status: str | None = None, awaiting_approval: bool = False,
                        limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**31),
                        ctx: RequestContext = READ) -> dict[str, Any]:
        """Versions of every model, newest first, with the total; ``awaiting_approval=true`` gives the
        validated versions no reviewer has approved yet."""
        found, total = ctx.ws.registry.search_versions(status=status, awaiting_approval=awaiting_approval,
                                                       limit=limit, offset=offset)
        return {"versions": [v.to_dict() for v in found], "total": total}

    @api.get("/{name}")
    def get_model(name: ModelName, ctx: RequestContext = READ) -> dict[str, Any]:
        return ctx.ws.registry.get_model(name).to_dict()

    @api.get("/{name}/versions")
    def list_versions(name: ModelName, status: VersionStatus | None = None, ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [v.to_dict() for v in ctx.ws.registry.list_versions(name, status=status)]

    @api.post("/{name}/versions", status_code=201)
    def register_source(name: ModelName, body: RegisterFromSource, ctx: RequestContext = UPLOAD) -> dict[str, Any]:
        """Register from a run artifact of this project, or a server folder an admin allowed."""
        source = checked_source(ctx.ws, body.source)
        ctx.audit(source=body.source, code=True)
        return ctx.ws.registry.register(source, name, run_id=body.run_id, lineage=body.lineage, tags=body.tags,
                                        metrics=body.metrics, await_validation=body.await_validation,
                                        actor=ctx.actor).to_dict()

    @api.post("/{name}/versions/upload", status_code=201, openapi_extra={"requestBody": {
        "required": True, "description": "the model folder as a .tar.gz or .zip archive",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def register_upload(
        name: ModelName,
        request: Request,
        run_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        await_validation: bool = False,
        metadata: str | None = Query(None, max_length=1_000_000, description='JSON: {"tags": {}, "metrics": {}, "lineage": {}}'),
        ctx: RequestContext = UPLOAD,
    ) -> dict[str, Any]:
        """Register a model folder sent as a .tar.gz or .zip request body."""
        extra = _metadata(metadata)
        limit = ctx.ws.settings.max_request_bytes
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"the upload is larger than {limit} bytes (max_request_bytes); raise the setting or "
                    "register from a run artifact", {"field": "body", "limit": limit})
        ctx.audit(code=True, upload_bytes=len(data))
        with tempfile.TemporaryDirectory(prefix="shipyard-upload-") as tmp:
            folder = extract_archive(bytes(data), Path(tmp) / "model", limit)
            mv = await run_in_threadpool(ctx.ws.registry.register, folder, name, run_id=run_id,
                                         await_validation=await_validation, actor=ctx.actor, **extra)
        return mv.to_dict()

    @api.get("/{name}/versions/{version}")
    def get_version(name: ModelName, version: VersionRef, ctx: RequestContext = READ) -> dict[str, Any]:
        return ctx.ws.registry.get_version(name, version).to_dict()

    @api.delete("/{name}/versions/{version}", status_code=204)
    def delete_version(name: ModelName, version: VersionRef, ctx: RequestContext = WRITE) -> Response:
        ctx.ws.registry.delete_version(name, version, actor=ctx.actor)
        return Response(status_code=204)

    @api.post("/{name}/versions/{version}/validate")
    def validate(name: ModelName, version: VersionRef, wait: bool = False, timeout: float = Query(300.0, gt=0, le=3600),
                 ctx: RequestContext = WRITE) -> dict[str, Any]:
        return ctx.ws.registry.validate(name, version, wait=wait, timeout=timeout, actor=ctx.actor).to_dict()

    @api.post("/{name}/versions/{version}/approve")
    def approve(name: ModelName, version: VersionRef, body: Review, ctx: RequestContext = APPROVE) -> dict[str, Any]:
        """Approve as the signed-in reviewer, who must not be the version's registrant."""
        mv = ctx.ws.registry.approve(name, version, comment=body.comment, actor=ctx.actor)
        ctx.audit(after={"approved_by": mv.approved_by})
        return mv.to_dict()

    @api.post("/{name}/versions/{version}/reject")
    def reject(name: ModelName, version: VersionRef, body: Review, ctx: RequestContext = APPROVE) -> dict[str, Any]:
        mv = ctx.ws.registry.reject(name, version, comment=body.comment, actor=ctx.actor)
        ctx.audit(after={"status": mv.status})
        return mv.to_dict()

    @api.post("/{name}/versions/{version}/stress-test")
    def stress_test(name: ModelName, version: VersionRef, body: StressTest, ctx: RequestContext = WRITE) -> dict[str, Any]:
        """Open-loop load on the version's input example in this server process; the latency
        percentiles are recorded on the version (validation.stress_test) and returned."""
        # serving owns the load generator and the served-model path it measures
        from shipyard.serving.release import stress_test_model

        return stress_test_model(ctx.ws, name, version, rate=body.rate, count=body.count, actor=ctx.actor)

    @api.get("/{name}/versions/{version}/download", response_class=Response, responses={200: {
        "description": "The version's folder as .tar.gz",
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}}})
    def download(name: ModelName, version: VersionRef, ctx: RequestContext = READ) -> Response:
        registry = ctx.ws.registry
        with tempfile.TemporaryDirectory(prefix="shipyard-download-") as tmp:
            mv = registry.get_version(name, version)
            folder = registry.download(name, mv.version, Path(tmp) / "model")
            body = pack_archive(folder)
        return Response(body, media_type="application/gzip", headers={
            "Content-Disposition": f'attachment; filename="{mv.name}-{mv.version}.tar.gz"',
            "X-Shipyard-Sha256": mv.sha256,
        })

    @api.get("/{name}/aliases")
    def list_aliases(name: ModelName, ctx: RequestContext = READ) -> dict[str, int]:
        return ctx.ws.registry.list_aliases(name)

    @api.get("/{name}/aliases/{alias}")
    def get_alias(name: ModelName, alias: AliasName, ctx: RequestContext = READ) -> dict[str, Any]:
        return ctx.ws.registry.get_alias(name, alias).to_dict()

    @api.put("/{name}/aliases/{alias}")
    def set_alias(name: ModelName, alias: AliasName, body: SetAlias, ctx: RequestContext = RELEASE) -> dict[str, Any]:
        before = ctx.ws.registry.list_aliases(name).get(alias)
        mv = ctx.ws.registry.set_alias(name, alias, body.version, force=body.force, actor=ctx.actor)
        ctx.audit(before={"version": before}, after={"version": mv.version}, forced=body.force)
        return mv.to_dict()

    @api.delete("/{name}/aliases/{alias}", status_code=204)
    def delete_alias(name: ModelName, alias: AliasName, ctx: RequestContext = RELEASE) -> Response:
        before = ctx.ws.registry.list_aliases(name).get(alias)
        ctx.ws.registry.delete_alias(name, alias, actor=ctx.actor)
        ctx.audit(before={"version": before}, after={"version": None})
        return Response(status_code=204)

    @api.post("/{name}/aliases/{alias}/rollback")
    def rollback(name: ModelName, alias: AliasName, ctx: RequestContext = RELEASE) -> dict[str, Any]:
        before = ctx.ws.registry.list_aliases(name).get(alias)
        mv = ctx.ws.registry.rollback(name, alias, actor=ctx.actor)
        ctx.audit(before={"version": before}, after={"version": mv.version})
        return mv.to_dict()

    @api.get("/{name}/aliases/{alias}/history")
    def alias_history(name: ModelName, alias: AliasName, ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [m.to_dict() for m in ctx.ws.registry.alias_history(name, alias)]

    @api.get("/{name}/events")
    def events(name: ModelName, limit: int = Query(200, ge=1, le=10000), ctx: RequestContext = READ) \
            -> list[dict[str, Any]]:
        return ctx.ws.registry.history(name, limit=limit)

    return api


def checked_source(ws: Workspace, source: str) -> str:
    """``source`` when the server may read it for a registration: a run artifact or an artifact of
    this project, or a folder under one of the admin's ``register_source_roots``."""
    if source.startswith((RUN_SCHEME, ARTIFACT_SCHEME)):
        return source
    roots = [Path(r).expanduser().resolve() for r in ws.settings.register_source_roots]
    try:
        folder = Path(source).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        folder = None
    if folder is not None and any(folder == root or root in folder.parents for root in roots):
        return str(folder)
    raise Forbidden(
        "source must be runs:/<run_id>/<path> or artifacts:/<path> of this project; a server folder is only "
        "accepted under a folder an admin listed in register_source_roots — or upload the model with "
        "POST /api/v1/models/{name}/versions/upload",
        {"field": "source"})


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput("query parameter 'metadata' is not valid JSON", {"field": "metadata"}) from None
    if not isinstance(doc, dict):
        raise InvalidInput("query parameter 'metadata' must be a JSON object", {"field": "metadata"})
    unknown = sorted(set(doc) - {"tags", "metrics", "lineage"})
    if unknown:
        raise InvalidInput(f"metadata keys {unknown} are not known; use tags, metrics, lineage",
                           {"field": "metadata"})
    return doc


def install(app: FastAPI, ws: Workspace, **options: Any) -> None:
    """In a running server (``background=True``), start the warm validation process at once, so the
    first registration does not wait for its imports."""
    if not options.get("background") or not ws.settings.validation_subprocess:
        return
    from shipyard.models.validator import shared_worker

    add_lifespan(app, shared_worker().start, lambda: None)
