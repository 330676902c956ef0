"""Materialization against a pandas reference: groupby-last of the offline rows in the window, TTL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from shipyard.arrow_util import table_from_pandas
from shipyard.errors import InvalidInput
from shipyard.features.materialize import materialize, materialize_incremental, watermark
from shipyard.features.monitoring import materialization_summary
from tests.features import online_support
from tests.features.online_support import T0, Entity, Field, MemoryFeatureStore, View

online = online_support.online
TTL = dt.timedelta(days=2)


def _offline(seed: int, n: int = 3000, entities: int = 60, start: dt.datetime = T0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = [start + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 10 * 24 * 60, n)]
    frame = pd.DataFrame({
        "customer_id": rng.integers(0, entities, n),
        "event_timestamp": pd.to_datetime(ts, utc=True),
        "created": pd.to_datetime([t + dt.timedelta(seconds=int(s)) for t, s in zip(ts, rng.integers(0, 100, n), strict=True)], utc=True),
        "amount": rng.normal(100, 20, n),
        "count": rng.integers(0, 1000, n),
    })
    frame.loc[rng.random(n) < 0.05, "amount"] = np.nan
    # exact duplicates of event time: the created timestamp decides
    dup = frame.sample(100, random_state=seed).copy()
    dup["created"] = dup["created"] + pd.Timedelta(hours=1)
    dup["count"] = dup["count"] + 1
    return pd.concat([frame, dup], ignore_index=True)


def _view() -> View:
    return View("spend", [Entity("customer", ["customer_id"])], [Field("amount", "float64"), Field("count", "int64")],
                ttl=TTL, created_timestamp_field="created")


def _reference(frame: pd.DataFrame, start: dt.datetime | None, end: dt.datetime, keys: list[int]) -> dict[str, list]:
    sel = frame[(frame.event_timestamp < end) & ((frame.event_timestamp >= start) if start else True)]
    last = sel.sort_values(["event_timestamp", "created"]).groupby("customer_id").tail(1).set_index("customer_id")
    out: dict[str, list] = {"amount": [], "count": []}
    for k in keys:
        if k not in last.index or last.loc[k, "event_timestamp"] < end - TTL:
            out["amount"].append(None)
            out["count"].append(None)
            continue
        amount = last.loc[k, "amount"]
        out["amount"].append(None if pd.isna(amount) else float(amount))
        out["count"].append(int(last.loc[k, "count"]))
    return out


@pytest.fixture
def fstore(sqlite_workspace, online) -> MemoryFeatureStore:
    return MemoryFeatureStore(sqlite_workspace, online_store=online)


def test_materialize_matches_groupby_last_within_ttl(fstore: MemoryFeatureStore) -> None:
    frame = _offline(1)
    fstore.add(_view(), frame)
    start, end = T0 + dt.timedelta(days=2), T0 + dt.timedelta(days=6)
    seen: list[tuple[int, int]] = []
    (result,) = materialize(fstore.materialize_deps(), start, end, batch_size=7, progress=lambda v, done, total: seen.append((done, total)))
    keys = list(range(70))
    got = fstore.online_store.read("spend", ["amount", "count"], [(k,) for k in keys], ttl=TTL, now=end)
    assert got == _reference(frame, start, end, keys)
    in_window = frame[(frame.event_timestamp >= start) & (frame.event_timestamp < end)]
    assert result.rows_read == len(in_window)
    assert result.rows_written == in_window.customer_id.nunique()
    assert seen[0] == (0, result.rows_written) and seen[-1] == (result.rows_written, result.rows_written)
    summary = materialization_summary(fstore, "spend")
    assert summary["runs"] == 1 and summary["last_run"]["status"] == "succeeded"
    assert summary["last_run"]["rows_written"] == result.rows_written
    assert summary["last_run"]["rows_read"] == len(in_window)
    # the written rows' distribution equals pandas on the same latest rows
    latest = in_window.sort_values(["event_timestamp", "created"]).groupby("customer_id").tail(1)
    stats = summary["last_run"]["stats"]["amount"]
    assert stats["mean"] == pytest.approx(latest.amount.mean())
    assert stats["std"] == pytest.approx(latest.amount.std())
    assert stats["missing"] == int(latest.amount.isna().sum())
    assert stats["quantiles"]["p50"] == pytest.approx(latest.amount.median())


def test_rematerializing_is_idempotent(fstore: MemoryFeatureStore) -> None:
    frame = _offline(2)
    fstore.add(_view(), frame)
    end = T0 + dt.timedelta(days=10)
    materialize(fstore.materialize_deps(), None, end)
    first = fstore.online_store.read("spend", ["amount", "count"], [(k,) for k in range(60)], ttl=TTL, now=end)
    materialize(fstore.materialize_deps(), None, end)
    assert fstore.online_store.read("spend", ["amount", "count"], [(k,) for k in range(60)], ttl=TTL, now=end) == first
    assert first == _reference(frame, None, end, list(range(60)))


def test_incremental_uses_watermark(fstore: MemoryFeatureStore) -> None:
    frame = _offline(3)
    fstore.add(_view(), frame)
    t1 = T0 + dt.timedelta(days=5)
    (first,) = materialize_incremental(fstore.materialize_deps(), end=t1)
    assert first.start == t1 - TTL and watermark(fstore.ws.store, "spend") == t1
    newer = _offline(4, n=500, start=T0 + dt.timedelta(days=5))
    newer = newer[newer.event_timestamp < T0 + dt.timedelta(days=7)]
    fstore.offline_append("spend", table_from_pandas(newer))
    t2 = T0 + dt.timedelta(days=7)
    (second,) = materialize_incremental(fstore.materialize_deps(), end=t2)
    assert second.start == t1 and watermark(fstore.ws.store, "spend") == t2
    both = pd.concat([frame, newer], ignore_index=True)
    got = fstore.online_store.read("spend", ["amount", "count"], [(k,) for k in range(60)], ttl=TTL, now=t2)
    assert got == _reference(both, None, t2, list(range(60)))
    # rows of this store are not files, so arrivals cannot be seen: each run re-reads the TTL window
    (third,) = materialize_incremental(fstore.materialize_deps(), end=t2)
    assert third.start == t2 - TTL and third.run_id is not None
    assert fstore.online_store.read("spend", ["amount", "count"], [(k,) for k in range(60)], ttl=TTL, now=t2) == got


def test_bad_window_names_the_field(fstore: MemoryFeatureStore) -> None:
    fstore.add(_view(), _offline(5))
    with pytest.raises(InvalidInput, match="start"):
        materialize(fstore.materialize_deps(), T0 + dt.timedelta(days=3), T0)
    with pytest.raises(InvalidInput, match="not a timestamp"):
        materialize(fstore.materialize_deps(), "yesterday-ish", T0)


def test_views_in_parallel_match_one_at_a_time(fstore: MemoryFeatureStore) -> None:
    """Several views at once write what one at a time writes, keep their order, and a failing view
    does not stop the others (its error is raised once they are done)."""
    frames = {}
    for i in range(4):
        view = View(f"spend_{i}", [Entity("customer", ["customer_id"])],
                    [Field("amount", "float64"), Field("count", "int64")], ttl=TTL, created_timestamp_field="created")
        frames[view.name] = _offline(10 + i)
        fstore.add(view, frames[view.name])
    end = T0 + dt.timedelta(days=10)
    seen: list[str] = []
    results = materialize(fstore.materialize_deps(), None, end, parallel=3, progress=lambda v, done, total: seen.append(v))
    assert [r.view for r in results] == [f"spend_{i}" for i in range(4)]
    assert set(seen) == set(frames)
    keys = [(k,) for k in range(60)]
    for name, frame in frames.items():
        got = fstore.online_store.read(name, ["amount", "count"], keys, ttl=TTL, now=end)
        assert got == _reference(frame, None, end, list(range(60)))
        one = materialize(fstore.materialize_deps(), None, end, views=[name], parallel=1)[0]
        assert one.rows_read == results[[r.view for r in results].index(name)].rows_read

    fstore.add(View("broken", [Entity("customer", ["customer_id"])], [Field("amount", "float64")], ttl=TTL),
               pd.DataFrame({"customer_id": [1], "event_timestamp": ["not a time"], "amount": [1.0]}))
    fstore.online_store.delete_view("spend_3")
    with pytest.raises(Exception) as err:  # noqa: B017 - whatever the broken view raises
        materialize(fstore.materialize_deps(), None, end, parallel=4)
    assert "not a time" in str(err.value) or "event_timestamp" in str(err.value), err.value
    # the healthy views were still written
    assert fstore.online_store.read("spend_3", ["count"], keys, ttl=TTL, now=end)["count"] == \
        _reference(frames["spend_3"], None, end, list(range(60)))["count"]
