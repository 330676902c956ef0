"""The serving engine: compiled scenes and models in memory, and the per-request path.

``ServingEngine`` is usable in-process (notebooks, batch scoring, stream workers) and is what the
HTTP routes call. It holds one ``ServedScene`` per scene and one ``ServedModel`` per model
reference; replacing an entry in those dicts is the atomic switch hot swap relies on — a request
that already took the old object finishes on it.

The server calls ``predict_scene_async`` and ``in_model_pool``: model and feature calls, and loading
a scene or model, run on bounded thread pools (one per scene arm, one per served model), never on
the event loop, so a slow arm or model delays only its own requests. The time a request waits for a
thread is its ``queue`` latency. In-process, ``predict_scene`` runs the flow in the caller's thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from shipyard.errors import NotFound, Overloaded, SchemaMismatch, ShipyardError
from shipyard.jsontypes import JSON
from shipyard.models.loaded import model_failure
from shipyard.serving import heap
from shipyard.serving.arms import DEFAULT_THREADS, ERROR, FALLBACK, OK, ArmStats, Pools
from shipyard.serving.codec import mlflow_jsonable
from shipyard.serving.prediction_log import Ticket
from shipyard.serving.resilience import Guard, SharedLimits
from shipyard.serving.scene import CompiledScene, compile_scene, scene_loader
from shipyard.serving.sources import ModelCatalog, RegistryModels, StoreFeatures
from shipyard.serving.steps import FeaturesNode, ModelNode, ParallelNode, Trace, to_python

if TYPE_CHECKING:
    from shipyard.serving.flow import SceneLoader
    from shipyard.serving.metrics import ServingMetrics
    from shipyard.serving.prediction_log import PredictionLog
    from shipyard.serving.sources import FeatureSource, ModelSource, ServableModel
    from shipyard.workspace import Workspace


log = logging.getLogger(__name__)
_FLOAT_ONLY = {float}
_T = TypeVar("_T")
_MATRIX_TYPES = frozenset({"double", "long", "integer"})
_queued = threading.local()  # the queue time of the direct model call running in this pool thread

__all__ = ["ArmStats", "ServedModel", "ServedScene", "ServingEngine", "new_request_id"]


_ID_BATCH = 256
_ids: list[str] = []  # ready request ids; list.pop and list.extend are atomic, so threads share it
os.register_at_fork(after_in_child=_ids.clear)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """20 random hex digits (80 bits) from ``os.urandom``, read for 256 ids at a time: one system
    call (which also lets go of the GIL in a pool thread) per 256 requests instead of one each."""
    try:
        return _ids.pop()
    except IndexError:
        block = os.urandom(10 * _ID_BATCH).hex()
        fresh = [block[i:i + 20] for i in range(0, len(block), 20)]
        rid = fresh.pop()
        _ids.extend(fresh)
        return rid


class Fallback(NamedTuple):
    """Why a request was answered from the scene's fallback; ``failure`` unless the flow asked for
    it (an unknown entity with ``on_missing: fallback``), in which case the arm did its job."""

    reason: str
    step: str | None
    failure: bool = True


def _calls_out(plan: Any) -> bool:
    """Whether a plan has steps that can block (model and feature calls, threaded branches)."""
    return any(isinstance(n, (FeaturesNode, ModelNode)) or (isinstance(n, ParallelNode) and n.threads)
               for n in plan.root.walk())


def _run_queued(plan: Any, rows: list[dict[str, Any]], trace: Trace, submitted: float) -> None:
    trace.queue_s = time.perf_counter() - submitted
    if not trace.expired:  # timed out while it waited for a thread: nobody wants the answer
        plan.run(rows, trace)


def _call_queued(fn: Callable[..., Any], args: tuple[Any, ...], submitted: float) -> Any:
    _queued.value = time.perf_counter() - submitted
    try:
        return fn(*args)
    finally:
        _queued.value = 0.0


def _settle_soon(loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any], work: Future[Any]) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(_settle, done, work)


def _settle(done: asyncio.Future[Any], work: Future[Any]) -> None:
    if done.cancelled():
        return
    if work.cancelled():
        done.cancel()
        return
    exc = work.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(work.result())


class ServedScene:
    def __init__(self, compiled: CompiledScene, guard: Guard | None = None, workers: int = 1,
                 shared: SharedLimits | None = None) -> None:
        self.compiled = compiled
        self.guard = guard or Guard(f"scene {compiled.name!r}", compiled.limits, workers, shared)
        # arms whose flow calls models or feature services run on their own thread pool
        self.calls_out = {arm: _calls_out(plan) for arm, plan in compiled.plans.items()}
        self.threads = int(compiled.limits.get("threads") or DEFAULT_THREADS)
        self.stats: dict[str, ArmStats] = {arm: ArmStats() for arm in compiled.plans}
        # mirrored calls are kept apart: a rollout judges an arm by the requests it answered
        self.shadow_stats: dict[str, ArmStats] = {arm: ArmStats() for arm in compiled.plans}
        self.recent: deque[dict[str, Any]] = deque(maxlen=256)
        self.latency: deque[float] = deque(maxlen=2_000)
        self.shadow_pairs: deque[tuple[float, dict[str, Any], dict[str, Any]]] = deque(maxlen=20_000)
        self.inflight = 0

    @property
    def name(self) -> str:
        return self.compiled.name

    @property
    def version(self) -> int:
        return self.compiled.version


class ServedModel:
    """One model reference (``name@ref``) ready for the direct prediction endpoints."""

    def __init__(self, name: str, ref: str, version: int, model: ServableModel) -> None:
        self.name = name
        self.ref = ref
        self.version = version
        self.model = model
        # the metrics' labels of this model's requests, made once rather than per request
        self.series_name, self.version_label = f"model:{name}", str(version)
        self.names = list(model.input_names or [])
        self.name_set = frozenset(self.names)
        sig = getattr(model, "signature", None)
        specs = list(sig.inputs) if sig is not None else []
        self.required = frozenset(str(s.name) for s in specs if s.required) if specs else self.name_set
        # the float matrix holds exactly what the signature check would pass on: doubles and integers
        # (a float32 or boolean column goes through the typed frame, as MLflow types it)
        self.numeric = bool(model.has_fast_path) and all(s.type in _MATRIX_TYPES for s in specs) and bool(self.names)
        self.integers = frozenset(j for j, s in enumerate(specs) if s.type in ("long", "integer"))
        self.types: dict[str, str] | None = {str(s.name): str(s.type) for s in specs} if specs else (
            dict.fromkeys(self.names, "double") if self.numeric else None)
        # /invocations may take the matrix path only when the package's pyfunc is its predict
        self.pyfunc_fast = self.numeric and bool(getattr(model, "pyfunc_is_predict", True))
        self.latency: deque[float] = deque(maxlen=2_000)
        self.recent: deque[Any] = deque(maxlen=256)
        self.inflight = 0
        self.counting = threading.Lock()  # calls run on several threads of the model's pool

    def matrix(self, records: list[Any]) -> np.ndarray:
        """Records (dicts) or rows (lists in input order) -> a float matrix, rejecting bad values by name."""
        names, n = self.names, len(self.names)
        out = np.empty((len(records), n), dtype=np.float64)
        for i, rec in enumerate(records):
            where = f"record {i}: " if len(records) > 1 else ""
            if type(rec) is dict:
                if len(rec) != n or rec.keys() != self.name_set:
                    self._shape_error(rec, where, i)
                values: list[Any] = list(map(rec.get, names))
            elif type(rec) is list:
                if len(rec) != n:
                    raise SchemaMismatch(f"{where}row has {len(rec)} values; model {self.name} takes {n} "
                                         f"({', '.join(names)})", {"record": i})
                values = rec
            else:
                raise SchemaMismatch(f"{where}each record must be an object of field: value or a list of {n} "
                                     "values", {"record": i})
            if set(map(type, values)) == _FLOAT_ONLY and math.isfinite(sum(values)) and not self.integers:
                # the usual row: only finite floats (a non-finite sum means some value may not be)
                out[i] = values
                continue
            for j, v in enumerate(values):
                t = type(v)
                if t is float:
                    if v - v != 0.0:
                        raise SchemaMismatch(f"{where}field {names[j]!r} is {v}; numbers must be finite",
                                             {"field": names[j], "record": i})
                    if j in self.integers and not v.is_integer():
                        raise SchemaMismatch(f"{where}field {names[j]!r} must be a whole number, got {v!r}",
                                             {"field": names[j], "record": i})
                elif t is int:
                    v = float(v)
                elif v is None:
                    v = math.nan  # a missing value, as the signature check and MLflow read it
                else:
                    raise SchemaMismatch(f"{where}field {names[j]!r} must be a number, got {t.__name__} "
                                         f"{str(v)[:40]!r}", {"field": names[j], "record": i})
                out[i, j] = v
        return out

    def _shape_error(self, rec: dict[str, Any], where: str, i: int) -> None:
        keys = set(rec)
        missing = sorted(self.required - keys)
        extra = sorted(keys - self.name_set)
        if missing:
            raise SchemaMismatch(f"{where}missing field(s) {', '.join(map(repr, missing))}; model {self.name} "
                                 f"needs {self.names}", {"field": missing[0], "record": i})
        if extra:
            raise SchemaMismatch(f"{where}unknown field(s) {', '.join(map(repr, extra))}; model {self.name} "
                                 f"takes {self.names}", {"field": extra[0], "record": i})

    def predict(self, records: list[Any]) -> list[Any]:
        if self.numeric:
            return to_python(self.model.predict_array(self.matrix(records)))
        return to_python(self.model.predict(records))

    def invoke(self, records: list[Any], params: dict[str, Any] | None = None) -> JSON:
        """``/invocations``: what ``mlflow.pyfunc.load_model(<package>).predict`` returns for these
        records, in MLflow's JSON form (see ``shipyard.models.pyfunc``)."""
        if self.pyfunc_fast and not params:
            out = self.model.predict_array(self.matrix(records))
        else:
            pyfunc = getattr(self.model, "predict_pyfunc", None)
            out = pyfunc(records, params) if pyfunc is not None else self.model.predict(records)
        return mlflow_jsonable(out)


