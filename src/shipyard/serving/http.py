"""HTTP shell over the serving engine: prediction routes at the root, scene management under /api/v1.

The prediction routes read the raw body, parse it with orjson and call the engine directly — no
pydantic on the hot path. Their request schemas are declared in OpenAPI (``openapi_extra``) so
clients and fuzzers see them. Every error is ``{"error": {"code", "message", "details"}}`` with
the request id; 429/503 carry ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Query
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from shipyard.auth.guard import SESSION_COOKIE, AccessGuard
from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.auth.principal import DEFAULT_PROJECT
from shipyard.auth.redact import REDACTOR
from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.http_util import add_lifespan, read_body
from shipyard.serving import openapi
from shipyard.serving.codec import (
    body_request_id,
    csv_records,
    dumps,
    model_params,
    model_records,
    parse_json,
    scene_records,
)
from shipyard.serving.engine import new_request_id
from shipyard.serving.fleet import fleet_series
from shipyard.serving.metrics import CONTENT_TYPE
from shipyard.serving.state import ServingState, engine_for, state_for
from shipyard.serving.state import states as _states

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

JSON = "application/json"
log = logging.getLogger(__name__)


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
    # written here, not by the app's handlers: rewrite server paths as every response does
    body = REDACTOR.redact(exc.to_dict())
    body["error"]["details"] = {**REDACTOR.redact(exc.details), "request_id": request_id}
    extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
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

    __slots__ = ("length", "content_type", "request_id", "client_id", "arm", "peer", "body", "authorization",
                 "cookie", "project", "headers")

    def __init__(self, raw_headers: Any, peer: Any) -> None:
        self.length: bytes | None = None
        self.content_type = b""
        self.request_id = ""
        self.client_id = ""
        self.arm: str | None = None
        self.peer: str | None = peer[0] if peer else None
        self.body = b""
        self.authorization: str | None = None
        self.cookie: str | None = None
        self.project: str | None = None
        self.headers = raw_headers
        for key, value in raw_headers:
            if key == b"content-length":
                self.length = value
            elif key == b"content-type":
                self.content_type = value
            elif key == b"authorization":
                self.authorization = value.decode("latin-1")
            elif key == b"cookie":
                self.cookie = value.decode("latin-1")
            elif key[:2] == b"x-":
                if key == b"x-request-id":
                    self.request_id = value.decode("latin-1")
                elif key == b"x-client-id":
                    self.client_id = value.decode("latin-1")
                elif key == b"x-shipyard-arm":
                    self.arm = value.decode("latin-1")
                elif key == b"x-shipyard-project":
                    self.project = value.decode("latin-1")

    @property
    def client(self) -> str | None:
        return self.client_id or self.peer

    @property
    def session(self) -> str | None:
        """The browser session token from the Cookie header (the UI's "try it" panel)."""
        if not self.cookie or self.authorization:
            return None
        for part in self.cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return value
        return None

    @property
    def is_csv(self) -> bool:
        content_type = self.content_type
        if content_type == b"application/json":  # what nearly every client sends: no parsing
            return False
        return content_type.split(b";", 1)[0].strip().lower() == b"text/csv"

    def check_declared(self, limit: int) -> None:
        declared = self.length
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared.decode()} bytes; the limit is {limit} (max_request_bytes)",
                                  {"limit": limit})

    async def receive_body(self, receive: Receive, limit: int) -> None:
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


# -- prediction routes ----------------------------------------------------------------------------
PredictionHook = Callable[["PredictionRequest"], None]


class PredictionRequest:
    """What a prediction hook sees: the route kind, the scene or model, the project, the caller's
    headers and peer. A hook raises a ``ShipyardError`` to refuse the request."""

    __slots__ = ("kind", "name", "project", "headers", "peer", "request_id")

    def __init__(self, kind: str, name: str, project: str, call: Call) -> None:
        self.kind, self.name, self.project = kind, name, project
        self.headers: list[tuple[bytes, bytes]] = list(call.headers)
        self.peer, self.request_id = call.peer, call.request_id

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


