"""Small pieces every HTTP shell shares."""

from __future__ import annotations

import contextlib
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.requests import Request

from shipyard.errors import PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (max_request_bytes)."""
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


def add_lifespan(app: Any, startup: Callable[[], None], shutdown: Callable[[], None]) -> None:
    """Run ``startup`` when the app starts and ``shutdown`` when it stops, around what it ran before."""
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


# -- the request contract every route shares ------------------------------------------------------
#: the largest integer the metadata databases store in an INTEGER column (SQLite takes 64 bits,
#: PostgreSQL's INTEGER 32): version numbers, limits and offsets stay within it
MAX_INT32 = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: the 200 answer of a route that sends a file
BINARY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file's bytes",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
}


def lone_surrogate(value: object, where: str = "") -> str | None:
    """The path of the first text in ``value`` (JSON-like) holding a lone UTF-16 surrogate, else None.

    JSON's ``\\uD800`` escapes can carry one; no database or file stores it, so it is refused at the
    door rather than failing half-way through a write."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = lone_surrogate(key, where or "body") if isinstance(key, str) else None
            found = found or lone_surrogate(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = lone_surrogate(item, f"{where}[{i}]")
            if found:
                return found
    return None


class RequestBody(BaseModel):
    """Base of the JSON request bodies: refuses fields it does not know (a misspelt field would
    otherwise be ignored silently) and text that is not valid Unicode, naming the field."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        try:  # orjson refuses a lone surrogate, in C; the walk below only names the field
            orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
            return data
        except TypeError:
            pass
        where = lone_surrogate(data)
        if where is not None:
            raise ValueError(f"field {where!r} holds a lone UTF-16 surrogate (\\uD800-\\uDFFF), which is not "
                             "valid Unicode; send the text as UTF-8 or as a surrogate pair")
        return data


def body_fields(annotation: object) -> list[str]:
    """The JSON names of the fields of a route's body type (``SomeIn`` or ``SomeIn | None``), for
    the error that refuses an unknown one; [] when the body is not a ``RequestBody``."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, RequestBody):
            return sorted(f.alias or name for name, f in candidate.model_fields.items())
    return []


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "stable error code (shipyard.errors)"},
                       "message": {"type": "string", "description": "what is wrong and how to fix it"},
                       "details": {"type": "object", "description": "the field, the value, the limit"}},
    }},
}

# Statuses any API route may answer with a ShipyardError body (docs/security.md, shipyard.errors).
_ERRORS: dict[str, str] = {
    "400": "Invalid input: the message names the field, the value and the fix",
    "401": "No valid token (send 'Authorization: Bearer <token>')",
    "403": "The token's user lacks the permission the message names",
    "404": "The named object does not exist",
    "409": "The object exists already, or its state does not allow the change",
    "413": "The request body is larger than max_request_bytes",
    "429": "Too many requests (Retry-After)",
    "503": "The metadata store is unavailable or the server is overloaded (Retry-After)",
}
_CONTRACT_PREFIXES = ("/api/v1/", "/v1/", "/invocations")


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the server answers on errors.

    Every API operation documents the ShipyardError body for the statuses above. FastAPI's 422 is
    dropped: request validation errors are answered as 400 ``invalid_input`` (server.py)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in spec.get("paths", {}).items():
        if not path.startswith(_CONTRACT_PREFIXES):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _ERRORS.items():
                responses.setdefault(status, {"description": description,
                                              "content": {"application/json": {"schema": ref}}})
    text = repr(spec.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            schemas.pop(unused, None)
    return spec
