"""Hot swap: follow registry aliases and scene versions without dropping a request.

``Follower`` polls every ``interval`` seconds. When a served scene has a new version, or an alias
one of its model steps (or a directly served ``name@alias``) points at has moved, it:

1. loads the new version beside the old one (both stay in memory);
2. warms it up on the most recent requests the old one served (input examples when there are none)
   until its latency is within ``tolerance`` x the old one's recent mean (or ``max_warmup_s`` passes);
3. switches atomically (one dict assignment; requests in flight finish on the old object);
4. waits for the old one to drain, then unloads model versions nothing serves any more.

A directly served model whose version may no longer be served (a version served by number that
was rejected since) is withdrawn: dropped after its requests in flight, and refused from then on.

Each swap is recorded as an audit event (``scene.swapped`` / ``model.swapped``).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from typing import Any

from shipyard.errors import Conflict, ShipyardError
from shipyard.serving import heap
from shipyard.serving.engine import ServedModel, ServedScene, ServingEngine
from shipyard.serving.scene import CompiledScene, latest_versions
from shipyard.serving.steps import ModelNode

log = logging.getLogger(__name__)


def _mean(samples: Any, default: float) -> float:
    values = list(samples)[-200:]
    return statistics.fmean(values) if values else default


class Follower:
    def __init__(self, engine: ServingEngine, *, interval: float = 5.0, tolerance: float = 1.5,
                 max_warmup_s: float = 10.0, min_warmup_calls: int = 20, drain_s: float = 10.0) -> None:
        self.engine = engine
        self.interval = interval
        self.tolerance = tolerance
        self.max_warmup_s = max_warmup_s
        self.min_warmup_calls = min_warmup_calls
        self.drain_s = drain_s
        self.swaps: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="shipyard-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # keep following after a transient store error
                log.exception("hot swap: check failed")

    # -- one poll -------------------------------------------------------------------------------
    def check(self) -> list[dict[str, Any]]:
        """Swap whatever changed since the last poll; returns the swaps made."""
        done = []
        ws = self.engine.ws
        latest = latest_versions(ws) if ws is not None else {}
        for name, served in self.engine.served_scenes().items():
            if latest.get(name, served.version) != served.version or self._models_moved(served):
                done.append(self.swap_scene(name))
        for (name, ref), model in self.engine.served_models().items():
            try:
                version = self.engine.models.resolve(name, ref)
            except Conflict as exc:  # e.g. a version served by number was rejected since it loaded
                done.append(self.withdraw_model(name, ref, exc.message))
                continue
            except ShipyardError:
                continue
            if version != model.version:
                done.append(self.swap_model(name, ref, version))
        if ws is not None:
            self.sync_canaries()
        return done

    def sync_canaries(self) -> list[str]:
        """Apply the canary shares recorded in the metadata store (set by any worker); returns the
        scenes whose share changed here (none for an engine without a workspace: nothing is recorded)."""
        from shipyard.serving.release import abandon_stale_releases, latest_canaries

        ws = self.engine.ws
        if ws is None:
            return []
        abandon_stale_releases(ws)  # a rollout whose server died must not hold its share
        changed = []
        scenes = self.engine.served_scenes()
        recorded = latest_canaries(ws, {name: s.compiled.version for name, s in scenes.items()})
        for name, served in scenes.items():
            if name not in recorded:
                continue
            arm, percent = recorded[name]
            traffic = served.compiled.traffic
            if arm not in served.compiled.plans or arm == "control":
                continue  # the scene's current version no longer has that arm
            if traffic.canary_arm != arm or traffic.canary_percent != percent:
                traffic.canary_arm = arm
                traffic.set_canary(percent)
                changed.append(name)
        return changed

    def _models_moved(self, served: ServedScene) -> bool:
        for plan in served.compiled.plans.values():
            for node in plan.model_nodes():
                try:
                    if self.engine.models.resolve(node.name, node.ref) != node.version:
                        return True
                except ShipyardError:
                    continue
        return False

    def swap_scene(self, name: str) -> dict[str, Any]:
        old = self.engine.scene(name)
        new = self.engine.build_scene(name)
        warm = self._warm(lambda rows: [p.run([dict(r) for r in rows]) for p in new.plans.values()],
                          list(old.recent), _mean(old.latency, 0.0))
        self.engine.install_scene(new)
        heap.settle()
        self._drain(old)
        self._unload(_versions(old.compiled), _in_use(self.engine))
        info = {"kind": "scene", "name": name, "from": old.version, "to": new.version,
                "models": new.models, **warm}
        self._record("scene.swapped", f"scene:{name}", info)
        return info

    def swap_model(self, name: str, ref: str, version: int) -> dict[str, Any]:
        old = self.engine.model(name, ref)
        new = ServedModel(name, ref, version, self.engine.models.load(name, version))
        examples = list(old.recent) or model_examples(new.model)
        warm = self._warm(lambda rows: new.predict(rows), examples, _mean(old.latency, 0.0), batch=False)
        self.engine.install_model(new)
        heap.settle()
        self._drain(old)
        self._unload({(name, old.version)}, _in_use(self.engine))
        info = {"kind": "model", "name": name, "ref": ref, "from": old.version, "to": version, **warm}
        self._record("model.swapped", f"model:{name}@{ref}", info)
        return info

    def withdraw_model(self, name: str, ref: str, reason: str) -> dict[str, Any]:
        """Stop serving ``name@ref`` (its version may no longer be served): later requests resolve
        it again and are refused with the reason; requests in flight finish."""
        old = self.engine.remove_model(name, ref)
        if old is not None:
            self._drain(old)
            self._unload({(name, old.version)}, _in_use(self.engine))
        info = {"kind": "model", "name": name, "ref": ref, "from": old.version if old else None, "to": None,
                "reason": reason}
        self._record("model.withdrawn", f"model:{name}@{ref}", info)
        return info

    # -- steps ----------------------------------------------------------------------------------
    def _warm(self, call: Any, examples: list[Any], baseline_s: float, batch: bool = False) -> dict[str, Any]:
        return warm_up(call, examples, baseline_s, tolerance=self.tolerance, min_calls=self.min_warmup_calls,
                       max_s=self.max_warmup_s, stop=self._stop)

    def _drain(self, old: Any) -> None:
        deadline = time.monotonic() + self.drain_s
        while old.inflight > 0 and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.005)

    def _unload(self, versions: set[tuple[str, int]], in_use: set[tuple[str, int]]) -> None:
        unload = getattr(self.engine.models, "unload", None)
        if unload is None:
            return
        for name, version in versions - in_use:
            unload(name, version)

    def _record(self, kind: str, subject: str, info: dict[str, Any]) -> None:
        self.swaps.append(info)
        log.info("hot swap: %s %s", subject, info)
        ws = self.engine.ws
        if ws is None:
            return
        from shipyard.store.events import record_event

        try:
            with ws.store.begin() as conn:
                record_event(conn, ws.user, kind, subject, info)
        except ShipyardError:
            log.warning("hot swap: could not record %s for %s", kind, subject)


def model_examples(model: Any) -> list[Any]:
    """The records of a loaded model's input example (empty without one)."""
    example = getattr(model, "input_example", None)
    if example is None:
        return []
    return example.to_dict(orient="records") if hasattr(example, "to_dict") else list(example)


