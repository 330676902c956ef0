"""REST routes of the feature store under /api/v1/features; each route is one call into ``ws.features``.

Online routes (``online_http.py``) are included into the same router when present.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pandas as pd
from fastapi import APIRouter
from pydantic import BaseModel, Field

from shipyard.errors import InvalidInput
from shipyard.workspace import Workspace


class PlanRequest(BaseModel):
    path: str | None = Field(None, description="project folder, features folder or .py file on the server")
    check_sources: bool = True


class ApplyRequest(PlanRequest):
    allow_breaking: bool = False


class TrainingSetRequest(BaseModel):
    entity_rows: list[dict[str, Any]] = Field(description="rows with join keys and a timestamp (ISO 8601)")
    features: list[str] | None = Field(None, description="'view:feature' references")
    service: str | None = None
    timestamp_column: str | None = None
    full_feature_names: bool = False
    engine: str | None = None
    dataset: str | None = Field(None, description="write the result as this dataset instead of returning rows")


class CompactRequest(BaseModel):
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


def router(ws: Workspace) -> APIRouter:
    api = APIRouter(prefix="/features", tags=["features"])

    @api.post("/plan")
    def plan(body: PlanRequest) -> dict[str, Any]:
        return ws.features.plan(body.path, check_sources=body.check_sources).to_dict()

    @api.post("/apply")
    def apply(body: ApplyRequest) -> dict[str, Any]:
        return ws.features.apply(body.path, allow_breaking=body.allow_breaking,
                                 check_sources=body.check_sources).to_dict()

    @api.get("/views")
    def list_views() -> list[dict[str, Any]]:
        return [describe(v) for v in ws.features.list_views()]

    @api.get("/views/{name}")
    def get_view(name: str, version: int | None = None) -> dict[str, Any]:
        return describe(ws.features.get_view(name, version))

    @api.get("/entities")
    def list_entities() -> list[dict[str, Any]]:
        return [describe(e) for e in ws.features.list_entities()]

    @api.get("/services")
    def list_services() -> list[dict[str, Any]]:
        return [describe(s) for s in ws.features.list_services()]

    @api.get("/services/{name}")
    def get_service(name: str, version: int | None = None) -> dict[str, Any]:
        return describe(ws.features.get_service(name, version))

    @api.post("/training-set")
    def training_set(body: TrainingSetRequest) -> dict[str, Any]:
        frame = entity_frame(body.entity_rows, body.timestamp_column)
        result = ws.features.get_training_set(
            frame, features=body.features, service=body.service, engine=body.engine,
            timestamp_column=body.timestamp_column, full_feature_names=body.full_feature_names,
            dataset=body.dataset)
        if body.dataset is not None:
            return {"dataset": result.to_dict()}
        out = result.astype(object).where(result.notna(), None)
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(result[col]):
                out[col] = [v.isoformat() if v is not None else None for v in out[col]]
        return {"columns": [str(c) for c in result.columns], "rows": out.to_dict("records")}

    @api.post("/compact")
    def compact(body: CompactRequest) -> dict[str, Any]:
        """Merge the small files pushes left in the offline log (readers see the same rows throughout)."""
        results = ws.features.compact(body.view, target_rows=body.target_rows, grace_seconds=body.grace_seconds)
        return {"results": [r.to_dict() for r in results]}

    if _module_exists("shipyard.features.online_http"):
        from shipyard.features import online_http

        if hasattr(online_http, "router"):
            api.include_router(online_http.router(ws))
    return api


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
