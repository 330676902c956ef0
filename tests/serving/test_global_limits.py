"""Global scene limits (limits.scope: global): one token bucket and one set of concurrency leases in
Redis for every server, a local share when Redis is down, and the scene document's validation.

Two ``FleetLimits`` stand for two servers (each with its own client and instance id); the
reference is a naive token bucket: over a run of T seconds a bucket of rate r and burst b admits
at most b + r*T requests, whoever asks.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from shipyard.errors import InvalidInput, Overloaded, RateLimited
from shipyard.serving.global_limits import FleetLimits
from shipyard.serving.resilience import Guard
from shipyard.serving.scene import normalise

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="set SHIPYARD_TEST_REDIS_URL to run the global-limit tests")


def _redis():  # noqa: ANN202
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=1)


@pytest.fixture
def prefix():  # noqa: ANN201
    value = f"sy-test-{uuid.uuid4().hex[:10]}:"
    yield value
    client = _redis()
    keys = list(client.scan_iter(f"{value}*"))
    if keys:
        client.delete(*keys)


def _guard(fleet: FleetLimits, limits: dict, workers: int = 1, scene: str = "s") -> Guard:
    return Guard(f"scene {scene!r}", limits, workers,
                 lambda lim, n, local: fleet.limiter("p", scene, lim, n, local))


def _server(prefix: str, name: str, **kw) -> FleetLimits:  # noqa: ANN003
    return FleetLimits(_redis, prefix=prefix, instance=name, **kw)


@needs_redis
def test_rate_is_shared_by_two_servers(prefix: str) -> None:
    limits = {"rate_per_s": 40, "scope": "global"}
    guards = [_guard(_server(prefix, "a"), limits), _guard(_server(prefix, "b"), limits)]
    admitted = [0, 0]
    start = time.monotonic()
    i = refused = 0
    while time.monotonic() - start < 1.5:
        g = i % 2
        try:
            guards[g].release(guards[g].admit(None))
            admitted[g] += 1
        except RateLimited as exc:
            assert exc.details["scope"] == "global"
            refused += 1
        i += 1
    elapsed = time.monotonic() - start
    ceiling = 40 + 40 * elapsed  # burst + rate x time, for both servers together
    assert sum(admitted) <= ceiling + 1
    assert sum(admitted) >= 40  # at least the burst (how much of the refill depends on how fast this loop runs)
    assert min(admitted) > 0.3 * sum(admitted)
    assert refused > 0


@needs_redis
def test_server_scope_is_per_server(prefix: str) -> None:
    limits = {"rate_per_s": 40}
    guards = [_guard(_server(prefix, "a"), limits), _guard(_server(prefix, "b"), limits)]
    assert all(g.shared is None for g in guards)
    admitted = 0
    for _ in range(100):
        for g in guards:
            try:
                g.admit(None)
                admitted += 1
            except RateLimited:
                pass
    assert admitted >= 80  # each server's own burst of 40


@needs_redis
def test_client_rate_is_per_client_and_global(prefix: str) -> None:
    limits = {"client_rate_per_s": 5, "scope": "global"}
    a, b = _guard(_server(prefix, "a"), limits), _guard(_server(prefix, "b"), limits)
    admitted = {"x": 0, "y": 0}
    for _ in range(10):
        for guard in (a, b):
            for client in admitted:
                try:
                    guard.admit(client)
                    admitted[client] += 1
                except RateLimited as exc:
                    assert client in str(exc)
    assert 5 <= admitted["x"] <= 6 and 5 <= admitted["y"] <= 6


@needs_redis
def test_concurrency_leases_are_global_and_expire(prefix: str) -> None:
    limits = {"max_concurrency": 3, "timeout_ms": 300, "scope": "global"}  # a lease lives 2 x timeout = 0.6 s (>= 1 s)
    a, b = _guard(_server(prefix, "a"), limits), _guard(_server(prefix, "b"), limits)
    leases = [a.admit(None), b.admit(None), a.admit(None)]
    with pytest.raises(Overloaded) as refused:
        b.admit(None)
    assert refused.value.details["scope"] == "global"
    b.release(leases.pop())
    leases.append(a.admit(None))  # a released slot is free for any server
    # a server that dies holding its leases frees them when they expire (at least 1 s)
    time.sleep(1.2)
    again = [b.admit(None) for _ in range(3)]
    assert all(again)


@needs_redis
def test_redis_down_falls_back_to_the_local_share(prefix: str) -> None:
    import redis

    states: list[bool] = []
    dead = FleetLimits(lambda: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2),
                       prefix=prefix, instance="a", servers=2, on_state=states.append)
    guard = _guard(dead, {"rate_per_s": 40, "scope": "global"})
    admitted = 0
    for _ in range(100):
        try:
            guard.release(guard.admit(None))
            admitted += 1
        except RateLimited as exc:
            assert "scope" not in exc.details  # the local limiter refused
    assert dead.degraded and states == [True]
    assert dead.status()["state"] == "fallback" and "Redis unavailable" in dead.status()["reason"]
    assert 20 <= admitted <= 22  # half the burst: this server's share of two


@needs_redis
def test_observed_server_count_sets_the_fallback_share(prefix: str) -> None:
    servers = [_server(prefix, name) for name in "abc"]
    for fleet in servers:
        _guard(fleet, {"rate_per_s": 30, "scope": "global"}).admit(None)
    assert servers[-1].observed_servers == 3 and servers[-1].servers() == 3
    assert servers[-1].status()["servers_source"] == "observed"
    # every worker process records itself: the observed processes split a limit, whatever the workers
    assert servers[-1].share(workers=2) == 3 and servers[-1].share(workers=4) == 4
    assert FleetLimits(None, servers=2).share(workers=2) == 4  # configured servers x workers


def test_no_redis_flags_the_fallback() -> None:
    states: list[bool] = []
    fleet = FleetLimits(None, instance="a", servers=4, on_state=states.append)
    guard = _guard(fleet, {"rate_per_s": 40, "scope": "global"})
    admitted = 0
    for _ in range(50):
        try:
            guard.admit(None)
            admitted += 1
        except RateLimited:
            pass
    assert states == [True] and fleet.degraded
    assert 10 <= admitted <= 11  # a quarter of the burst


@pytest.mark.parametrize(("limits", "field", "words"), [
    ({"rate_per_s": 10, "scope": "fleet"}, "limits.scope", "use 'server'"),
    ({"timeout_ms": 10, "scope": "global"}, "limits.scope", "none of rate_per_s"),
    ({"rate_per_s": "10/s"}, "limits.rate_per_s", "non-negative number"),
])
def test_scene_limits_are_validated(limits: dict, field: str, words: str) -> None:
    doc = {"name": "s", "inputs": {"x": "double"}, "flow": [], "limits": limits}
    with pytest.raises(InvalidInput) as err:
        normalise(doc)
    assert err.value.details["field"] == field and words in str(err.value)


def test_scope_global_is_kept_in_the_document() -> None:
    doc = {"name": "s", "inputs": {"x": "double"}, "flow": [], "limits": {"rate_per_s": 5, "scope": "global"}}
    assert normalise(doc)["limits"]["scope"] == "global"
