"""Operational time series: per minute, scene, version and arm — requests, errors, fallbacks and
latency histograms (total, features, model) — written by every server instance under its own id.

The serving path calls :meth:`SeriesRecorder.observe` / :meth:`SeriesRecorder.error` (a dict
update under a lock); a background thread writes finished minutes every ``flush_interval``
seconds. Queries add the rows of every instance, so several servers behind one balancer give one
series; percentiles come from the merged histograms (never an average of per-server percentiles).

Latency buckets are geometric, four per doubling (each about 19 % wide) from 0.01 ms up to about
168 s: bucket ``i`` holds values in ``(EDGES[i-1], EDGES[i]]``. A percentile is interpolated
linearly inside its bucket, as Prometheus' ``histogram_quantile`` does, so it is within one
bucket width of the exact value.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from shipyard.errors import InvalidInput
from shipyard.store import MetadataStore
from shipyard.store.schema import monitoring_series as T

log = logging.getLogger(__name__)

BASE_MS = 0.01
PER_DOUBLING = 4
N_BUCKETS = 97
EDGES_MS = [BASE_MS * 2 ** (i / PER_DOUBLING) for i in range(N_BUCKETS)]
MINUTE_MS = 60_000
STAGES = ("total", "features", "model")
_LOG_SCALE = PER_DOUBLING / math.log(2)
_LOG_BASE = math.log(BASE_MS)


def bucket_of(ms: float) -> int:
    if ms <= BASE_MS:
        return 0
    return min(N_BUCKETS - 1, math.ceil((math.log(ms) - _LOG_BASE) * _LOG_SCALE - 1e-9))


def quantile(hist: dict[int, int] | dict[str, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram in ms, interpolated inside its bucket."""
    items = sorted((int(k), int(v)) for k, v in hist.items() if int(v) > 0)
    total = sum(v for _, v in items)
    if not total:
        return None
    rank = q * total
    seen = 0
    for idx, count in items:
        if seen + count >= rank:
            lo = EDGES_MS[idx - 1] if idx > 0 else 0.0
            hi = EDGES_MS[idx]
            return lo + (hi - lo) * ((rank - seen) / count)
        seen += count
    return EDGES_MS[items[-1][0]]


def merge_hist(into: dict[str, int], other: dict[Any, Any]) -> dict[str, int]:
    for k, v in other.items():
        key = str(k)
        into[key] = into.get(key, 0) + int(v)
    return into


def default_instance() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Cell:
    __slots__ = ("requests", "errors", "fallbacks", "hists")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.fallbacks = 0
        self.hists: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})


@dataclass
class SeriesRow:
    scene: str
    version: str
    arm: str
    minute: int
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    latency_total: dict[str, int] = field(default_factory=dict)
    latency_features: dict[str, int] = field(default_factory=dict)
    latency_model: dict[str, int] = field(default_factory=dict)


