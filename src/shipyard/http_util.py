"""Small pieces every HTTP shell shares."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

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