def warm_up(call: Any, examples: list[Any], baseline_s: float, *, tolerance: float = 1.5, min_calls: int = 20,
            max_s: float = 10.0, stop: threading.Event | None = None) -> dict[str, Any]:
    """Call ``call([example])`` over ``examples`` until the last 20 calls average within
    ``tolerance`` x ``baseline_s`` (any speed when there is no baseline) after at least
    ``min_calls`` calls, or ``max_s`` passes, or ``stop`` is set. Errors of the calls are ignored
    (a warm-up example may be refused by a rule; the code paths are warm all the same)."""
    if not examples:
        return {"warmup_calls": 0, "warm_latency_ms": None, "baseline_ms": baseline_s * 1000}
    deadline = time.monotonic() + max_s
    timings: list[float] = []
    calls = 0
    while True:
        for example in examples:
            start = time.perf_counter()
            try:
                call([example])
            except ShipyardError:
                pass
            timings.append(time.perf_counter() - start)
            calls += 1
        recent = statistics.fmean(timings[-20:])
        target = baseline_s * tolerance if baseline_s > 0 else float("inf")
        if calls >= min_calls and recent <= target:
            matched = True
            break
        if stop is not None and stop.is_set():  # the server is shutting down: do not hold it up
            matched = False
            break
        if time.monotonic() > deadline:
            matched = False
            log.warning("warm-up did not reach %.3f ms within %.0f s (at %.3f ms); going on",
                        target * 1000, max_s, recent * 1000)
            break
    return {"warmup_calls": calls, "warm_latency_ms": recent * 1000, "baseline_ms": baseline_s * 1000,
            "latency_matched": matched}


def _versions(compiled: CompiledScene) -> set[tuple[str, int]]:
    return {(n.name, n.version) for plan in compiled.plans.values() for n in plan.root.walk()
            if isinstance(n, ModelNode)}


def _in_use(engine: ServingEngine) -> set[tuple[str, int]]:
    used = set()
    for served in engine.served_scenes().values():
        used |= _versions(served.compiled)
    for served_model in engine.served_models().values():
        used.add((served_model.name, served_model.version))
    return used
