"""Fleet-wide judgement without a fleet: the series rows another server would write are written
directly, and a rollout whose driving process is gone, or freed its lease, is continued by another
runner, in whichever project the server hosts.

References: the merged counts are the naive sums of the rows; the merged p99 is the quantile of
the histogram added bucket by bucket; a continued rollout records every step exactly once; the
lease record names who holds it (or who freed it) and how often it changed hands.
"""

from __future__ import annotations

import time

import pytest

from shipyard.monitoring.series import SeriesRow, quantile
from shipyard.serving import ServingEngine, apply_scene
from shipyard.serving import flow as F
from shipyard.serving.fleet import Counts, FleetSeries, minute_of
from shipyard.serving.release import ROLLOUT_LEASE, CanaryRollout, RolloutRunner, rollout_status
from shipyard.store import leases
from shipyard.store.schema import job_leases

SCENE = {"name": "ab", "inputs": {"user_id": "string", "x": "double"}, "outputs": ["score"],
         "flow": [F.expr("score", "x * 0.5")],
         "traffic": {"key": "user_id", "arms": {"b": {"flow": [F.expr("score", "x * 0.5")]}}},
         "limits": {"min_requests": 5, "error_rate": 0.1}}


def _driver_dies(ws, release_id: int) -> None:
    """The process driving the release dies: another host's, silent for longer than the ttl."""
    leases.forget(ws.store, ROLLOUT_LEASE, str(release_id))
    with ws.store.begin() as conn:
        conn.execute(job_leases.update().values(owner="elsewhere/0/1/1",
                                                heartbeat_at=job_leases.c.heartbeat_at - 2 * job_leases.c.ttl_ms))


def _row(arm: str, requests: int, errors: int = 0, hist: dict[str, int] | None = None) -> SeriesRow:
    return SeriesRow("ab", "1", arm, minute_of(time.time()), requests, errors, 0, hist or {})


def test_fleet_series_adds_every_instance(sqlite_workspace) -> None:
    ws = sqlite_workspace
    store = ws.monitoring.series_store
    a = {"40": 10, "44": 5}
    b = {"44": 3, "60": 2}
    store.write([_row("b", 15, 1, a)], "server-a")
    store.write([_row("b", 5, 2, b)], "server-b")
    counts = FleetSeries(store).counts("ab", "b", time.time())
    assert (counts.requests, counts.errors, counts.instances) == (20, 3, 2)
    merged = {"40": 10, "44": 8, "60": 2}
    assert counts.hist == merged
    assert counts.summary()["p99_ms"] == quantile(merged, 0.99)
    assert counts.summary()["error_rate"] == pytest.approx(3 / 20)
    later = Counts(25, 3, 0, {"40": 12, "44": 8, "60": 5})
    assert later.minus(counts).to_dict() == {"requests": 5, "errors": 0, "fallbacks": 0,
                                             "hist": {"40": 2, "60": 3}, "instances": 0}
    assert FleetSeries(store).arms("ab", time.time())["b"]["count"] == 20


def test_a_rollout_rolls_back_on_errors_another_server_saw(sqlite_workspace) -> None:
    ws = sqlite_workspace
    apply_scene(ws, SCENE)
    engine = ServingEngine(ws)
    fleet = FleetSeries(ws.monitoring.series_store)
    ws.monitoring.series_store.write([_row("b", 7, 0)], "server-b")  # before the step: the baseline holds it
    rollout = CanaryRollout(ws, engine, "ab", "b", steps=(50, 100), fleet=fleet)
    for i in range(40):  # this server's share of the arm is healthy
        engine.predict_scene("ab", [{"user_id": f"u{i}", "x": 1.0}])
    ws.monitoring.series_store.write([_row("b", 100, 50)], "server-b")  # the other server's is not
    assert rollout.advance() == "rolled_back"
    check = rollout.checks[-1]
    assert check["judged_on"] == "fleet" and check["count"] == 100 and check["errors"] == 50
    assert "error rate 0.500" in rollout.reason
    assert rollout_status(ws, "ab")["judged_on"] == "fleet"


