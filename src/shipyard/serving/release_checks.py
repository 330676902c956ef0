"""Release checks: stress tests, shadow comparison and scene status.

- ``stress_test(call, records, rate, count)`` fires ``count`` calls at ``rate``/s from a small
  thread pool and reports latency percentiles; ``stress_test_model`` runs it on a registered
  version and records the result on it through ``registry.record_stress_test`` (the version's
  ``validation["stress_test"]`` plus one audit event ``model.stress_tested``).
- ``shadow_report`` compares live and shadow outputs of a scene: the distribution of score
  differences and the agreement of decisions at a cut-off.
- ``scene_status``: per arm requests, errors, latency; circuits, canary and shadow. With the
  fleet's series (``fleet.FleetSeries``) the per-arm figures are the whole fleet's, every server's
  per-minute rows merged (percentiles from merged histograms); this server's own figures stay
  beside them under ``this_server``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput, ShipyardError


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

