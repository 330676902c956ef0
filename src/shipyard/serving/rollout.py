"""Progressive delivery: canary steps with automatic rollback, run by one server and continued by
another when that one dies.

- ``CanaryRollout`` moves an arm through canary steps (e.g. 5 → 25 → 50 → 100 %). At each step it
  compares the arm with control over the requests since the step began and rolls back to 0 % by
  itself when the arm's error rate, p99 latency or score PSI against control breaches the scene's
  ``limits`` (``error_rate``, ``p99_ms``, ``psi``). With the fleet's series (``fleet.FleetSeries``)
  the error rate, p99 and request counts of a step are the whole fleet's (every server's
  per-minute rows, merged, less what they held when the step began); PSI compares the scores this
  server saw. Between step checks it watches the error rate and p99 of this server's recent
  requests of the arm (``watch``: the last ``window_s`` seconds of the step, and at least
  ``min_requests`` of them), so a breach rolls back within a fraction of a second, not at the next
  step check. Error rate and p99 are never judged on fewer than ``min_requests`` requests. A
  fallback answer is a failure of the arm (see ``arms``).
- ``RolloutRunner`` runs rollouts in background threads of a serving process. Each running
  rollout holds a lease (``release_store.ROLLOUT_LEASE``) heartbeated by the process; ``adopt``
  (every server calls it periodically) takes over the lease of a rollout whose process died, or
  whose server shut down and freed it (``stop_all``), and continues it from its recorded step,
  baseline and checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from shipyard.errors import Conflict, InvalidInput, StoreUnavailable
from shipyard.serving.fleet import Counts, FleetSeries
from shipyard.serving.release_checks import scene_status
from shipyard.serving.release_store import (
    ROLLOUT_LEASE,
    free_rollout_lease,
    insert_release,
    lease_ttl_s,
    release_row,
    update_release,
)
from shipyard.store import leases
from shipyard.store.database import now_ms
from shipyard.store.schema import scene_releases

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

WATCH_S = 0.25
"""How often a running rollout watches its arm's recent requests for an error-rate or p99 breach."""

WINDOW_S = 10.0
"""The sliding window the watch judges: the arm's requests of the last ten seconds of the step (at
least ``min_requests`` of them, the newest, when fewer arrived in that time)."""


def set_canary(ws: Workspace, engine: Any, scene: str, percent: float, *, arm: str | None = None) -> dict[str, Any]:
    served = engine.scene(scene)
    traffic = served.compiled.traffic
    arm = arm or traffic.canary_arm
    if arm is None or arm not in served.compiled.plans or arm == "control":
        raise InvalidInput(f"scene {scene!r} has no canary arm {arm!r}; name one of its arms "
                           f"{[a for a in served.compiled.plans if a != 'control']}", {"field": "arm"})
    if ws is not None:
        insert_release(ws, scene, arm, percent, "manual", "", {})  # refused during a running rollout
    traffic.canary_arm = arm
    traffic.set_canary(percent)
    return scene_status(engine, scene)


def check_steps(steps: Sequence[Any]) -> list[float]:
    """Canary shares in percent: at least one, each in (0, 100], strictly increasing."""
    try:
        values = [float(s) for s in steps]
    except (TypeError, ValueError):
        raise InvalidInput(f"steps must be numbers (percent of traffic), not {list(steps)!r}",
                           {"field": "steps"}) from None
    if not values:
        raise InvalidInput("steps is empty; give the canary shares in percent, e.g. [5, 25, 50, 100]",
                           {"field": "steps"})
    for value in values:
        if not 0 < value <= 100:
            raise InvalidInput(f"step {value:g} is outside (0, 100]; each step is a percent of traffic",
                               {"field": "steps"})
    for before, after in zip(values, values[1:], strict=False):
        if after <= before:
            raise InvalidInput(f"steps must increase: {after:g} follows {before:g}", {"field": "steps"})
    return values


