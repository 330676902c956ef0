"""HTTP shell over the serving engine: prediction routes at the root, scene management under /api/v1.

The prediction routes read the raw body, parse it with orjson and call the engine directly — no
pydantic on the hot path. Their request schemas are declared in OpenAPI (``openapi_extra``) so
clients and fuzzers see them. Every error is ``{"error": {"code", "message", "details"}}`` with
the request id; 429/503 carry ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.serving import openapi
from shipyard.serving.codec import csv_records, dumps, model_records, parse_json, scene_records
from shipyard.serving.engine import ServingEngine, new_request_id
from shipyard.serving.metrics import CONTENT_TYPE, ServingMetrics
from shipyard.serving.prediction_log import PredictionLog

JSON = "application/json"


class ServingState:
    """What one server instance shares between its routes: engine, metrics, log, follower."""

    def __init__(self, ws: Any, **options: Any) -> None:
        self.ws = ws
        self.metrics = ServingMetrics()
        self.max_bytes = int(options.get("max_request_bytes") or ws.settings.max_request_bytes)
        engine = options.get("engine")
        if engine is None:
            plog = PredictionLog(ws.artifacts, sample_rate=ws.settings.prediction_log_sample_rate,
                                 on_drop=self.metrics.log_dropped.inc)
            engine = ServingEngine(ws, prediction_log=plog, metrics=self.metrics)
        elif engine.metrics is None:
            engine.metrics = self.metrics
        self.engine: ServingEngine = engine
        self.single_model = _parse_single(options.get("single_model"))
        self.follow_interval = float(options.get("follow_interval", 5.0))
        self.tune_gc = bool(options.get("tune_gc", True))
        self.gc_thresholds: tuple[int, int, int] | None = None
        self.follower: Any = None
        self.handlers: dict[str, Any] = {}


_states: weakref.WeakKeyDictionary[Any, ServingState] = weakref.WeakKeyDictionary()


def _parse_single(ref: str | None) -> tuple[str, str] | None:
    if not ref:
        return None
    name, _, alias = str(ref).partition("@")
    return name, alias or "champion"


def state_for(ws: Any, **options: Any) -> ServingState:
    state = _states.get(ws)
    if state is None:
        state = ServingState(ws, **options)
        _states[ws] = state
    return state


# -- helpers --------------------------------------------------------------------------------------
def error_response(exc: ShipyardError, request_id: str) -> Response:
    body = exc.to_dict()
    body["error"]["details"] = {**exc.details, "request_id": request_id}
    headers = {"x-request-id": request_id}
    retry = exc.details.get("retry_after")
    if retry is not None or exc.status in (429, 503):
        headers["retry-after"] = str(int(retry or 1))
    return Response(dumps(body), status_code=exc.status, media_type=JSON, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} (max_request_bytes)",
                              {"limit": limit})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes (max_request_bytes)",
                                  {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def _client(request: Request) -> str | None:
    found = request.headers.get("x-client-id")
    if found:
        return found
    return request.client.host if request.client else None


def _is_csv(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "text/csv"


# -- prediction routes ----------------------------------------------------------------------------
def prediction_router(ws: Any, **options: Any) -> APIRouter:
    state = ServingState(ws, **options)
    _states[ws] = state
    engine = state.engine
    api = APIRouter(tags=["prediction"])

    @api.post("/v1/scenes/{scene}/predict", openapi_extra=openapi.SCENE_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_scene(scene: str, request: Request) -> Response:
        """Run a scene's decision flow for one record (an object) or a batch (a list or {"records": [...]})."""
        rid = request.headers.get("x-request-id") or new_request_id()
        try:
            payload = parse_json(await read_body(request, state.max_bytes))
            records, single = scene_records(payload)
            served = engine.scene(scene)
            kwargs = {"single": single, "override": request.headers.get("x-shipyard-arm"),
                      "client": _client(request), "request_id": rid, "served": served}
            if served.blocking:
                result = await run_in_threadpool(engine.predict_scene, scene, records, **kwargs)
            else:
                result = engine.predict_scene(scene, records, **kwargs)
        except ShipyardError as exc:
            return error_response(exc, rid)
        return Response(dumps(result), media_type=JSON, headers={"x-request-id": rid})

    async def _model_call(request: Request, name: str, ref: str) -> tuple[str, Any, Any, float, bool]:
        rid = request.headers.get("x-request-id") or new_request_id()
        body = await read_body(request, state.max_bytes)
        served = engine.model(name, ref)
        if _is_csv(request):
            numeric = served.names if served.numeric else []
            records, single = csv_records(body, served.names, numeric), False
        else:
            records, single = model_records(parse_json(body), served.names)
        if not records:
            raise InvalidInput("no records to score; send at least one", {"field": "body"})
        predictions, served, elapsed = engine.predict_model(name, ref, records)
        return rid, predictions, served, elapsed, single

    @api.post("/v1/models/{name}/{ref}/predict", openapi_extra=openapi.MODEL_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_model(name: str, ref: str, request: Request) -> Response:
        """Score records with a registered model (an alias or a version number)."""
        rid = request.headers.get("x-request-id") or ""
        try:
            rid, predictions, served, elapsed, single = await _model_call(request, name, ref)
        except ShipyardError as exc:
            return error_response(exc, rid or new_request_id())
        body = {"request_id": rid, "model": {"name": name, "ref": ref, "version": served.version},
                "predictions": predictions[0] if single else predictions,
                "latency_ms": {"model": round(elapsed * 1000, 3)}}
        return Response(dumps(body), media_type=JSON, headers={"x-request-id": rid})

    @api.post("/v1/models/{name}/{ref}/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
              responses=openapi.RESPONSES)
    async def invocations_model(name: str, ref: str, request: Request) -> Response:
        """MLflow scoring protocol for a registered model; returns {"predictions": [...]}."""
        return await _invocations(request, name, ref)

    async def _invocations(request: Request, name: str, ref: str) -> Response:
        rid = request.headers.get("x-request-id") or ""
        try:
            rid, predictions, served, _elapsed, _single = await _model_call(request, name, ref)
        except ShipyardError as exc:
            return error_response(exc, rid or new_request_id())
        return Response(dumps({"predictions": predictions}), media_type=JSON,
                        headers={"x-request-id": rid, "x-shipyard-model-version": str(served.version)})

    state.handlers = {"scene": predict_scene, "predict": predict_model, "invocations": _invocations}
    if state.single_model is not None:
        single_name, single_ref = state.single_model

        @api.post("/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
                  responses=openapi.RESPONSES)
        async def invocations(request: Request) -> Response:
            """MLflow scoring protocol for the model this server was started with (--model)."""
            return await _invocations(request, single_name, single_ref)

        @api.get("/ping")
        async def ping() -> Response:
            """200 once the model is loaded (load balancers' health check)."""
            try:
                engine.model(single_name, single_ref)
            except ShipyardError as exc:
                return error_response(exc, new_request_id())
            return Response(b"\n", media_type=JSON)

    return api


class FastPredict:
    """Sends prediction POSTs straight to their handlers, skipping the router's walk over every
    route of the server (the routes stay registered for OpenAPI and for anything this misses)."""

    def __init__(self, app: Any, state: ServingState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.state.handlers:
            response = await self._dispatch(scope, receive)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _dispatch(self, scope: Any, receive: Any) -> Response | None:
        path: str = scope["path"]
        handlers = self.state.handlers
        if path == "/invocations" and self.state.single_model is not None:
            return await handlers["invocations"](Request(scope, receive), *self.state.single_model)
        parts = path.split("/")
        # ["", "v1", "models", name, ref, action] or ["", "v1", "scenes", scene, "predict"]
        if len(parts) == 6 and parts[1] == "v1" and parts[2] == "models" and parts[3] and parts[4]:
            if parts[5] == "predict":
                return await handlers["predict"](parts[3], parts[4], Request(scope, receive))
            if parts[5] == "invocations":
                return await handlers["invocations"](Request(scope, receive), parts[3], parts[4])
        if len(parts) == 5 and parts[1] == "v1" and parts[2] == "scenes" and parts[3] and parts[4] == "predict":
            return await handlers["scene"](parts[3], Request(scope, receive))
        return None


# -- management routes (/api/v1) ------------------------------------------------------------------
def router(ws: Any) -> APIRouter:
    from shipyard.serving import release
    from shipyard.serving import scene as scenes

    api = APIRouter(prefix="/scenes", tags=["scenes"])

    @api.get("")
    def list_scenes() -> list[dict[str, Any]]:
        """All scenes with their latest version."""
        return scenes.list_scenes(ws)

    @api.post("", openapi_extra=openapi.SCENE_APPLY, response_class=JSONResponse)
    async def apply(request: Request) -> JSONResponse:
        """Validate and store a scene document as a new version."""
        payload = parse_json(await read_body(request, ws.settings.max_request_bytes))
        engine = _engine(request, ws)
        found = await run_in_threadpool(scenes.apply_scene, ws, payload, models=engine.models,
                                        features=engine.features, comment=str(request.query_params.get("comment", "")))
        return JSONResponse(found.to_dict())

    @api.get("/{name}")
    def show(name: str, version: int | None = None) -> dict[str, Any]:
        """A scene version's document (latest unless ``version`` is given)."""
        return scenes.get_scene(ws, name, version).to_dict()

    @api.get("/{name}/versions")
    def versions(name: str) -> list[dict[str, Any]]:
        found = scenes.list_versions(ws, name)
        if not found:
            raise NotFound(f"scene {name!r} does not exist", {"scene": name})
        return [{k: v for k, v in f.to_dict().items() if k != "spec"} for f in found]

    @api.get("/{name}/status")
    def status(name: str, request: Request) -> dict[str, Any]:
        """Served version, arms, canary share and recent per-arm statistics."""
        return release.scene_status(_engine(request, ws), name)

    @api.get("/{name}/shadow-report")
    def shadow_report(name: str, request: Request, cutoff: float = 0.5) -> dict[str, Any]:
        """Live vs shadow outputs: difference distribution and agreement at the cut-off."""
        return release.shadow_report(_engine(request, ws), name, cutoff=cutoff)

    @api.post("/{name}/canary")
    def set_canary(name: str, request: Request, percent: float, arm: str | None = None) -> dict[str, Any]:
        """Move the canary share of an arm (0-100); recorded as a release step."""
        return release.set_canary(ws, _engine(request, ws), name, percent, arm=arm)

    return api


def _engine(request: Request, ws: Any) -> ServingEngine:
    state = getattr(request.app.state, "serving", None) or state_for(ws)
    return state.engine


def install(app: FastAPI, ws: Any, **options: Any) -> None:
    """/metrics, the alias/scene follower and a clean shutdown (flushes the prediction log)."""
    state = _states.get(ws) or state_for(ws, **options)
    app.state.serving = state

    async def metrics(_request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_route("/metrics", metrics, include_in_schema=False)
    app.add_middleware(FastPredict, state=state)

    def startup() -> None:
        if state.tune_gc:
            # freeze the imported stack and anything loaded so far: full collections stop walking it
            from shipyard.serving import heap

            state.gc_thresholds = heap.tune()
        if state.follow_interval > 0 and state.engine.ws is not None:
            from shipyard.serving.hotswap import Follower

            state.follower = Follower(state.engine, interval=state.follow_interval)
            state.follower.start()

    def shutdown() -> None:
        if state.follower is not None:
            state.follower.stop()
        state.engine.close()

    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        startup()
        try:
            async with previous(asgi_app) as value:
                yield value
        finally:
            shutdown()

    app.router.lifespan_context = lifespan
