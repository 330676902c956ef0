"""Online feature routes under /api/v1/features; each is one call into the online feature modules.

    POST /features/online        {"features": ["view:f", ...] | "service": "name",
                                  "entities": {"customer_id": [1, 2]} | [{"customer_id": 1}, ...],
                                  "full_feature_names": false}
                                 -> {"results": {"customer_id": [...], "f": [...]}}
    POST /features/push          {"view": "name", "rows": [{...}], "to_offline": true} -> counts
    POST /features/materialize   {"start": ..., "end": ..., "views": [...], "incremental": false}
    GET  /features/monitor       ?views=a,b&sample=100000
    GET  /features/skew          ?target=view-or-service&start=...&end=...

Paths here are relative: ``shipyard.features.http`` includes this router into its ``/features``
router, which the server mounts under ``/api/v1``. The online read route parses its body with orjson and answers without a thread hop: it is the
hot path. Timestamps in responses are ISO 8601 strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import InvalidInput
from shipyard.http_util import RequestBody

READ = allow(Resource.FEATURES, Action.READ)
WRITE = allow(Resource.FEATURES, Action.WRITE)

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload, option=_OPTS, default=_default), media_type="application/json")


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", {"field": "body"}) from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", {"field": "body"})
    return body


_ONLINE_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "features": {"type": "array", "items": {"type": "string"}, "description": "'view:feature' references"},
            "service": {"type": "string", "description": "a feature service instead of features"},
            "entities": {"description": "dict of columns or list of rows with join keys (and request fields)"},
            "full_feature_names": {"type": "boolean", "default": False},
        },
        "required": ["entities"],
    }}}},
}
class PushIn(RequestBody):
    view: str = Field(min_length=1, max_length=255, description="a feature view name")
    rows: list[dict[str, Any]] = Field(description="join keys, the timestamp field (ISO 8601) and every feature")
    to_offline: bool = True


class MaterializeIn(RequestBody):
    start: datetime | None = Field(None, description="ISO 8601 time (default: each view's last run)")
    end: datetime | None = Field(None, description="ISO 8601 time; required unless incremental")
    views: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    incremental: bool = False


def router() -> APIRouter:
    """Included by ``shipyard.features.http`` into its /features router."""
    from shipyard.features.online_features import get_online_features
    from shipyard.features.push import push

    api = APIRouter(tags=["features"])

    @api.post("/online", openapi_extra=_ONLINE_SCHEMA)
    async def online(request: Request, ctx: RequestContext = READ) -> Response:
        body = await _body(request)
        if "entities" not in body:
            raise InvalidInput("body needs 'entities': a dict of columns or a list of rows", {"field": "entities"})
        features = body.get("features")
        if features is not None and not isinstance(features, list):
            raise InvalidInput("'features' must be a list of 'view:feature' strings", {"field": "features"})
        result = get_online_features(ctx.ws.features, body["entities"], features=features, service=body.get("service"),
                                     full_feature_names=bool(body.get("full_feature_names", False)))
        return _json({"results": result})

    @api.post("/push")
    def push_rows(body: PushIn, ctx: RequestContext = WRITE) -> Response:
        return _json(push(ctx.ws.features, body.view, body.rows, to_offline=body.to_offline).to_dict())

    @api.post("/materialize")
    def materialize_views(body: MaterializeIn, ctx: RequestContext = WRITE) -> Response:
        if body.incremental:
            results = ctx.ws.features.materialize_incremental(end=body.end, views=body.views)
        else:
            if body.end is None:
                raise InvalidInput("body needs 'end' (and usually 'start'); or set 'incremental': true",
                                   {"field": "end"})
            results = ctx.ws.features.materialize(body.start, body.end, views=body.views)
        return _json({"results": [r.to_dict() for r in results]})

    @api.get("/monitor")
    def monitor_views(views: str | None = None, sample: int = Query(100_000, ge=1, le=100_000_000),
                      ctx: RequestContext = READ) -> Response:
        from shipyard.features.monitoring import monitor

        chosen = [v.strip() for v in views.split(",") if v.strip()] if views else None
        return _json(monitor(ctx.ws.features, chosen, sample=sample))

    @api.get("/skew")
    def skew_report(target: str, start: str | None = None, end: str | None = None,
                    ctx: RequestContext = READ) -> Response:
        from shipyard.features.skew import skew

        return _json(skew(ctx.ws.features, target, start, end).to_dict())

    return api