class CanaryRollout:
    """Progressive delivery of one arm; call ``advance()`` periodically or ``run()`` to the end.

    With a workspace, the release row is the source of truth: ``advance()`` first reads it, so an
    abort recorded by any process stops the rollout, and every step is recorded before it applies.
    The row's details hold everything another server needs to continue it (``resume``): steps,
    checks, the step's start and its fleet baseline, the interval and the deadline.
    With ``fleet``, step checks judge the whole fleet's requests of the arm (see ``fleet``).
    """

    def __init__(self, ws: Workspace, engine: Any, scene: str, arm: str, *, steps: Sequence[float] = (5, 25, 50, 100),
                 min_requests: int | None = None, heartbeat_s: float = 1.0, window_s: float = WINDOW_S,
                 fleet: FleetSeries | None = None, timeout_s: float | None = None,
                 _resume: Any = None) -> None:
        served = engine.scene(scene)
        if arm not in served.compiled.plans or arm == "control":
            arms = list(served.compiled.plans)
            challengers = [a for a in arms if a != "control"]
            fix = (f"roll out one of {challengers}" if challengers else
                   "'control' is where traffic returns on a rollback, so it cannot be rolled out: add an arm "
                   "under traffic.arms and apply the scene first")
            raise InvalidInput(f"scene {scene!r} has no arm {arm!r} to roll out; its arms are {arms}: {fix}",
                               {"field": "arm", "arms": arms})
        if min_requests is not None and int(min_requests) < 1:
            raise InvalidInput(f"min_requests must be at least 1, not {min_requests}", {"field": "min_requests"})
        self.ws, self.engine, self.scene, self.arm = ws, engine, scene, arm
        self.fleet = fleet
        self.steps = check_steps(steps)
        self.limits = dict(served.compiled.limits)
        self.min_requests = int(min_requests or self.limits.get("min_requests", 50))
        self.index = 0
        self.status = "running"
        self.reason = ""
        self.checks: list[dict[str, Any]] = []
        self.release_id: int | None = None
        self.heartbeat_s = float(heartbeat_s)  # how often advance() runs; recorded so others can tell a stale release
        self.window_s = float(window_s)
        self.deadline_ms = now_ms() + int(1000 * timeout_s) if timeout_s else None
        self.baseline: dict[str, Counts] = {}
        self.takeover_log: list[dict[str, Any]] = []  # each time another process took it over, and why
        self.driving = True  # False once another process holds the lease (this one stops acting)
        if _resume is None:
            self._begin_step()
        else:
            self._adopt_row(_resume)

    @classmethod
    def resume(cls, ws: Workspace, engine: Any, row: Any, *, fleet: FleetSeries | None = None) -> CanaryRollout:
        """Continue a running release recorded by another process, from its recorded step."""
        details = dict(row.details or {})
        return cls(ws, engine, row.scene, row.arm, steps=details.get("steps") or [row.percent],
                   min_requests=details.get("min_requests"), heartbeat_s=float(details.get("heartbeat_s") or 1.0),
                   window_s=float(details.get("window_s") or WINDOW_S), fleet=fleet, _resume=row)

    def _adopt_row(self, row: Any) -> None:
        details = dict(row.details or {})
        self.release_id = int(row.id)
        self.checks = list(details.get("checks") or [])
        percent = float(row.percent)
        self.index = min(range(len(self.steps)), key=lambda i: abs(self.steps[i] - percent))
        self.step_started = float(details.get("step_started") or time.time())
        self.baseline = {arm: Counts.from_dict(c) for arm, c in (details.get("baseline") or {}).items()}
        self.takeover_log = list(details.get("takeover_log") or [])
        self.deadline_ms = details.get("deadline_ms")
        traffic = self._traffic()
        traffic.canary_arm = self.arm
        traffic.set_canary(percent)

    @property
    def percent(self) -> float:
        if self.status == "running":
            return self.steps[self.index]
        return self.steps[-1] if self.status == "promoted" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release_id, "scene": self.scene, "arm": self.arm, "status": self.status,
                "percent": self.percent, "reason": self.reason, "steps": self.steps, "checks": self.checks,
                "min_requests": self.min_requests, "judged_on": "fleet" if self.fleet else "this server"}

    def _details(self) -> dict[str, Any]:
        return {"steps": self.steps, "checks": self.checks, "min_requests": self.min_requests,
                "heartbeat_s": self.heartbeat_s, "window_s": self.window_s, "step_started": self.step_started,
                "baseline": {arm: c.to_dict() for arm, c in self.baseline.items()},
                "deadline_ms": self.deadline_ms, "judged_on": "fleet" if self.fleet else "this server",
                "takeover_log": self.takeover_log}

    def _traffic(self) -> Any:
        return self.engine.scene(self.scene).compiled.traffic

    def _begin_step(self) -> None:
        percent = self.steps[self.index]
        self.step_started = time.time()
        if self.fleet is not None:  # what the fleet's rows hold already: the step judges what comes after
            self.baseline = {arm: self.fleet.counts(self.scene, arm, self.step_started)
                             for arm in (self.arm, "control")}
        if self.ws is not None:
            if self.release_id is None:
                self.release_id = insert_release(self.ws, self.scene, self.arm, percent, "running", "",
                                                 self._details())
            elif not update_release(self.ws, self.release_id, self.scene, self.arm, percent, "running", "",
                                    self._details()):
                self._ended_elsewhere()
                return
        traffic = self._traffic()
        traffic.canary_arm = self.arm
        traffic.set_canary(percent)

    def _ended_elsewhere(self) -> None:
        """Adopt the recorded end of this release (an abort from any process) and its share."""
        row = release_row(self.ws, self.release_id) if self.release_id is not None else None
        self.status = row.status if row is not None else "aborted"
        self.reason = row.reason if row is not None else "the release row is gone"
        self._traffic().set_canary(float(row.percent) if row is not None else 0.0)

    def _step_summary(self, arm: str) -> dict[str, Any]:
        """The arm's requests since the step began: the fleet's (less the baseline) or this server's."""
        local = self.engine.scene(self.scene).stats[arm].summary(self.step_started)
        if self.fleet is None:
            return local
        counts = self.fleet.counts(self.scene, arm, self.step_started).minus(self.baseline.get(arm, Counts()))
        summary = counts.summary()
        summary["failed_steps"] = local["failed_steps"]
        summary["scores"] = local["scores"]  # PSI compares the scores this server saw
        return summary

    def evaluate(self) -> dict[str, Any]:
        """Compare the arm with control over the whole step; the breaches found (if any). Error rate
        and p99 are judged once the step has ``min_requests`` of the arm's requests, PSI once both
        sides have 20 scores (fallback answers carry none)."""
        from shipyard.risk.metrics import psi

        arm = self._step_summary(self.arm)
        control = self._step_summary("control")
        check = self._judge(arm)
        if self.fleet is not None:
            check["judged_on"] = "fleet"
            check["instances"] = arm.get("instances", 0)
        limits = self.limits
        if "psi" in limits and len(arm["scores"]) >= 20 and len(control["scores"]) >= 20:
            value = float(psi(np.asarray(control["scores"]), np.asarray(arm["scores"]), bins=10))
            check["psi"] = value
            if value > limits["psi"]:
                check["breaches"].append(f"score PSI {value:.3f} > {limits['psi']}")
        return check

    def _judge(self, arm: dict[str, Any], window_s: float | None = None) -> dict[str, Any]:
        check: dict[str, Any] = {"percent": self.steps[self.index], "count": arm["count"],
                                 "errors": arm["errors"], "fallbacks": arm["fallbacks"],
                                 "error_rate": arm["error_rate"], "p99_ms": arm["p99_ms"], "breaches": []}
        if arm["failed_steps"]:
            check["failed_steps"] = arm["failed_steps"]
        if window_s is not None:
            check["window_s"] = window_s
        if arm["count"] < self.min_requests:
            return check
        limits = self.limits
        if "error_rate" in limits and arm["error_rate"] > limits["error_rate"]:
            check["breaches"].append(f"error rate {arm['error_rate']:.3f} > {limits['error_rate']}")
        if arm["p99_ms"] is not None and "p99_ms" in limits and arm["p99_ms"] > limits["p99_ms"]:
            check["breaches"].append(f"p99 {arm['p99_ms']:.2f} ms > {limits['p99_ms']} ms")
        return check

    def watch(self) -> str:
        """Roll back at once when the arm's recent requests breach the error-rate or p99 limit: the
        requests of the last ``window_s`` seconds of this step, at least ``min_requests`` of them.
        Reads only this process's statistics (no store round trip), so it can run often."""
        if self.status != "running" or not self.driving or not ({"error_rate", "p99_ms"} & set(self.limits)):
            return self.status
        served = self.engine.scene(self.scene)
        recent = served.stats[self.arm].summary(self.step_started, window_s=self.window_s, at_least=self.min_requests)
        check = self._judge(recent, self.window_s)
        if not check["breaches"]:
            return self.status
        self.checks.append(check)
        return self._finish("rolled_back", "; ".join(check["breaches"]) + f" (last {self.window_s:g} s)", 0.0)

    def _still_running(self) -> bool:
        """Refresh the release's heartbeat; False (and its recorded end adopted) when another
        process ended it, or when another process holds its lease (then this one stops driving)."""
        if self.ws is None or self.release_id is None:
            return True
        key = str(self.release_id)
        with self.ws.store.begin() as conn:
            lease = leases.get(conn, ROLLOUT_LEASE, key)
            if lease is not None and lease.owner != leases.this_process():
                self.driving = False
                log.warning("rollout of %s/%s (release %s): %s drives it now; this server stops", self.scene,
                            self.arm, self.release_id, lease.owner)
                return False
            result = conn.execute(scene_releases.update().where(
                scene_releases.c.id == self.release_id, scene_releases.c.status == "running").values(
                    updated_at=now_ms()))
        if result.rowcount:
            if (ROLLOUT_LEASE, key) not in leases.held(self.ws.store):  # e.g. after a takeover's recovery pass
                leases.keep(self.ws.store, ROLLOUT_LEASE, key, lease_ttl_s(self.ws))
            return True
        self._ended_elsewhere()
        return False

    def advance(self) -> str:
        """Roll back on a breach, else move to the next step once enough requests were seen."""
        if self.status != "running" or not self._still_running():
            return self.status
        check = self.evaluate()
        if check["breaches"]:
            self.checks.append(check)
            return self._finish("rolled_back", "; ".join(check["breaches"]), 0.0)
        if check["count"] < self.min_requests:
            return self.status
        self.checks.append(check)
        if self.index + 1 >= len(self.steps):
            return self._finish("promoted", "all canary steps passed", self.steps[-1])
        self.index += 1
        self._begin_step()
        return self.status

    def stop(self, reason: str) -> str:
        """End a running rollout at 0 % (a timeout, a server shutting down)."""
        if self.status != "running" or not self.driving:
            return self.status
        return self._finish("stopped", reason, 0.0)

    def record_takeover(self, reason: str) -> bool:
        """Record in the release that this process took it over, when and why (``takeover_log``);
        False when it is no longer running."""
        assert self.ws is not None and self.release_id is not None  # a resumed release
        self.takeover_log.append({"at": now_ms(), "by": leases.this_process(), "reason": reason})
        return update_release(self.ws, self.release_id, self.scene, self.arm, self.percent, "running", "",
                              self._details())

    def free_lease(self) -> str:
        """Stop driving without ending the rollout (this server shuts down): its lease is freed, so
        another server continues it from the recorded step at once, or the first server to start
        when none runs. A rollout without a store (nothing another server could read) stops at 0 %."""
        if self.status != "running" or not self.driving:
            return self.status
        if self.ws is None or self.release_id is None:
            return self.stop("the server running the rollout shut down")
        self.driving = False
        try:
            if free_rollout_lease(self.ws, self.release_id):
                log.info("rollout of %s/%s (release %s): lease freed at %g %% for another server to continue",
                         self.scene, self.arm, self.release_id, self.percent)
        except StoreUnavailable as exc:  # then the lease expires by itself
            log.warning("rollout of %s/%s (release %s): could not free its lease: %s", self.scene, self.arm,
                        self.release_id, exc)
        return self.status

    def _finish(self, status: str, reason: str, percent: float) -> str:
        traffic = self._traffic()
        if percent == 0.0:
            traffic.set_canary(0.0)  # off this process at once; recording comes second
        if self.ws is not None:
            assert self.release_id is not None  # recorded by the first step (or the row it resumed)
            if not update_release(self.ws, self.release_id, self.scene, self.arm, percent, status, reason,
                                  self._details()):
                self._ended_elsewhere()
                return self.status
        self.status, self.reason = status, reason
        traffic.set_canary(percent)
        return status

    def run(self, *, interval: float = 1.0, timeout: float = 600.0, stop: threading.Event | None = None) -> str:
        """Advance every ``interval`` s, and ``watch`` every ``WATCH_S`` s in between, until the
        rollout ends. Past ``timeout`` (without enough requests to judge the last step) it stops at
        0 %. A set ``stop`` event (the server shutting down) frees its lease for another server
        (``free_lease``). A resumed rollout keeps the deadline it was started with."""
        stop = stop or threading.Event()
        if self.deadline_ms is None:
            self.deadline_ms = now_ms() + int(1000 * timeout)
        if interval != self.heartbeat_s:
            self.heartbeat_s = float(interval)
            if self.ws is not None and self.release_id is not None:
                update_release(self.ws, self.release_id, self.scene, self.arm, self.percent, "running", "",
                               self._details())
        tick = min(interval, WATCH_S)
        next_check = time.monotonic() + interval
        while not stop.wait(tick):
            try:
                if self.watch() != "running" or not self.driving:
                    return self.status
                if time.monotonic() < next_check:
                    continue
                next_check = time.monotonic() + interval
                if self.advance() != "running" or not self.driving:
                    return self.status
            except StoreUnavailable as exc:  # a locked or unreachable store: try again next time
                log.warning("rollout of %s/%s: %s", self.scene, self.arm, exc)
            if now_ms() >= self.deadline_ms:
                return self.stop(f"timed out at {self.percent:g} % with fewer than {self.min_requests} requests "
                                 f"to judge the step (the rollout's deadline passed)")
        return self.free_lease()