class SeriesStore:
    """Rows of the series table: written per instance, read summed over instances."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def write(self, rows: Iterable[SeriesRow], instance: str) -> int:
        """Add ``rows`` to this instance's rows (a minute flushed twice is summed, not replaced)."""
        n = 0
        with self.store.begin() as conn:
            for r in rows:
                key = (T.c.scene == r.scene) & (T.c.version == r.version) & (T.c.arm == r.arm) \
                    & (T.c.minute == r.minute) & (T.c.instance == instance)
                old = conn.execute(sa.select(T).where(key)).mappings().first()
                if old is None:
                    conn.execute(T.insert().values(
                        scene=r.scene, version=r.version, arm=r.arm, minute=r.minute, instance=instance,
                        requests=r.requests, errors=r.errors, fallbacks=r.fallbacks,
                        latency_total=r.latency_total, latency_features=r.latency_features,
                        latency_model=r.latency_model))
                else:
                    conn.execute(T.update().where(key).values(
                        requests=old["requests"] + r.requests, errors=old["errors"] + r.errors,
                        fallbacks=old["fallbacks"] + r.fallbacks,
                        latency_total=merge_hist(dict(old["latency_total"]), r.latency_total),
                        latency_features=merge_hist(dict(old["latency_features"]), r.latency_features),
                        latency_model=merge_hist(dict(old["latency_model"]), r.latency_model)))
                n += 1
        return n

    def query(self, scene: str, since_ms: int, until_ms: int, *, step_ms: int = MINUTE_MS,
              version: str | None = None, arm: str | None = None, by: tuple[str, ...] = ()) -> SeriesResult:
        """Points of ``scene`` between two times, one per ``step_ms`` (a multiple of a minute)."""
        if step_ms < MINUTE_MS or step_ms % MINUTE_MS:
            raise InvalidInput(f"step must be a whole number of minutes, got {step_ms / 1000:g} s",
                               {"field": "step"})
        bad = [b for b in by if b not in ("version", "arm", "instance")]
        if bad:
            raise InvalidInput(f"cannot group by {bad}; use version, arm or instance", {"field": "by"})
        cond = (T.c.scene == scene) & (T.c.minute >= since_ms) & (T.c.minute < until_ms)
        if version is not None:
            cond &= T.c.version == str(version)
        if arm is not None:
            cond &= T.c.arm == arm
        points: dict[tuple[Any, ...], Point] = {}
        with self.store.read() as conn:
            for row in conn.execute(sa.select(T).where(cond)).mappings():
                t = since_ms + (row["minute"] - since_ms) // step_ms * step_ms
                group = tuple(row[b] for b in by)
                p = points.get((t, *group))
                if p is None:
                    p = points[(t, *group)] = Point(t, dict(zip(by, group, strict=True)), step_ms)
                p.add(row)
        return SeriesResult(scene, since_ms, until_ms, step_ms, sorted(points.values(), key=lambda p: (p.t, *p.group.values())))

    def prune(self, older_than_ms: int) -> int:
        """Retention: delete rows of minutes before ``older_than_ms``; returns how many."""
        with self.store.begin() as conn:
            return conn.execute(T.delete().where(T.c.minute < older_than_ms)).rowcount or 0


class Point:
    """One step of the series: counts summed and histograms merged over its minutes and instances."""

    def __init__(self, t: int, group: dict[str, Any], step_ms: int) -> None:
        self.t = t
        self.group = group
        self.step_ms = step_ms
        self.requests = 0
        self.errors = 0
        self.fallbacks = 0
        self.hists: dict[str, dict[str, int]] = {s: {} for s in STAGES}
        self.instances: set[str] = set()

    def add(self, row: Any) -> None:
        self.requests += int(row["requests"])
        self.errors += int(row["errors"])
        self.fallbacks += int(row["fallbacks"])
        for s in STAGES:
            merge_hist(self.hists[s], row[f"latency_{s}"] or {})
        self.instances.add(row["instance"])

    def percentile(self, q: float, stage: str = "total") -> float | None:
        return quantile(self.hists[stage], q)

    def to_dict(self) -> dict[str, Any]:
        ok = self.requests - self.errors
        return {
            "t": self.t, **self.group, "requests": self.requests, "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "fallbacks": self.fallbacks, "fallback_rate": self.fallbacks / ok if ok > 0 else None,
            "qps": self.requests / (self.step_ms / 1000),
            "latency_p50_ms": self.percentile(0.5), "latency_p95_ms": self.percentile(0.95),
            "latency_p99_ms": self.percentile(0.99), "latency_p999_ms": self.percentile(0.999),
            "features_latency_p99_ms": self.percentile(0.99, "features"),
            "model_latency_p99_ms": self.percentile(0.99, "model"),
            "instances": len(self.instances),
        }


@dataclass
class SeriesResult:
    scene: str
    since_ms: int
    until_ms: int
    step_ms: int
    points: list[Point]

    def total(self) -> Point:
        """Everything in the range as one point (histograms merged)."""
        p = Point(self.since_ms, {}, max(MINUTE_MS, self.until_ms - self.since_ms))
        for q in self.points:
            p.requests += q.requests
            p.errors += q.errors
            p.fallbacks += q.fallbacks
            for s in STAGES:
                merge_hist(p.hists[s], q.hists[s])
            p.instances |= q.instances
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "since": self.since_ms, "until": self.until_ms, "step_ms": self.step_ms,
                "points": [p.to_dict() for p in self.points], "total": self.total().to_dict()}