def test_a_rollout_whose_process_died_is_continued_by_another_runner(sqlite_workspace) -> None:
    ws = sqlite_workspace
    apply_scene(ws, SCENE)
    dead, alive = ServingEngine(ws), ServingEngine(ws)
    rollout = CanaryRollout(ws, dead, "ab", "b", steps=(20, 60, 100), heartbeat_s=0.2)
    for i in range(200):
        dead.predict_scene("ab", [{"user_id": f"u{i}", "x": 1.0}])
    assert rollout.advance() == "running" and rollout.percent == 60  # one step judged by the first process
    status = rollout_status(ws, "ab")
    assert status["driven_by"] == leases.this_process() and status["takeovers"] == 0
    runner = RolloutRunner(ws)
    assert runner.adopt(alive) == []  # its lease is alive: nothing to continue
    _driver_dies(ws, rollout.release_id)
    try:
        assert runner.adopt(alive) == [rollout.release_id]
        assert alive.scene("ab").compiled.traffic.canary_percent == 60  # from the recorded step
        assert runner.adopt(alive) == []  # taken once
        status = rollout_status(ws, "ab")
        assert status["driven_by"] == leases.this_process() and status["takeovers"] == 1
        [taken] = status["takeover_log"]  # who took it over, and why
        assert taken["by"] == leases.this_process() and taken["reason"].startswith("no heartbeat from elsewhere/")
        deadline = time.monotonic() + 60
        i = 1000
        while rollout_status(ws, "ab")["status"] == "running" and time.monotonic() < deadline:
            alive.predict_scene("ab", [{"user_id": f"u{i}", "x": 1.0}])
            i += 1
            if i % 50 == 0:
                time.sleep(0.05)
    finally:
        runner.stop_all()
    final = rollout_status(ws, "ab")
    assert final["status"] == "promoted", final
    assert [c["percent"] for c in final["checks"]] == [20, 60, 100]
    with ws.store.read() as conn:
        assert leases.get(conn, ROLLOUT_LEASE, str(rollout.release_id)) is None  # dropped with the end


def test_this_process_sees_its_own_requests_before_they_are_written(sqlite_workspace) -> None:
    ws = sqlite_workspace
    store = ws.monitoring.series_store
    recorder = ws.monitoring.recorder(instance="me", flush_interval=3600, live=True)
    store.write([_row("b", 4, 1, {"40": 4})], "other")
    for _ in range(3):
        recorder.observe("ab", "1", "b", 0.002, 0.0, 0.001)
    fleet = FleetSeries(store, recorder)
    counts = fleet.counts("ab", "b", time.time())
    assert (counts.requests, counts.errors, counts.instances) == (7, 1, 2)
    recorder.flush()
    assert fleet.counts("ab", "b", time.time()).requests == 7  # written now, and not counted twice
    recorder.close()


def _drive_to_the_end(ws, engine, scene: str = "ab") -> dict:
    deadline = time.monotonic() + 60
    i = 1000
    while rollout_status(ws, scene)["status"] == "running" and time.monotonic() < deadline:
        engine.predict_scene(scene, [{"user_id": f"u{i}", "x": 1.0}])
        i += 1
        if i % 50 == 0:
            time.sleep(0.05)
    return rollout_status(ws, scene)


