"""The online store contract, written once and run against every backend (SQLite, LMDB, Redis)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.config import load_settings
from shipyard.errors import ConfigError, MissingDependency
from shipyard.features.online import open_online_store
from shipyard.features.online.lmdb_store import LMDBOnlineStore
from shipyard.features.online.sqlite_store import SQLiteOnlineStore
from tests.features import online_support
from tests.features import redis_servers as servers_support
from tests.features.online_support import T0

online = online_support.online_all
redis_servers = servers_support.redis_servers

UTC = dt.UTC
NAMES = ["f_float", "f_int", "f_str", "f_bool", "f_ts"]


def _row(i: int) -> dict:
    return {"f_float": i + 0.25, "f_int": 10**12 + i, "f_str": f"s{i}", "f_bool": i % 2 == 0,
            "f_ts": T0 + dt.timedelta(seconds=i, microseconds=7)}


def test_roundtrip_keeps_types_and_missing_entities_are_null(online) -> None:
    keys = [(i,) for i in range(5)]
    result = online.write_batch("v", keys, [_row(i) for i in range(5)], [T0] * 5)
    assert result.written == 5
    got = online.read("v", NAMES, [(3,), (99,), (0,)])
    assert got["f_float"] == [3.25, None, 0.25]
    assert got["f_int"] == [10**12 + 3, None, 10**12]
    assert got["f_str"] == ["s3", None, "s0"]
    assert got["f_bool"] == [False, None, True]
    assert got["f_ts"] == [T0 + dt.timedelta(seconds=3, microseconds=7), None, T0 + dt.timedelta(microseconds=7)]
    assert type(got["f_int"][0]) is int and type(got["f_bool"][0]) is bool
    assert got["f_ts"][0].tzinfo is not None


def test_single_key_and_subset_of_features(online) -> None:
    online.write_batch("v", [(1,)], [_row(1)], [T0])
    assert online.read("v", ["f_str"], [(1,)]) == {"f_str": ["s1"]}
    assert online.read("v", ["f_str", "nope"], [(1,)]) == {"f_str": ["s1"], "nope": [None]}


def test_composite_and_string_keys(online) -> None:
    keys = [("a", 1), ("a", 2), ("b", 1)]
    online.write_batch("v", keys, [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], [T0] * 3)
    assert online.read("v", ["x"], [("b", 1), ("a", 2), ("a", 3), ("a", 1)])["x"] == [3.0, 2.0, None, 1.0]


def test_views_are_isolated(online) -> None:
    online.write_batch("a", [(1,)], [{"x": 1.0}], [T0])
    online.write_batch("b", [(1,)], [{"x": 2.0}], [T0])
    assert online.read("a", ["x"], [(1,)])["x"] == [1.0]
    assert online.read("b", ["x"], [(1,)])["x"] == [2.0]


def test_ttl_is_applied_at_read_time(online) -> None:
    online.write_batch("v", [(1,), (2,)], [{"x": 1.0}, {"x": 2.0}], [T0, T0 + dt.timedelta(hours=3)])
    now = T0 + dt.timedelta(hours=4)
    got = online.read("v", ["x"], [(1,), (2,)], ttl=dt.timedelta(hours=2), now=now)
    assert got["x"] == [None, 2.0]
    assert online.read("v", ["x"], [(1,), (2,)], ttl=None, now=now)["x"] == [1.0, 2.0]


def test_writes_are_conditional_on_event_time(online) -> None:
    online.write_batch("v", [(1,)], [{"x": 1.0}], [T0 + dt.timedelta(minutes=5)])
    res = online.write_batch(
        "v", [(1,), (1,), (1,)], [{"x": 0.5}, {"x": 9.0}, {"x": 2.0}],
        [T0, T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=6)], with_status=True,
    )
    assert res.status == ["stale", "duplicate", "written"]
    assert (res.written, res.duplicates, res.stale) == (1, 1, 1)
    assert online.read("v", ["x"], [(1,)])["x"] == [2.0]
    again = online.write_batch("v", [(1,)], [{"x": 3.0}], [T0 + dt.timedelta(minutes=6)], overwrite_equal=True)
    assert again.written == 1 and online.read("v", ["x"], [(1,)])["x"] == [3.0]


def test_event_ts_scan_stats_and_delete(online) -> None:
    stamps = [T0 + dt.timedelta(minutes=i) for i in range(4)]
    online.write_batch("v", [(i,) for i in range(4)], [{"x": float(i)} for i in range(4)], stamps)
    online.write_batch("w", [(1,)], [{"x": 1.0}], [T0])
    assert online.read_event_ts("v", [(2,), (7,)]) == [stamps[2], None]
    scanned = sorted(online.scan("v"))
    assert [k for k, _, _ in scanned] == [(0,), (1,), (2,), (3,)]
    assert scanned[3][1] == stamps[3] and scanned[3][2] == {"x": 3.0}
    stats = online.stats("v")
    assert stats.entities == 4 and stats.max_event_ts == stamps[3] and stats.last_write is not None
    assert online.delete_view("v") == 4
    assert online.read("v", ["x"], [(1,)])["x"] == [None]
    assert online.stats("v").entities == 0
    assert online.read("w", ["x"], [(1,)])["x"] == [1.0]


def test_large_batch_and_nan_becomes_null(online) -> None:
    n = 3000
    online.write_batch("v", [(i,) for i in range(n)], [{"x": float(i), "y": float("nan")} for i in range(n)], [T0] * n)
    got = online.read("v", ["x", "y"], [(i,) for i in range(0, n, 7)])
    assert got["x"] == [float(i) for i in range(0, n, 7)]
    assert set(got["y"]) == {None}
    assert online.stats("v").entities == n


def test_factory_picks_backend_by_scheme(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, online_store="sqlite")
    assert isinstance(open_online_store(settings), SQLiteOnlineStore)
    assert (tmp_path / ".shipyard" / "online.sqlite").exists()
    assert isinstance(open_online_store(url=f"lmdb:///{tmp_path / 'x.lmdb'}"), LMDBOnlineStore)
    with pytest.raises(ConfigError, match="online_store"):
        open_online_store(url="cassandra://x")
    if importlib.util.find_spec("redis") is not None:  # opening a Redis store connects to nothing yet
        for url in ("rediss://h:6380/0?ssl_ca_certs=/ca.pem", "redis+sentinel://h:26379/m/0", "redis+cluster://h:7000"):
            opened = open_online_store(url=url)
            assert opened.kind == "redis" and opened.target.url == url.split("?")[0]


def test_missing_redis_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "redis" or name.startswith("redis."):
            raise ImportError("no redis")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "redis", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependency, match=r"shipyard-ml\[redis\]"):
        open_online_store(url="redis://127.0.0.1:6379/0")


def test_dedupe_window_recognises_replayed_late_events(online) -> None:
    window = dt.timedelta(days=7)
    stamps = [T0 + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    first = online.write_batch("v", [(1,)] * 3, [{"x": float(i)} for i in range(3)], stamps,
                               with_status=True, dedupe_window=window)
    assert first.status == ["written", "written", "written"]
    late = online.write_batch("v", [(1,), (1,)], [{"x": 9.0}, {"x": 9.0}], [T0, T0], with_status=True,
                              dedupe_window=window)
    assert late.status == ["stale", "duplicate"]
    replay = online.write_batch("v", [(1,)] * 4, [{"x": 0.0}] * 4, [*stamps, T0], with_status=True,
                                dedupe_window=window)
    assert replay.status == ["duplicate", "duplicate", "duplicate", "duplicate"]
    assert online.read("v", ["x"], [(1,)])["x"] == [2.0]
    online.delete_view("v")
    again = online.write_batch("v", [(1,)], [{"x": 5.0}], [T0], with_status=True, dedupe_window=window)
    assert again.status == ["written"]


def test_read_many_equals_single_reads(online) -> None:
    online.write_batch("a", [(i,) for i in range(40)], [{"x": float(i), "y": i} for i in range(40)],
                       [T0 + dt.timedelta(hours=i) for i in range(40)])
    online.write_batch("b", [(i, "k") for i in range(40)], [{"z": f"s{i}"} for i in range(40)], [T0] * 40)
    now = T0 + dt.timedelta(hours=41)
    for n in (1, 5, 40):
        requests = [("a", ["y", "x"], [(i,) for i in range(n)], dt.timedelta(hours=20)),
                    ("b", ["z"], [(i, "k") for i in range(n)] + [(99, "k")], None)]
        got = online.read_many(requests, now=now)
        assert got == [online.read(v, f, k, ttl=t, now=now) for v, f, k, t in requests]
        reader = online.prepare_read([(v, f, t) for v, f, _k, t in requests])
        assert reader([k for _v, _f, k, _t in requests], now=now) == got
        assert got[0]["x"][-1] == (float(n - 1) if n - 1 >= 21 else None)
        assert got[1]["z"][-1] is None


def test_prepared_reader_with_no_or_one_entity(online) -> None:
    online.write_batch("a", [(1,), (2,)], [{"x": 1.5, "y": 1}, {"x": 2.5, "y": 2}], [T0, T0])
    online.write_batch("b", [(1,)], [{"t": T0}], [T0])
    reader = online.prepare_read([("a", ["y", "x"], None), ("b", ["t"], dt.timedelta(days=1))])
    now = T0 + dt.timedelta(hours=1)
    assert reader([[(2,)], [(1,)]], now=now) == [{"y": [2], "x": [2.5]}, {"t": [T0]}]
    assert reader([[], [(1,)]], now=now) == [{"y": [], "x": []}, {"t": [T0]}]
    assert reader([[(9,)], [(1,)]], now=T0 + dt.timedelta(days=2)) == [{"y": [None], "x": [None]}, {"t": [None]}]


def test_rewrite_drops_features_the_row_no_longer_has(online) -> None:
    """A view that lost a feature: a rewritten row keeps only the features it was written with."""
    import pyarrow as pa

    online.write_batch("v", [(1,), (2,)], [{"x": 1.0, "y": 1}, {"x": 2.0, "y": 2}], [T0, T0])
    later = T0 + dt.timedelta(seconds=1)
    assert online.write_batch("v", [(1,)], [{"x": 3.0}], [later]).written == 1
    table = pa.table({"id": [2], "ts": pa.array([later], pa.timestamp("us", tz="UTC")), "x": [4.0]})
    assert online.write_table("v", table, ["id"], "ts", ["x"]).written == 1
    assert online.read("v", ["x", "y"], [(1,), (2,)]) == {"x": [3.0, 4.0], "y": [None, None]}
    assert sorted((k, v) for k, _ts, v in online.scan("v")) == [((1,), {"x": 3.0}), ((2,), {"x": 4.0})]
    # the same features again replace the values in place
    online.write_batch("v", [(1,)], [{"x": 5.0}], [later + dt.timedelta(seconds=1)])
    assert dict((k, v) for k, _ts, v in online.scan("v"))[(1,)] == {"x": 5.0}
    assert online.stats("v").entities == 2


def test_write_table_stores_what_write_batch_stores(online) -> None:
    """The column-wise encoder against the per-row one: same reads, scans and conditional writes."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(7)
    n = 300
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
    floats[:8] = [0.0, -0.0, 1.0, 1e16, 123456789.0, 5e-324, np.nan, np.inf]
    keys = [(int(k), f"k{k % 3}\"") for k in range(n)]
    stamps = [T0 + dt.timedelta(seconds=int(s), microseconds=3) for s in rng.integers(0, 10**6, n)]
    table = pa.table({
        "id": pa.array([k for k, _ in keys], pa.int64()), "tag": [t for _, t in keys],
        "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "f_float": floats, "f_int": pa.array([None if i % 7 == 0 else int(x) for i, x in
                                             enumerate(rng.integers(-10**15, 10**15, n))], pa.int64()),
        "f_str": [None if i % 5 == 0 else f"é{i}\n\"q\"" for i in range(n)], "f_bool": [i % 3 == 0 for i in range(n)],
        "f_ts": pa.array([None if i % 4 == 0 else s for i, s in enumerate(stamps)], pa.timestamp("us", tz="UTC")),
    })
    rows = table.select(NAMES).to_pylist()
    by_batch = online.write_batch("per_row", keys, rows, stamps)
    by_table = online.write_table("by_table", table, ["id", "tag"], "ts", NAMES)
    assert by_table.written == by_batch.written == n
    asked = [*keys[::-1], (10**6, "none")]
    assert online.read("by_table", NAMES, asked) == online.read("per_row", NAMES, asked)
    got = online.read("by_table", ["f_float"], keys)["f_float"]
    want = [None if not np.isfinite(x) else float(x) for x in floats]
    assert got == want and all(type(v) is float for v in got if v is not None)
    assert np.signbit(got[1])
    assert sorted(online.scan("by_table"), key=repr) == sorted(online.scan("per_row"), key=repr)
    # conditional on event time, like write_batch: only the rows made newer are written
    newer = table.set_column(2, "ts", pa.array([s + dt.timedelta(seconds=1 if i % 2 else -1)
                                                for i, s in enumerate(stamps)], pa.timestamp("us", tz="UTC")))
    again = online.write_table("by_table", newer.set_column(3, "f_float", pa.array([1.5] * n)), ["id", "tag"], "ts",
                               NAMES)
    assert again.written == n // 2 and again.written + again.duplicates + again.stale == n
    assert online.read("by_table", ["f_float"], keys[:4])["f_float"] == [want[0], 1.5, want[2], 1.5]


