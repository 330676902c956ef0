"""Canary rollouts on a running server, under /api/v1/scenes/{name}/rollout.

``POST`` starts a rollout in a background thread of the worker that receives it (that worker's
engine judges the traffic it serves); ``GET`` and ``DELETE`` go through the metadata store, so any
worker answers them and an abort reaches the runner wherever it is. Runner threads stop, recording
'stopped' at 0 %, when the server shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.http_util import RequestBody
from shipyard.serving import release


class StartRollout(RequestBody):
    arm: str = Field(description="the arm to roll out (not control)")
    steps: list[float] = Field(description="canary shares in percent, increasing, each in (0, 100]",
                               min_length=1, max_length=100)
    min_requests: int | None = Field(None, ge=1, description="arm requests per step (default: limits.min_requests or 50)")
    interval_s: float = Field(5.0, gt=0, le=3600, description="seconds between step checks")
    timeout_s: float = Field(3600.0, gt=0, description="stop at 0 % if the rollout has not ended by then")


def router() -> APIRouter:
    from shipyard.serving.http import engine_for

    runners: dict[int, release.RolloutRunner] = {}

    def runner_for(ws: Any) -> release.RolloutRunner:
        found = runners.get(id(ws))
        if found is None:
            found = runners[id(ws)] = release.RolloutRunner(ws)
        return found

    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        for runner in list(runners.values()):
            await run_in_threadpool(runner.stop_all)

    api = APIRouter(lifespan=lifespan)

    @api.post("/{name}/rollout", status_code=202)
    def start_rollout(name: str, body: StartRollout, request: Request,
                      ctx: RequestContext = allow(Resource.SCENES, Action.RELEASE)) -> dict[str, Any]:
        """Start a canary rollout of an arm through its steps; 409 while one is running."""
        rollout = runner_for(ctx.ws).start(engine_for(request, ctx.ws), name, body.arm, steps=body.steps,
                                           min_requests=body.min_requests, interval_s=body.interval_s,
                                           timeout_s=body.timeout_s)
        ctx.audit(after={"arm": body.arm, "steps": body.steps})
        return rollout.to_dict()

    @api.get("/{name}/rollout")
    def rollout_status(name: str, ctx: RequestContext = allow(Resource.SCENES, Action.READ)) -> dict[str, Any]:
        """The scene's newest release: status, percent, steps, checks and reason."""
        return release.rollout_status(ctx.ws, name)

    @api.delete("/{name}/rollout")
    def abort_rollout(name: str, request: Request,
                      ctx: RequestContext = allow(Resource.SCENES, Action.RELEASE)) -> dict[str, Any]:
        """Abort the running rollout: recorded as 'aborted' at 0 %."""
        return release.abort_rollout(ctx.ws, name, engine=engine_for(request, ctx.ws))

    return api
