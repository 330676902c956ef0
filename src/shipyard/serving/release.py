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
  ``limits`` (``error_rate``, ``p99_ms``, ``psi``). Each step is a row in ``scene_releases``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import sqlalchemy as sa

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.store.database import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import scene_releases


def _percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray(samples, dtype=float) * 1000
    if not arr.size:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {"p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()), "mean_ms": float(arr.mean())}


def stress_test(call: Callable[[Any], Any], records: Sequence[Any], *, rate: float = 200.0, count: int = 1000,
                workers: int = 4) -> dict[str, Any]:
    """Open-loop load: call ``call(record)`` ``count`` times at ``rate``/s; latency from schedule time."""
    if not records:
        raise InvalidInput("stress test needs at least one example record", {"field": "records"})
    if rate <= 0 or count <= 0:
        raise InvalidInput("rate and count must be positive", {"field": "rate"})
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
                      records: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
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
    ws.registry.record_stress_test(name, mv.version, result)
    return result


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
    served = engine.scene(scene)
    traffic = served.compiled.traffic
    arms = {}
    for arm, stats in served.stats.items():
        summary = stats.summary(since)
        summary.pop("scores")
        arms[arm] = summary
    return {"scene": scene, "version": served.version, "models": served.compiled.models,
            "arms": arms, "canary": {"arm": traffic.canary_arm, "percent": traffic.canary_percent},
            "shadow": traffic.shadow_arm, "limits": served.compiled.limits}


def _release_row(ws: Any, scene: str, arm: str, percent: float, status: str, reason: str,
                 details: dict[str, Any], release_id: int | None = None) -> int:
    now = now_ms()
    with ws.store.begin() as conn:
        if release_id is None:
            result = conn.execute(scene_releases.insert().values(
                scene=scene, arm=arm, percent=percent, status=status, reason=reason, details=details,
                started_at=now, updated_at=now, actor=ws.user))
            release_id = int(result.inserted_primary_key[0])
        else:
            conn.execute(scene_releases.update().where(scene_releases.c.id == release_id).values(
                percent=percent, status=status, reason=reason, details=details, updated_at=now))
        record_event(conn, ws.user, f"scene.release_{status}", f"scene:{scene}",
                     {"arm": arm, "percent": percent, "reason": reason, "release": release_id})
    return release_id


def latest_canaries(ws: Any) -> dict[str, tuple[str, float]]:
    """The canary share each scene's newest release row records: ``{scene: (arm, percent)}``.

    Every server worker applies these on its hot-swap poll, so a canary step, promotion or rollback
    decided in one worker reaches all of them.
    """
    newest = sa.select(sa.func.max(scene_releases.c.id)).group_by(scene_releases.c.scene)
    query = sa.select(scene_releases.c.scene, scene_releases.c.arm, scene_releases.c.percent).where(
        scene_releases.c.id.in_(newest))
    with ws.store.read() as conn:
        return {r.scene: (r.arm, float(r.percent)) for r in conn.execute(query)}


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
    traffic.canary_arm = arm
    traffic.set_canary(percent)
    if ws is not None:
        _release_row(ws, scene, arm, percent, "manual", "", {})
    return scene_status(engine, scene)


class CanaryRollout:
    """Progressive delivery of one arm; call ``advance()`` periodically or ``run()`` to the end."""

    def __init__(self, ws: Any, engine: Any, scene: str, arm: str, *, steps: Sequence[float] = (5, 25, 50, 100),
                 min_requests: int | None = None) -> None:
        served = engine.scene(scene)
        if arm not in served.compiled.plans or arm == "control":
            raise InvalidInput(f"scene {scene!r} has no arm {arm!r} to roll out", {"field": "arm"})
        self.ws, self.engine, self.scene, self.arm = ws, engine, scene, arm
        self.steps = [float(s) for s in steps]
        self.limits = dict(served.compiled.limits)
        self.min_requests = int(min_requests or self.limits.get("min_requests", 50))
        self.index = 0
        self.status = "running"
        self.reason = ""
        self.checks: list[dict[str, Any]] = []
        self.release_id: int | None = None
        self._begin_step()

    @property
    def percent(self) -> float:
        return self.steps[self.index] if self.status == "running" else (100.0 if self.status == "promoted" else 0.0)

    def _begin_step(self) -> None:
        traffic = self.engine.scene(self.scene).compiled.traffic
        traffic.canary_arm = self.arm
        traffic.set_canary(self.steps[self.index])
        self.step_started = time.time()
        if self.ws is not None:
            self.release_id = _release_row(self.ws, self.scene, self.arm, self.steps[self.index], "running", "",
                                           {"steps": self.steps, "checks": self.checks}, self.release_id)

    def evaluate(self) -> dict[str, Any]:
        """Compare the arm with control since the step began; the breaches found (if any)."""
        from shipyard.risk.metrics import psi

        served = self.engine.scene(self.scene)
        arm = served.stats[self.arm].summary(self.step_started)
        control = served.stats["control"].summary(self.step_started)
        check: dict[str, Any] = {"percent": self.steps[self.index], "count": arm["count"],
                                 "error_rate": arm["error_rate"], "p99_ms": arm["p99_ms"], "breaches": []}
        limits = self.limits
        if arm["count"] and "error_rate" in limits and arm["error_rate"] > limits["error_rate"]:
            check["breaches"].append(f"error rate {arm['error_rate']:.3f} > {limits['error_rate']}")
        if arm["p99_ms"] is not None and "p99_ms" in limits and arm["p99_ms"] > limits["p99_ms"]:
            check["breaches"].append(f"p99 {arm['p99_ms']:.2f} ms > {limits['p99_ms']} ms")
        if "psi" in limits and len(arm["scores"]) >= 20 and len(control["scores"]) >= 20:
            value = float(psi(np.asarray(control["scores"]), np.asarray(arm["scores"]), bins=10))
            check["psi"] = value
            if value > limits["psi"]:
                check["breaches"].append(f"score PSI {value:.3f} > {limits['psi']}")
        return check

    def advance(self) -> str:
        """Roll back on a breach, else move to the next step once enough requests were seen."""
        if self.status != "running":
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

    def _finish(self, status: str, reason: str, percent: float) -> str:
        self.status, self.reason = status, reason
        self.engine.scene(self.scene).compiled.traffic.set_canary(percent)
        if self.ws is not None:
            _release_row(self.ws, self.scene, self.arm, percent, status, reason,
                         {"steps": self.steps, "checks": self.checks}, self.release_id)
        return status

    def run(self, *, interval: float = 1.0, timeout: float = 600.0) -> str:
        deadline = time.monotonic() + timeout
        while self.advance() == "running" and time.monotonic() < deadline:
            time.sleep(interval)
        return self.status