class Predictions:
    """Prediction handlers of one app: authorise the caller for the scene or model, find its
    project's engine, run the deployer's hooks, answer. The fast path and the routes share them."""

    def __init__(self, default: ServingState, guard: AccessGuard | None, hooks: list[PredictionHook]) -> None:
        self.default = default
        self.guard = guard
        self.hooks = hooks
        self.options: dict[str, Any] = {"metrics": default.metrics, "follow_interval": default.follow_interval,
                                        "max_request_bytes": default.max_bytes}

    def authorize(self, call: Call, kind: str, name: str) -> ServingState:
        """The serving state of the project the caller may predict ``name`` in; raises otherwise."""
        guard = self.guard
        if guard is None:
            raise ShipyardError("the server was assembled without its access guard", {})
        project = guard.check_prediction(call.authorization, call.session, call.project, kind, name)
        if self.hooks:
            request = PredictionRequest(kind, name, project, call)
            for hook in self.hooks:
                hook(request)
        if project == DEFAULT_PROJECT:
            return self.default
        ws = guard.projects.get(project)
        state = _states.get(ws)
        if state is None:
            state = state_for(ws, **self.options)
            if self.default.started:
                state.start_follower()
        return state

    async def scene(self, call: Call, state: ServingState, scene: str) -> Reply:
        rid = call.request_id
        engine = state.engine
        try:
            payload = parse_json(call.body)
            records, single = scene_records(payload)
            rid = rid or body_request_id(payload) or new_request_id()
            result = await engine.predict_scene_async(scene, records, single=single, override=call.arm,
                                                      client=call.client, request_id=rid)
        except ShipyardError as exc:
            return error_reply(exc, rid or new_request_id())
        return _reply(result, rid)

    def _model(self, call: Call, state: ServingState, name: str, ref: str,
               mlflow: bool = False) -> tuple[str, Any, Any, float, bool]:
        rid = call.request_id or new_request_id()
        engine = state.engine
        served = engine.model(name, ref)
        params = None
        if call.is_csv:
            records, single = csv_records(call.body, served.types), False
        else:
            payload = parse_json(call.body)
            records, single = model_records(payload, served.names)
            params = model_params(payload)
        if not records:
            raise InvalidInput("no records to score; send at least one", {"field": "body"})
        predictions, served, elapsed = engine.predict_model(name, ref, records, mlflow=mlflow, params=params)
        return rid, predictions, served, elapsed, single

    async def predict(self, call: Call, state: ServingState, name: str, ref: str) -> Reply:
        try:
            rid, predictions, served, elapsed, single = await state.engine.in_model_pool(
                name, ref, self._model, call, state, name, ref)
        except ShipyardError as exc:
            return error_reply(exc, call.request_id or new_request_id())
        body = {"request_id": rid, "model": {"name": name, "ref": ref, "version": served.version},
                "predictions": predictions[0] if single else predictions,
                "latency_ms": {"model": round(elapsed * 1000, 3)}}
        return _reply(body, rid)

    async def invocations(self, call: Call, state: ServingState, name: str, ref: str) -> Reply:
        try:
            rid, predictions, served, _elapsed, _single = await state.engine.in_model_pool(
                name, ref, self._model, call, state, name, ref, True)
        except ShipyardError as exc:
            return error_reply(exc, call.request_id or new_request_id())
        return _reply({"predictions": predictions}, rid,
                      extra=[(b"x-shipyard-model-version", str(served.version).encode())])


