"""Scene limits kept for the whole fleet in Redis (``limits: {scope: global, ...}``).

A scene's ``rate_per_s``, ``client_rate_per_s`` and ``max_concurrency`` are per server by default
(``scope: server``: each process enforces its share, see ``resilience``). With ``scope: global``
every server of the project checks one shared state in Redis, so two servers behind a balancer
admit the configured rate together, not twice it.

One check is one round trip: a Lua script (``register_script``, redis-py's public API) reads the
scene's token bucket, the client's token bucket and the concurrency leases, and either takes a
token from each bucket and a lease, or takes nothing and says which limit refused. Time is the
Redis server's (``TIME``), so the servers' clocks do not matter.

- Token buckets: a hash ``{tokens, stamp}`` per scene and per client, refilled at the rate up to
  the burst (default: one second of rate), expiring once a full bucket would be full again.
- Concurrency: a sorted set of leases (``instance:request``) scored by their expiry. A finished
  request removes its lease; a lease whose server crashed expires after ``lease_s`` (twice the
  scene's ``timeout_ms``, else 30 s), so a dead server cannot hold slots for ever.

Keys: ``{prefix}limits:{<project>/<scene>}:rate|client:<key>|inflight``; the braces make every key of
a scene one Redis Cluster slot, as the script needs. ``prefix`` is the Redis URL's ``prefix``
parameter (default ``shipyard:``).

When Redis cannot be reached (or no Redis is configured) a server falls back to the local limiter
with its share of the limits: the rates and the concurrency divided by the number of servers
(``fleet_servers`` x its worker processes when set, else the number of processes it last saw
heartbeating in Redis, where every worker records itself, else its worker count). The fallback is flagged: ``shipyard_global_limits_degraded`` is 1,
the scene status shows ``global_limits.state: "fallback"`` with the reason, and one warning is
logged when it starts (and one line when Redis is back). Redis is tried again every ``retry_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shipyard.config import Settings
from shipyard.errors import Overloaded, RateLimited

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
"""How often a server records itself in the project's set of live servers (the observed count)."""

LIVE_S = 15.0
"""A server not seen for this long is no longer counted among the live servers."""

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local crate, cburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local conc, ttl = tonumber(ARGV[5]), tonumber(ARGV[7])
local function fill(key, r, cap)
  local v = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens, stamp = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or stamp == nil then return cap end
  return math.min(cap, tokens + math.max(0, now - stamp) * r / 1000)
end
local st, ct = 0, 0
if rate > 0 then
  st = fill(KEYS[1], rate, burst)
  if st < 1 then return {1, math.ceil((1 - st) * 1000 / rate)} end
end
if crate > 0 then
  ct = fill(KEYS[2], crate, cburst)
  if ct < 1 then return {2, math.ceil((1 - ct) * 1000 / crate)} end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= conc then return {3, 1000} end
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ttl * 2)
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(st - 1), 'stamp', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
end
if crate > 0 then
  redis.call('HSET', KEYS[2], 'tokens', tostring(ct - 1), 'stamp', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(cburst * 1000 / crate) + 1000)