def test_a_freed_lease_is_taken_over_at_once_and_never_abandoned_while_it_waits(sqlite_workspace) -> None:
    """A server shutting down frees its rollout's lease: the rollout stays running, its lease is
    dead at once (no ttl to wait for), it is not abandoned however long no server runs, and the
    next server to look continues it from its recorded step."""
    from shipyard.serving.release import STALE_AFTER_S, abandon_stale_releases
    from shipyard.store.schema import scene_releases

    ws = sqlite_workspace
    apply_scene(ws, SCENE)
    first, later = ServingEngine(ws), ServingEngine(ws)
    rollout = CanaryRollout(ws, first, "ab", "b", steps=(20, 60, 100), heartbeat_s=0.2, timeout_s=600)
    for i in range(200):
        first.predict_scene("ab", [{"user_id": f"u{i}", "x": 1.0}])
    assert rollout.advance() == "running" and rollout.percent == 60
    me = leases.this_process()

    assert rollout.free_lease() == "running" and not rollout.driving
    assert (ROLLOUT_LEASE, str(rollout.release_id)) not in leases.held(ws.store)  # no more heartbeats
    status = rollout_status(ws, "ab")
    assert (status["status"], status["percent"]) == ("running", 60)
    assert status["driven_by"] is None and status["freed_by"] == me and status["takeovers"] == 0
    with ws.store.read() as conn:
        lease = leases.get(conn, ROLLOUT_LEASE, str(rollout.release_id))
    assert lease is not None and lease.owner == leases.FREE
    assert lease.dead(lease.heartbeat_at) is not None  # dead at once, not after its ttl
    assert rollout.advance() == "running" and rollout.percent == 60  # the freeing runner acts no more

    # no server runs for longer than a release may stay silent: still waiting, not abandoned
    silent_ms = int(1000 * (STALE_AFTER_S + 5))
    with ws.store.begin() as conn:
        conn.execute(scene_releases.update().values(updated_at=scene_releases.c.updated_at - silent_ms))
        conn.execute(job_leases.update().values(heartbeat_at=job_leases.c.heartbeat_at - silent_ms))
    assert abandon_stale_releases(ws) == []
    assert rollout_status(ws, "ab")["status"] == "running"

    runner = RolloutRunner(ws)  # a server starts again
    try:
        assert runner.adopt(later) == [rollout.release_id]
        assert later.scene("ab").compiled.traffic.canary_percent == 60  # from the recorded step
        status = rollout_status(ws, "ab")
        assert status["driven_by"] == me and status["takeovers"] == 1 and "freed_by" not in status
        assert [(t["by"], t["reason"]) for t in status["takeover_log"]] == [(me, f"{me} gave it up")]
        final = _drive_to_the_end(ws, later)
    finally:
        runner.stop_all()
    assert final["status"] == "promoted", final
    assert [c["percent"] for c in final["checks"]] == [20, 60, 100]  # none lost or judged twice


def test_a_server_continues_dead_rollouts_in_every_project_it_hosts(sqlite_workspace) -> None:
    """The server's project and a hosted one each have a rollout of a scene of the same name, with
    the same release id (the same lease key, each in its project's store), whose driver died: the
    server's takeover loop continues both, each from its own record; shutting down frees both."""
    from shipyard.server import create_app
    from shipyard.serving.state import project_engine
    from tests.serving.conftest import LiveServer

    ws = sqlite_workspace
    app = create_app(ws, follow_interval=0)
    app.state.projects.create("credit", "", actor="test")
    hosted = app.state.projects.get("credit")
    steps = {"default": [20.0, 100.0], "credit": [10.0, 50.0, 100.0]}
    for project_ws in (ws, hosted):
        apply_scene(project_ws, {**SCENE, "limits": {"min_requests": 10**6}})  # never judged: stays running
        rollout = CanaryRollout(project_ws, ServingEngine(project_ws), "ab", "b", steps=steps[project_ws.project],
                                heartbeat_s=0.2, timeout_s=600)
        assert rollout.release_id == 1
        _driver_dies(project_ws, rollout.release_id)
    me = leases.this_process()
    with LiveServer(app):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(rollout_status(w, "ab")["driven_by"] != me for w in (ws, hosted)):
            time.sleep(0.1)
        for project_ws in (ws, hosted):
            status = rollout_status(project_ws, "ab")
            assert status["driven_by"] == me and status["takeovers"] == 1, (project_ws.project, status)
            [taken] = status["takeover_log"]
            assert taken["by"] == me and taken["reason"].startswith("no heartbeat from elsewhere/")
            assert status["status"] == "running" and status["steps"] == steps[project_ws.project]
            # each project's series goes to its own store: a hosted rollout is judged on the fleet too
            assert status["judged_on"] == "fleet"
            engine = project_engine(app.state.serving, project_ws)
            assert engine.scene("ab").compiled.traffic.canary_percent == steps[project_ws.project][0]
        assert project_engine(app.state.serving, hosted) is not app.state.serving.engine
    for project_ws in (ws, hosted):  # the server shut down: both wait for the next one
        status = rollout_status(project_ws, "ab")
        assert status["status"] == "running" and status["driven_by"] is None and status["freed_by"] == me
    app.state.projects.close()
