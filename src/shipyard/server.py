"""The one ASGI app: REST API under /api/v1, prediction under /v1, health, metrics, UI.

This module only assembles: each subsystem's ``http.py`` exposes ``router()`` (an APIRouter whose
paths are relative to /api/v1), ``install(app, ws, **options)`` for what it adds to the app itself,
and, for serving, ``prediction_router(ws, **options)`` mounted at the root.

Building the app has no process-wide side effects: it neither migrates the database (opening the
workspace does that, when ``auto_migrate`` allows it; ``/readyz`` only asks the database for
``SELECT 1``) nor tunes the garbage collector, which only the server process does (``app_factory``,
what ``shipyard server`` runs).
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from shipyard import __version__
from shipyard.auth.http import check_routes
from shipyard.auth.redact import REDACTOR, RedactedJSONResponse
from shipyard.errors import ConfigError, PayloadTooLarge, ShipyardError
from shipyard.http_util import body_fields, document_errors
from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

# Subsystem route modules, mounted in this order. Each exposes ``router()`` (paths relative to
# /api/v1, every route declaring its permission), ``prediction_router(ws, **options)`` or
# ``install(app, ws, **options)``. A name here that does not import, or that exposes none of the
# three, stops the app from being built (``route_modules``).
API_MODULES = [
    "shipyard.auth.http",
    "shipyard.tracking.http",
    "shipyard.models.http",
    "shipyard.features.http",
    "shipyard.serving.http",
    "shipyard.data.http",
    "shipyard.pipelines.http",
    "shipyard.monitoring.http",
    # the web UI (page, static files, /docs on vendored Swagger UI); it calls the routes above
    "shipyard.ui.http",
]


ROUTE_HOOKS = ("router", "prediction_router", "install")


def route_modules(names: list[str] | None = None) -> list[ModuleType]:
    """The modules of ``API_MODULES`` (or ``names``), imported; a typo fails here, naming the entry."""
    modules = []
    for name in API_MODULES if names is None else names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # the module exists; something it imports is missing
            raise ConfigError(f"API_MODULES names {name!r}, which is not a module; fix the name in shipyard/server.py",
                              {"field": "API_MODULES", "module": name}) from exc
        if not any(hasattr(module, hook) for hook in ROUTE_HOOKS):
            raise ConfigError(f"API_MODULES names {name!r}, which exposes none of {', '.join(ROUTE_HOOKS)}; "
                              "name the subsystem's http module", {"field": "API_MODULES", "module": name})
        modules.append(module)
    return modules


def _error_response(err: ShipyardError) -> JSONResponse:
    body = REDACTOR.redact(err.to_dict())
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
    if err.status in (429, 503):
        headers["Retry-After"] = str(int(err.details.get("retry_after") or 1))
    return JSONResponse(body, status_code=err.status, headers=headers or None)


class ShipyardAPI(FastAPI):
    """FastAPI with an optional ``fast_path(scope, receive, send) -> bool`` tried first for POSTs.

    Serving installs its prediction handler here so a prediction skips the per-request layers
    FastAPI and Starlette put in front of every route; everything it does not answer (it returns
    False) goes through the full application as usual.
    """

    fast_path: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Checks a deployer adds to every prediction, on the fast path and the routed path alike
        # (middleware added with add_middleware makes predictions take the full stack instead).
        self.prediction_hooks: list[Any] = []

    def openapi(self) -> dict[str, Any]:
        """The generated document, with the error answers every API route shares (http_util)."""
        if self.openapi_schema is None:
            self.openapi_schema = document_errors(super().openapi())
        return self.openapi_schema

    def add_prediction_hook(self, hook: Any) -> None:
        """Run ``hook(PredictionRequest)`` before every prediction; it raises a ShipyardError to refuse."""
        self.prediction_hooks.append(hook)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and scope["method"] == "POST" and not self.root_path \
                and await fast(scope, receive, send):
            return
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            scope = _json_unless_typed(scope)
            if _content_type(scope) == b"application/json":
                # FastAPI reads a JSON body whole, before any permission check: cap it here
                limit = self.state.workspace.settings.max_request_bytes
                declared = _header(scope, b"content-length")
                if declared.isdigit() and int(declared) > limit:
                    await _error_response(_too_large(limit, int(declared)))(scope, receive, send)
                    return
                receive = _capped(receive, limit)
        await super().__call__(scope, receive, send)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNTYPED = (b"", b"application/x-www-form-urlencoded")


def _header(scope: Any, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def _content_type(scope: Any) -> bytes:
    return _header(scope, b"content-type").split(b";", 1)[0].strip().lower()


def _too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    said = f"is {size} bytes, over" if size is not None else "is larger than"
    return PayloadTooLarge(f"the JSON body {said} the limit of {limit} bytes (max_request_bytes); send less per "
                           "request or raise the setting", {"limit": limit})


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body (one without a length, or lying about it) once past ``limit``."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI turns any other exception raised while reading a body into a 400
                raise StarletteHTTPException(413, _too_large(limit).message)
        return message

    return capped


def _json_unless_typed(scope: Scope) -> Scope:
    """Treat an untyped body as JSON. No route takes forms, and ``curl -d`` labels every body a form
    unless told otherwise, which made FastAPI reject valid JSON as "not a valid dictionary"."""
    headers = scope["headers"]
    kind = b""
    for name, value in headers:
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            break
    if kind not in _UNTYPED:
        return scope
    rest = [(n, v) for n, v in headers if n != b"content-type"]
    return {**scope, "headers": [*rest, (b"content-type", b"application/json")]}


def _unknown_field(request: Request, loc: tuple[Any, ...]) -> str:
    """The problem of a body field the route does not take, naming the fields it does."""
    route = request.scope.get("route")
    body = getattr(getattr(route, "body_field", None), "field_info", None)
    known = body_fields(getattr(body, "annotation", None)) if len(loc) == 2 else []
    return (f"this field is not known; the body takes {', '.join(known)}" if known
            else "this field is not known; see the route in /docs")


def _sent_json(request: Request) -> bool:
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def create_app(ws: Workspace, **options: Any) -> FastAPI:
    app = ShipyardAPI(
        title="Shipyard",
        version=__version__,
        description="Self-hosted machine-learning platform: tracking, registry, features, serving. "
                    "Send 'Authorization: Bearer <token>' (see docs/security.md).",
        default_response_class=RedactedJSONResponse,
        # /docs is served by shipyard.ui.http from vendored assets (FastAPI's default loads a CDN)
        docs_url=None,
        redoc_url=None,
    )
    app.state.workspace = ws
    app.state.options = options
    REDACTOR.add_project(ws.settings.project_dir, ws.settings.artifact_root)

    @app.exception_handler(ShipyardError)
    async def _shipyard_error(_request: Request, exc: ShipyardError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problem = item.get("msg", "invalid")
            loc = tuple(item.get("loc", ()))
            if item.get("type") == "extra_forbidden":
                problem = _unknown_field(request, loc)
            elif item.get("type") == "json_invalid":
                # the location is a character offset, not a field
                where, problem = "", f"the body is not valid JSON ({item.get('ctx', {}).get('error', problem)} " \
                                     f"at character {loc[1] if len(loc) > 1 else 0})"
            elif loc == ("body",) and not _sent_json(request):
                given = request.headers.get("content-type") or "none"
                problem = f"the body must be JSON sent with Content-Type: application/json (got {given})"
            problems.append({"field": where, "problem": problem})
        first = problems[0] if problems else {"field": "", "problem": "invalid request"}
        message = f"field {first['field']!r}: {first['problem']}" if first["field"] else first["problem"]
        return JSONResponse(
            REDACTOR.redact({"error": {"code": "invalid_input", "message": message,
                                       "details": {"problems": problems}}}),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code,
                                                                                             "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "details": {}}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            REDACTOR.redact({"error": {"code": "internal", "message": f"internal error: {type(exc).__name__}: {exc}",
                                       "details": {}}}),
            status_code=500,
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Ready when the metadata database answers (never migrating it) and the scenes and models
        this server serves are loaded and warm; 503 with the reason otherwise."""
        serving = getattr(app.state, "serving", None)
        instance = getattr(getattr(getattr(serving, "engine", None), "prediction_log", None), "instance", None)
        extra = {"instance": instance} if instance else {}
        try:
            with ws.store.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except ShipyardError as exc:
            return JSONResponse({"status": "unavailable", "reason": exc.message, **extra}, status_code=503)
        readiness = getattr(serving, "readiness", None)
        if readiness is not None:
            ready, details = readiness.report()
            if not ready:
                return JSONResponse({"status": "warming", **details, **extra}, status_code=503)
            return JSONResponse({"status": "ready", **details, **extra})
        return JSONResponse({"status": "ready", **extra})

    for module in route_modules():
        if hasattr(module, "router"):
            app.include_router(module.router(), prefix="/api/v1")
        if hasattr(module, "prediction_router"):
            app.include_router(module.prediction_router(ws, **options))
        if hasattr(module, "install"):
            module.install(app, ws, **options)
    from shipyard import recovery

    recovery.install(app, ws, **options)  # records left in progress by dead processes
    check_routes(app)
    return app


def app_factory() -> FastAPI:
    """The server process: what ``shipyard server`` runs in each worker (``uvicorn --factory``).

    Settings come from the environment and ``shipyard.yaml`` (``serve_model``,
    ``serving_follow_interval_s``, ``server_workers``, ...). Unlike an app built with ``create_app``
    inside another program, this process is the server's own, so it also runs the projects'
    schedulers and tunes the garbage collector for serving at startup (``serving.heap``).
    """
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings

    # the server acts as itself outside requests; inside one, as the caller (never as a local token)
    return create_app(Workspace(load_settings(), principal=SERVER), background=True, tune_gc=True)