class RolloutRunner:
    """Canary rollouts in background threads of one serving process, at most one per scene.

    ``fleet`` (the fleet's series, when this server writes its own) makes step checks judge every
    server's requests; without it a rollout judges the requests of ``engine``, this process's.
    ``adopt`` continues the running rollouts whose process died (their lease is dead); a server
    calls it every few seconds (``release_http`` does), so a rollout survives its server.
    """

    def __init__(self, ws: Workspace, fleet: FleetSeries | None = None) -> None:
        self.ws = ws
        self.fleet = fleet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: dict[str, tuple[CanaryRollout, threading.Thread]] = {}

    def start(self, engine: Any, scene: str, arm: str, *, steps: Sequence[Any] = (5, 25, 50, 100),
              min_requests: int | None = None, interval_s: float = 5.0, timeout_s: float = 3600.0) -> CanaryRollout:
        """Record the first step and run the rest in a thread; Conflict while one is running."""
        if not interval_s > 0:
            raise InvalidInput(f"interval_s must be positive, not {interval_s}", {"field": "interval_s"})
        if not timeout_s > 0:
            raise InvalidInput(f"timeout_s must be positive, not {timeout_s}", {"field": "timeout_s"})
        with self._lock:
            if self._stop.is_set():
                raise Conflict("the server is shutting down; start the rollout on a running server")
            rollout = CanaryRollout(self.ws, engine, scene, arm, steps=steps, min_requests=min_requests,
                                    heartbeat_s=interval_s, fleet=self.fleet, timeout_s=timeout_s)
            self._launch(rollout, interval_s, timeout_s)
        return rollout

    def _launch(self, rollout: CanaryRollout, interval_s: float, timeout_s: float) -> None:
        thread = threading.Thread(target=self._run, args=(rollout, interval_s, timeout_s),
                                  name=f"shipyard-rollout-{rollout.scene}", daemon=True)
        self._threads[rollout.scene] = (rollout, thread)
        thread.start()

    def _run(self, rollout: CanaryRollout, interval_s: float, timeout_s: float) -> None:
        try:
            status = rollout.run(interval=interval_s, timeout=timeout_s, stop=self._stop)
            if rollout.driving:
                log.info("rollout of %s/%s ended %s: %s", rollout.scene, rollout.arm, status, rollout.reason)
        except Exception as exc:  # an arm gone from a new scene version, a bug: never leave it half-way
            log.exception("rollout of %s/%s failed", rollout.scene, rollout.arm)
            try:
                rollout.stop(f"the rollout failed: {type(exc).__name__}: {exc}")
            except Exception:
                log.exception("rollout of %s/%s: could not record its end", rollout.scene, rollout.arm)

    def adopt(self, engine: Any) -> list[int]:
        """Take over and continue every running rollout whose driving process is gone (its lease is
        dead, or it has none); returns the release ids taken over. Two servers never both take one
        (the lease moves by compare-and-set)."""
        if self._stop.is_set() or self.ws is None:
            return []
        runner = self

        class _Rollouts:
            kind = ROLLOUT_LEASE

            def open_keys(self, conn: Any) -> list[str]:
                query = sa.select(scene_releases.c.id).where(scene_releases.c.status == "running")
                return [str(r.id) for r in conn.execute(query)]

            def recover(self, key: str, lease: leases.Lease, reason: str) -> str:
                return runner._resume(engine, int(key), reason)

        done = leases.recover(self.ws.store, [_Rollouts()], ttl_s=lease_ttl_s(self.ws))
        return [int(r.key) for r in done if r.outcome == "resumed"]

    def _resume(self, engine: Any, release_id: int, reason: str) -> str:
        row = release_row(self.ws, release_id)
        if row is None or row.status != "running":
            return "finished"
        details = dict(row.details or {})
        with self._lock:
            if self._stop.is_set():  # shutting down: leave it to another server at once
                free_rollout_lease(self.ws, release_id)
                return "abandoned"
            current = self._threads.get(row.scene)
            if current is not None and current[1].is_alive() and current[0].release_id == release_id:
                return "resumed"  # already ours (a lease that went quiet for a moment)
            rollout = CanaryRollout.resume(self.ws, engine, row, fleet=self.fleet)
            if not rollout.record_takeover(reason):
                return "finished"  # ended by another process meanwhile
            interval = float(details.get("heartbeat_s") or 5.0)
            remaining = max(1.0, ((rollout.deadline_ms or now_ms()) - now_ms()) / 1000)
            self._launch(rollout, interval, remaining)
        log.warning("rollout of %s/%s (release %s): continued by this server at %g %% (%s)", row.scene, row.arm,
                    release_id, float(row.percent), reason)
        return "resumed"

    def running(self) -> list[CanaryRollout]:
        with self._lock:
            return [r for r, t in self._threads.values() if t.is_alive()]

    def stop_all(self, timeout: float = 30.0) -> None:
        """Stop every rollout thread and wait for them: each frees its lease, leaving its rollout
        running for another server to continue (see ``CanaryRollout.free_lease``)."""
        self._stop.set()
        with self._lock:
            threads = [t for _, t in self._threads.values()]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
