"""The latest row per entity chosen inside the offline scan equals a pandas groupby-last reference.

Random views with ties on event time broken by the created timestamp (missing created timestamps
lose), exact duplicate rows, composite keys, integer keys close together or far apart, and windows whose edges fall on row timestamps
(start is inclusive, end exclusive).
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import load_settings
from shipyard.features.online import online_store_of
from shipyard.workspace import Workspace
from tests.features.pit_support import T0, view_frames, write_project


@st.composite
def offline_data(draw: Any) -> dict[str, Any]:
    hours = st.integers(0, 30)
    stats: dict[tuple[Any, ...], dict[str, Any]] = {}
    # ids a few apart or far apart: DuckDB groups a narrow range of keys in an array, a wide one in
    # a hash table (see read_offline_latest); both must choose the same rows
    spread = draw(st.sampled_from([1, 100_003]))
    for _ in range(draw(st.integers(0, 40))):
        user = draw(st.integers(0, 4)) * spread
        ts = T0 + timedelta(hours=draw(hours))
        late = draw(st.one_of(st.none(), st.integers(0, 3)))
        created = None if late is None else ts + timedelta(hours=late)
        row = {"user_id": user, "ts": ts, "created": created, "x": float(draw(st.integers(-50, 50))),
               "n": draw(st.integers(0, 9))}
        stats.setdefault((user, ts, created), row)  # (keys, event, created) identifies a row
    rows = list(stats.values())
    if rows and draw(st.booleans()):
        rows.append(dict(rows[0]))  # an exact duplicate
    pairs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _ in range(draw(st.integers(0, 20))):
        key = (draw(st.integers(0, 3)), draw(st.sampled_from(["a", "b"])), T0 + timedelta(hours=draw(hours)))
        pairs.setdefault(key, {"user_id": key[0], "shop": key[1], "ts": key[2], "y": float(draw(st.integers(0, 9))),
                               "label": draw(st.sampled_from(["p", "q"]))})
    start = draw(st.one_of(st.none(), st.integers(-1, 20)))
    length = draw(st.integers(1, 31))
    return {"stats": rows, "pairs": list(pairs.values()), "start": start, "length": length}


def _groupby_last(frame: pd.DataFrame, keys: list[str], order: list[str], start: Any, end: Any) -> pd.DataFrame:
    """Rows with start <= ts < end; per key the last after a stable sort on ``order`` (missing first)."""
    sel = frame[(frame["ts"] < end) & ((frame["ts"] >= start) if start is not None else True)]
    sel = sel.sort_values(order, na_position="first", kind="stable")
    return sel.groupby(keys, sort=True).tail(1).sort_values(keys).reset_index(drop=True)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _same(a: Any, b: Any) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _assert_equal(got: pd.DataFrame, want: pd.DataFrame, columns: list[str]) -> None:
    assert len(got) == len(want)
    for col in columns:
        for i, (a, b) in enumerate(zip(got[col].tolist(), want[col].tolist(), strict=True)):
            assert _same(a, b), (col, i, a, b)


def _window(data: dict[str, Any]) -> tuple[Any, Any]:
    start = None if data["start"] is None else T0 + timedelta(hours=data["start"])
    end = (start or T0) + timedelta(hours=data["length"])
    return start, end


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=offline_data())
def test_latest_in_scan_matches_groupby_last(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> None:
    root = tmp_path_factory.mktemp("latest")
    stats, pairs = view_frames(data)
    write_project(root, stats, pairs, ttl_hours=6)
    ws = Workspace(load_settings(root, user="alice"))
    try:
        ws.features.apply(root)
        start, end = _window(data)

        table, rows = ws.features.read_offline_latest("stats", start, end)
        got = table.to_pandas().sort_values("user_id").reset_index(drop=True)
        want = _groupby_last(stats, ["user_id"], ["ts", "created"], start, end)
        _assert_equal(got, want, ["user_id", "ts", "created", "x", "n"])
        in_window = (stats["ts"] < end) & ((stats["ts"] >= start) if start is not None else True)
        assert rows == int(in_window.sum())
        assert table.schema.field("ts").type.tz == "UTC"

        table, rows = ws.features.read_offline_latest("pair_stats", start, end)
        got = table.to_pandas().sort_values(["user_id", "shop"]).reset_index(drop=True)
        want = _groupby_last(pairs, ["user_id", "shop"], ["ts"], start, end)
        _assert_equal(got, want, ["user_id", "shop", "ts", "y", "label"])
        assert "created" not in table.column_names
    finally:
        ws.close()


def test_materialize_writes_the_groupby_last_rows(tmp_path: Path) -> None:
    data = {
        "stats": [
            # user 1: a tie at +2h decided by the created timestamp; +5h is the window end (excluded)
            {"user_id": 1, "ts": T0 + timedelta(hours=2), "created": T0 + timedelta(hours=4), "x": 1.0, "n": 1},
            {"user_id": 1, "ts": T0 + timedelta(hours=2), "created": T0 + timedelta(hours=3), "x": 2.0, "n": 2},
            {"user_id": 1, "ts": T0 + timedelta(hours=5), "created": T0 + timedelta(hours=5), "x": 3.0, "n": 3},
            # user 2: the only row sits on the window start (included); a missing created loses the tie
            {"user_id": 2, "ts": T0 + timedelta(hours=1), "created": None, "x": 4.0, "n": 4},
            {"user_id": 2, "ts": T0 + timedelta(hours=1), "created": T0, "x": 5.0, "n": 5},
            # user 3: only before the window
            {"user_id": 3, "ts": T0, "created": T0, "x": 6.0, "n": 6},
        ],
        "pairs": [],
        "start": 1,
        "length": 4,
    }
    stats, pairs = view_frames(data)
    write_project(tmp_path, stats, pairs, ttl_hours=None)
    ws = Workspace(load_settings(tmp_path, user="alice"))
    try:
        ws.features.apply(tmp_path)
        start, end = _window(data)
        (result,) = ws.features.materialize(start, end, views=["stats"])
        assert (result.rows_read, result.rows_written) == (4, 2)
        got = online_store_of(ws.features).read("stats", ["x", "n"], [(1,), (2,), (3,)])
        want = _groupby_last(stats, ["user_id"], ["ts", "created"], start, end).set_index("user_id")
        assert got == {"x": [want.loc[1, "x"], want.loc[2, "x"], None], "n": [want.loc[1, "n"], want.loc[2, "n"], None]}
        assert got == {"x": [1.0, 5.0, None], "n": [1, 5, None]}
    finally:
        ws.close()
