"""Operational series: several instances write the same minute, queries add them up and merge
histograms; percentiles against numpy on the raw latencies; downsampling; retention."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import InvalidInput
from shipyard.monitoring.series import EDGES_MS, MINUTE_MS, SeriesRecorder, SeriesStore, bucket_of, quantile
from shipyard.serving.metrics import ServingMetrics


def test_bucket_edges_hold_their_values() -> None:
    rng = np.random.default_rng(0)
    for ms in rng.lognormal(0, 3, 2000):
        b = bucket_of(float(ms))
        lo = EDGES_MS[b - 1] if b else 0.0
        assert lo < ms <= EDGES_MS[b] or (b == len(EDGES_MS) - 1 and ms > lo)


def _record(rec: SeriesRecorder, latencies_ms: np.ndarray, errors: int = 0, fallbacks: int = 0) -> None:
    for i, ms in enumerate(latencies_ms):
        rec.observe("s", "1", "control", ms / 1000, ms / 3000, ms / 2000, fallback=i < fallbacks)
    for _ in range(errors):
        rec.error("s", "1", "control", "model_error", 500)


def test_two_instances_same_minute_are_merged_not_averaged(workspace) -> None:
    store = SeriesStore(workspace.store)
    fast = np.random.default_rng(1).uniform(1, 2, 990)
    slow = np.random.default_rng(2).uniform(100, 200, 10)
    a = SeriesRecorder(store, instance="a")
    b = SeriesRecorder(store, instance="b")
    _record(a, fast, errors=3, fallbacks=5)
    _record(b, slow, errors=1)
    assert a.flush() == 1 and b.flush() == 1
    now = int(__import__("time").time() * 1000)
    res = store.query("s", now - 10 * MINUTE_MS, now + MINUTE_MS, step_ms=20 * MINUTE_MS)
    assert len(res.points) == 1
    p = res.points[0].to_dict()
    assert p["requests"] == 990 + 10 + 4 and p["errors"] == 4 and p["fallbacks"] == 5
    assert p["instances"] == 2
    both = np.concatenate([fast, slow])
    exact = float(np.percentile(both, 99.5))
    merged = res.points[0].percentile(0.995)
    assert abs(merged - exact) / exact < 0.2  # within one bucket (19 % wide)
    median = res.points[0].percentile(0.5)
    assert abs(median - float(np.median(both))) / float(np.median(both)) < 0.2
    # an average of the two instances' medians would be far off
    avg = (quantile(_hist(fast), 0.5) + quantile(_hist(slow), 0.5)) / 2
    assert avg > 10 * median
    a.close()
    b.close()


def _hist(values: np.ndarray) -> dict[int, int]:
    h: dict[int, int] = {}
    for v in values:
        h[bucket_of(float(v))] = h.get(bucket_of(float(v)), 0) + 1
    return h


def test_a_minute_flushed_twice_is_summed(workspace) -> None:
    store = SeriesStore(workspace.store)
    rec = SeriesRecorder(store, instance="x")
    _record(rec, np.full(7, 5.0))
    rec.flush()
    _record(rec, np.full(3, 5.0), errors=2)
    rec.flush()
    now = int(__import__("time").time() * 1000)
    total = store.query("s", now - 5 * MINUTE_MS, now + MINUTE_MS).total()
    assert (total.requests, total.errors) == (12, 2)
    assert sum(int(v) for v in total.hists["total"].values()) == 10
    rec.close()


def test_downsampling_and_retention(workspace) -> None:
    from shipyard.monitoring.series import SeriesRow

    store = SeriesStore(workspace.store)
    t0 = 1_700_000_000_000 // MINUTE_MS * MINUTE_MS
    rows = [SeriesRow("s", "1", "control", t0 + i * MINUTE_MS, requests=i + 1, latency_total={"40": i + 1})
            for i in range(10)]
    store.write(rows, "i1")
    res = store.query("s", t0, t0 + 10 * MINUTE_MS, step_ms=5 * MINUTE_MS)
    assert [p.requests for p in res.points] == [sum(range(1, 6)), sum(range(6, 11))]
    assert [p.t for p in res.points] == [t0, t0 + 5 * MINUTE_MS]
    assert store.prune(t0 + 4 * MINUTE_MS) == 4
    assert store.query("s", t0, t0 + 10 * MINUTE_MS).total().requests == sum(range(5, 11))
    with pytest.raises(InvalidInput, match="whole number of minutes"):
        store.query("s", t0, t0 + MINUTE_MS, step_ms=90_000)


def test_serving_metrics_feed_the_recorder(workspace) -> None:
    store = SeriesStore(workspace.store)
    metrics = ServingMetrics()
    metrics.series = SeriesRecorder(store, instance="srv")
    metrics.observe("credit", "2", "control", 0.004, 0.001, 0.002, fallback=True)
    metrics.observe("credit", "2", "control", 0.006, 0.0, 0.003)
    metrics.error("credit", "2", "control", "model_error", 500)
    metrics.series.close()
    now = int(__import__("time").time() * 1000)
    p = store.query("credit", now - 5 * MINUTE_MS, now + MINUTE_MS, by=("version", "arm")).points[0]
    assert (p.group, p.requests, p.errors, p.fallbacks) == ({"version": "2", "arm": "control"}, 3, 1, 1)
    assert sum(p.hists["features"].values()) == 1  # a request without a features step adds none
