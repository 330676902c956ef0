"""Canary rollouts on a running server, under /api/v1/scenes/{name}/rollout.

``POST`` starts a rollout in a background thread of the worker that receives it; that worker holds
the rollout's lease and judges the fleet's traffic (every server's series, when the server writes
its own; else the traffic it serves). ``GET`` and ``DELETE`` go through the metadata store, so any
worker answers them and an abort reaches the runner wherever it is. Every ``ADOPT_S`` seconds every
worker looks, in each project the server hosts (its own and every hosted one, each in its own
store), for running rollouts whose driving process died or freed its lease, and continues them.
When the server shuts down its runner threads stop and free their leases: the rollouts stay
running, for another server (or the next one to start) to continue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from shipyard.auth.http import RequestContext, allow
from shipyard.auth.permissions import Action, Resource
from shipyard.errors import NotFound
from shipyard.http_util import RequestBody
from shipyard.serving import release
from shipyard.serving.fleet import fleet_series
from shipyard.serving.release_store import running_releases
from shipyard.serving.state import engine_for, project_engine

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

ADOPT_S = 2.0
"""How often a server looks for rollouts left by a dead process (and continues them)."""


class StartRollout(RequestBody):
    arm: str = Field(description="the arm to roll out (not control)")
    steps: list[float] = Field(description="canary shares in percent, increasing, each in (0, 100]",
                               min_length=1, max_length=100)
    min_requests: int | None = Field(None, ge=1, description="arm requests per step (default: limits.min_requests or 50)")
    interval_s: float = Field(5.0, gt=0, le=3600, description="seconds between step checks")
    timeout_s: float = Field(3600.0, gt=0, description="stop at 0 % if the rollout has not ended by then")


def router() -> APIRouter:
    runners: dict[int, release.RolloutRunner] = {}  # by project workspace
    runners_lock = threading.Lock()

    def runner_for(ws: Workspace, engine: Any) -> release.RolloutRunner:
        found = runners.get(id(ws))
        if found is None:
            with runners_lock:  # a route and the takeover loop may ask at once: one runner per project
                found = runners.get(id(ws))
                if found is None:
                    found = runners[id(ws)] = release.RolloutRunner(ws, fleet_series(ws, engine))
        return found

    async def lifespan(app: Any) -> AsyncIterator[None]:
        stop = threading.Event()
        state = getattr(app.state, "serving", None)
        adopter = None
        if state is not None and state.engine.ws is not None:
            default_ws: Workspace = state.ws
            projects = getattr(app.state, "projects", None)  # the hosted projects (auth installs them)

            def served() -> list[Workspace]:
                """The server's own project and every hosted one, read on each pass (a project
                created since the server started included)."""
                if projects is None:
                    return [default_ws]
                found = [default_ws]
                for name in projects.names():
                    if name == default_ws.project:
                        continue
                    try:
                        found.append(projects.get(name))
                    except NotFound:  # deleted meanwhile
                        continue
                return found

            def adopt(ws: Workspace) -> None:
                # a hosted project gets an engine on this server only when it has a rollout running
                if ws is not default_ws and not running_releases(ws):
                    return
                engine = project_engine(state, ws)
                runner_for(ws, engine).adopt(engine)

            def adopt_loop() -> None:
                while not stop.wait(ADOPT_S):
                    try:
                        workspaces = served()
                    except Exception:  # noqa: BLE001 - a store outage: look again next time
                        log.exception("rollouts: listing the projects to look in failed")
                        continue
                    for ws in workspaces:
                        if stop.is_set():
                            return
                        try:
                            adopt(ws)
                        except Exception:  # noqa: BLE001 - a store outage: look again next time
                            log.exception("rollouts of project %s: looking for rollouts to continue failed",
                                          ws.project)

            adopter = threading.Thread(target=adopt_loop, name="shipyard-adopt-rollouts", daemon=True)
            adopter.start()
        yield
        stop.set()
        if adopter is not None:
            await run_in_threadpool(adopter.join, 10)
        for runner in list(runners.values()):
            await run_in_threadpool(runner.stop_all)

    api = APIRouter(lifespan=lifespan)

    @api.post("/{name}/rollout", status_code=202)
    def start_rollout(name: str, body: StartRollout, request: Request,
                      ctx: RequestContext = allow(Resource.SCENES, Action.RELEASE)) -> dict[str, Any]:
        """Start a canary rollout of an arm through its steps; 409 while one is running."""
        engine = engine_for(request, ctx.ws)
        rollout = runner_for(ctx.ws, engine).start(engine, name, body.arm, steps=body.steps,
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