class SeriesRecorder:
    """In-memory per-minute aggregation for one server instance, flushed by a background thread."""

    def __init__(self, store: SeriesStore, *, instance: str | None = None, flush_interval: float = 10.0,
                 live: bool = False) -> None:
        self.store = store
        self.instance = instance or default_instance()
        self.flush_interval = flush_interval
        # live: the background flush writes the current minute too (rows are summed), so readers of the
        # fleet's numbers (scene status, rollouts) see it within one flush interval
        self.live = live
        self._cells: dict[tuple[int, str, str, str], _Cell] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flush_errors = 0

    def _cell(self, scene: str, version: str, arm: str) -> _Cell:
        key = (int(time.time() // 60) * MINUTE_MS, scene, version, arm)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells.setdefault(key, _Cell())
        return cell

    def observe(self, scene: str, version: str, arm: str, total_s: float, features_s: float, model_s: float,
                fallback: bool = False) -> None:
        with self._lock:
            cell = self._cell(scene, version, arm)
            cell.requests += 1
            if fallback:
                cell.fallbacks += 1
            h = cell.hists
            b = total_bucket = bucket_of(total_s * 1000)
            h[0][b] = h[0].get(b, 0) + 1
            if features_s:
                b = bucket_of(features_s * 1000)
                h[1][b] = h[1].get(b, 0) + 1
            # a direct model call's model time is its total time: one bucket computed, not two
            b = total_bucket if model_s == total_s else bucket_of(model_s * 1000)
            h[2][b] = h[2].get(b, 0) + 1
        if self._thread is None:
            self.start()

    def error(self, scene: str, version: str, arm: str, code: str = "", status: int = 500) -> None:
        with self._lock:
            cell = self._cell(scene, version, arm)
            cell.requests += 1
            cell.errors += 1
        if self._thread is None:
            self.start()

    def pending(self, scene: str) -> list[SeriesRow]:
        """This instance's rows of ``scene`` not written yet (a copy), so that a reader in this
        process sees its own latest requests before the next flush."""
        with self._lock:
            cells = [(k, c.requests, c.errors, c.fallbacks, [dict(h) for h in c.hists])
                     for k, c in self._cells.items() if k[1] == scene]
        return [SeriesRow(sc, version, arm, minute, requests, errors, fallbacks,
                          *({str(b): v for b, v in h.items()} for h in hists))
                for (minute, sc, version, arm), requests, errors, fallbacks, hists in cells]

    def _take(self, everything: bool) -> list[SeriesRow]:
        now_minute = int(time.time() // 60) * MINUTE_MS
        with self._lock:
            keys = [k for k in self._cells if everything or k[0] < now_minute]
            cells = [(k, self._cells.pop(k)) for k in keys]
        rows = []
        for (minute, scene, version, arm), c in cells:
            rows.append(SeriesRow(scene, version, arm, minute, c.requests, c.errors, c.fallbacks,
                                  *({str(k): v for k, v in h.items()} for h in c.hists)))
        return rows

    def flush(self, everything: bool = True) -> int:
        """Write finished minutes (all minutes with ``everything``); returns rows written."""
        rows = self._take(everything)
        if not rows:
            return 0
        try:
            return self.store.write(rows, self.instance)
        except Exception:  # an outage must not lose the counts: put them back for the next flush
            self.flush_errors += 1
            log.exception("monitoring series: could not write %d rows; keeping them for the next flush", len(rows))
            with self._lock:
                for r in rows:
                    cell = self._cells.setdefault((r.minute, r.scene, r.version, r.arm), _Cell())
                    cell.requests += r.requests
                    cell.errors += r.errors
                    cell.fallbacks += r.fallbacks
                    for h, stored in zip(cell.hists, (r.latency_total, r.latency_features, r.latency_model),
                                         strict=True):
                        for k, v in stored.items():
                            h[int(k)] = h.get(int(k), 0) + v
            return 0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="shipyard-monitoring-series", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush(everything=self.live)

    def close(self) -> None:
        """Stop the thread and write everything, the current minute included."""
        thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(10)
        self._thread = None
        self.flush(everything=True)
