"""Two ``shipyard server`` processes on one project behind nginx (see conftest): a global rate limit
holds for the pair, and a rollout started on one server is continued by the other after SIGKILL.

References: a token bucket of rate r and burst b admits b + r*T requests over T seconds of steady
overload, whoever asks (the servers' own counters say both answered); a rollout is continued when
its lease moves to the surviving server's process and every step is judged, the last ones by it.
"""

from __future__ import annotations

import re
import time

import pytest

from shipyard.serving import flow as F
from tests.fleet.conftest import Fleet, Load

pytestmark = [pytest.mark.fleet, pytest.mark.postgres, pytest.mark.redis]

RATE, BURST = 50.0, 10.0


def _served_by(fleet: Fleet, index: int, scene: str) -> float:
    """Requests of ``scene`` answered with 200 by one server, from its own /metrics."""
    status, text = fleet.call("GET", "/metrics", server=index)
    assert status == 200
    pattern = re.compile(r'^shipyard_predictions_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for labels, v in pattern.findall(text)
               if f'scene="{scene}"' in labels and 'status="ok"' in labels)


def test_a_global_rate_limit_holds_across_both_servers(fleet: Fleet) -> None:
    fleet.apply({"name": "limited", "inputs": {"x": "double"}, "flow": [F.expr("y", "x * 2")], "outputs": ["y"],
                 "log": {"sample_rate": 0.0}, "limits": {"rate_per_s": RATE, "burst": BURST, "scope": "global"}})
    for index in range(len(fleet.servers)):  # both load the scene before the clock starts
        assert fleet.call("POST", "/v1/scenes/limited/predict", {"x": 1.0}, server=index)[0] in (200, 429)
    time.sleep(1.0)  # the bucket refills
    before = [_served_by(fleet, i, "limited") for i in range(len(fleet.servers))]
    with Load(fleet.proxy_port, "/v1/scenes/limited/predict", {"x": 1.0}, fleet.headers) as load:
        time.sleep(8.0)
    elapsed = load.ended - load.started
    statuses = [s for s, _ in load.results]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(429) > admitted  # the load was well over the limit
    expected = BURST + RATE * elapsed
    assert abs(admitted - expected) <= 0.10 * expected, (admitted, expected, elapsed)
    per_server = [_served_by(fleet, i, "limited") - before[i] for i in range(len(fleet.servers))]
    assert sum(per_server) == admitted
    assert min(per_server) > 0.2 * admitted, per_server  # both servers answered; together they kept one limit
    status, body = fleet.call("GET", "/api/v1/scenes/limited/status")
    assert status == 200 and body["limits_scope"] == "global" and body["global_limits"]["state"] == "redis"


def _series(fleet: Fleet, scene: str) -> list[tuple[str, str, int]]:
    """(instance, arm, requests) rows of the scene's series, for failure messages."""
    import sqlalchemy as sa

    from shipyard.store.schema import monitoring_series as T

    with fleet.ws.store.read() as conn:
        return [(r.instance, r.arm, r.requests) for r in conn.execute(sa.select(T).where(T.c.scene == scene))]


def _owner_pid(owner: str) -> int:
    return int(owner.split("/")[2])


def test_a_rollout_started_on_one_server_is_continued_by_the_other_after_sigkill(fleet: Fleet) -> None:
    steps = [10, 30, 60, 100]
    fleet.apply({"name": "ab", "inputs": {"user_id": "string", "x": "double"},
                 "flow": [F.expr("score", "x * 0.5")], "outputs": ["score"], "log": {"sample_rate": 0.0},
                 "traffic": {"key": "user_id", "arms": {"b": {"flow": [F.expr("score", "x * 0.5")]}}},
                 "limits": {"error_rate": 0.5, "p99_ms": 10_000, "min_requests": 400}})
    first, second = fleet.servers[0], fleet.servers[1]
    seen_owners: set[int] = set()
    takeovers = 0
    # a bounded rate, so that the first step lasts longer than the other server's hot-swap poll (5 s),
    # which is when it applies the step's share and starts answering with the arm too
    load = Load(fleet.proxy_port, "/v1/scenes/ab/predict", lambda i: {"user_id": f"u{i}", "x": 1.0}, fleet.headers,
                threads=4, pause_s=0.005)
    with load:
        time.sleep(2.0)
        status, started = fleet.call("POST", "/api/v1/scenes/ab/rollout",
                                     {"arm": "b", "steps": steps, "interval_s": 1.0, "timeout_s": 600}, server=0)
        assert status == 202, started
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first step is judged; then the driving server dies
            status, view = fleet.call("GET", "/api/v1/scenes/ab/rollout", server=1)
            if "driven_by" in view:
                seen_owners.add(_owner_pid(view["driven_by"]))
            if view["checks"] or view["status"] != "running":
                break
            time.sleep(0.2)
        assert view["status"] == "running", (view["checks"], _series(fleet, "ab"))
        assert seen_owners == {first.pid}
        fleet.kill(0)
        # the other server takes the lease over and carries the rollout to its end
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status, view = fleet.call("GET", "/api/v1/scenes/ab/rollout", server=1)
            assert status == 200, view
            if "driven_by" in view:
                seen_owners.add(_owner_pid(view["driven_by"]))
                takeovers = view["takeovers"]
            if view["status"] != "running":
                break
            time.sleep(0.2)
    statuses = [s for s, _ in load.results]
    assert statuses.count(200) > 0.99 * len(statuses), sorted(set(statuses))  # nginx retried what the kill cut off
    assert view["status"] == "promoted" and view["percent"] == 100, view
    assert second.pid in seen_owners and takeovers >= 1
    checks = view["checks"]
    assert [c["percent"] for c in checks] == steps  # every step judged once, none lost in the handover
    assert all(not c["breaches"] and c["judged_on"] == "fleet" for c in checks)
    # the steps were judged on both servers' requests (their series rows merged)
    assert any(c["instances"] == 2 for c in checks), (checks, _series(fleet, "ab"))