class ServingEngine:
    """Scenes and models served from one workspace (or from in-memory sources)."""

    def __init__(self, ws: Workspace | None = None, *, models: ModelSource | None = None,
                 features: FeatureSource | None = None, scenes: SceneLoader | None = None,
                 prediction_log: PredictionLog | None = None, metrics: ServingMetrics | None = None) -> None:
        self.ws = ws
        # no workspace and no model source: an empty catalog, so a model reference is NotFound by name
        self.models: ModelSource = models if models is not None else (
            RegistryModels(ws) if ws is not None else ModelCatalog())
        self.features = features if features is not None else (StoreFeatures(ws) if ws is not None else None)
        self.scene_source = scenes if scenes is not None else (scene_loader(ws) if ws is not None else None)
        self.prediction_log = prediction_log
        log_served = getattr(self.features, "log_served", None)  # StoreFeatures has it, a FeatureSource need not
        if prediction_log is not None and getattr(prediction_log, "feature_logger", False) is None \
                and log_served is not None:
            # served feature vectors reach the feature store's log from the prediction log's writer
            prediction_log.feature_logger = log_served
        self.metrics = metrics
        # server processes sharing each scene's limits (each enforces its share; see resilience)
        self.workers = 1
        # global limits (limits.scope: global): a server sets this to its FleetLimits (Redis)
        self.fleet_limits: Any = None
        self._scenes: dict[str, ServedScene] = {}
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._lock = threading.Lock()
        self.pools = Pools()
        self._shadow_queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=10_000)
        self._shadow_thread: threading.Thread | None = None
        self._closing = False
        self.shadow_dropped = 0

    # -- loading ----------------------------------------------------------------------------------
    def build_scene(self, name: str, version: int | None = None) -> CompiledScene:
        if self.scene_source is None:
            raise NotFound(f"scene {name!r} is not loaded and no scene store is configured")
        number, spec = self.scene_source(name, version)
        return compile_scene(spec, number, models=self.models, features=self.features, scenes=self.scene_source)

    def install_scene(self, compiled: CompiledScene) -> ServedScene:
        """Serve ``compiled`` from now on (keeps the old scene's limits and statistics)."""
        old = self._scenes.get(compiled.name)
        keep = old.guard if old and old.compiled.limits == compiled.limits and old.guard.workers == self.workers \
            else None
        served = ServedScene(compiled, keep, self.workers, self._shared_limits(compiled.name))
        if old is not None:
            before, after = old.compiled.traffic, compiled.traffic
            # the same document rebuilt (a model alias moved) keeps its share; a new version
            # starts from its own traffic.canary (a running rollout re-applies its step on the poll)
            if old.compiled.version == compiled.version and before.canary_arm \
                    and before.canary_arm in compiled.plans:
                after.canary_arm, after.canary_percent = before.canary_arm, before.canary_percent
            served.recent = old.recent
            served.latency = old.latency
            for arm, stats in old.stats.items():
                if arm in served.stats:
                    served.stats[arm] = stats
            for arm, stats in old.shadow_stats.items():
                if arm in served.shadow_stats:
                    served.shadow_stats[arm] = stats
        self._scenes[compiled.name] = served
        return served

    def _shared_limits(self, scene: str) -> SharedLimits | None:
        fleet = self.fleet_limits
        if fleet is None:
            return None
        project = str(getattr(getattr(self.ws, "settings", None), "project", "default"))
        return lambda limits, workers, local: fleet.limiter(project, scene, limits, workers, local)

    def scene(self, name: str) -> ServedScene:
        served = self._scenes.get(name)
        if served is None:
            with self._lock:
                served = self._scenes.get(name)
                if served is None:
                    served = self.install_scene(self.build_scene(name))
                    heap.settle()
        return served

    def served_scenes(self) -> dict[str, ServedScene]:
        return dict(self._scenes)

    def model(self, name: str, ref: str) -> ServedModel:
        key = (name, str(ref))
        served = self._models.get(key)
        if served is None:
            with self._lock:
                served = self._models.get(key)
                if served is None:
                    version = self.models.resolve(name, str(ref))
                    served = ServedModel(name, str(ref), version, self._load_model(name, version))
                    self._models[key] = served
                    heap.settle()
        return served

    def _load_model(self, name: str, version: int) -> ServableModel:
        try:
            return self.models.load(name, version)
        except Exception as exc:  # noqa: BLE001 - unpickling and load hooks run the model's own code
            raise self._model_failed(exc, name, version, "could not be loaded") from exc

    def _model_failed(self, exc: Exception, name: str, version: int, what: str = "") -> ShipyardError:
        """The error boundary around a model's code: named, counted in the metrics, never bare."""
        failure = model_failure(exc, name, version, what)
        failure.details.setdefault("step", f"model:{name}")
        if self.metrics is not None:
            self.metrics.error(f"model:{name}", str(version), "control", failure.code, failure.status)
        return failure

    def install_model(self, served: ServedModel) -> None:
        self._models[(served.name, served.ref)] = served

    def remove_model(self, name: str, ref: str) -> ServedModel | None:
        """Stop serving ``name@ref`` (the next request loads it again, or is refused)."""
        with self._lock:
            return self._models.pop((name, str(ref)), None)

    def served_models(self) -> dict[tuple[str, str], ServedModel]:
        return dict(self._models)

    def inflight(self) -> int:
        """Prediction requests (scene and direct model calls) being answered now."""
        return sum(s.inflight for s in list(self._scenes.values())) + \
            sum(m.inflight for m in list(self._models.values()))

    # -- scenes -----------------------------------------------------------------------------------
    def predict_scene(self, name: str, records: list[dict[str, Any]], *, single: bool = False,
                      override: str | None = None, client: str | None = None,
                      request_id: str | None = None, served: ServedScene | None = None) -> dict[str, Any]:
        """Run one request (one record, or a batch) through the scene; returns the response body.

        The flow runs in the calling thread, or with a timeout on the arm's pool while this thread
        waits for it. A server calls ``predict_scene_async`` instead, which never blocks its loop.
        """
        start = time.perf_counter()
        served = served or self.scene(name)
        request_id = request_id or new_request_id()
        lease = self._admit(served, client, request_id)
        arm, chosen, trace = "control", False, Trace()
        served.inflight += 1
        try:
            arm, rows = self._prepare(served, records, override)
            chosen = True
            trace = Trace(served.guard.breakers.arm(arm))
            plan, timeout = served.compiled.plans[arm], served.guard.timeout_s
            fallback = None
            try:
                if timeout is None or not served.calls_out[arm]:
                    plan.run(rows, trace)
                else:
                    future = self._arm_pool(served, arm).submit(_run_queued, plan, rows, trace, time.perf_counter())
                    try:
                        future.result(timeout=max(0.0, timeout - (time.perf_counter() - start)))
                    except FutureTimeout:
                        raise self._timed_out(served, trace) from None
            except ShipyardError as exc:
                fallback = self._fallback_for(served, exc)
        except ShipyardError as exc:
            self._failed(served, arm if chosen else None, exc, time.perf_counter() - start, trace, request_id)
            raise
        finally:
            served.inflight -= 1
            served.guard.release(lease)
        body, logged = self._finish(served, arm, records, rows, trace, fallback, start, request_id, single)
        if isinstance(logged, Ticket) and not logged.wait():  # in the spool before the answer leaves
            assert self.prediction_log is not None  # a ticket comes from the prediction log
            self.prediction_log.late += 1
        return body

    async def predict_scene_async(self, name: str, records: list[dict[str, Any]], *, single: bool = False,
                                  override: str | None = None, client: str | None = None,
                                  request_id: str | None = None, served: ServedScene | None = None) -> dict[str, Any]:
        """``predict_scene`` for an event loop: an arm whose flow calls models or feature services
        runs it on that arm's bounded thread pool (``limits.threads``, default 16) and the loop only
        awaits it, so a slow arm fills its own threads and nothing else waits behind it. A timeout
        covers the wait for a thread too; a request still waiting when it passes never runs."""
        loop = asyncio.get_running_loop()
        if served is None:
            served = self._scenes.get(name)
            if served is None:  # the first request compiles the scene (registry, feature store)
                served = await loop.run_in_executor(self.pools.get(("load", "scenes", "")), self.scene, name)
        start = time.perf_counter()
        request_id = request_id or new_request_id()
        if served.guard.shared is None:
            lease = self._admit(served, client, request_id)
        else:  # a global limit is a Redis round trip: off the loop, so other requests go on meanwhile
            lease = await loop.run_in_executor(self.pools.get(("limits", served.name, "")), self._admit, served,
                                               client, request_id)
        arm, chosen, trace = "control", False, Trace()
        served.inflight += 1
        try:
            arm, rows = self._prepare(served, records, override)
            chosen = True
            trace = Trace(served.guard.breakers.arm(arm))
            plan, timeout = served.compiled.plans[arm], served.guard.timeout_s
            fallback = None
            try:
                if not served.calls_out[arm]:  # expressions and rules only: nothing to wait for
                    plan.run(rows, trace)
                else:
                    future = loop.run_in_executor(self._arm_pool(served, arm), _run_queued, plan, rows, trace,
                                                  time.perf_counter())
                    if timeout is None:
                        await future
                    else:
                        try:
                            await asyncio.wait_for(future, max(0.0, timeout - (time.perf_counter() - start)))
                        except TimeoutError:
                            raise self._timed_out(served, trace) from None
            except ShipyardError as exc:
                fallback = self._fallback_for(served, exc)
        except ShipyardError as exc:
            self._failed(served, arm if chosen else None, exc, time.perf_counter() - start, trace, request_id)
            raise
        finally:
            served.inflight -= 1
            if served.guard.shared is None:
                served.guard.release(lease)
            else:  # giving a global concurrency lease back is a round trip too; nobody waits for it
                loop.run_in_executor(self.pools.get(("limits", served.name, "")), served.guard.release, lease)
        body, logged = self._finish(served, arm, records, rows, trace, fallback, start, request_id, single)
        if isinstance(logged, Ticket) and not await logged.wait_async():  # in the spool before the answer leaves
            assert self.prediction_log is not None  # a ticket comes from the prediction log
            self.prediction_log.late += 1
        return body

    def _arm_pool(self, served: ServedScene, arm: str) -> Any:
        return self.pools.get(("scene", served.name, arm), served.threads)

    def _admit(self, served: ServedScene, client: str | None, request_id: str) -> str | None:
        try:
            return served.guard.admit(client)
        except ShipyardError as exc:
            # refused before an arm was chosen: counted under arm "none", so 429/503s show in /metrics
            cs = served.compiled
            if self.metrics is not None:
                self.metrics.error(cs.name, str(cs.version), "none", exc.code, exc.status)
            exc.details.setdefault("scene", cs.name)
            exc.details.setdefault("request_id", request_id)
            raise

    def _prepare(self, served: ServedScene, records: list[dict[str, Any]],
                 override: str | None) -> tuple[str, list[dict[str, Any]]]:
        cs = served.compiled
        cs.check(records)
        if not records:
            raise SchemaMismatch("the batch is empty; send at least one record", {"field": "records"})
        return cs.traffic.choose(records[0], override), [dict(r) for r in records]

    def _timed_out(self, served: ServedScene, trace: Trace) -> Overloaded:
        """The error of a request past its timeout; the dependency step it was in is charged with a
        failure (its late answer will not count as a success)."""
        trace.expired = True
        running = trace.running
        if running is not None and trace.breakers is not None:
            trace.breakers(running.target).failure()
        where = f"at step {running.id!r}" if running is not None else "waiting for a thread of its arm"
        step = running.id if running is not None else "queue"
        cs, timeout_s = served.compiled, served.guard.timeout_s
        assert timeout_s is not None  # only a scene with a timeout times out
        return Overloaded(f"scene {cs.name!r} took longer than its timeout of {timeout_s * 1000:g} ms "
                          f"({where})", {"retry_after": 1, "step": step, "dependency": "timeout"})

    def _fallback_for(self, served: ServedScene, exc: ShipyardError) -> Fallback:
        """The fallback answer for a failed flow, or ``exc`` raised again (bad input, no fallback)."""
        cs = served.compiled
        step = exc.details.get("step")
        if exc.details.get("on_missing") == "fallback" and cs.fallback:
            # an unknown entity is the flow's own answer, not a failing dependency
            return Fallback(f"entity not found at step {step or '?'!r}: {exc.message}", step, failure=False)
        if exc.status < 500 or not cs.fallback:
            raise exc
        if exc.details.get("circuit") != "open":
            log.warning("scene %s: fallback after %s", cs.name, exc.message)
        what = "circuit open" if exc.details.get("circuit") == "open" else \
            f"{exc.details.get('dependency') or 'step'} failure"
        return Fallback(f"{what} at step {step or '?'!r}: {exc.message}", step)

    def _failed(self, served: ServedScene, arm: str | None, exc: ShipyardError, elapsed: float, trace: Trace,
                request_id: str) -> None:
        """Record a failed request (a 5xx counts against its arm) and name scene, arm and request."""
        cs = served.compiled
        if arm is not None and exc.status >= 500:
            served.stats[arm].add(elapsed, ERROR, step=exc.details.get("step"), queue_s=trace.queue_s)
            if self.metrics is not None and exc.details.get("step"):
                self.metrics.step_failure(cs.name, str(cs.version), arm, str(exc.details["step"]), "error")
        if self.metrics is not None:
            self.metrics.error(cs.name, str(cs.version), arm or "control", exc.code, exc.status)
        exc.details.setdefault("scene", cs.name)
        exc.details.setdefault("request_id", request_id)
        if arm is not None:
            exc.details.setdefault("arm", arm)
            if exc.status >= 500 and len(cs.plans) > 1 and not exc.message.startswith("arm "):
                exc.message = f"arm {arm!r}: {exc.message}"
                exc.args = (exc.message,)

    def _finish(self, served: ServedScene, arm: str, records: list[dict[str, Any]], rows: list[dict[str, Any]],
                trace: Trace, fallback: Fallback | None, start: float, request_id: str,
                single: bool) -> tuple[dict[str, Any], Any]:
        """The response body, and the prediction log's receipt of its record (a ``Ticket`` to
        wait on when the log spools, else None or True)."""
        cs = served.compiled
        total = time.perf_counter() - start
        if fallback is None:
            outputs = [cs.select(r) for r in rows]
            served.stats[arm].add(total, OK, _first_number(outputs[0]), queue_s=trace.queue_s)
        else:
            outputs = [dict(cs.fallback or {}) for _ in rows]
            # the fallback's numbers are not the arm's scores: kept out of PSI either way
            served.stats[arm].add(total, FALLBACK if fallback.failure else OK, None, step=fallback.step,
                                  queue_s=trace.queue_s)
        served.latency.append(total)
        served.recent.append(records[0])
        if self.metrics is not None:
            self.metrics.observe(cs.name, str(cs.version), arm, total, trace.features_s, trace.model_s,
                                 fallback is not None, queue_s=trace.queue_s)
            if fallback is not None and fallback.failure and fallback.step:
                self.metrics.step_failure(cs.name, str(cs.version), arm, fallback.step, "fallback")
        body: dict[str, Any] = {
            "request_id": request_id, "scene": cs.name, "version": cs.version, "arm": arm,
            "models": trace.models or cs.plans[arm].models,
            "outputs": outputs[0] if single else outputs,
            "fallback": fallback is not None,
            "latency_ms": {"features": round(trace.features_s * 1000, 3), "model": round(trace.model_s * 1000, 3),
                           "queue": round(trace.queue_s * 1000, 3), "total": round(total * 1000, 3)},
        }
        if fallback is not None:
            body["fallback_reason"] = fallback.reason
        logged = self._after(served, arm, records, rows, outputs, body)
        return body, logged

    def _after(self, served: ServedScene, arm: str, records: list[dict[str, Any]], rows: list[dict[str, Any]],
               outputs: list[dict[str, Any]], body: dict[str, Any]) -> Any:
        cs = served.compiled
        plog = self.prediction_log
        logged = None
        if plog is not None and plog.sampled(cs.sample_rate):
            plan = cs.plans[arm]
            feats = plan.feature_names
            record = _log_record(body, cs, arm, "live", records,
                                 [{k: r.get(k) for k in feats} for r in rows] if feats else None, outputs)
            if feats and plan.entity_fields and not body["fallback"]:
                # the entity keys of each served vector, for the feature store's log (skew checks)
                record["feature_entities"] = [{k: r.get(f) for k, f in plan.entity_fields.items()} for r in rows]
            logged = plog.append(record)
        shadow = cs.traffic.shadow() if cs.traffic.shadow_arm else None
        if shadow is not None and shadow != arm:
            self._ensure_shadow_thread()
            try:
                self._shadow_queue.put_nowait((served, shadow, records, outputs, body))
            except queue.Full:
                self.shadow_dropped += 1
        return logged

    # -- shadow traffic ---------------------------------------------------------------------------
    def _ensure_shadow_thread(self) -> None:
        if self._shadow_thread is None:
            with self._lock:
                if self._shadow_thread is None:
                    self._shadow_thread = threading.Thread(target=self._shadow_loop, name="shipyard-shadow",
                                                           daemon=True)
                    self._shadow_thread.start()

    def _shadow_loop(self) -> None:
        while True:
            job = self._shadow_queue.get()
            if job is None:
                self._shadow_queue.task_done()
                return
            served, arm, records, live, body = job
            if self._closing:
                self.shadow_dropped += 1
                self._shadow_queue.task_done()
                continue
            try:
                cs = served.compiled
                rows = [dict(r) for r in records]
                start = time.perf_counter()
                error = None
                try:
                    trace = cs.plans[arm].run(rows)
                    outputs = [cs.select(r) for r in rows]
                except ShipyardError as exc:
                    trace, outputs, error = Trace(), None, exc.message
                latency = time.perf_counter() - start
                served.shadow_stats[arm].add(latency, OK if error is None else ERROR,
                                             _first_number(outputs[0]) if outputs else None)
                if outputs:
                    served.shadow_pairs.append((time.time(), live[0], outputs[0]))
                plog = self.prediction_log
                if plog is not None:
                    shadow_body = {"request_id": body["request_id"], "models": trace.models,
                                   "latency_ms": {"total": latency * 1000, "features": trace.features_s * 1000,
                                                  "model": trace.model_s * 1000}, "fallback": False}
                    rec = _log_record(shadow_body, cs, arm, "shadow", records, None, outputs)
                    rec["error"] = error
                    rec["live_outputs"] = live
                    plog.submit(rec)
            except Exception:  # the mirror must never take the server down
                log.exception("shadow scoring failed")
            finally:
                self._shadow_queue.task_done()

    def wait_shadow(self) -> None:
        """Block until every mirrored request queued so far is scored (tests, reports)."""
        if self._shadow_thread is not None:
            self._shadow_queue.join()

    # -- direct model calls ---------------------------------------------------------------------
    async def in_model_pool(self, name: str, ref: str, call: Callable[..., _T], *args: Any) -> _T:
        """Await ``call(*args)`` (a direct model call: parse the body, load, predict) on the bounded
        thread pool of model ``name@ref``, never on the event loop. A model not loaded yet is loaded
        on a shared pool (an unknown name makes no pool of its own); the wait for a thread is
        recorded as the call's queue time."""
        key = (name, str(ref))
        pool = self.pools.get(("model", name, str(ref)) if key in self._models else ("load", "models", ""))
        # run_in_executor's work without its per-call checks and future chaining (a few µs a request):
        # the pool's future settles one asyncio future on the loop; a cancelled wait cancels the call
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        work = pool.submit(_call_queued, call, args, time.perf_counter())
        work.add_done_callback(functools.partial(_settle_soon, loop, done))
        try:
            return await done
        except asyncio.CancelledError:
            work.cancel()
            raise

    def predict_model(self, name: str, ref: str, records: list[Any], *, mlflow: bool = False,
                      params: dict[str, Any] | None = None) -> tuple[Any, ServedModel, float]:
        """Score records with one model: Shipyard's outputs (``/predict``), or with ``mlflow=True``
        what MLflow's scoring server returns for the package (``/invocations``)."""
        served = self.model(name, ref)
        queued = getattr(_queued, "value", 0.0)
        start = time.perf_counter()
        with served.counting:
            served.inflight += 1
        try:
            predictions = served.invoke(records, params) if mlflow else served.predict(records)
        except Exception as exc:  # noqa: BLE001 - the model's code may raise anything
            failure = self._model_failed(exc, name, served.version)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            with served.counting:
                served.inflight -= 1
        elapsed = time.perf_counter() - start
        served.latency.append(elapsed)
        if records:
            served.recent.append(records[0])
        if self.metrics is not None:
            self.metrics.observe(served.series_name, served.version_label, "control", elapsed, 0.0, elapsed,
                                 queue_s=queued)
        return predictions, served, elapsed

    def close(self, phase: Callable[[str], None] | None = None) -> None:
        """Stop: calls still queued for a thread are dropped (the server drained its requests
        before this), mirrored calls not started are dropped, and the prediction log writes what
        was submitted. ``phase`` is told of each step (the server's shutdown log)."""
        self.pools.close()
        if self._shadow_thread is not None:
            self._closing = True  # the shadow thread skips what is still queued: mirrors answer nobody
            self._shadow_queue.put(None)
            self._shadow_thread.join(5)
            self._shadow_thread = None
            if phase is not None:
                phase(f"shadow calls stopped ({self.shadow_dropped} dropped in total)")
        if self.prediction_log is not None:
            self.prediction_log.close()
            if phase is not None:
                plog = self.prediction_log
                phase(f"prediction log flushed ({plog.written} records written, {plog.dropped} dropped)")
        close_models = getattr(self.models, "close", None)
        if callable(close_models):
            close_models()  # worker processes of models served from their own environments


def _first_number(outputs: dict[str, Any] | None) -> float | None:
    if not outputs:
        return None
    for value in outputs.values():
        if type(value) in (float, int):
            return float(value)
    return None


def _log_record(body: dict[str, Any], cs: CompiledScene, arm: str, kind: str, records: list[dict[str, Any]],
                features: Any, outputs: Any) -> dict[str, Any]:
    lat = body.get("latency_ms", {})
    return {
        "ts": int(time.time() * 1000), "request_id": body["request_id"], "scene": cs.name, "version": cs.version,
        "arm": arm, "kind": kind, "inputs": records, "features": features, "outputs": outputs,
        "models": body.get("models"), "latency_ms": lat.get("total"), "features_ms": lat.get("features"),
        "model_ms": lat.get("model"), "fallback": bool(body.get("fallback")), "error": None,
    }