def prediction_router(ws: Workspace, **options: Any) -> APIRouter:
    state = ServingState(ws, **options)
    _states[ws] = state
    api = APIRouter(tags=["prediction"])
    limit = state.max_bytes
    handlers = Predictions(state, None, [])
    state.predictions = handlers

    async def routed(request: Request, handler: Any, kind: str, *args: str) -> Response:
        call = Call(request.scope["headers"], request.scope.get("client"))
        try:
            # who may ask is decided before the body is read
            state = handlers.authorize(call, kind, args[0])
            call.check_declared(limit)
            call.body = await read_body(request, limit)
        except ShipyardError as exc:
            return error_response(exc, call.request_id or new_request_id())
        return _response(await handler(call, state, *args))

    @api.post("/v1/scenes/{scene}/predict", openapi_extra=openapi.SCENE_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_scene(scene: str, request: Request) -> Response:
        """Run a scene's decision flow for one record (an object) or a batch (a list or {"records": [...]}).
        Needs a token with the predict scope and the predictor (or operator, modeler, admin) role,
        unless the scene is public."""
        return await routed(request, handlers.scene, "scene", scene)

    @api.post("/v1/models/{name}/{ref}/predict", openapi_extra=openapi.MODEL_PREDICT, response_class=Response,
              responses=openapi.RESPONSES)
    async def predict_model(name: str, ref: str, request: Request) -> Response:
        """Score records with a registered model (an alias or a version number)."""
        return await routed(request, handlers.predict, "model", name, ref)

    @api.post("/v1/models/{name}/{ref}/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
              responses=openapi.RESPONSES)
    async def invocations_model(name: str, ref: str, request: Request) -> Response:
        """MLflow scoring protocol for a registered model; returns {"predictions": [...]}."""
        return await routed(request, handlers.invocations, "model", name, ref)

    state.handlers = {"scene": handlers.scene, "predict": handlers.predict, "invocations": handlers.invocations}
    if state.single_model is not None:
        single_name, single_ref = state.single_model

        @api.post("/invocations", openapi_extra=openapi.INVOCATIONS, response_class=Response,
                  responses=openapi.RESPONSES)
        async def invocations(request: Request) -> Response:
            """MLflow scoring protocol for the model this server was started with (--model)."""
            return await routed(request, handlers.invocations, "model", single_name, single_ref)

        @api.get("/ping")
        async def ping() -> Response:
            """200 once the model is loaded (load balancers' health check)."""
            try:
                state.engine.model(single_name, single_ref)
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

    def _match(self, path: str) -> tuple[Any, str, tuple[str, ...]] | None:
        handlers = self.state.handlers
        if path == "/invocations":
            if self.state.single_model is not None:
                return handlers["invocations"], "model", self.state.single_model
            return None
        parts = path.split("/")
        # ["", "v1", "models", name, ref, action] or ["", "v1", "scenes", scene, "predict"]
        n = len(parts)
        if n == 6 and parts[1] == "v1" and parts[2] == "models" and parts[3] and parts[4]:
            if parts[5] == "predict":
                return handlers["predict"], "model", (parts[3], parts[4])
            if parts[5] == "invocations":
                return handlers["invocations"], "model", (parts[3], parts[4])
        elif n == 5 and parts[1] == "v1" and parts[2] == "scenes" and parts[3] and parts[4] == "predict":
            return handlers["scene"], "scene", (parts[3],)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        if not self.state.handlers:
            return False
        found = self._match(scope["path"])
        if found is None:
            return False
        handler, kind, args = found
        call = Call(scope["headers"], scope.get("client"))
        try:
            # the same check as the routed path, before the body is read
            state = self.state.predictions.authorize(call, kind, args[0])
            await call.receive_body(receive, self.state.max_bytes)
            status, body, headers = await handler(call, state, *args)
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
READ = allow(Resource.SCENES, Action.READ)
WRITE = allow(Resource.SCENES, Action.WRITE)
RELEASE = allow(Resource.SCENES, Action.RELEASE)
_VERSION = Query(None, ge=1, le=2**31 - 1, description="a version number (default: the latest)")


def router() -> APIRouter:
    from shipyard.serving import release
    from shipyard.serving import scene as scenes
    from shipyard.serving.release_http import router as rollout_router

    api = APIRouter(prefix="/scenes", tags=["scenes"])

    @api.get("")
    def list_scenes(ctx: RequestContext = READ) -> list[dict[str, Any]]:
        """All scenes with their latest version."""
        return scenes.list_scenes(ctx.ws)

    @api.post("", openapi_extra=openapi.SCENE_APPLY, response_class=JSONResponse)
    async def apply(request: Request, ctx: RequestContext = WRITE) -> JSONResponse:
        """Validate and store a scene document as a new version."""
        payload = parse_json(await read_body(request, ctx.ws.settings.max_request_bytes))
        engine = engine_for(request, ctx.ws)
        found = await run_in_threadpool(scenes.apply_scene, ctx.ws, payload, models=engine.models,
                                        features=engine.features, comment=str(request.query_params.get("comment", "")))
        ctx.audit(after={"scene": found.name, "version": found.version})
        return JSONResponse(found.to_dict())

    @api.get("/{name}")
    def show(name: str, version: int | None = _VERSION, ctx: RequestContext = READ) -> dict[str, Any]:
        """A scene version's document (latest unless ``version`` is given)."""
        return scenes.get_scene(ctx.ws, name, version).to_dict()

    @api.get("/{name}/versions")
    def versions(name: str, ctx: RequestContext = READ) -> list[dict[str, Any]]:
        found = scenes.list_versions(ctx.ws, name)
        if not found:
            raise NotFound(f"scene {name!r} does not exist", {"scene": name})
        return [{k: v for k, v in f.to_dict().items() if k != "spec"} for f in found]

    @api.get("/{name}/status")
    def status(name: str, request: Request, ctx: RequestContext = READ) -> dict[str, Any]:
        """Served version, arms, canary share and recent per-arm statistics."""
        engine = engine_for(request, ctx.ws)
        return release.scene_status(engine, name, fleet=fleet_series(ctx.ws, engine))

    @api.get("/{name}/shadow-report")
    def shadow_report(name: str, request: Request, cutoff: float = Query(0.5, ge=0, le=1),
                      ctx: RequestContext = READ) -> dict[str, Any]:
        """Live vs shadow outputs: difference distribution and agreement at the cut-off."""
        engine = engine_for(request, ctx.ws)
        return release.shadow_report(engine, name, cutoff=cutoff, ws=ctx.ws if fleet_series(ctx.ws, engine) else None)

    @api.get("/{name}/releases")
    def releases(name: str, ctx: RequestContext = READ) -> list[dict[str, Any]]:
        """Every release of the scene, oldest first: canary steps, rollouts and automatic rollbacks."""
        if not scenes.list_versions(ctx.ws, name):
            raise NotFound(f"scene {name!r} does not exist", {"scene": name})
        return release.list_releases(ctx.ws, name)

    @api.post("/{name}/canary")
    def set_canary(name: str, request: Request, percent: float = Query(ge=0, le=100), arm: str | None = None,
                   ctx: RequestContext = RELEASE) -> dict[str, Any]:
        """Move the canary share of an arm (0-100); recorded as a release step."""
        result = release.set_canary(ctx.ws, engine_for(request, ctx.ws), name, percent, arm=arm)
        ctx.audit(after={"arm": arm, "percent": percent})
        return result

    api.include_router(rollout_router())
    return api


def install(app: FastAPI, ws: Workspace, **options: Any) -> None:
    """/metrics, access checks on predictions, the alias/scene follower and a clean shutdown
    (flushes the prediction log)."""
    state = _states.get(ws) or state_for(ws, **options)
    app.state.serving = state
    guard: AccessGuard = app.state.access_guard
    hooks: list[PredictionHook] = getattr(app, "prediction_hooks", [])
    if state.predictions is not None:
        state.predictions.guard = guard
        state.predictions.hooks = hooks

    async def metrics(request: Request) -> Response:
        if not ws.settings.metrics_public:
            try:
                principal = guard.identify(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))
                guard.require(principal, DEFAULT_PROJECT, Resource.MONITORING, Action.READ)
            except ShipyardError as exc:
                return error_response(exc, new_request_id())
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_route("/metrics", metrics, include_in_schema=False)
    fast = FastPredict(state)
    from shipyard.serving.readiness import Readiness

    state.readiness = Readiness(state.engine, timeout_s=ws.settings.readiness_timeout_s,
                                single_model=state.single_model)

    def startup() -> None:
        state.shutdown_log.watch_signals()
        plog = state.engine.prediction_log
        if plog is not None:
            plog.start()  # the spool, and the recovery of spools dead instances left
        if state.tune_gc:
            # freeze the imported stack and anything loaded so far: full collections stop walking it
            from shipyard.serving import heap

            state.gc_thresholds = heap.tune()
        # Middleware a deployer adds must see every request, so predictions then take the full stack;
        # prediction hooks (app.prediction_hooks) run on both paths.
        if hasattr(app, "fast_path") and not app.user_middleware:
            app.fast_path = fast
        state.start_follower()
        state.readiness.start()  # /readyz turns ready once the scenes and models served are warm

    def shutdown() -> None:
        state.readiness.stop()
        phase = state.shutdown_log.phase
        phase("requests finished, rollout leases freed")  # uvicorn drained the connections, the routers' lifespans ran
        if hasattr(app, "fast_path") and app.fast_path is fast:
            app.fast_path = None
        for other in list(_states.values()):
            if other is not state and other.metrics.registry is state.metrics.registry:
                other.stop()
        if state.follower is not None:
            state.follower.stop()
            state.follower = None
            phase("hot swap stopped")
        state.engine.close(phase)
        state.metrics.close()
        phase("complete")

    add_lifespan(app, startup, shutdown)