end
return {0, 0}
"""

_OK, _RATE, _CLIENT, _CONCURRENCY = 0, 1, 2, 3


class FleetLimits:
    """The Redis connection, live-server count and fallback state shared by a server's scenes.

    ``connect`` opens the Redis client (``None`` when no Redis is configured: always the fallback).
    ``check`` runs the script and returns its reply, or None when Redis is unavailable, in which
    case the caller applies its local share.
    """

    def __init__(self, connect: Callable[[], Any] | None, *, prefix: str = "shipyard:", instance: str = "",
                 servers: int = 0, retry_s: float = 1.0, on_state: Callable[[bool], None] | None = None) -> None:
        self._connect = connect
        self.prefix = prefix
        self.instance = instance or f"server-{id(self):x}"
        self.configured_servers = int(servers)
        self.observed_servers = 0
        self.retry_s = float(retry_s)
        self.on_state = on_state
        self.reason = "" if connect is not None else "no Redis configured for global limits (limits_store)"
        self.degraded = connect is None
        self._client: Any = None
        self._script: Any = None
        self._retry_at = 0.0
        self._beat_at = 0.0
        self._lock = threading.Lock()
        self._announced = False

    # -- the live-server count --------------------------------------------------------------------
    def servers(self) -> int:
        """The number of servers sharing the limits: configured, else observed, else 1."""
        return self.configured_servers or self.observed_servers or 1

    def share(self, workers: int) -> int:
        """How many processes split a limit while Redis is down: ``fleet_servers`` x ``workers`` when
        configured; else the processes seen in Redis (every worker records itself), at least
        ``workers``; else ``workers``."""
        if self.configured_servers:
            return self.configured_servers * workers
        return max(self.observed_servers, workers)

    def _servers_key(self) -> str:
        return f"{self.prefix}limits:servers"

    def _heartbeat(self, client: Any) -> None:
        """Record this server as live and count the live ones (a pipeline, every ``HEARTBEAT_S``)."""
        now = time.time()
        pipe = client.pipeline(transaction=False)
        key = self._servers_key()
        pipe.zadd(key, {self.instance: now})
        pipe.zremrangebyscore(key, "-inf", now - LIVE_S)
        pipe.zcard(key)
        pipe.expire(key, int(LIVE_S * 4))
        self.observed_servers = int(pipe.execute()[2])

    # -- Redis state ------------------------------------------------------------------------------
    def _ready(self) -> Any:
        """The registered script, or None while Redis is marked down (until the retry time)."""
        if self._connect is None:
            return None
        if self.degraded and time.monotonic() < self._retry_at:
            return None
        if self._script is None:
            with self._lock:
                if self._script is None:
                    try:
                        self._client = self._connect()
                        self._script = self._client.register_script(_SCRIPT)
                    except Exception as exc:  # noqa: BLE001 - a bad URL or a refused connection: fall back
                        self._down(exc)
                        return None
        return self._script

    def _down(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry_s
        if not self.degraded:
            self.degraded = True
            self.reason = f"Redis unavailable ({type(exc).__name__}: {exc})"
            log.warning("global limits: %s; each server enforces its share of each limit (%d servers) until "
                        "Redis is back", self.reason, self.servers())
            if self.on_state is not None:
                self.on_state(True)

    def _up(self) -> None:
        if self.degraded:
            self.degraded = False
            self.reason = ""
            log.warning("global limits: Redis is back; limits are global again")
            if self.on_state is not None:
                self.on_state(False)

    def check(self, keys: list[str], args: list[Any]) -> list[int] | None:
        script = self._ready()
        if script is None:
            return None
        try:
            if time.monotonic() >= self._beat_at:
                self._beat_at = time.monotonic() + HEARTBEAT_S
                self._heartbeat(self._client)
            reply = script(keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - redis-py's ConnectionError, TimeoutError, ResponseError
            self._down(exc)
            return None
        self._up()
        return [int(reply[0]), int(reply[1])]

    def release(self, key: str, member: str) -> None:
        """Give a concurrency lease back; when Redis fails the lease expires by itself."""
        if self._client is None or self.degraded:
            return
        try:
            self._client.zrem(key, member)
        except Exception as exc:  # noqa: BLE001
            self._down(exc)

    def status(self) -> dict[str, Any]:
        return {"state": "fallback" if self.degraded else "redis", "reason": self.reason,
                "servers": self.servers(), "servers_source": "configured" if self.configured_servers else
                ("observed" if self.observed_servers else "default")}

    def limiter(self, project: str, scene: str, limits: dict[str, Any], workers: int,
                local: Callable[[int], Any]) -> GlobalLimiter:
        """The limiter of one scene with ``scope: global`` (its keys carry the project and scene)."""
        if self._connect is None and not self._announced:  # flagged once a scene asks for global limits
            self._announced = True
            log.warning("global limits: scene %r asks for scope: global but %s; each server enforces its share "
                        "of each limit (%d servers)", scene, self.reason, self.servers())
            if self.on_state is not None:
                self.on_state(True)
        return GlobalLimiter(self, f"{self.prefix}limits:{{{project}/{scene}}}", limits, workers, local)


class GlobalLimiter:
    """One scene's global limits. ``admit`` returns a lease (or None) for ``release``.

    ``local(n)`` builds the local limiter that enforces 1/n of the limits (a ``Guard``); it is used,
    with n = servers x workers, while Redis is unavailable.
    """

    def __init__(self, fleet: FleetLimits, base: str, limits: dict[str, Any], workers: int,
                 local: Callable[[int], Any]) -> None:
        self.fleet = fleet
        self.name = base
        self.workers = int(workers)
        self.rate = float(limits.get("rate_per_s") or 0)
        self.client_rate = float(limits.get("client_rate_per_s") or 0)
        burst = limits.get("burst")
        self.burst = float(burst) if burst else max(1.0, self.rate)
        self.client_burst = float(burst) if burst else max(1.0, self.client_rate)
        self.concurrency = int(limits.get("max_concurrency") or 0)
        timeout_ms = limits.get("timeout_ms")
        self.lease_ms = int(2 * float(timeout_ms)) if timeout_ms else 30_000
        self.lease_ms = max(self.lease_ms, 1_000)
        self.keys = (f"{base}:rate", f"{base}:client:", f"{base}:inflight")
        self._local_factory = local
        self._local: Any = None
        self._local_n = 0
        self._seq = 0
        self._lock = threading.Lock()

    def _fallback(self) -> Any:
        n = self.fleet.share(self.workers)
        if self._local is None or self._local_n != n:
            with self._lock:
                if self._local is None or self._local_n != n:
                    self._local, self._local_n = self._local_factory(n), n
        return self._local

    def admit(self, what: str, client: str | None) -> str | None:
        """Take the global tokens and a lease; RateLimited / Overloaded when a limit refuses."""
        member = ""
        if self.concurrency:
            with self._lock:
                self._seq += 1
                member = f"{self.fleet.instance}:{self._seq}"
        reply = self.fleet.check(
            [self.keys[0], self.keys[1] + (client or ""), self.keys[2]],
            [repr(self.rate), repr(self.burst), repr(self.client_rate if client else 0.0), repr(self.client_burst),
             self.concurrency, member, self.lease_ms])
        if reply is None:
            local = self._fallback()
            local.admit_local(client)
            return "local"
        code, wait_ms = reply
        if code == _OK:
            return member or None
        wait = wait_ms / 1000.0
        if code == _RATE:
            raise RateLimited(f"{what} is over its global rate limit of {self.rate:g}/s; retry in {wait:.2f}s",
                              {"retry_after": max(1, round(wait + 0.5)), "scope": "global"})
        if code == _CLIENT:
            raise RateLimited(f"client {client!r} is over its global rate limit of {self.client_rate:g}/s on "
                              f"{what}; retry in {wait:.2f}s",
                              {"retry_after": max(1, round(wait + 0.5)), "scope": "global"})
        raise Overloaded(f"{what} is at its global concurrency limit of {self.concurrency}; retry shortly",
                         {"limit": self.concurrency, "retry_after": 1, "scope": "global"})

    def release(self, lease: str | None) -> None:
        if lease == "local":
            local = self._local
            if local is not None:
                local.release_local()
        elif lease:
            self.fleet.release(self.keys[2], lease)


def fleet_limits_for(settings: Settings, *, on_state: Callable[[float], None] | None = None,
                     timeout_s: float = 0.25) -> FleetLimits:
    """The server's ``FleetLimits`` from its settings: ``limits_store``, else the online store when it
    is a Redis URL; no Redis -> always the local share (flagged). ``on_state`` takes a gauge's value:
    1 while degraded to the local share, 0 once Redis answers again. Socket timeouts are capped at
    ``timeout_s`` so that a Redis that hangs costs a request at most that, once per ``retry_s``."""
    import dataclasses
    import os
    import socket
    import uuid

    url = settings.limits_store
    online = settings.online_store
    if not url and online.startswith(("redis://", "rediss://", "unix://", "redis+", "rediss+")):
        url = online
    instance = f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    servers = settings.fleet_servers
    state = (lambda degraded: on_state(1 if degraded else 0)) if on_state is not None else None
    if not url:
        return FleetLimits(None, instance=instance, servers=servers, on_state=state)
    from shipyard.features.online.redis_connect import open_client, parse_url

    target = parse_url(url)
    options = {**target.options, "socket_timeout": min(timeout_s, target.options.get("socket_timeout", timeout_s)),
               "socket_connect_timeout": min(timeout_s, target.options.get("socket_connect_timeout", timeout_s))}
    target = dataclasses.replace(target, options=options)
    return FleetLimits(lambda: open_client(target), prefix=target.prefix or "shipyard:", instance=instance,
                       servers=servers, on_state=state)
