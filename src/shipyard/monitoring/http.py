"""HTTP shell of monitoring.

``install`` gives the server's serving metrics a per-minute series recorder (this process's own
instance id), so every server writes its own rows of the operational series; the recorder writes
its last minutes when the app shuts down.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI


def install(app: FastAPI, ws: Any, **options: Any) -> None:
    serving = getattr(app.state, "serving", None)
    metrics = getattr(serving, "metrics", None)
    if metrics is None or getattr(metrics, "series", None) is not None:
        return
    recorder = ws.monitoring.recorder(flush_interval=float(options.get("series_flush_interval", 10.0)))
    metrics.series = recorder
    app.state.monitoring_recorder = recorder
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        try:
            async with previous(asgi_app) as value:
                yield value
        finally:
            recorder.close()

    app.router.lifespan_context = lifespan
