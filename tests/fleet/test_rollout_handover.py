"""Two ``shipyard server`` processes behind nginx (see conftest): rollouts change hands between them.

- A server that is SIGKILLed leaves the rollouts it drove, in the server's project and in a hosted
  one alike, to the other server, which continues each in its own project.
- A server shut down with SIGTERM frees its rollouts' leases: the other server continues them at
  once, long before the lease's ttl would have let it.

References: the lease record (``job_leases``, read from the database) names the process that holds
it and how often it changed hands; each release's ``takeover_log`` says when it was taken over, by
whom and why; a continued rollout judges every one of its own steps once, none lost in the handover.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.release import ROLLOUT_LEASE, rollout_status
from shipyard.store import leases
from tests.fleet.conftest import Fleet, Load, request

pytestmark = [pytest.mark.fleet, pytest.mark.postgres, pytest.mark.redis]

# a ttl far longer than a takeover takes: a rollout continued within it was not waiting for expiry
FLEET_SETTINGS = {"lease_ttl_s": 300.0}
WAIT_S = 180.0


def _scene(name: str, min_requests: int) -> dict[str, Any]:
    return {"name": name, "inputs": {"user_id": "string", "x": "double"}, "flow": [F.expr("score", "x * 0.5")],
            "outputs": ["score"], "log": {"sample_rate": 0.0},
            "traffic": {"key": "user_id", "arms": {"b": {"flow": [F.expr("score", "x * 0.5")]}}},
            "limits": {"error_rate": 0.5, "p99_ms": 10_000, "min_requests": min_requests}}


def _pid(owner: str | None) -> int | None:
    return int(owner.split("/")[2]) if owner else None


def _lease(ws: Any, release_id: int) -> leases.Lease | None:
    with ws.store.read() as conn:
        return leases.get(conn, ROLLOUT_LEASE, str(release_id))


def _wait(what: str, done: Any, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:g} s"
        time.sleep(0.2)


def _load(fleet: Fleet, scene: str, project: str | None = None) -> Load:
    headers = {**fleet.headers, **({"X-Shipyard-Project": project} if project else {})}
    # a bounded rate, so that each step lasts a few seconds (time to see it and act mid-rollout)
    return Load(fleet.proxy_port, f"/v1/scenes/{scene}/predict", lambda i: {"user_id": f"u{i}", "x": 1.0}, headers,
                threads=2, pause_s=0.005)


def _start(fleet: Fleet, server: int, scene: str, steps: list[float], project: str | None = None) -> int:
    headers = {"X-Shipyard-Project": project} if project else {}
    status, body = request(fleet.servers[server].port, "POST", f"/api/v1/scenes/{scene}/rollout",
                           {"arm": "b", "steps": steps, "interval_s": 1.0, "timeout_s": 900},
                           {**fleet.headers, **headers})
    assert status == 202, body
    return int(body["release"])


def _check_finished(view: dict[str, Any], steps: list[float]) -> None:
    assert (view["status"], view["percent"]) == ("promoted", 100), view
    assert [c["percent"] for c in view["checks"]] == steps, view["checks"]  # each of its own steps, once
    assert all(not c["breaches"] for c in view["checks"]), view["checks"]


def test_rollouts_of_a_hosted_project_and_the_servers_own_are_continued_after_sigkill(fleet: Fleet) -> None:
    """The server's project and hosted project ``credit`` each roll out a scene named ``ab`` from
    server 0, both as release 1 (the same lease key, each in its project's schema). Server 0 is
    SIGKILLed mid-rollout; server 1 continues both, each through its own steps."""
    credit = fleet.project_ws("credit")
    fleet.apply(_scene("ab", 150))
    apply_scene(credit, _scene("ab", 150))  # as the default project's: neither races ahead and ends before the kill
    steps = {"default": [10.0, 25.0, 50.0, 100.0], "credit": [10.0, 30.0, 60.0, 100.0]}
    workspaces = {"default": fleet.ws, "credit": credit}
    first, second = fleet.servers
    with _load(fleet, "ab"), _load(fleet, "ab", "credit"):
        time.sleep(2.0)  # both servers have loaded both scenes
        releases = {"default": _start(fleet, 0, "ab", steps["default"]),
                    "credit": _start(fleet, 0, "ab", steps["credit"], "credit")}
        assert releases == {"default": 1, "credit": 1}
        for project, ws in workspaces.items():
            lease = _lease(ws, 1)
            assert lease is not None and _pid(lease.owner) == first.pid, project

        def both_judged_once() -> bool:
            views = [rollout_status(ws, "ab") for ws in workspaces.values()]
            return all(v["checks"] or v["status"] != "running" for v in views)

        _wait("a first step judged in each project", both_judged_once)
        before = {p: rollout_status(ws, "ab") for p, ws in workspaces.items()}
        assert all(v["status"] == "running" for v in before.values()), before
        fleet.kill(0)

        def both_ended() -> bool:
            return all(rollout_status(ws, "ab")["status"] != "running" for ws in workspaces.values())

        _wait("both rollouts ended", both_ended)
    for project, ws in workspaces.items():
        view = rollout_status(ws, "ab")
        _check_finished(view, steps[project])
        assert len(view["checks"]) > len(before[project]["checks"])  # the rest judged by server 1
        [taken] = view["takeover_log"]
        assert _pid(taken["by"]) == second.pid and "is gone" in taken["reason"], (project, taken)
        assert _lease(ws, 1) is None  # dropped with the end
    for project, ws in workspaces.items():  # each project's own series, every server's rows
        assert all(c["judged_on"] == "fleet" for c in rollout_status(ws, "ab")["checks"]), project


def test_a_sigtermed_servers_rollout_is_continued_by_the_other_before_its_lease_could_expire(fleet: Fleet) -> None:
    """Server 0 drives a rollout and is shut down with SIGTERM mid-rollout: the rollout is not
    stopped; its lease, freed, is taken over by server 1 well within the ttl of the lease server 0
    last heartbeated, and server 1 carries the rollout through its remaining steps."""
    for index, srv in enumerate(fleet.servers):
        if not srv.alive():
            fleet.start(index)
    first, second = fleet.servers
    steps = [10.0, 25.0, 50.0, 100.0]
    fleet.apply(_scene("tm", 150))
    with _load(fleet, "tm"):
        time.sleep(2.0)
        release_id = _start(fleet, 0, "tm", steps)
        _wait("a first step judged", lambda: bool(rollout_status(fleet.ws, "tm")["checks"]))
        before = rollout_status(fleet.ws, "tm")
        held = _lease(fleet.ws, release_id)
        assert before["status"] == "running" and held is not None and _pid(held.owner) == first.pid, before
        expiry_ms = held.heartbeat_at + held.ttl_ms  # the earliest a silent lease could be taken over

        fleet.terminate(0)
        assert "rollout leases freed" in first.log.read_text()  # the graceful shutdown ran
        after = rollout_status(fleet.ws, "tm")
        assert after["status"] == "running", after  # handed over, not stopped

        def taken_over() -> bool:
            lease = _lease(fleet.ws, release_id)
            return lease is not None and _pid(lease.owner) == second.pid

        _wait("server 1 holds the lease", taken_over)
        lease = _lease(fleet.ws, release_id)
        assert lease is not None and lease.recoveries == 1 and lease.heartbeat_at < expiry_ms
        [taken] = rollout_status(fleet.ws, "tm")["takeover_log"]
        assert taken == {"at": taken["at"], "by": lease.owner, "reason": f"{held.owner} gave it up"}, taken
        assert taken["at"] < expiry_ms
        _wait("the rollout ended", lambda: rollout_status(fleet.ws, "tm")["status"] != "running")
    view = rollout_status(fleet.ws, "tm")
    _check_finished(view, steps)
    assert len(view["checks"]) > len(before["checks"])  # server 1 judged the remaining steps
    assert all(c["judged_on"] == "fleet" for c in view["checks"])
    assert _lease(fleet.ws, release_id) is None
    fleet.start(0)  # the fleet whole again
