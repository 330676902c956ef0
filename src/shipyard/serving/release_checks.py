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
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import InvalidInput, ShipyardError

if TYPE_CHECKING:
    from shipyard.serving.engine import ServingEngine
    from shipyard.serving.fleet import FleetSeries
    from shipyard.workspace import Workspace


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


def stress_test_model(ws: Workspace, name: str, version: int | str, *, rate: float = 200.0, count: int = 1000,
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


def shadow_report(engine: ServingEngine, scene: str, *, cutoff: float = 0.5, field: str | None = None,
                  ws: Workspace | None = None, window_s: float = 3600.0) -> dict[str, Any]:
    """Live vs shadow: score differences (quantiles) and decision agreement at ``cutoff``.

    With ``ws``, the pairs come from the prediction log of the last ``window_s`` seconds, which every
    server writes (live and shadow records joined by request id): the fleet's pairs, as far as the
    scene's log sample rate keeps them and the servers have flushed them (``source: "fleet"``).
    Without it, or when the log holds no pair yet, the pairs this server keeps in memory
    (``source: "this server"``)."""
    served = engine.scene(scene)
    arm = served.compiled.traffic.shadow_arm
    pairs = _logged_pairs(ws, scene, window_s) if ws is not None else []
    source = "fleet"
    if not pairs:
        pairs = [(p[1], p[2]) for p in list(served.shadow_pairs)]
        source = "this server"
    if not pairs:
        return {"scene": scene, "shadow_arm": arm, "count": 0, "source": source}
    key = field or next((k for k, v in pairs[0][0].items() if type(v) in (int, float)), None)
    # no numeric field: no scores to compare, only the string fields' agreement below
    both = [(p[0].get(key), p[1].get(key)) for p in pairs] if key is not None else []
    both = [(a, b) for a, b in both if _num(a) and _num(b)]
    live = np.array([a for a, _ in both], dtype=np.float64)
    shadow = np.array([b for _, b in both], dtype=np.float64)
    out: dict[str, Any] = {"scene": scene, "shadow_arm": arm, "count": len(pairs), "field": key, "cutoff": cutoff,
                           "source": source}
    if live.size:
        diff = shadow - live
        out["difference"] = {q: float(np.quantile(diff, p)) for q, p in
                             (("min", 0), ("p05", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75),
                              ("p95", 0.95), ("max", 1.0))}
        out["mean_abs_difference"] = float(np.abs(diff).mean())
        out["agreement_at_cutoff"] = float(np.mean((live >= cutoff) == (shadow >= cutoff)))
        out["live_above_cutoff"] = float(np.mean(live >= cutoff))
        out["shadow_above_cutoff"] = float(np.mean(shadow >= cutoff))
    others = [k for k, v in pairs[0][0].items() if k != key and isinstance(v, str)]
    out["field_agreement"] = {k: float(np.mean([p[0].get(k) == p[1].get(k) for p in pairs])) for k in others}
    return out


def _logged_pairs(ws: Workspace, scene: str, window_s: float) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(live output, shadow output) of the first record of each request logged in the window."""
    import datetime as dt

    from shipyard.serving.prediction_log import read_prediction_log

    now = time.time()
    first = dt.datetime.fromtimestamp(now - window_s, dt.UTC).date()
    frame = read_prediction_log(ws.artifacts, scene, start=first, end=dt.datetime.fromtimestamp(now, dt.UTC).date())
    if frame.empty:
        return []
    frame = frame[frame["ts"] >= int((now - window_s) * 1000)]
    live: dict[str, dict[str, Any]] = {}
    shadow: dict[str, dict[str, Any]] = {}
    for request_id, kind, outputs in zip(frame["request_id"], frame["kind"], frame["outputs"], strict=True):
        if not outputs or not isinstance(outputs, list) or not isinstance(outputs[0], dict):
            continue
        (live if kind == "live" else shadow if kind == "shadow" else {}).setdefault(str(request_id), outputs[0])
    return [(live[r], shadow[r]) for r in live if r in shadow]


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def scene_status(engine: ServingEngine, scene: str, since: float = 0.0, *,
                 fleet: FleetSeries | None = None) -> dict[str, Any]:
    """Per arm: requests, errors (fallbacks included), latency and queue percentiles, failed steps;
    circuits that are not closed (``{arm: {dependency: state}}``); canary and shadow.

    With ``fleet`` (a ``fleet.FleetSeries``), ``arms`` holds the whole fleet's figures since the
    minute of ``since`` (default: the last five minutes) with the number of servers that reported,
    and ``this_server`` the figures of this process. ``global_limits`` says whether a scene with
    ``limits.scope: global`` is enforced in Redis or, Redis being unavailable, by each server's
    share (``state: "fallback"``)."""
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
    out: dict[str, Any] = {
        "scene": scene, "version": served.version, "models": served.compiled.models,
        "arms": arms, "shadow_calls": mirrored, "circuits": served.guard.breakers.states(),
        "threads_per_arm": served.threads,
        "canary": {"arm": traffic.canary_arm, "percent": traffic.canary_percent},
        "shadow": traffic.shadow_arm, "limits": served.compiled.limits, "source": "this server"}
    if fleet is not None:
        window_start = since or time.time() - 300
        fleet_arms = fleet.arms(scene, window_start)
        out["this_server"] = arms
        out["arms"] = {arm: fleet_arms.get(arm, {"count": 0, "errors": 0, "fallbacks": 0, "error_rate": 0.0,
                                                 "p50_ms": None, "p99_ms": None, "failed_steps": {},
                                                 "instances": 0})
                       for arm in sorted(set(arms) | set(fleet_arms))}
        out["source"] = "fleet"
        out["fleet_since"] = window_start
    scope = served.guard.scope
    out["limits_scope"] = scope
    fleet_limits = getattr(engine, "fleet_limits", None)
    if scope == "global":
        if served.guard.shared is not None and fleet_limits is not None:
            out["global_limits"] = fleet_limits.status()
        else:
            out["global_limits"] = {"state": "server", "reason": "this process has no fleet limits (not a server): "
                                    "the limits apply to it alone"}
    return out
