"""What one server keeps per project it serves: the engine, metrics, prediction log and follower.

``state_for(ws)`` finds or makes a project's ``ServingState``; ``engine_for(request, ws)`` is what a
route uses to reach the project's engine. The prediction routes (``serving.http``) and the rollout
routes (``serving.release_http``) both import these from here.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from shipyard.config import Settings
from shipyard.serving.engine import ServingEngine
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.prediction_log import PredictionLog
from shipyard.serving.shutdown import ShutdownLog

if TYPE_CHECKING:
    from starlette.requests import Request

    from shipyard.workspace import Workspace


class ServingState:
    """What one server instance shares between its routes for one project: engine, metrics, log,
    follower. A server keeps one per project it serves (``state_for``), sharing one metrics registry:
    each project's requests carry its ``project`` label and go to its own per-minute series."""

    def __init__(self, ws: Workspace, **options: Any) -> None:
        self.ws = ws
        shared: ServingMetrics | None = options.get("metrics")
        if shared is None:
            self.metrics = ServingMetrics(ws.project)
        elif shared.project == ws.project:
            self.metrics = shared
        else:  # another project on the same server: the same registry, its own label and series
            self.metrics = shared.for_project(ws)
        # the project's own series recorder, which this state closes (the server's own closes with the app)
        self.own_series = self.metrics.series if self.metrics is not shared else None
        self.max_bytes = int(options.get("max_request_bytes") or ws.settings.max_request_bytes)
        engine = options.get("engine")
        if engine is None:
            settings = ws.settings
            plog = PredictionLog(ws.artifacts, sample_rate=settings.prediction_log_sample_rate,
                                 on_drop=self.metrics.log_dropped.inc, spool_dir=settings.prediction_spool_dir,
                                 recover_interval=settings.recovery_interval_s)
            spooled = self.metrics.log_spooled.labels(plog.instance)
            plog.on_spooled = spooled.inc
            engine = ServingEngine(ws, prediction_log=plog, metrics=self.metrics)
        elif engine.metrics is None:
            engine.metrics = self.metrics
        # worker processes of this server: each enforces its share of every scene's limits
        engine.workers = int(options.get("workers") or getattr(getattr(ws, "settings", None), "server_workers", 1) or 1)
        limits_settings = getattr(ws, "settings", None)
        if engine.fleet_limits is None and isinstance(limits_settings, Settings):
            from shipyard.serving.global_limits import fleet_limits_for

            engine.fleet_limits = fleet_limits_for(limits_settings, on_state=self.metrics.global_limits_degraded.set)
        self.engine: ServingEngine = engine
        self.single_model = _parse_single(options.get("single_model") or ws.settings.serve_model)
        self.follow_interval = float(options.get("follow_interval", ws.settings.serving_follow_interval_s))
        # process-wide, so only the server process asks for it (shipyard.server.app_factory)
        self.tune_gc = bool(options.get("tune_gc", False))
        self.gc_thresholds: tuple[int, int, int] | None = None
        self.follower: Any = None
        self.handlers: dict[str, Any] = {}
        self.predictions: Any = None
        self.readiness: Any = None  # a Readiness once the server installs this state (warm-up at start)
        self.started = False
        self.shutdown_log = ShutdownLog(engine.inflight)

    def start_follower(self) -> None:
        if self.follower is None and self.follow_interval > 0 and self.engine.ws is not None:
            from shipyard.serving.hotswap import Follower

            self.follower = Follower(self.engine, interval=self.follow_interval)
            self.follower.start()
        self.started = True

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        self.engine.close()
        if self.own_series is not None:
            self.own_series.close()  # its last minutes, into the project's store


# the serving state of each project this process serves, by workspace (gone with the workspace)
states: weakref.WeakKeyDictionary[Any, ServingState] = weakref.WeakKeyDictionary()


def _parse_single(ref: str | None) -> tuple[str, str] | None:
    if not ref:
        return None
    name, _, alias = str(ref).partition("@")
    return name, alias or "champion"


_states_lock = threading.Lock()


def state_for(ws: Workspace, **options: Any) -> ServingState:
    state = states.get(ws)
    if state is None:
        with _states_lock:  # a route and the rollout takeover loop may ask at once: one state per project
            state = states.get(ws)
            if state is None:
                state = ServingState(ws, **options)
                states[ws] = state
    return state


def engine_for(request: Request, ws: Workspace) -> ServingEngine:
    """The serving engine of ``ws`` in this server (created for a project on first use)."""
    return project_engine(getattr(request.app.state, "serving", None), ws)


def project_engine(default: ServingState | None, ws: Workspace) -> ServingEngine:
    """The serving engine of ``ws`` in the server whose own project's state is ``default``: that
    one's engine for the server's project, else the project's (created on first use, with the
    server's options, following the store once the server has started)."""
    if default is not None and default.ws is ws:
        return default.engine
    state = states.get(ws)
    if state is None:
        predictions = default.predictions if default is not None else None
        state = state_for(ws, **(predictions.options if predictions is not None else {}))
        if default is not None and default.started:
            state.start_follower()
    return state.engine
