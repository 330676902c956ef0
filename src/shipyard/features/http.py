"""REST routes of the feature store under /api/v1/features; each route is one call into the project's
feature store.

Plan and apply execute the project's definition files, so they need ``features:upload_code``, and
they read definitions only from the project's own folder — never from artifacts or elsewhere on the
server. Online routes (``online_http.py``) are included into the same router.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import Field

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.paths import require_project_path
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import InvalidInput
from shipyard.http_util import RequestBody
from shipyard.workspace import Workspace

READ = allow(Resource.FEATURES, Action.READ)
WRITE = allow(Resource.FEATURES, Action.WRITE)
CODE = allow(Resource.FEATURES, Action.UPLOAD_CODE)


class PlanRequest(RequestBody):
    path: str | None = Field(None, max_length=1024,
                             description="a folder or .py file inside the project's folder, relative to it "
                                         "(default: the project's features/)")
    check_sources: bool = True


class ApplyRequest(PlanRequest):
    allow_breaking: bool = False


class TrainingSetRequest(RequestBody):
    entity_rows: list[dict[str, Any]] = Field(description="rows with join keys and a timestamp (ISO 8601)")
    features: list[str] | None = Field(None, description="'view:feature' references")
    service: str | None = None
    timestamp_column: str | None = None
    full_feature_names: bool = False
    engine: str | None = None
    dataset: str | None = Field(None, description="write the result as this dataset instead of returning rows")


class CompactRequest(RequestBody):
    view: str | None = Field(None, description="feature view whose offline log to compact (default: every view)")
    target_rows: int | None = Field(None, ge=2, description="rows per merged file (default 1,000,000)")
    grace_seconds: float | None = Field(None, ge=0, description="seconds replaced files stay for readers "
                                                                 "that listed them (default 600)")


def describe(obj: Any) -> dict[str, Any]:
    return {"kind": obj.kind, "name": obj.name, "version": obj.version, "spec": obj.to_spec()}


def entity_frame(rows: list[dict[str, Any]], timestamp_column: str | None) -> pd.DataFrame:
    if not rows:
        raise InvalidInput("entity_rows is empty; send at least one row", {"field": "entity_rows"})
    frame = pd.DataFrame(rows)
    from shipyard.features.training import DEFAULT_TS_COLUMNS

    candidates = [timestamp_column] if timestamp_column else [c for c in DEFAULT_TS_COLUMNS if c in frame.columns]
    for col in candidates[:1]:
        if col in frame.columns:
            try:
                frame[col] = pd.to_datetime(frame[col], format="ISO8601")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"entity_rows column {col!r} is not ISO 8601 timestamps ({exc}); send e.g. "
                                   "'2024-01-31T00:00:00Z' in every row", {"field": col}) from None
    return frame


def definitions_path(ws: Workspace, path: str | None) -> Path:
    """The definitions to load: inside the project's folder, outside its state folder."""
    return require_project_path(ws.settings, path, "path", "definitions path")


def router() -> APIRouter:
    from shipyard.features import online_http

    api = APIRouter(prefix="/features", tags=["features"])

    @api.post("/plan")
    def plan(body: PlanRequest, ctx: RequestContext = CODE) -> dict[str, Any]:
        path = definitions_path(ctx.ws, body.path)
        return ctx.ws.features.plan(str(path), check_sources=body.check_sources).to_dict()

    @api.post("/apply")
    def apply(body: ApplyRequest, ctx: RequestContext = CODE) -> dict[str, Any]:
        path = definitions_path(ctx.ws, body.path)
        result = ctx.ws.features.apply(str(path), allow_breaking=body.allow_breaking,
                                       check_sources=body.check_sources).to_dict()
        ctx.audit(path=body.path or ".", code=True)
        return result

    @api.get("/views")
    def list_views(ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [describe(v) for v in ctx.ws.features.list_views()]

    @api.get("/views/{name}")
    def get_view(name: str, version: int | None = Query(None, ge=1, le=2**31 - 1), ctx: RequestContext = READ) \
            -> dict[str, Any]:
        return describe(ctx.ws.features.get_view(name, version))

    @api.get("/entities")
    def list_entities(ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [describe(e) for e in ctx.ws.features.list_entities()]

    @api.get("/services")
    def list_services(ctx: RequestContext = READ) -> list[dict[str, Any]]:
        return [describe(s) for s in ctx.ws.features.list_services()]

    @api.get("/services/{name}")
    def get_service(name: str, version: int | None = Query(None, ge=1, le=2**31 - 1),
                    ctx: RequestContext = READ) -> dict[str, Any]:
        return describe(ctx.ws.features.get_service(name, version))

    @api.post("/training-set")
    def training_set(body: TrainingSetRequest, ctx: RequestContext = READ) -> dict[str, Any]:
        if body.dataset is not None:
            ctx.require(Resource.FEATURES, Action.WRITE)
        frame = entity_frame(body.entity_rows, body.timestamp_column)
        result = ctx.ws.features.get_training_set(
            frame, features=body.features, service=body.service, engine=body.engine,
            timestamp_column=body.timestamp_column, full_feature_names=body.full_feature_names,
            dataset=body.dataset)
        if body.dataset is not None:
            return {"dataset": result.to_dict()}
        out = result.astype(object).where(result.notna(), None)
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(result[col]):
                out[col] = [v.isoformat() if v is not None else None for v in out[col]]
        return {"columns": [str(c) for c in result.columns], "rows": out.to_dict("records"),
                "dtypes": {str(c): str(t) for c, t in result.dtypes.items()}}

    @api.post("/compact")
    def compact(body: CompactRequest, ctx: RequestContext = WRITE) -> dict[str, Any]:
        """Merge the small files pushes left in the offline log (readers see the same rows throughout)."""
        results = ctx.ws.features.compact(body.view, target_rows=body.target_rows, grace_seconds=body.grace_seconds)
        return {"results": [r.to_dict() for r in results]}

    api.include_router(online_http.router())
    return api
