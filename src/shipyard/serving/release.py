"""Release checks: stress test, shadow comparison and progressive delivery with automatic rollback.

- ``stress_test(call, records, rate, count)`` fires ``count`` calls at ``rate``/s from a small
  thread pool and reports latency percentiles; ``stress_test_model`` runs it on a registered
  version and records the result on it through ``registry.record_stress_test`` (the version's
  ``validation["stress_test"]`` plus one audit event ``model.stress_tested``).
- ``shadow_report`` compares live and shadow outputs of a scene: the distribution of score
  differences and the agreement of decisions at a cut-off.
- ``CanaryRollout`` moves an arm through canary steps (e.g. 5 → 25 → 50 → 100 %). At each step it
  compares the arm with control over the requests since the step began and rolls back to 0 % by
  itself when the arm's error rate, p99 latency or score PSI against control breaches the scene's
  ``limits`` (``error_rate``, ``p99_ms``, ``psi``). Between step checks it watches the error rate
  and p99 of the arm's recent requests (``watch``: the last ``window_s`` seconds of the step, and
  at least ``min_requests`` of them), so a breach rolls back within a fraction of a second, not at
  the next step check. Error rate and p99 are never judged on fewer than ``min_requests``
  requests. A fallback answer is a failure of the arm (see ``arms``). A release is a row in
  ``scene_releases``, updated at every step; a scene has at most one running release.
- ``RolloutRunner`` runs rollouts in background threads of a serving process, where the traffic
  they judge is; ``rollout_status`` and ``abort_rollout`` read and end a release through the
  metadata store, so any process can watch or abort a rollout another one runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import sqlalchemy as sa

from shipyard.errors import Conflict, InvalidInput, NotFound, ShipyardError, StoreUnavailable
from shipyard.store.database import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import scene_releases, scene_versions, scenes

log = logging.getLogger(__name__)

FINISHED = ("promoted", "rolled_back", "aborted", "stopped", "abandoned")
"""Release statuses a rollout ends in; ``running`` is the only live one (``manual`` marks a share
set by hand). ``abandoned``: the process running it stopped sending heartbeats (it was killed)."""

WATCH_S = 0.25
"""How often a running rollout watches its arm's recent requests for an error-rate or p99 breach."""

WINDOW_S = 10.0
"""The sliding window the watch judges: the arm's requests of the last ten seconds of the step (at
least ``min_requests`` of them, the newest, when fewer arrived in that time)."""

STALE_AFTER_S = 30.0
"""A running release whose heartbeat (``updated_at``) is older than this, and than three of its
step checks, is abandoned: its process is gone, and nobody judges the arm any more."""


