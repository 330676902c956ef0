"""HTTP shell over the serving engine: prediction routes at the root, scene management under /api/v1.

The prediction routes read the raw body, parse it with orjson and call the engine directly — no
pydantic on the hot path. Their request schemas are declared in OpenAPI (``openapi_extra``) so
clients and fuzzers see them. Every error is ``{"error": {"code", "message", "details"}}`` with
the request id; 429/503 carry ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import logging
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
from shipyard.serving.shutdown import ShutdownLog

JSON = "application/json"
log = logging.getLogger(__name__)


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
        # worker processes of this server: each enforces its share of every scene's limits
        engine.workers = int(options.get("workers") or getattr(getattr(ws, "settings", None), "server_workers", 1) or 1)
        self.engine: ServingEngine = engine
        self.single_model = _parse_single(options.get("single_model"))
        self.follow_interval = float(options.get("follow_interval", 5.0))
        self.tune_gc = bool(options.get("tune_gc", True))
        self.gc_thresholds: tuple[int, int, int] | None = None
        self.follower: Any = None
        self.handlers: dict[str, Any] = {}
        self.shutdown_log = ShutdownLog(engine.inflight)


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
Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
"""A prediction handler's answer: status, JSON body and extra raw headers."""

_JSON_HEADER = (b"content-type", JSON.encode())


def _reply(body: Any, request_id: str, status: int = 200, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    headers = [(b"x-request-id", request_id.encode())]
    if extra:
        headers.extend(extra)
    return status, dumps(body), headers


def error_reply(exc: ShipyardError, request_id: str) -> Reply:
    body = exc.to_dict()
    body["error"]["details"] = {**exc.details, "request_id": request_id}
    extra = []
    retry = exc.details.get("retry_after")
    if retry is not None or exc.status in (429, 503):
        extra.append((b"retry-after", str(int(retry or 1)).encode()))
    return _reply(body, request_id, exc.status, extra)


def error_response(exc: ShipyardError, request_id: str) -> Response:
    return _response(error_reply(exc, request_id))


def _response(reply: Reply) -> Response:
    status, body, headers = reply
    return Response(body, status_code=status, media_type=JSON,
                    headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers})


class Disconnected(Exception):
    """The client went away before its body arrived."""


class Call:
    """What a prediction handler reads from a request: five headers, the peer and the body.

    Built straight from the ASGI scope on the fast path (one pass over the raw headers, no
    Starlette ``Request``), or from a ``Request`` on the routed path.
    """

    __slots__ = ("length", "content_type", "request_id", "client_id", "arm", "peer", "body")

    def __init__(self, raw_headers: Any, peer: Any) -> None:
        self.length: bytes | None = None
        self.content_type = b""
        self.request_id = ""
        self.client_id = ""
        self.arm: str | None = None
        self.peer: str | None = peer[0] if peer else None
        self.body = b""
        for key, value in raw_headers:
            if key == b"content-length":
                self.length = value
            elif key == b"content-type":
                self.content_type = value
            elif key[:2] == b"x-":
                if key == b"x-request-id":
                    self.request_id = value.decode("latin-1")
                elif key == b"x-client-id":
                    self.client_id = value.decode("latin-1")
                elif key == b"x-shipyard-arm":
                    self.arm = value.decode("latin-1")

    @property
    def client(self) -> str | None:
        return self.client_id or self.peer

    @property
    def is_csv(self) -> bool:
        return self.content_type.split(b";", 1)[0].strip().lower() == b"text/csv"

    def check_declared(self, limit: int) -> None:
        declared = self.length
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared.decode()} bytes; the limit is {limit} (max_request_bytes)",
                                  {"limit": limit})

    async def receive_body(self, receive: Any, limit: int) -> None:
        """Read the body from ASGI ``receive`` (usually one message) within ``limit`` bytes."""
        self.check_declared(limit)
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        body = message.get("body", b"")
        if message.get("more_body", False):
            chunks, size = [body], len(body)
            while message.get("more_body", False):
                if size > limit:
                    break
                message = await receive()
                if message["type"] != "http.request":
                    raise Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
            body = b"".join(chunks)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes (max_request_bytes)",
                                  {"limit": limit})
        self.body = body

    @classmethod
    async def from_request(cls, request: Request, limit: int) -> Call:
        call = cls(request.scope["headers"], request.scope.get("client"))
        call.check_declared(limit)
        call.body = await read_body(request, limit)
        return call


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


