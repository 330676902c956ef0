"""Keeping a scene up when traffic spikes or a dependency fails.

- ``TokenBucket``: a rate limit (per scene, and per client key); over it -> ``RateLimited`` (429)
  whose ``details["retry_after"]`` is the wait in seconds until a token is back.
- ``ConcurrencyLimit``: at most N requests of a scene in flight; beyond it -> ``Overloaded``
  (503, retry after 1 s). Requests are refused, never queued, so latency stays bounded.
- ``CircuitBreaker``: after ``threshold`` consecutive dependency failures the circuit opens for
  ``cooldown`` seconds and calls fail fast (or take the scene's fallback); then one trial call
  is let through (half-open) and its outcome closes or re-opens the circuit.
- ``Breakers``: one circuit breaker per arm and per dependency (a model version or a feature
  service), so an arm whose model fails opens only its own circuit: the other arms keep calling
  their dependencies and never answer from the fallback because of it.

Several worker processes: a scene's limits are for the whole server. Each of N workers enforces
1/N of the rate, burst and concurrency (``Guard(..., workers=N)``; the ``server`` command passes
``server_workers``), so the server admits the configured rate when connections spread over the
workers. The kernel hands each connection to one worker, so a client on a single keep-alive
connection meets that worker's share of its per-client rate: per-client limits are approximate.
Circuit breakers stay per worker: each one sees its own calls to the dependency, opens after its
own run of failures and probes recovery by itself, which needs no coordination and at worst costs
N trial calls against a dependency that is still down.

Several servers: ``limits.scope: global`` keeps the rate, per-client and concurrency limits in
Redis for the whole fleet (``global_limits``); ``Guard`` then asks its shared limiter instead of
its local buckets, and the shared limiter falls back to a local ``Guard`` holding this process's
share while Redis is unavailable.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from shipyard.errors import Overloaded, RateLimited


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = float(burst if burst else max(1.0, rate))
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate if self.rate > 0 else 60.0


class ClientBuckets:
    """One token bucket per client key, keeping the most recent ``max_clients``."""

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.rate, self.burst)
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
        return bucket.take()


class ConcurrencyLimit:
    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.active = 0
        self._lock = threading.Lock()

    def enter(self, what: str) -> None:
        with self._lock:
            if self.active >= self.limit:
                raise Overloaded(f"{what} is at its concurrency limit of {self.limit}; retry shortly",
                                 {"limit": self.limit, "retry_after": 1})
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        if self.opened_at is None:  # the usual case, without the lock
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if time.monotonic() - self.opened_at >= self.cooldown and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        if self.failures or self.opened_at is not None:
            with self._lock:
                self.failures = 0
                self.opened_at = None
                self._trial = False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self._trial or self.failures >= self.threshold:
                self.opened_at = time.monotonic()
                self._trial = False


class Breakers:
    """The circuit breakers of one scene, one per (arm, dependency), made on first use."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._arms: dict[str, dict[str, CircuitBreaker]] = {}
        self._lock = threading.Lock()

    def arm(self, arm: str) -> ArmBreakers:
        found = self._arms.get(arm)
        if found is None:
            with self._lock:
                found = self._arms.setdefault(arm, {})
        return ArmBreakers(self, found)

    def states(self) -> dict[str, dict[str, str]]:
        """``{arm: {dependency: state}}`` of every circuit that is not closed."""
        out: dict[str, dict[str, str]] = {}
        for arm, breakers in list(self._arms.items()):
            for dependency, breaker in list(breakers.items()):
                state = breaker.state
                if state != "closed":
                    out.setdefault(arm, {})[dependency] = state
        return out


class ArmBreakers:
    """The breakers of one arm: ``breakers(dependency)`` returns (and makes) that dependency's."""

    __slots__ = ("_owner", "_by_dependency")

    def __init__(self, owner: Breakers, by_dependency: dict[str, CircuitBreaker]) -> None:
        self._owner = owner
        self._by_dependency = by_dependency

    def __call__(self, dependency: str) -> CircuitBreaker:
        breaker = self._by_dependency.get(dependency)
        if breaker is None:
            with self._owner._lock:
                breaker = self._by_dependency.get(dependency)
                if breaker is None:
                    breaker = CircuitBreaker(self._owner.threshold, self._owner.cooldown)
                    self._by_dependency[dependency] = breaker
        return breaker


class SharedLimiter(Protocol):
    """A scene's limits kept for the whole fleet (``global_limits.GlobalLimiter``)."""

    def admit(self, what: str, client: str | None) -> str | None: ...

    def release(self, lease: str | None) -> None: ...


SharedLimits = Callable[[dict[str, Any], int, Callable[[int], "Guard"]], SharedLimiter]
"""Makes a scene's shared limiter from its limits, the worker count and a factory of local guards
(``Guard`` enforcing 1/n of the limits, the fallback while the shared store is unavailable)."""


class Guard:
    """The limits of one scene (or model endpoint), built from its ``limits`` mapping.

    ``workers`` is the number of server processes sharing these limits; this one enforces its
    share (rates and bursts divided by it, concurrency rounded down, never below one). With
    ``limits.scope: global`` and a ``shared`` maker, the rate, per-client and concurrency limits
    are checked in the shared store instead (timeouts and circuit breakers stay per process).
    """

    def __init__(self, name: str, limits: dict[str, Any], workers: int = 1,
                 shared: SharedLimits | None = None) -> None:
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self.name = name
        self.workers = n = int(workers)
        burst = limits.get("burst")
        share_burst = max(1.0, burst / n) if burst else None
        rate = limits.get("rate_per_s")
        self.rate = rate
        self.bucket = TokenBucket(rate / n, share_burst if burst else max(1.0, rate / n)) if rate else None
        client_rate = limits.get("client_rate_per_s")
        self.client_rate = client_rate
        self.clients = ClientBuckets(client_rate / n, share_burst if burst else max(1.0, client_rate / n)) \
            if client_rate else None
        concurrency = limits.get("max_concurrency")
        self.concurrency = ConcurrencyLimit(max(1, int(concurrency) // n)) if concurrency else None
        self.breakers = Breakers()
        self.timeout_s = float(limits["timeout_ms"]) / 1000.0 if limits.get("timeout_ms") else None
        self.scope = str(limits.get("scope") or "server")
        self.shared: SharedLimiter | None = None
        if self.scope == "global" and shared is not None and (rate or client_rate or concurrency):
            self.shared = shared(dict(limits), n, lambda share: Guard(name, limits, share))

    def admit(self, client: str | None) -> str | None:
        """Admit one request or raise RateLimited / Overloaded; returns the lease to ``release``."""
        if self.shared is not None:
            return self.shared.admit(self.name, client)
        self.admit_local(client)
        return None

    def release(self, lease: str | None = None) -> None:
        if self.shared is not None:
            self.shared.release(lease)
        else:
            self.release_local()

    def admit_local(self, client: str | None) -> None:
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait:
                raise RateLimited(f"{self.name} is over its rate limit of {self.rate:g}/s; retry in {wait:.2f}s",
                                  {"retry_after": max(1, round(wait + 0.5))})
        if self.clients is not None and client:
            wait = self.clients.take(client)
            if wait:
                raise RateLimited(f"client {client!r} is over its rate limit of {self.client_rate:g}/s on "
                                  f"{self.name}; retry in {wait:.2f}s", {"retry_after": max(1, round(wait + 0.5))})
        if self.concurrency is not None:
            self.concurrency.enter(self.name)

    def release_local(self) -> None:
        if self.concurrency is not None:
            self.concurrency.leave()
