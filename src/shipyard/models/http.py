"""REST routes of the registry under /api/v1/models; each route is one call into ``ws.registry``.

The acting user is the ``X-Shipyard-User`` header when present (until tokens carry it), else the
server's ``settings.user``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.models.registry.sources import extract_archive, pack_archive
from shipyard.workspace import Workspace

USER_HEADER = "X-Shipyard-User"


class CreateModel(BaseModel):
    name: str = Field(description="model name: letters, digits, '_', '-', '.'")
    description: str = ""
    requires_approval: bool = True
    tags: dict[str, Any] = Field(default_factory=dict)


class RegisterFromSource(BaseModel):
    source: str = Field(description="runs:/<run_id>/<path>, artifacts:/<path> or a folder on the server")
    run_id: str | None = None
    lineage: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    await_validation: bool = False


class Review(BaseModel):
    reviewer: str | None = None
    comment: str = ""


class SetAlias(BaseModel):
    version: int = Field(ge=1)
    force: bool = False


class StressTest(BaseModel):
    rate: float = Field(200.0, gt=0, le=100_000, description="calls per second (open loop)")
    count: int = Field(1000, ge=1, le=1_000_000, description="number of calls")


def router(ws: Workspace) -> APIRouter:
    api = APIRouter(prefix="/models", tags=["models"])
    registry = ws.registry

    def actor(user: str | None) -> str:
        return user or ws.user

    @api.get("")
    def list_models() -> list[dict[str, Any]]:
        return [m.to_dict() for m in registry.list_models()]

    @api.post("", status_code=201)
    def create_model(body: CreateModel, x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.create_model(body.name, body.description, body.requires_approval, body.tags,
                                     actor=actor(x_shipyard_user)).to_dict()

    @api.get("/{name}")
    def get_model(name: str) -> dict[str, Any]:
        return registry.get_model(name).to_dict()

    @api.get("/{name}/versions")
    def list_versions(name: str, status: str | None = None) -> list[dict[str, Any]]:
        return [v.to_dict() for v in registry.list_versions(name, status=status)]

    @api.post("/{name}/versions", status_code=201)
    def register_source(name: str, body: RegisterFromSource,
                        x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.register(body.source, name, run_id=body.run_id, lineage=body.lineage, tags=body.tags,
                                 metrics=body.metrics, await_validation=body.await_validation,
                                 actor=actor(x_shipyard_user)).to_dict()

    @api.post("/{name}/versions/upload", status_code=201)
    async def register_upload(
        name: str,
        request: Request,
        run_id: str | None = None,
        await_validation: bool = False,
        metadata: str | None = Query(None, description='JSON: {"tags": {}, "metrics": {}, "lineage": {}}'),
        x_shipyard_user: str | None = Header(None),
    ) -> dict[str, Any]:
        """Register a model folder sent as a .tar.gz or .zip request body."""
        extra = _metadata(metadata)
        limit = ws.settings.max_request_bytes
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"the upload is larger than {limit} bytes (max_request_bytes); raise the setting or "
                    "register from a run artifact", {"field": "body", "limit": limit})
        with tempfile.TemporaryDirectory(prefix="shipyard-upload-") as tmp:
            folder = extract_archive(bytes(data), Path(tmp) / "model", limit)
            mv = registry.register(folder, name, run_id=run_id, await_validation=await_validation,
                                   actor=actor(x_shipyard_user), **extra)
        return mv.to_dict()

    @api.get("/{name}/versions/{version}")
    def get_version(name: str, version: str) -> dict[str, Any]:
        return registry.get_version(name, version).to_dict()

    @api.delete("/{name}/versions/{version}", status_code=204)
    def delete_version(name: str, version: str, x_shipyard_user: str | None = Header(None)) -> Response:
        registry.delete_version(name, version, actor=actor(x_shipyard_user))
        return Response(status_code=204)

    @api.post("/{name}/versions/{version}/validate")
    def validate(name: str, version: str, wait: bool = False, timeout: float = Query(300.0, gt=0, le=3600),
                 x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.validate(name, version, wait=wait, timeout=timeout, actor=actor(x_shipyard_user)).to_dict()

    @api.post("/{name}/versions/{version}/approve")
    def approve(name: str, version: str, body: Review, x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.approve(name, version, reviewer=body.reviewer or actor(x_shipyard_user),
                                comment=body.comment).to_dict()

    @api.post("/{name}/versions/{version}/reject")
    def reject(name: str, version: str, body: Review, x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.reject(name, version, reviewer=body.reviewer or actor(x_shipyard_user),
                               comment=body.comment).to_dict()

    @api.post("/{name}/versions/{version}/stress-test")
    def stress_test(name: str, version: str, body: StressTest,
                    x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        """Open-loop load on the version's input example in this server process; the latency
        percentiles are recorded on the version (validation.stress_test) and returned."""
        # serving owns the load generator and the served-model path it measures
        from shipyard.serving.release import stress_test_model

        return stress_test_model(ws, name, version, rate=body.rate, count=body.count, actor=actor(x_shipyard_user))

    @api.get("/{name}/versions/{version}/download")
    def download(name: str, version: str) -> Response:
        with tempfile.TemporaryDirectory(prefix="shipyard-download-") as tmp:
            mv = registry.get_version(name, version)
            folder = registry.download(name, mv.version, Path(tmp) / "model")
            body = pack_archive(folder)
        return Response(body, media_type="application/gzip", headers={
            "Content-Disposition": f'attachment; filename="{mv.name}-{mv.version}.tar.gz"',
            "X-Shipyard-Sha256": mv.sha256,
        })

    @api.get("/{name}/aliases")
    def list_aliases(name: str) -> dict[str, int]:
        return registry.list_aliases(name)

    @api.get("/{name}/aliases/{alias}")
    def get_alias(name: str, alias: str) -> dict[str, Any]:
        return registry.get_alias(name, alias).to_dict()

    @api.put("/{name}/aliases/{alias}")
    def set_alias(name: str, alias: str, body: SetAlias, x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.set_alias(name, alias, body.version, force=body.force, actor=actor(x_shipyard_user)).to_dict()

    @api.delete("/{name}/aliases/{alias}", status_code=204)
    def delete_alias(name: str, alias: str, x_shipyard_user: str | None = Header(None)) -> Response:
        registry.delete_alias(name, alias, actor=actor(x_shipyard_user))
        return Response(status_code=204)

    @api.post("/{name}/aliases/{alias}/rollback")
    def rollback(name: str, alias: str, x_shipyard_user: str | None = Header(None)) -> dict[str, Any]:
        return registry.rollback(name, alias, actor=actor(x_shipyard_user)).to_dict()

    @api.get("/{name}/aliases/{alias}/history")
    def alias_history(name: str, alias: str) -> list[dict[str, Any]]:
        return [m.to_dict() for m in registry.alias_history(name, alias)]

    @api.get("/{name}/events")
    def events(name: str, limit: int = Query(200, ge=1, le=10000)) -> list[dict[str, Any]]:
        return registry.history(name, limit=limit)

    return api


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
