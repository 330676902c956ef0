"""Two ``shipyard server`` processes on one project behind nginx (see conftest): a global rate limit
holds for the pair, a rollout started on one server is continued by the other after SIGKILL, and
a hosted project's requests are counted in that project only (its series, status and metrics).

References: a token bucket of rate r and burst b admits b + r*T requests over T seconds of steady
overload, whoever asks (the servers' own counters say both answered); a rollout is continued when
its lease moves to the surviving server's process and every step is judged, the last ones by it.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from tests.fleet.conftest import Fleet, Load, request

pytestmark = [pytest.mark.fleet, pytest.mark.postgres, pytest.mark.redis]

RATE, BURST = 50.0, 10.0


def _served_by(fleet: Fleet, index: int, scene: str, project: str = "default") -> float:
    """Requests of ``project``'s ``scene`` answered with 200 by one server, from its own /metrics."""
    status, text = fleet.call("GET", "/metrics", server=index)
    assert status == 200
    pattern = re.compile(r'^shipyard_predictions_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for labels, v in pattern.findall(text)
               if f'project="{project}"' in labels and f'scene="{scene}"' in labels and 'status="ok"' in labels)


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


def _series(fleet: Fleet, scene: str, ws: Any = None) -> list[tuple[str, str, int]]:
    """(instance, arm, requests) rows of the scene's series in a project's store (the fleet's own
    by default)."""
    import sqlalchemy as sa

    from shipyard.store.schema import monitoring_series as T

    with (ws or fleet.ws).store.read() as conn:
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


def test_a_hosted_projects_traffic_is_counted_in_that_project_only(fleet: Fleet) -> None:
    """The server's project and hosted project ``shop`` each have a scene named ``iso``; requests go
    to ``shop``'s only, through nginx to both servers. ``shop``'s series (in its own schema), its
    scene status and the servers' /metrics under ``project="shop"`` hold every request sent; the
    server's own project holds none of them."""
    for index, srv in enumerate(fleet.servers):  # the rollout test above killed one
        if not srv.alive():
            fleet.start(index)
    shop = fleet.project_ws("shop")
    scene = {"name": "iso", "inputs": {"x": "double"}, "flow": [F.expr("y", "x * 2")], "outputs": ["y"],
             "log": {"sample_rate": 0.0}}
    fleet.apply(scene)
    apply_scene(shop, scene)
    headers = {**fleet.headers, "X-Shipyard-Project": "shop"}
    sent = 60
    statuses = [request(fleet.proxy_port, "POST", "/v1/scenes/iso/predict", {"x": float(i)}, headers)[0]
                for i in range(sent)]
    assert statuses == [200] * sent

    def stored(ws: Any) -> int:
        return sum(requests for _, _, requests in _series(fleet, "iso", ws))

    deadline = time.monotonic() + 60  # each server writes its rows every series_flush_s (1 s)
    while stored(shop) < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored(shop) == sent, _series(fleet, "iso", shop)
    per_server = [_served_by(fleet, i, "iso", "shop") for i in range(len(fleet.servers))]
    assert sum(per_server) == sent, per_server
    # each server that answered wrote its own rows (nginx usually, not always, uses both)
    assert len({instance for instance, _, _ in _series(fleet, "iso", shop)}) == sum(1 for n in per_server if n), \
        per_server
    assert _series(fleet, "iso") == []
    for project_headers, expected in ((headers, sent), (fleet.headers, 0)):
        status, body = request(fleet.proxy_port, "GET", "/api/v1/scenes/iso/status", None, project_headers)
        assert status == 200 and body["source"] == "fleet", body
        assert sum(a["count"] for a in body["arms"].values()) == expected, body["arms"]
    assert [_served_by(fleet, i, "iso") for i in range(len(fleet.servers))] == [0, 0]