def test_unreachable_redis_is_store_unavailable() -> None:
    pytest.importorskip("redis")
    from shipyard.errors import StoreUnavailable
    from shipyard.features.online.redis_store import RedisOnlineStore

    store = RedisOnlineStore("redis://127.0.0.1:1/0?prefix=nowhere:")
    with pytest.raises(StoreUnavailable, match="online_store"):
        store.read("v", ["x"], [(1,)])
    with pytest.raises(StoreUnavailable, match="online_store"):
        store.write_batch("v", [(1,)], [{"x": 1.0}], [T0])
    store.close()



@pytest.mark.parametrize("overwrite_equal", [True, False])
def test_write_table_over_stored_rows_matches_a_naive_model(online, overwrite_equal: bool) -> None:
    """Writing a table over rows already stored (unchanged rows, changed values at the same event
    time, newer and older rows, new keys) gives the verdicts and the rows of a per-row model of
    conditional writes; a rewrite of nothing but unchanged rows still counts as a write."""
    import pyarrow as pa

    n = 60
    stamps = [T0 + dt.timedelta(seconds=i) for i in range(n)]

    def table(ids: list[int], ts: list[dt.datetime], x: list[float]) -> pa.Table:
        return pa.table({"id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                         "x": pa.array(x, pa.float64())})

    first = table(list(range(n)), stamps, [i + 0.5 for i in range(n)])
    model: dict[int, tuple[dt.datetime, float]] = {}

    def apply(rows: pa.Table) -> tuple[int, int, int]:
        verdicts = [0, 0, 0]  # written, duplicate, stale
        for key, ts, x in zip(*(rows.column(c).to_pylist() for c in ("id", "ts", "x")), strict=True):
            stored = model.get(key)
            if stored is None or ts > stored[0] or (ts == stored[0] and overwrite_equal):
                model[key] = (ts, x)
                verdicts[0] += 1
            else:
                verdicts[1 if ts == stored[0] else 2] += 1
        return verdicts[0], verdicts[1], verdicts[2]

    def check(rows: pa.Table) -> None:
        want = apply(rows)
        got = online.write_table("v", rows, ["id"], "ts", ["x"], overwrite_equal=overwrite_equal)
        # (a backend may count every skipped row as stale: see WriteResult)
        assert (got.written, got.duplicates + got.stale) == (want[0], want[1] + want[2])
        keys = sorted(model)
        assert online.read("v", ["x"], [(k,) for k in keys]) == {"x": [model[k][1] for k in keys]}
        assert sorted((k[0], ts, v["x"]) for k, ts, v in online.scan("v")) == [(k, *model[k]) for k in keys]
        assert online.stats("v").entities == len(model)
        assert online.stats("v").max_event_ts == max(ts for ts, _x in model.values())

    check(first)
    written_at = online.stats("v").last_write
    check(first)  # nothing changed
    if overwrite_equal:
        assert online.stats("v").last_write >= written_at
    ids, ts, x = (first.column(c).to_pylist() for c in ("id", "ts", "x"))
    for i in range(0, n, 5):
        x[i] = -1.0  # same event time, another value
    for i in range(1, n, 5):
        ts[i], x[i] = ts[i] + dt.timedelta(seconds=1), -2.0  # newer
    for i in range(2, n, 5):
        ts[i], x[i] = ts[i] - dt.timedelta(seconds=1), -3.0  # older
    check(table(ids + [n, n + 1], ts + [T0, T0], x + [7.0, 8.0]))  # and two new keys


@pytest.fixture(params=["redis", *online_support.REDIS_VARIANTS])
def redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A Redis online store under its own key prefix, on the shared server and on each server the
    tests start (skipped without SHIPYARD_TEST_REDIS_URL)."""
    if not online_support.REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL")
    url = request.getfixturevalue("redis_servers").url(request.param) if request.param != "redis" else ""
    yield from online_support.make_online(request.param, tmp_path, url)


@pytest.mark.redis
def test_redis_reloads_missing_scripts(redis_store: Any, redis_servers: Any) -> None:
    """After a server restart the scripts are gone; calls load them again and succeed."""
    store = redis_store
    if store.target.url == online_support.REDIS_URL:
        pytest.skip("SCRIPT FLUSH is run on the servers the tests start, never on the shared one")
    store.write_batch("v", [(1,)], [{"x": 1.0}], [T0])
    # the ACL user may not flush scripts: an admin connection of the test server does
    admin = redis_servers.admin() if "@" in store.target.url else store.client
    admin.script_flush()  # as if the server had restarted
    assert store.write_batch("v", [(1,)], [{"x": 2.0}], [T0 + dt.timedelta(seconds=1)]).written == 1
    admin.script_flush()
    assert store.write_batch("v", [(2,)], [{"x": 3.0}], [T0]).written == 1
    assert store.read("v", ["x"], [(i,) for i in range(40)])["x"][:3] == [None, 2.0, 3.0]


@pytest.mark.redis
def test_redis_foreign_keys_under_the_prefix_are_refused_clearly(redis_store: Any) -> None:
    """A row key that holds something else (the prefix is shared with other data) fails the write
    with an error naming the prefix and the fix, and leaves that key alone; reads see no row."""
    from shipyard.features.online.base import encode_key

    store = redis_store
    key = store._row_prefix("v") + encode_key((1,))
    store.client.hset(key, mapping={"x": "1.0"})
    with pytest.raises(ConfigError, match="prefix of its own") as caught:
        store.write_batch("v", [(1,)], [{"x": 2.0}], [T0])
    assert caught.value.details == {"field": "online_store"}
    assert store.client.hgetall(key) == {b"x": b"1.0"}
    assert store.read("v", ["x"], [(1,)]) == {"x": [None]}
    assert store.write_batch("v", [(2,)], [{"x": 2.0}], [T0]).written == 1  # the store still works
    other = store._row_prefix("v") + encode_key((3,))
    store.client.set(other, "a string of someone else's")
    with pytest.raises(ConfigError, match="prefix of its own"):
        store.write_batch("v", [(3,)], [{"x": 3.0}], [T0])
    with pytest.raises(ConfigError, match="prefix of its own"):
        store.read("v", ["x"], [(2,), (3,)])
    assert store.client.get(other) == b"a string of someone else's"
    for foreign in (b"12345", b"17 not json"):
        store.client.set(other, foreign)
        with pytest.raises(ConfigError, match="prefix of its own"):
            store.read("v", ["x"], [(3,)])
    assert store.read("v", ["x"], [(2,)]) == {"x": [2.0]}


@pytest.mark.redis
def test_redis_reads_survive_a_dropped_connection(redis_store: Any, redis_servers: Any) -> None:
    """The server closes the read connection (a restart, an idle timeout): the next read reconnects
    once and answers, and so does a prepared reader."""
    from tests.features.redis_servers import ACL_USER

    store = redis_store
    store.write_batch("v", [(1,), (2,)], [{"x": 1.0}, {"x": 2.0}], [T0, T0])
    reader = store.prepare_read([("v", ["x"], None)])
    assert reader([[(1,)]]) == [{"x": [1.0]}]
    for _ in range(3):
        if store.cluster:  # every client connection of every node of the test cluster
            for node in store.client.get_primaries():
                with redis_servers.admin(node.port) as admin:
                    admin.client_kill_filter(_type="normal", skipme=True)
        elif "@" in store.target.url:  # the ACL user's connections, on the test server
            with redis_servers.admin() as admin:
                assert admin.client_kill_filter(user=ACL_USER) >= 1
        else:  # this thread's read connection alone (the shared server has other clients)
            assert store.client.client_kill_filter(_id=store._reader().client_id()) == 1
        assert store.read("v", ["x"], [(2,), (1,), (3,)]) == {"x": [2.0, 1.0, None]}
        assert reader([[(2,), (1,)]]) == [{"x": [2.0, 1.0]}]


def test_reads_of_thousands_of_keys_across_views(online) -> None:
    """A read larger than one Redis MGET (1,000 keys) keeps every row in its place, across views
    and with missing and expired rows among them."""
    n = 1_500
    online.write_batch("a", [(i,) for i in range(0, n, 2)], [{"x": float(i)} for i in range(0, n, 2)],
                       [T0] * len(range(0, n, 2)))
    online.write_batch("b", [(i,) for i in range(n)], [{"y": i, "s": f"s{i}"} for i in range(n)],
                       [T0 - dt.timedelta(days=3) if i % 3 == 0 else T0 for i in range(n)])
    keys = [(i,) for i in reversed(range(n + 10))]
    got = online.read_many([("a", ["x"], keys, None), ("b", ["s", "y"], keys, dt.timedelta(days=2))],
                           now=T0 + dt.timedelta(hours=1))
    assert got[0] == {"x": [float(i) if i % 2 == 0 and i < n else None for i, in keys]}
    fresh = [i < n and i % 3 != 0 for i, in keys]
    assert got[1] == {"s": [f"s{i}" if ok else None for (i,), ok in zip(keys, fresh, strict=True)],
                      "y": [i if ok else None for (i,), ok in zip(keys, fresh, strict=True)]}


def _stalled_read(servers: Any, query: str, pause_s: float) -> tuple[type[BaseException] | None, float]:
    """Open a store on the test server, pause the server (CLIENT PAUSE ALL) and read: what the
    read raised (None when it waited for the pause to end and answered) and how long it took. The
    shared server is never paused."""
    import time

    from shipyard.features.online.redis_store import RedisOnlineStore

    servers._secure_server()
    store = RedisOnlineStore(f"redis://127.0.0.1:{servers.plain_port}/0{query}", prefix=f"sytest:{uuid.uuid4().hex[:10]}:")
    admin = servers.admin()
    try:
        store.write_batch("v", [(1,)], [{"x": 1.0}], [T0])
        reader = store.prepare_read([("v", ["x"], None)])
        assert reader([[(1,)]]) == [{"x": [1.0]}]  # the read connection is open
        admin.execute_command("CLIENT", "PAUSE", int(pause_s * 1000), "ALL")
        started = time.monotonic()
        raised: type[BaseException] | None = None
        try:
            reader([[(1,)]])
        except Exception as exc:  # noqa: BLE001 - the type is what the test looks at
            raised = type(exc)
        finally:
            took = time.monotonic() - started
            admin.execute_command("CLIENT", "UNPAUSE")
        assert reader([[(1,)]]) == [{"x": [1.0]}]  # answers again once the server does
        return raised, took
    finally:
        store.delete_prefix()
        store.close()
        admin.close()


@pytest.mark.redis
def test_redis_reads_time_out_on_a_stalled_server(redis_servers: Any) -> None:
    """A server that stops answering fails a read within the socket timeout with a clear error
    instead of hanging the caller; once it answers again, so do reads."""
    from shipyard.errors import StoreUnavailable

    if not online_support.REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL")
    raised, took = _stalled_read(redis_servers, "?socket_timeout=0.3", 3.0)
    assert raised is StoreUnavailable
    assert took < 3.0  # a read and one reconnect, 0.3 s each, while the server was still paused


@pytest.mark.redis
def test_redis_default_timeout_holds_whatever_the_redis_py_version(redis_servers: Any) -> None:
    """Without ?socket_timeout the store still times out (5 s, set by Shipyard: redis-py before 8
    has no default and would wait for the pause to end, then answer)."""
    from shipyard.errors import StoreUnavailable

    if not online_support.REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL")
    raised, took = _stalled_read(redis_servers, "", 14.0)
    assert raised is StoreUnavailable  # a read and one reconnect, 5 s each
    assert took < 14.0


@pytest.mark.parametrize(("url", "words"), [
    ("redis://h:6379/0?timeout_s=1", ["unknown parameter 'timeout_s'", "socket_timeout"]),
    ("redis://h:6379/0?ssl_ca_certs=/ca.pem", ["ssl_ca_certs needs TLS", "rediss://"]),
    ("redis://h:6379/0?socket_timeout=0", ["socket_timeout='0'", "socket_timeout=0.5"]),
    ("rediss://h:6380/0?ssl_cert_reqs=maybe", ["ssl_cert_reqs='maybe'", "required, optional or none"]),
    ("redis+sentinel://h:26379", ["names no master", "redis+sentinel://host:26379/<master name>/0"]),
    ("redis+cluster://h:7000/3", ["only database 0", "drop the path"]),
    ("redis://h:6379/0?sentinel_password=x", ["only apply to redis+sentinel://"]),
    ("redis://u:topsecret@h:6379/0?bad=1", ["unknown parameter 'bad'", "u:***@h"]),
])
def test_redis_url_mistakes_name_the_part_and_the_fix(url: str, words: list[str]) -> None:
    pytest.importorskip("redis")
    from shipyard.features.online.redis_store import RedisOnlineStore

    with pytest.raises(ConfigError) as caught:
        RedisOnlineStore(url)
    assert caught.value.details == {"field": "online_store"}
    for word in words:
        assert word in str(caught.value)
    assert "topsecret" not in str(caught.value)


@pytest.mark.redis
def test_redis_tls_without_the_ca_and_acl_with_a_wrong_password_fail_clearly(redis_servers: Any) -> None:
    from shipyard.errors import StoreUnavailable
    from shipyard.features.online.redis_store import RedisOnlineStore
    from tests.features.redis_servers import ACL_USER

    if not online_support.REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL")
    tls_url = redis_servers.url("redis-tls")
    store = RedisOnlineStore(tls_url.split("?")[0] + "?socket_timeout=2", prefix="sytest:x:")
    with pytest.raises(StoreUnavailable, match="ssl_ca_certs"):
        store.read("v", ["x"], [(1,)])
    store.close()
    redis_servers.url("redis-acl")
    wrong = RedisOnlineStore(f"redis://{ACL_USER}:nope@127.0.0.1:{redis_servers.plain_port}/0", prefix="sytest:x:")
    with pytest.raises(ConfigError, match="credentials") as caught:
        wrong.read("v", ["x"], [(1,)])
    assert "nope" not in str(caught.value)
    wrong.close()
    outside = RedisOnlineStore(redis_servers.url("redis-acl"), prefix="elsewhere:")  # keys the ACL does not allow
    with pytest.raises(ConfigError, match="ACL") as caught:
        outside.write_batch("v", [(1,)], [{"x": 1.0}], [T0])
    outside.close()


@pytest.mark.redis
def test_redis_table_writes_across_many_parts_and_batches(redis_store: Any) -> None:
    """A table written in many small script batches (and encoding parts) stores every row once,
    with the same verdicts as one big batch."""
    import pyarrow as pa

    store = redis_store
    n = 503
    stamps = [T0 + dt.timedelta(seconds=i) for i in range(n)]
    table = pa.table({"id": list(range(n)), "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                      "x": [i + 0.5 for i in range(n)], "s": [f"v{i}" for i in range(n)]})
    store.batch_size = 7  # 72 script calls in 18 parts of 28 rows
    first = store.write_table("v", table, ["id"], "ts", ["x", "s"])
    assert (first.written, first.duplicates, first.stale) == (n, 0, 0)
    again = store.write_table("v", table, ["id"], "ts", ["x", "s"])
    assert again.written == 0 and again.duplicates + again.stale == n
    got = store.read("v", ["x", "s"], [(i,) for i in range(n)])
    assert got == {"x": [i + 0.5 for i in range(n)], "s": [f"v{i}" for i in range(n)]}
    assert store.stats("v").entities == n and store.stats("v").max_event_ts == stamps[-1]


@pytest.mark.redis
def test_redis_cluster_keeps_each_view_in_one_slot(redis_servers: Any, tmp_path: Path) -> None:
    """On a cluster every key of a view (rows, counters, seen-sets) hashes to one slot, so the
    write script and a view's MGET never cross slots; different views spread over the nodes."""
    if not online_support.REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL")
    for store in online_support.make_online("redis-cluster", tmp_path, redis_servers.url("redis-cluster")):
        views = ["a", "b", "c", "d"]
        for view in views:
            store.write_batch(view, [(i,) for i in range(50)], [{"x": float(i)} for i in range(50)], [T0] * 50,
                              dedupe_window=dt.timedelta(days=1))
        slots: dict[str, set[int]] = {}
        for key in store.client.scan_iter(match=f"{store.prefix}*", count=1000):
            view = key.decode().split("{", 1)[1].split("}", 1)[0]
            slots.setdefault(view, set()).add(store.client.keyslot(key))
        assert sorted(slots) == views and all(len(found) == 1 for found in slots.values())
        nodes = {store.client.nodes_manager.get_node_from_slot(next(iter(found))).name for found in slots.values()}
        assert len(nodes) > 1
        assert store.read_many([(v, ["x"], [(7,), (99,)], None) for v in views]) == [{"x": [7.0, None]}] * 4


@pytest.mark.redis
@pytest.mark.parametrize("overwrite_equal", [True, False])
def test_redis_absent_rows_written_by_set_nx_match_a_naive_model(redis_store: Any, overwrite_equal: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows found absent are written by SET NX; another writer's rows stored between the check and
    the SET NX (newer, older, at the same time) and repeated keys in one table still get the
    verdicts, rows and meta hash (entities, newest event time, last write, version) of a per-row
    model of conditional writes."""
    import pyarrow as pa

    store = redis_store
    model: dict[int, tuple[dt.datetime, float]] = {}

    def apply(ids: list[int], ts: list[dt.datetime], x: list[float]) -> tuple[int, int]:
        written = skipped = 0
        for key, t, v in zip(ids, ts, x, strict=True):
            stored = model.get(key)
            if stored is None or t > stored[0] or (t == stored[0] and overwrite_equal):
                model[key] = (t, v)
                written += 1
            else:
                skipped += 1
        return written, skipped

    def meanwhile(ids: list[int], ts: list[dt.datetime], x: list[float]) -> None:  # another writer's rows
        apply(ids, ts, x)
        store.write_batch("v", [(i,) for i in ids], [{"x": v} for v in x], ts, overwrite_equal=overwrite_equal)

    def check(ids: list[int], ts: list[dt.datetime], x: list[float], version: int) -> None:
        before = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
        table = pa.table({"id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                          "x": pa.array(x, pa.float64())})
        got = store.write_table("v", table, ["id"], "ts", ["x"], version=version, overwrite_equal=overwrite_equal)
        want = apply(ids, ts, x)  # after the other writer's rows, as they reached the store first
        assert (got.written, got.duplicates + got.stale) == want
        keys = sorted(model)
        assert store.read("v", ["x"], [(k,) for k in keys]) == {"x": [model[k][1] for k in keys]}
        assert sorted((k[0], t, v["x"]) for k, t, v in store.scan("v")) == [(k, *model[k]) for k in keys]
        stats = store.stats("v")
        assert stats.entities == len(model) and stats.max_event_ts == max(t for t, _v in model.values())
        assert stats.last_write is not None and stats.last_write >= before
        assert int(store.client.hget(store._meta_key("v"), "version")) == version

    at = [T0 + dt.timedelta(seconds=i) for i in range(40)]
    real_has_rows, real_mget = store._has_rows, store._mget

    def has_rows_then_others_write(meta: str) -> bool:
        found = real_has_rows(meta)
        # newer, older and same-time rows of keys the table writes, and a key it does not
        meanwhile([3, 5, 7, 99], [at[3] + dt.timedelta(seconds=1), at[5] - dt.timedelta(seconds=1), at[7], at[9]],
                  [-3.0, -5.0, -7.0, -99.0])
        return found

    monkeypatch.setattr(store, "_has_rows", has_rows_then_others_write)
    # a fresh view: every row tried with SET NX; key 11 twice (older second, then newer third)
    ids = [*range(20), 11, 11]
    check(ids, [*at[:20], at[10], at[12]], [i + 0.5 for i in range(20)] + [-11.0, 11.5], version=1)
    monkeypatch.setattr(store, "_has_rows", real_has_rows)

    def mget_then_others_write(groups: Any) -> Any:
        found = real_mget(groups)
        meanwhile([25, 27], [at[30], at[20]], [-25.0, -27.0])  # keys found absent, written meanwhile
        return found

    monkeypatch.setattr(store, "_mget", mget_then_others_write)
    # a view with rows: unchanged, newer and absent keys together
    ids = [*range(0, 20, 2), *range(20, 30)]
    ts = [at[i] + dt.timedelta(seconds=i % 4) for i in range(0, 20, 2)] + at[20:30]
    check(ids, ts, [i + 0.5 for i in ids], version=2)
    monkeypatch.setattr(store, "_mget", real_mget)
    check([30, 31], at[30:32], [1.0, 2.0], version=3)  # only absent keys, no other writer
