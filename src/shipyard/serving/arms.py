"""What the engine keeps per arm of a scene: recent outcomes for release checks, and the bounded
thread pool its model and feature calls run on.

``ArmStats`` records every request an arm answered: its latency, the time it waited for a thread,
and its outcome — ``ok``, ``fallback`` (the scene's fallback answered because a step of this arm
failed) or ``error`` (a 5xx). A fallback is a failure of the arm and of the step that needed it: it
counts in the error rate, its latency counts in the percentiles, and its score (the fallback's own
number) is kept out of the score distribution PSI compares. Requests refused for bad input (4xx)
are the client's doing and are not recorded.

``Pools`` holds one bounded ``ThreadPoolExecutor`` per scene arm (and per directly served model),
so a slow arm fills only its own threads: requests of other arms never queue behind it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

OK, FALLBACK, ERROR = "ok", "fallback", "error"
DEFAULT_THREADS = 16
"""Threads per arm (``limits.threads``) and per directly served model, per server process."""

Event = tuple[float, float, float, str, float | None, str | None]
"""(time, latency s, queue s, outcome, score, failed step)."""


def _ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q) * 1000) if values else None


class ArmStats:
    """Recent outcomes of one arm, for release checks and the scene status."""

    def __init__(self, maxlen: int = 20_000) -> None:
        self.events: deque[Event] = deque(maxlen=maxlen)

    def add(self, latency_s: float, outcome: str = OK, score: float | None = None, *, step: str | None = None,
            queue_s: float = 0.0) -> None:
        self.events.append((time.time(), latency_s, queue_s, outcome, score if outcome == OK else None, step))

    def select(self, since: float = 0.0, *, window_s: float | None = None, at_least: int = 0) -> list[Event]:
        """Events from ``since`` on; with ``window_s``, only those of the last ``window_s`` seconds,
        but never fewer than the newest ``at_least`` (a quiet arm is judged on enough requests)."""
        events = list(self.events)
        start = len(events)
        while start > 0 and events[start - 1][0] >= since:
            start -= 1
        chosen = events[start:]
        if window_s is None or len(chosen) <= at_least:
            return chosen
        cutoff = time.time() - window_s
        first = 0
        while first < len(chosen) and chosen[first][0] < cutoff:
            first += 1
        return chosen[min(first, len(chosen) - at_least):]

    def summary(self, since: float = 0.0, *, window_s: float | None = None, at_least: int = 0) -> dict[str, Any]:
        return summarise(self.select(since, window_s=window_s, at_least=at_least))


def summarise(rows: list[Event]) -> dict[str, Any]:
    """Counts, error rate (fallbacks included), latency and queue percentiles, scores, failed steps."""
    latency = [e[1] for e in rows]
    queue = [e[2] for e in rows]
    fallbacks = sum(1 for e in rows if e[3] == FALLBACK)
    errors = sum(1 for e in rows if e[3] != OK)
    steps = Counter(e[5] for e in rows if e[3] != OK and e[5])
    return {
        "count": len(rows), "errors": errors, "fallbacks": fallbacks,
        "error_rate": errors / len(rows) if rows else 0.0,
        "p50_ms": _ms(latency, 50), "p99_ms": _ms(latency, 99), "queue_p99_ms": _ms(queue, 99),
        "failed_steps": dict(steps),
        "scores": [e[4] for e in rows if e[4] is not None],
    }


class Pools:
    """Bounded thread pools by key (``("scene", name, arm)`` or ``("model", name, ref)``), made on
    first use. A pool whose size changes (a new scene version with another ``limits.threads``) is
    replaced; the old one finishes what it runs and its threads exit."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, str], tuple[int, ThreadPoolExecutor]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, key: tuple[str, str, str], threads: int = DEFAULT_THREADS) -> ThreadPoolExecutor:
        found = self._pools.get(key)
        if found is not None and found[0] == threads:
            return found[1]
        with self._lock:
            found = self._pools.get(key)
            if found is not None and found[0] == threads:
                return found[1]
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"shipyard-{key[0]}-{key[1]}-{key[2]}"[:60])
            self._pools[key] = (threads, pool)
        if found is not None:
            found[1].shutdown(wait=False)
        return pool

    def close(self) -> None:
        """Stop taking work: queued calls are dropped, running ones finish (nothing waits for them)."""
        with self._lock:
            pools = [pool for _, pool in self._pools.values()]
            self._pools.clear()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
