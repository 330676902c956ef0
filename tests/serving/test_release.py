"""Against a running server with the real registry: shadow traffic, canary with automatic rollback,
stress test, and hot swap under load."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from shipyard.server import create_app
from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.release import CanaryRollout, list_releases, shadow_report, stress_test_model
from tests.serving.conftest import CREDIT_INPUTS as INPUTS
from tests.serving.conftest import FailingModel as Failing
from tests.serving.conftest import credit_record as rec
from tests.serving.conftest import register
from tests.serving.live import auth_for


@pytest.fixture
def registry_ws(sqlite_workspace, saved_models):
    ws = sqlite_workspace
    register(ws, saved_models["lr_a"], "credit")                       # v1 champion
    register(ws, saved_models["lr_b"], "credit", alias="challenger")   # v2 challenger
    return ws


def test_shadow_mirrors_without_changing_the_response(registry_ws, live_server, loaded):
    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score", "decision"],
                     "flow": [F.model("credit", "champion", output="score"),
                              F.expr("decision", "'reject' if score > 0.5 else 'approve'")],
                     "traffic": {"arms": {"shadow": {"models": {"credit": "challenger"}}},
                                 "shadow": {"arm": "shadow"}}})
    app = create_app(ws, follow_interval=0)
    server = live_server(app)
    engine = app.state.serving.engine
    n = 60
    with httpx.Client(base_url=server.url, headers=auth_for(server.url)) as client:
        bodies = [client.post("/v1/scenes/credit/predict", json=rec(i)).json() for i in range(n)]
    X = np.array([[rec(i)["income"], rec(i)["debt"], rec(i)["age"]] for i in range(n)])
    live = np.array([loaded["lr_a"].predict_array(x[None, :])[0] for x in X])     # row by row, as served
    shadow = np.array([loaded["lr_b"].predict_array(x[None, :])[0] for x in X])
    assert [b["outputs"]["score"] for b in bodies] == live.tolist()
    assert all(b["arm"] == "control" and b["models"] == {"credit": 1} for b in bodies)
    engine.wait_shadow()
    report = shadow_report(engine, "credit", cutoff=0.5)
    assert report["count"] == n and report["field"] == "score"
    assert report["agreement_at_cutoff"] == pytest.approx(np.mean((live >= 0.5) == (shadow >= 0.5)))
    assert report["difference"]["median"] == pytest.approx(float(np.median(shadow - live)))
    engine.prediction_log.flush()
    from shipyard.serving.prediction_log import read_prediction_log

    frame = read_prediction_log(ws.artifacts, "credit")
    assert (frame["kind"] == "shadow").sum() == n and (frame["kind"] == "live").sum() == n
    # the fleet's report pairs the logged live and shadow records (every server's log) by request id
    logged = shadow_report(engine, "credit", cutoff=0.5, ws=ws)
    assert logged["source"] == "fleet" and report["source"] == "this server"
    assert logged["count"] == n and logged["agreement_at_cutoff"] == report["agreement_at_cutoff"]
    assert logged["difference"]["median"] == pytest.approx(report["difference"]["median"])
    assert httpx.get(f"{server.url}/api/v1/scenes/credit/shadow-report", headers=auth_for(server.url)).json()["count"] == n
    # mirrored calls are counted apart from the arm's own traffic, which a rollout judges
    from shipyard.serving.release import scene_status

    status = scene_status(engine, "credit")
    assert status["arms"]["shadow"]["count"] == 0 and status["arms"]["control"]["count"] == n
    assert status["shadow_calls"]["shadow"]["count"] == n and status["shadow_calls"]["shadow"]["errors"] == 0


def _drive(url: str, start: int, n: int) -> list[int]:
    with httpx.Client(base_url=url, headers=auth_for(url)) as client:
        return [client.post("/v1/scenes/credit/predict", json=rec(i)).status_code for i in range(start, start + n)]


def test_canary_rolls_back_on_error_rate_and_promotes_a_healthy_arm(registry_ws, live_server):
    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")],
                     "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}},
                                 "canary": {"arm": "b", "percent": 0}},
                     "limits": {"error_rate": 0.05, "p99_ms": 500, "min_requests": 15}})
    app = create_app(ws, follow_interval=0)
    server = live_server(app)
    engine = app.state.serving.engine
    engine.scene("credit")
    # a healthy challenger (same-shaped scores) walks through every step
    rollout = CanaryRollout(ws, engine, "credit", "b", steps=(20, 50, 100))
    i = 0
    while rollout.advance() == "running" and i < 3000:
        assert all(s == 200 for s in _drive(server.url, i, 40))
        i += 40
    assert rollout.status == "promoted", rollout.checks
    assert engine.scene("credit").compiled.traffic.canary_percent == 100
    # now the challenger breaks: the next rollout rolls back by itself
    plan = engine.scene("credit").compiled.plans["b"]
    plan.model_nodes()[0].model = Failing()
    engine.scene("credit").compiled.traffic.set_canary(0)
    rollout = CanaryRollout(ws, engine, "credit", "b", steps=(30, 100))
    statuses = _drive(server.url, 10_000, 60)
    assert 500 in statuses
    assert rollout.advance() == "rolled_back" and "error rate" in rollout.reason
    assert engine.scene("credit").compiled.traffic.canary_percent == 0
    assert all(s == 200 for s in _drive(server.url, 20_000, 40))  # everyone is back on control
    rows = list_releases(ws, "credit")
    assert [r["status"] for r in rows] == ["promoted", "rolled_back"]


def test_canary_rolls_back_on_score_psi(registry_ws):
    from shipyard.serving import ServingEngine

    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")],
                     "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}},
                     "limits": {"psi": 0.25, "min_requests": 1000}})
    engine = ServingEngine(ws)
    rollout = CanaryRollout(ws, engine, "credit", "b", steps=(50, 100))
    for i in range(400):
        engine.predict_scene("credit", [rec(i)])
    assert rollout.advance() == "rolled_back" and "PSI" in rollout.reason


def test_stress_test_is_recorded(registry_ws):
    result = stress_test_model(registry_ws, "credit", "champion", rate=500, count=300)
    assert result["count"] == 300 and result["errors"] == 0 and result["p99_ms"] > 0
    from shipyard.store.events import list_events

    version = registry_ws.registry.get_version("credit", "champion")
    stored = version.validation["stress_test"]
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "count", "errors", "target_rate"):
        assert stored[key] == result[key]
    assert stored["p50_ms"] <= stored["p90_ms"] <= stored["p99_ms"] <= stored["max_ms"]
    assert stored["recorded_at"] > 0
    events = [e for e in list_events(registry_ws.store) if e["kind"] == "model.stress_tested"]
    assert len(events) == 1  # recorded once, by the registry
    assert events[0]["details"]["p99_ms"] == result["p99_ms"] and events[0]["details"]["version"] == version.version


def test_hot_swap_under_load_drops_nothing(registry_ws, live_server, saved_models):
    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")]})
    app = create_app(ws, follow_interval=0.2)
    server = live_server(app)
    results: list[tuple[float, float, int, int | None]] = []  # (sent at, latency, status, model version)
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=auth_for(server.url), timeout=10) as client:
            i = worker * 1_000_000
            while not stop.is_set():
                start = time.perf_counter()
                r = client.post("/v1/scenes/credit/predict", json=rec(i))
                version = r.json()["models"].get("credit") if r.status_code == 200 else None
                results.append((start, time.perf_counter() - start, r.status_code, version))
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    swap_at = time.perf_counter()
    ws.registry.set_alias("credit", "champion", 2, force=True)   # the follower swaps to v2
    deadline = time.time() + 15
    while time.time() < deadline and not any(r[3] == 2 for r in results if r[0] >= swap_at):
        time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    # nothing failed, and the server switched to v2 and stayed there
    assert all(code == 200 for _, _, code, _ in results), {code for _, _, code, _ in results}
    during = [r for r in results if r[0] >= swap_at]
    versions = [r[3] for r in during]
    assert 2 in versions and versions[-1] == 2
    # latency during the swap is measured by benchmarks/bench_hot_swap.py
    swaps = app.state.serving.follower.swaps
    assert swaps and swaps[0]["from"] == 1 and swaps[0]["models"] == {"credit": 2}


def test_canary_share_and_rollback_reach_every_worker(registry_ws):
    """Two engines on one metadata store stand for two server workers: a canary step and its
    automatic rollback decided in one reach the other on its next poll."""
    from shipyard.serving import ServingEngine
    from shipyard.serving.hotswap import Follower

    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")],
                     "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}},
                     "limits": {"psi": 0.25, "min_requests": 1000}})
    deciding, other = ServingEngine(ws), ServingEngine(ws)
    for engine in (deciding, other):
        engine.predict_scene("credit", [rec(0)])  # load the scene in both
    follower = Follower(other, interval=3600)
    rollout = CanaryRollout(ws, deciding, "credit", "b", steps=(50, 100))
    assert other.scene("credit").compiled.traffic.canary_percent == 0
    assert follower.sync_canaries() == ["credit"]
    traffic = other.scene("credit").compiled.traffic
    assert (traffic.canary_arm, traffic.canary_percent) == ("b", 50.0)
    arms = [other.predict_scene("credit", [rec(i)])["arm"] for i in range(400)]
    assert 120 < arms.count("b") < 280  # about half, by the sticky hash
    for i in range(400):
        deciding.predict_scene("credit", [rec(i)])
    assert rollout.advance() == "rolled_back"
    assert follower.sync_canaries() == ["credit"]
    assert other.scene("credit").compiled.traffic.canary_percent == 0
    assert {other.predict_scene("credit", [rec(i)])["arm"] for i in range(100)} == {"control"}
    assert follower.sync_canaries() == []  # nothing new


def test_a_new_scene_version_starts_from_its_own_canary_share(registry_ws):
    """A share set by hand (or a finished rollout) for version 1 must not override the share that
    version 2's document sets; a share recorded after version 2 applies again."""
    from shipyard.serving import ServingEngine
    from shipyard.serving.hotswap import Follower
    from shipyard.serving.release import set_canary

    ws = registry_ws
    doc = {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
           "flow": [F.model("credit", "champion", output="score")],
           "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}}}
    apply_scene(ws, doc)
    engine = ServingEngine(ws)
    engine.predict_scene("credit", [rec(0)])
    follower = Follower(engine, interval=3600)
    set_canary(ws, engine, "credit", 50, arm="b")
    time.sleep(0.01)  # the new version is applied strictly after the recorded share
    apply_scene(ws, {**doc, "traffic": {**doc["traffic"], "canary": {"arm": "b", "percent": 5}}})
    engine.install_scene(engine.build_scene("credit"))
    assert engine.scene("credit").version == 2
    assert follower.sync_canaries() == []
    assert engine.scene("credit").compiled.traffic.canary_percent == 5.0
    time.sleep(0.01)
    set_canary(ws, ServingEngine(ws), "credit", 20, arm="b")  # decided in another worker
    assert follower.sync_canaries() == ["credit"]
    assert engine.scene("credit").compiled.traffic.canary_percent == 20.0


def _lease_dies(ws) -> None:
    """The rollout's driving process is gone (another host's, silent for more than two ttls)."""
    from shipyard.store.schema import job_leases

    with ws.store.begin() as conn:
        conn.execute(job_leases.update().values(owner="elsewhere/0/1/1",
                                                heartbeat_at=job_leases.c.heartbeat_at - 3 * job_leases.c.ttl_ms))


def test_a_rollout_whose_server_died_is_abandoned(registry_ws):
    """A server killed mid-rollout leaves a running release behind. Its heartbeat stops, so another
    worker's poll abandons it (share back to 0 %), and a new rollout may start; a live rollout's
    step checks keep its heartbeat fresh."""
    import sqlalchemy as sa

    from shipyard.errors import Conflict
    from shipyard.serving import ServingEngine
    from shipyard.serving.hotswap import Follower
    from shipyard.serving.release import STALE_AFTER_S, abandon_stale_releases, rollout_status
    from shipyard.store.schema import scene_releases

    ws = registry_ws
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")],
                     "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}},
                     "limits": {"min_requests": 1000}})
    dead, alive = ServingEngine(ws), ServingEngine(ws)
    for engine in (dead, alive):
        engine.predict_scene("credit", [rec(0)])
    rollout = CanaryRollout(ws, dead, "credit", "b", steps=(50, 100), heartbeat_s=2.0)
    with ws.store.read() as conn:
        before = conn.execute(sa.select(scene_releases.c.updated_at)).scalar()
    time.sleep(0.01)
    assert rollout.advance() == "running"  # too few requests to judge, but a heartbeat
    with ws.store.read() as conn:
        assert conn.execute(sa.select(scene_releases.c.updated_at)).scalar() > before
    status = rollout_status(ws, "credit")
    assert status["status"] == "running" and status["stale"] is False and status["heartbeat_age_s"] < 5
    assert abandon_stale_releases(ws) == []
    with pytest.raises(Conflict, match="running rollout"):
        CanaryRollout(ws, alive, "credit", "b")

    # the server running it is killed: no more heartbeats
    silent_ms = int(1000 * (STALE_AFTER_S + 5))
    with ws.store.begin() as conn:
        conn.execute(scene_releases.update().values(updated_at=scene_releases.c.updated_at - silent_ms))
    _lease_dies(ws)
    assert rollout_status(ws, "credit")["stale"] is True
    follower = Follower(alive, interval=3600)
    assert follower.sync_canaries() == ["credit"]  # abandoned on the poll, and the share follows
    assert alive.scene("credit").compiled.traffic.canary_percent == 0
    status = rollout_status(ws, "credit")
    assert status["status"] == "abandoned" and status["percent"] == 0 and "no heartbeat" in status["reason"]
    # a new rollout starts; the old runner, should it wake up, adopts the abandonment
    again = CanaryRollout(ws, alive, "credit", "b", steps=(50, 100))
    assert again.status == "running" and rollout_status(ws, "credit")["release"] == again.release_id
    assert rollout.advance() == "abandoned" and rollout.percent == 0

    # a stale release is also abandoned by the next rollout request itself
    with ws.store.begin() as conn:
        conn.execute(scene_releases.update().where(scene_releases.c.id == again.release_id)
                     .values(updated_at=scene_releases.c.updated_at - silent_ms))
    _lease_dies(ws)
    third = CanaryRollout(ws, alive, "credit", "b", steps=(50, 100))
    assert [r["status"] for r in list_releases(ws, "credit")] == ["abandoned", "abandoned", "running"]
    assert third.release_id == rollout_status(ws, "credit")["release"]