# -- prediction routes ----------------------------------------------------------------------------
def prediction_router(ws: Any, **options: Any) -> APIRouter:
    state = ServingState(ws, **options)
    _states[ws] = state
    engine = state.engine
    api = APIRouter(tags=["prediction"])
    limit = state.max_bytes

    async def scene_call(call: Call, scene: str) -> Reply:
        rid = call.request_id or new_request_id()
        try:
            payload = parse_json(call.body)
            records, single = scene_records(payload)
            result = await engine.predict_scene_async(scene, records, single=single, override=call.arm,
                                                      client=call.client, request_id=rid)
        except ShipyardError as exc:
            return error_reply(exc, rid)
        return _reply(result, rid)

    def model_call(call: Call, name: str, ref: str) -> tuple[str, Any, Any, float, bool]:
        rid = call.request_id or new_request_id()
        served = engine.model(name, ref)
        if call.is_csv:
            numeric = served.names if served.numeric else []
            records, single = csv_records(call.body, served.names, numeric), False
        else:
            records, single = model_records(parse_json(call.body), served.names)
        if not records:
            raise InvalidInput("no records to score; send at least one", {"field": "body"})
        predictions, served, elapsed = engine.predict_model(name, ref, records)
        return rid, predictions, served, elapsed, single

    async def predict_call(call: Call, name: str, ref: str) -> Reply:
        try:
            rid, predictions, served, elapsed, single = await engine.in_model_pool(name, ref, model_call, call,
                                                                                   name, ref)
        except ShipyardError as exc:
            return error_reply(exc, call.request_id or new_request_id())
        body = {"request_id": rid, "model": {"name": name, "ref": ref, "version": served.version},
                "predictions": predictions[0] if single else predictions,
                "latency_ms": {"model": round(elapsed * 1000, 3)}}
        return _reply(body, rid)

    async def invocations_call(call: Call, name: str, ref: str) -> Reply:
        try:
            rid, predictions, served, _elapsed, _single = await engine.in_model_pool(name, ref, model_call, call,
                                                                                     name, ref)
        except ShipyardError as exc:
            return error_reply(exc, call.request_id or new_request_id())
        return _reply({"predictions": predictions}, rid,
                      extra=[(b"x-shipyard-model-version", str(served.version).encode())])

    async def routed(request: Request, handler: Any, *args: str) -> Response:
        try:
            call = await Call.from_request(request, limit)
        except ShipyardError as exc:
            return error_response(exc, request.headers.get("x-request-id") or new_request_id())
        return _response(await handler(call, *args))

    @api.post("/v1/scenes/{scene}/predict", openapi_extra=openapi.SCENE_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_scene(scene: str, request: Request) -> Response:
        """Run a scene's decision flow for one record (an object) or a batch (a list or {"records": [...]})."""
        return await routed(request, scene_call, scene)

    @api.post("/v1/models/{name}/{ref}/predict", openapi_extra=openapi.MODEL_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_model(name: str, ref: str, request: Request) -> Response:
        """Score records with a registered model (an alias or a version number)."""
        return await routed(request, predict_call, name, ref)

    @api.post("/v1/models/{name}/{ref}/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
              responses=openapi.RESPONSES)
    async def invocations_model(name: str, ref: str, request: Request) -> Response:
        """MLflow scoring protocol for a registered model; returns {"predictions": [...]}."""
        return await routed(request, invocations_call, name, ref)

    state.handlers = {"scene": scene_call, "predict": predict_call, "invocations": invocations_call}
    if state.single_model is not None:
        single_name, single_ref = state.single_model

        @api.post("/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
                  responses=openapi.RESPONSES)
        async def invocations(request: Request) -> Response:
            """MLflow scoring protocol for the model this server was started with (--model)."""
            return await routed(request, invocations_call, single_name, single_ref)

        @api.get("/ping")
        async def ping() -> Response:
            """200 once the model is loaded (load balancers' health check)."""
            try:
                engine.model(single_name, single_ref)
            except ShipyardError as exc:
                return error_response(exc, new_request_id())
            return Response(b"\n", media_type=JSON)
    else:
        @api.post("/invocations", include_in_schema=False)
        @api.get("/ping", include_in_schema=False)
        async def no_single_model() -> Response:
            # MLflow clients and load balancers call these on a one-model server; say how to get one
            return error_response(NotFound(
                "this server was started without --model, so it has no /invocations or /ping; start it "
                "with `shipyard server --model NAME@ALIAS`, or post to /v1/models/{name}/{alias}/invocations",
                {"field": "--model"}), new_request_id())

    return api


class FastPredict:
    """Answers prediction POSTs in front of the whole application stack (FastAPI's wrappers,
    Starlette's middleware and router): headers read once from the scope, the body from
    ``receive``, the response sent as two ASGI messages. The routes stay registered for OpenAPI
    and answer whatever this does not match. Returns False when the request is not its own.
    """

    def __init__(self, state: ServingState) -> None:
        self.state = state

    def _match(self, path: str) -> tuple[Any, tuple[str, ...]] | None:
        handlers = self.state.handlers
        if path == "/invocations":
            if self.state.single_model is not None:
                return handlers["invocations"], self.state.single_model
            return None
        parts = path.split("/")
        # ["", "v1", "models", name, ref, action] or ["", "v1", "scenes", scene, "predict"]
        n = len(parts)
        if n == 6 and parts[1] == "v1" and parts[2] == "models" and parts[3] and parts[4]:
            if parts[5] == "predict":
                return handlers["predict"], (parts[3], parts[4])
            if parts[5] == "invocations":
                return handlers["invocations"], (parts[3], parts[4])
        elif n == 5 and parts[1] == "v1" and parts[2] == "scenes" and parts[3] and parts[4] == "predict":
            return handlers["scene"], (parts[3],)
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> bool:
        if not self.state.handlers:
            return False
        found = self._match(scope["path"])
        if found is None:
            return False
        handler, args = found
        call = Call(scope["headers"], scope.get("client"))
        try:
            await call.receive_body(receive, self.state.max_bytes)
            status, body, headers = await handler(call, *args)
        except Disconnected:
            return True
        except ShipyardError as exc:
            status, body, headers = error_reply(exc, call.request_id or new_request_id())
        except Exception as exc:  # same answer as the application's handler for unexpected errors
            log.exception("unhandled error")
            status, body, headers = 500, dumps({"error": {"code": "internal", "message": (
                f"internal error: {type(exc).__name__}: {exc}"), "details": {}}}), []
        headers.append(_JSON_HEADER)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


# -- management routes (/api/v1) ------------------------------------------------------------------
def router(ws: Any) -> APIRouter:
    from shipyard.serving import release
    from shipyard.serving import scene as scenes
    from shipyard.serving.release_http import router as rollout_router

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

    api.include_router(rollout_router(ws))
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
    fast = FastPredict(state)

    def startup() -> None:
        state.shutdown_log.watch_signals()
        if state.tune_gc:
            # freeze the imported stack and anything loaded so far: full collections stop walking it
            from shipyard.serving import heap

            state.gc_thresholds = heap.tune()
        if hasattr(app, "fast_path") and not _telemetry_enabled(app):
            # with OpenTelemetry configured, predictions keep going through FastAPI for its spans
            app.fast_path = fast
        if state.follow_interval > 0 and state.engine.ws is not None:
            from shipyard.serving.hotswap import Follower

            state.follower = Follower(state.engine, interval=state.follow_interval)
            state.follower.start()

    def shutdown() -> None:
        phase = state.shutdown_log.phase
        phase("requests finished, rollouts stopped")  # uvicorn drained the connections, the routers' lifespans ran
        if getattr(app, "fast_path", None) is fast:
            app.fast_path = None
        if state.follower is not None:
            state.follower.stop()
            phase("hot swap stopped")
        state.engine.close(phase)
        state.metrics.close()
        phase("complete")

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


def _telemetry_enabled(app: Any) -> bool:
    telemetry = getattr(app, "_native_telemetry", None)
    try:
        return bool(telemetry is not None and telemetry.enabled())
    except Exception:  # an unknown FastAPI internals layout: keep its full stack
        return True