def _percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray(samples, dtype=float) * 1000
    if not arr.size:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {"p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()), "mean_ms": float(arr.mean())}


# a stress test holds a server worker for its whole run
MAX_STRESS_SECONDS = 3600


def stress_test(call: Callable[[Any], Any], records: Sequence[Any], *, rate: float = 200.0, count: int = 1000,
                workers: int = 4) -> dict[str, Any]:
    """Open-loop load: call ``call(record)`` ``count`` times at ``rate``/s; latency from schedule time."""
    if not records:
        raise InvalidInput("stress test needs at least one example record", {"field": "records"})
    if not rate > 0:
        raise InvalidInput(f"rate must be a positive number of calls per second, not {rate}", {"field": "rate"})
    if count <= 0:
        raise InvalidInput(f"count must be a positive number of calls, not {count}", {"field": "count"})
    if count / rate > MAX_STRESS_SECONDS:
        raise InvalidInput(f"{count} calls at {rate:g}/s would take {count / rate:.0f} s; a stress test runs at most "
                           f"{MAX_STRESS_SECONDS} s: raise rate or lower count", {"field": "rate", "count": count})
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.perf_counter()

    def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            call(records[i % len(records)])
            ok = True
        except ShipyardError:
            ok = False
        elapsed = time.perf_counter() - due
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                errors += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    return {"target_rate": rate, "achieved_rate": count / wall, "count": count, "errors": errors,
            **_percentiles(latencies)}


def stress_test_model(ws: Any, name: str, version: int | str, *, rate: float = 200.0, count: int = 1000,
                      records: Sequence[dict[str, Any]] | None = None, actor: str | None = None) -> dict[str, Any]:
    """Stress-test a registered version on its input example (or ``records``) and record the figures."""
    from shipyard.serving.engine import ServedModel

    mv = ws.registry.get_version(name, str(version))
    model = ws.registry.load(name, str(mv.version))
    served = ServedModel(name, str(mv.version), mv.version, model)
    if records is None:
        example = model.input_example
        if example is None:
            raise InvalidInput(f"model {name} v{mv.version} has no input example; pass records=", {"field": "records"})
        records = example.to_dict(orient="records") if hasattr(example, "to_dict") else list(example)
    result = stress_test(lambda rec: served.predict([rec]), list(records), rate=rate, count=count)
    # the registry stores the figures on the version and writes the one audit event
    ws.registry.record_stress_test(name, mv.version, result, actor=actor)
    return {"name": mv.name, "version": mv.version, **result}


def shadow_report(engine: Any, scene: str, *, cutoff: float = 0.5, field: str | None = None) -> dict[str, Any]:
    """Live vs shadow: score differences (quantiles) and decision agreement at ``cutoff``."""
    served = engine.scene(scene)
    pairs = list(served.shadow_pairs)
    arm = served.compiled.traffic.shadow_arm
    if not pairs:
        return {"scene": scene, "shadow_arm": arm, "count": 0}
    key = field or next((k for k, v in pairs[0][1].items() if type(v) in (int, float)), None)
    live = np.array([p[1].get(key) for p in pairs if _num(p[1].get(key)) and _num(p[2].get(key))], dtype=float)
    shadow = np.array([p[2].get(key) for p in pairs if _num(p[1].get(key)) and _num(p[2].get(key))], dtype=float)
    out: dict[str, Any] = {"scene": scene, "shadow_arm": arm, "count": len(pairs), "field": key, "cutoff": cutoff}
    if live.size:
        diff = shadow - live
        out["difference"] = {q: float(np.quantile(diff, p)) for q, p in
                             (("min", 0), ("p05", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75),
                              ("p95", 0.95), ("max", 1.0))}
        out["mean_abs_difference"] = float(np.abs(diff).mean())
        out["agreement_at_cutoff"] = float(np.mean((live >= cutoff) == (shadow >= cutoff)))
        out["live_above_cutoff"] = float(np.mean(live >= cutoff))
        out["shadow_above_cutoff"] = float(np.mean(shadow >= cutoff))
    others = [k for k, v in pairs[0][1].items() if k != key and isinstance(v, str)]
    out["field_agreement"] = {k: float(np.mean([p[1].get(k) == p[2].get(k) for p in pairs])) for k in others}
    return out


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def scene_status(engine: Any, scene: str, since: float = 0.0) -> dict[str, Any]:
    """Per arm: requests, errors (fallbacks included), latency and queue percentiles, failed steps;
    circuits that are not closed (``{arm: {dependency: state}}``); canary and shadow."""
    served = engine.scene(scene)
    traffic = served.compiled.traffic
    arms = {}
    for arm, stats in served.stats.items():
        summary = stats.summary(since)
        summary.pop("scores")
        arms[arm] = summary
    mirrored = {}
    for arm, stats in served.shadow_stats.items():
        summary = stats.summary(since)
        summary.pop("scores")
        if summary["count"]:
            mirrored[arm] = summary
    return {"scene": scene, "version": served.version, "models": served.compiled.models,
            "arms": arms, "shadow_calls": mirrored, "circuits": served.guard.breakers.states(),
            "threads_per_arm": served.threads,
            "canary": {"arm": traffic.canary_arm, "percent": traffic.canary_percent},
            "shadow": traffic.shadow_arm, "limits": served.compiled.limits}


def _newest_release(conn: Any, scene: str) -> Any:
    query = (sa.select(scene_releases).where(scene_releases.c.scene == scene)
             .order_by(scene_releases.c.id.desc()).limit(1))
    return conn.execute(query).first()


def _stale_for_ms(row: Any, now: int) -> int | None:
    """How long a running release has gone without a heartbeat past its limit; None while fresh."""
    if row.status != "running":
        return None
    every = float((row.details or {}).get("heartbeat_s") or 0.0)
    limit_ms = int(1000 * max(STALE_AFTER_S, 3 * every))
    silent = now - int(row.updated_at)
    return silent if silent > limit_ms else None


def _abandon(conn: Any, ws: Any, row: Any, now: int) -> bool:
    """Record a stale running release as abandoned at 0 % (in ``conn``'s transaction)."""
    reason = (f"abandoned: no heartbeat for {(now - int(row.updated_at)) / 1000:.0f} s from the server running "
              f"it (at {row.percent:g} %); the arm is back to 0 %")
    result = conn.execute(scene_releases.update().where(
        scene_releases.c.id == row.id, scene_releases.c.status == "running",
        scene_releases.c.updated_at == row.updated_at).values(
            status="abandoned", percent=0.0, reason=reason, updated_at=now))
    if result.rowcount == 0:  # it moved on meanwhile: not stale after all
        return False
    record_event(conn, ws.user, "scene.release_abandoned", f"scene:{row.scene}",
                 {"arm": row.arm, "percent": 0.0, "reason": reason, "release": row.id})
    log.warning("release %s of scene %s: %s", row.id, row.scene, reason)
    return True


def abandon_stale_releases(ws: Any) -> list[int]:
    """Abandon every running release whose server stopped sending heartbeats; returns their ids.
    Serving processes call this on their hot-swap poll, so a rollout whose server was killed ends
    (and its arm's share drops to 0 %) without anyone having to abort it."""
    now = now_ms()
    with ws.store.read() as conn:
        rows = list(conn.execute(sa.select(scene_releases).where(scene_releases.c.status == "running")))
    stale = [r for r in rows if _stale_for_ms(r, now) is not None]
    if not stale:
        return []
    done = []
    with ws.store.begin() as conn:
        for row in stale:
            if _abandon(conn, ws, row, now):
                done.append(int(row.id))
    return done


def _insert_release(ws: Any, scene: str, arm: str, percent: float, status: str, reason: str,
                    details: dict[str, Any]) -> int:
    """A new release row; refused while the scene's newest release is still running, since the
    newest row is the share every worker applies. A running release gone stale is abandoned first."""
    now = now_ms()
    with ws.store.begin() as conn:
        # lock the scene so two processes cannot both pass the check (SQLite's BEGIN IMMEDIATE already does)
        conn.execute(sa.select(scenes.c.name).where(scenes.c.name == scene).with_for_update())
        newest = _newest_release(conn, scene)
        if newest is not None and _stale_for_ms(newest, now) is not None:
            _abandon(conn, ws, newest, now)
            newest = _newest_release(conn, scene)
        if newest is not None and newest.status == "running":
            raise Conflict(
                f"scene {scene!r} has a running rollout (release {newest.id}, arm {newest.arm!r} at "
                f"{newest.percent:g} %); watch it with GET /api/v1/scenes/{scene}/rollout or end it with "
                f"DELETE /api/v1/scenes/{scene}/rollout (shipyard scenes rollout-abort {scene})",
                {"scene": scene, "release": newest.id})
        result = conn.execute(scene_releases.insert().values(
            scene=scene, arm=arm, percent=percent, status=status, reason=reason, details=details,
            started_at=now, updated_at=now, actor=ws.user))
        release_id = int(result.inserted_primary_key[0])
        record_event(conn, ws.user, f"scene.release_{status}", f"scene:{scene}",
                     {"arm": arm, "percent": percent, "reason": reason, "release": release_id})
    return release_id


def _update_release(ws: Any, release_id: int, scene: str, arm: str, percent: float, status: str, reason: str,
                    details: dict[str, Any] | None = None) -> bool:
    """Move a running release on; False when it is no longer running (ended by another process)."""
    values: dict[str, Any] = {"percent": percent, "status": status, "reason": reason, "updated_at": now_ms()}
    if details is not None:
        values["details"] = details
    with ws.store.begin() as conn:
        # conditional on 'running', so an abort recorded meanwhile is never overwritten
        result = conn.execute(scene_releases.update().where(
            scene_releases.c.id == release_id, scene_releases.c.status == "running").values(**values))
        if result.rowcount == 0:
            return False
        record_event(conn, ws.user, f"scene.release_{status}", f"scene:{scene}",
                     {"arm": arm, "percent": percent, "reason": reason, "release": release_id})
    return True


def _release_view(row: Any) -> dict[str, Any]:
    details = dict(row.details or {})
    view = {"release": row.id, "scene": row.scene, "arm": row.arm, "status": row.status,
            "percent": float(row.percent), "reason": row.reason, "steps": details.get("steps", []),
            "checks": details.get("checks", []), "min_requests": details.get("min_requests"),
            "started_at": row.started_at, "updated_at": row.updated_at, "actor": row.actor}
    if row.status == "running":
        # the running server refreshes updated_at on every step check; a silent one is likely gone
        now = now_ms()
        view["heartbeat_age_s"] = round((now - int(row.updated_at)) / 1000, 3)
        view["stale"] = _stale_for_ms(row, now) is not None
    return view


def _scene_exists(conn: Any, scene: str) -> None:
    if conn.execute(sa.select(scenes.c.name).where(scenes.c.name == scene)).first() is None:
        raise NotFound(f"scene {scene!r} does not exist; apply it with 'shipyard scenes apply FILE'",
                       {"scene": scene})


def rollout_status(ws: Any, scene: str) -> dict[str, Any]:
    """The scene's newest release (status, percent, steps, checks, reason), read from the store."""
    with ws.store.read() as conn:
        _scene_exists(conn, scene)
        row = _newest_release(conn, scene)
    if row is None:
        raise NotFound(f"scene {scene!r} has no release yet; start one with POST /api/v1/scenes/{scene}/rollout",
                       {"scene": scene})
    return _release_view(row)


def abort_rollout(ws: Any, scene: str, *, engine: Any = None, reason: str = "") -> dict[str, Any]:
    """End the scene's running rollout at 0 %. The process running it stops on its next step check;
    ``engine`` (when it serves the scene) drops the canary at once, the others on their next poll."""
    with ws.store.read() as conn:
        _scene_exists(conn, scene)
        row = _newest_release(conn, scene)
    if row is None or row.status != "running":
        state = "has no release" if row is None else f"has no running rollout (release {row.id} is {row.status})"
        raise Conflict(f"scene {scene!r} {state}; nothing to abort", {"scene": scene})
    reason = reason or f"aborted by {ws.user}"
    if not _update_release(ws, row.id, scene, row.arm, 0.0, "aborted", reason):
        raise Conflict(f"release {row.id} of scene {scene!r} ended while it was being aborted; see its status",
                       {"scene": scene, "release": row.id})
    served = engine.served_scenes().get(scene) if engine is not None else None
    if served is not None and served.compiled.traffic.canary_arm == row.arm:
        served.compiled.traffic.set_canary(0.0)
    return rollout_status(ws, scene)


def latest_canaries(ws: Any, served: dict[str, int] | None = None) -> dict[str, tuple[str, float]]:
    """The canary share each scene's newest release row records: ``{scene: (arm, percent)}``.

    Every server worker applies these on its hot-swap poll, so a canary step, promotion or rollback
    decided in one worker reaches all of them. With ``served`` (``{scene: version}``), a finished
    release recorded before that scene version was applied is left out: applying a new version
    starts from the share its own document sets (``traffic.canary``), not from an older release's.
    A running rollout keeps governing the share across versions.
    """
    newest = sa.select(sa.func.max(scene_releases.c.id)).group_by(scene_releases.c.scene)
    query = sa.select(scene_releases.c.scene, scene_releases.c.arm, scene_releases.c.percent,
                      scene_releases.c.status, scene_releases.c.updated_at).where(scene_releases.c.id.in_(newest))
    with ws.store.read() as conn:
        rows = list(conn.execute(query))
        applied: dict[str, int] = {}
        if served:
            versions = sa.select(scene_versions.c.scene, scene_versions.c.version, scene_versions.c.created_at) \
                .where(scene_versions.c.scene.in_(list(served)))
            applied = {r.scene: int(r.created_at) for r in conn.execute(versions) if served.get(r.scene) == r.version}
    return {r.scene: (r.arm, float(r.percent)) for r in rows
            if r.status == "running" or int(r.updated_at) >= applied.get(r.scene, 0)}


def list_releases(ws: Any, scene: str) -> list[dict[str, Any]]:
    query = sa.select(scene_releases).where(scene_releases.c.scene == scene).order_by(scene_releases.c.id)
    with ws.store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def set_canary(ws: Any, engine: Any, scene: str, percent: float, *, arm: str | None = None) -> dict[str, Any]:
    served = engine.scene(scene)
    traffic = served.compiled.traffic
    arm = arm or traffic.canary_arm
    if arm is None or arm not in served.compiled.plans or arm == "control":
        raise InvalidInput(f"scene {scene!r} has no canary arm {arm!r}; name one of its arms "
                           f"{[a for a in served.compiled.plans if a != 'control']}", {"field": "arm"})
    if ws is not None:
        _insert_release(ws, scene, arm, percent, "manual", "", {})  # refused during a running rollout
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
    """

    def __init__(self, ws: Any, engine: Any, scene: str, arm: str, *, steps: Sequence[float] = (5, 25, 50, 100),
                 min_requests: int | None = None, heartbeat_s: float = 1.0, window_s: float = WINDOW_S) -> None:
        served = engine.scene(scene)
        if arm not in served.compiled.plans or arm == "control":
            raise InvalidInput(f"scene {scene!r} has no arm {arm!r} to roll out; its arms are "
                               f"{[a for a in served.compiled.plans if a != 'control']}", {"field": "arm"})
        if min_requests is not None and int(min_requests) < 1:
            raise InvalidInput(f"min_requests must be at least 1, not {min_requests}", {"field": "min_requests"})
        self.ws, self.engine, self.scene, self.arm = ws, engine, scene, arm
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
        self._begin_step()

    @property
    def percent(self) -> float:
        if self.status == "running":
            return self.steps[self.index]
        return self.steps[-1] if self.status == "promoted" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release_id, "scene": self.scene, "arm": self.arm, "status": self.status,
                "percent": self.percent, "reason": self.reason, "steps": self.steps, "checks": self.checks,
                "min_requests": self.min_requests}

    def _details(self) -> dict[str, Any]:
        return {"steps": self.steps, "checks": self.checks, "min_requests": self.min_requests,
                "heartbeat_s": self.heartbeat_s}

    def _traffic(self) -> Any:
        return self.engine.scene(self.scene).compiled.traffic

    def _begin_step(self) -> None:
        percent = self.steps[self.index]
        if self.ws is not None:
            if self.release_id is None:
                self.release_id = _insert_release(self.ws, self.scene, self.arm, percent, "running", "",
                                                  self._details())
            elif not _update_release(self.ws, self.release_id, self.scene, self.arm, percent, "running", "",
                                     self._details()):
                self._ended_elsewhere()
                return
        traffic = self._traffic()
        traffic.canary_arm = self.arm
        traffic.set_canary(percent)
        self.step_started = time.time()

    def _ended_elsewhere(self) -> None:
        """Adopt the recorded end of this release (an abort from any process) and its share."""
        with self.ws.store.read() as conn:
            row = conn.execute(sa.select(scene_releases).where(scene_releases.c.id == self.release_id)).first()
        self.status = row.status if row is not None else "aborted"
        self.reason = row.reason if row is not None else "the release row is gone"
        self._traffic().set_canary(float(row.percent) if row is not None else 0.0)

    def evaluate(self) -> dict[str, Any]:
        """Compare the arm with control over the whole step; the breaches found (if any). Error rate
        and p99 are judged once the step has ``min_requests`` of the arm's requests, PSI once both
        sides have 20 scores (fallback answers carry none)."""
        from shipyard.risk.metrics import psi

        served = self.engine.scene(self.scene)
        arm = served.stats[self.arm].summary(self.step_started)
        control = served.stats["control"].summary(self.step_started)
        check = self._judge(arm)
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
        if self.status != "running" or not ({"error_rate", "p99_ms"} & set(self.limits)):
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
        process ended it."""
        if self.ws is None or self.release_id is None:
            return True
        with self.ws.store.begin() as conn:
            result = conn.execute(scene_releases.update().where(
                scene_releases.c.id == self.release_id, scene_releases.c.status == "running").values(
                    updated_at=now_ms()))
        if result.rowcount:
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
        if self.status != "running":
            return self.status
        return self._finish("stopped", reason, 0.0)

    def _finish(self, status: str, reason: str, percent: float) -> str:
        traffic = self._traffic()
        if percent == 0.0:
            traffic.set_canary(0.0)  # off this process at once; recording comes second
        if self.ws is not None and not _update_release(self.ws, self.release_id, self.scene, self.arm, percent,
                                                       status, reason, self._details()):
            self._ended_elsewhere()
            return self.status
        self.status, self.reason = status, reason
        traffic.set_canary(percent)
        return status

    def run(self, *, interval: float = 1.0, timeout: float = 600.0, stop: threading.Event | None = None) -> str:
        """Advance every ``interval`` s, and ``watch`` every ``WATCH_S`` s in between, until the
        rollout ends. Past ``timeout`` (without enough requests to judge the last step) it stops at
        0 %; so does a set ``stop`` event."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout
        if interval != self.heartbeat_s:
            self.heartbeat_s = float(interval)
            if self.ws is not None and self.release_id is not None:
                _update_release(self.ws, self.release_id, self.scene, self.arm, self.percent, "running", "",
                                self._details())
        tick = min(interval, WATCH_S)
        next_check = time.monotonic() + interval
        while not stop.wait(tick):
            try:
                if self.watch() != "running":
                    return self.status
                if time.monotonic() < next_check:
                    continue
                next_check = time.monotonic() + interval
                if self.advance() != "running":
                    return self.status
            except StoreUnavailable as exc:  # a locked or unreachable store: try again next time
                log.warning("rollout of %s/%s: %s", self.scene, self.arm, exc)
            if time.monotonic() >= deadline:
                return self.stop(f"timed out after {timeout:g} s at {self.percent:g} % with fewer than "
                                 f"{self.min_requests} requests to judge the step")
        return self.stop("the server running the rollout shut down")


class RolloutRunner:
    """Canary rollouts in background threads of one serving process, at most one per scene.

    The rollout judges the requests of ``engine``, the engine of this process; with several server
    workers that is the share of traffic this worker accepts, a fair sample when connections are
    spread over the workers. Every step is recorded, so every worker follows the share.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
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
                                    heartbeat_s=interval_s)
            thread = threading.Thread(target=self._run, args=(rollout, interval_s, timeout_s),
                                      name=f"shipyard-rollout-{scene}", daemon=True)
            self._threads[scene] = (rollout, thread)
            thread.start()
        return rollout

    def _run(self, rollout: CanaryRollout, interval_s: float, timeout_s: float) -> None:
        try:
            status = rollout.run(interval=interval_s, timeout=timeout_s, stop=self._stop)
            log.info("rollout of %s/%s ended %s: %s", rollout.scene, rollout.arm, status, rollout.reason)
        except Exception as exc:  # an arm gone from a new scene version, a bug: never leave it half-way
            log.exception("rollout of %s/%s failed", rollout.scene, rollout.arm)
            try:
                rollout.stop(f"the rollout failed: {type(exc).__name__}: {exc}")
            except Exception:
                log.exception("rollout of %s/%s: could not record its end", rollout.scene, rollout.arm)

    def running(self) -> list[CanaryRollout]:
        with self._lock:
            return [r for r, t in self._threads.values() if t.is_alive()]

    def stop_all(self, timeout: float = 30.0) -> None:
        """Stop every rollout thread (each records 'stopped' at 0 %) and wait for them."""
        self._stop.set()
        with self._lock:
            threads = [t for _, t in self._threads.values()]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
