"""Point-in-time joins on DuckDB against the naive reference, on random data and hand-made edge cases.

Single-key views (``stats``: integer key, ``shop_stats``: string key) take the engine's numpy join,
``pair_stats`` (composite key) its ASOF JOIN; a second property test runs every view through the
ASOF JOIN and asks for the same table.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from shipyard.config import load_settings
from shipyard.features.offline.duckdb_engine import DuckDBEngine
from shipyard.features.offline.engine import ViewRequest
from shipyard.features.store import OFFLINE_LOG_PREFIX
from shipyard.features.training import _entity_table
from shipyard.workspace import Workspace
from tests.features.pit_reference import naive_pit
from tests.features.pit_support import T0, frames, pit_data, shop_frame, write_project

FEATURES = ["stats:x", "stats:n", "pair_stats:y", "pair_stats:label", "shop_stats:z", "shop_stats:seen"]


def _same(a: Any, b: Any) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or a is pd.NA or a is pd.NaT or (isinstance(a, float) and math.isnan(a))
    if a is None or a is pd.NA or a is pd.NaT:
        return False
    return a == b


def check_against_reference(ws: Workspace, data: dict[str, Any], engine: str = "duckdb") -> None:
    stats, pairs, entity = frames(data)
    ttl = None if data["ttl_hours"] is None else timedelta(hours=data["ttl_hours"])
    got = ws.features.get_training_set(entity, features=FEATURES, engine=engine)
    assert len(got) == len(entity)
    assert list(got["user_id"]) == list(entity["user_id"])  # order and rows preserved
    assert list(got["event_timestamp"]) == list(entity["event_timestamp"])
    ents = entity.to_dict("records")
    want_stats = naive_pit(ents, stats.to_dict("records"), ["user_id"], "ts", ["x", "n"], ttl, "created")
    want_pairs = naive_pit(ents, pairs.to_dict("records"), ["user_id", "shop"], "ts", ["y", "label"], None)
    want_shops = naive_pit(ents, shop_frame(data).to_dict("records"), ["shop"], "ts", ["z", "seen"],
                           timedelta(hours=12), "created")
    for i, (ws_row, wp_row, wh_row) in enumerate(zip(want_stats, want_pairs, want_shops, strict=True)):
        for col, want in [("x", ws_row["x"]), ("n", ws_row["n"]), ("y", wp_row["y"]), ("label", wp_row["label"]),
                          ("z", wh_row["z"]), ("seen", wh_row["seen"])]:
            assert _same(got[col].iloc[i], want), (i, col, got[col].iloc[i], want, ents[i])


def _workspace(root: Path) -> Workspace:
    return Workspace(load_settings(root, user="alice"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=pit_data())
def test_duckdb_matches_naive_reference(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> None:
    root = tmp_path_factory.mktemp("pit")
    stats, pairs, _ = frames(data)
    write_project(root, stats, pairs, data["ttl_hours"], shop_frame(data))
    ws = _workspace(root)
    try:
        ws.features.apply(root)
        check_against_reference(ws, data)
    finally:
        ws.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=pit_data())
def test_numpy_join_and_asof_join_agree(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> None:
    root = tmp_path_factory.mktemp("pit")
    stats, pairs, entity = frames(data)
    write_project(root, stats, pairs, data["ttl_hours"], shop_frame(data))
    ws = _workspace(root)
    try:
        ws.features.apply(root)
        table = _entity_table(entity, "event_timestamp", ["user_id", "shop"],
                              [ws.features.get_view(v) for v in ("stats", "shop_stats")])
        requests = [ViewRequest(ws.features.get_view(v), feats, feats)
                    for v, feats in (("stats", ["x", "n"]), ("pair_stats", ["y", "label"]),
                                     ("shop_stats", ["z", "seen"]))]
        fast = DuckDBEngine(ws.artifacts, OFFLINE_LOG_PREFIX).point_in_time_join(table, requests)
        asof = DuckDBEngine(ws.artifacts, OFFLINE_LOG_PREFIX, numpy_join=False).point_in_time_join(table, requests)
        assert fast.equals(asof), (fast.to_pandas(), asof.to_pandas())
    finally:
        ws.close()


@pytest.fixture
def project(tmp_path: Path) -> Workspace:
    stats = pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2],
        "ts": pd.to_datetime([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=1), T0 + timedelta(hours=5),
                              T0 + timedelta(hours=2)], utc=True),
        "created": pd.to_datetime([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=3), T0 + timedelta(hours=5),
                                   T0 + timedelta(hours=2)], utc=True),
        "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        "n": [10, 20, 30, 40, 50],
    })
    pairs = pd.DataFrame({"user_id": [1], "shop": ["a"], "ts": pd.to_datetime([T0], utc=True), "y": [7.0],
                          "label": ["p"]})
    write_project(tmp_path, stats, pairs, ttl_hours=2)
    ws = _workspace(tmp_path)
    ws.features.apply(tmp_path)
    yield ws
    ws.close()


def test_edge_cases_by_hand(project: Workspace) -> None:
    entity = pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 3, 1],
        "shop": ["a", "a", "b", "a", "a", "a", "a"],
        "event_timestamp": pd.to_datetime([
            T0 - timedelta(hours=1),   # before any value: kept, nulls
            T0 + timedelta(hours=1),   # tie at 1h: created 3h wins -> 3.0
            T0 + timedelta(hours=4),   # latest 1h, 3h old > ttl 2h -> null
            T0 + timedelta(hours=5),   # exact event time -> 4.0
            T0 + timedelta(hours=3),   # user 2 -> 5.0 (1h old)
            T0 + timedelta(hours=3),   # unknown user -> null
            T0 + timedelta(hours=3),   # ttl boundary: 1h value is exactly 2h old -> kept
        ], utc=True),
    })
    got = project.features.get_training_set(entity, features=["stats:x", "stats:n", "pair_stats:y"])
    assert got["x"].tolist()[1:2] == [3.0]
    assert pd.isna(got["x"].iloc[0]) and pd.isna(got["x"].iloc[2]) and pd.isna(got["x"].iloc[5])
    assert got["x"].iloc[3] == 4.0 and got["x"].iloc[4] == 5.0 and got["x"].iloc[6] == 3.0
    assert str(got["n"].dtype) == "Int64" and got["n"].iloc[1] == 30
    # composite key (user_id, shop), no TTL: only user 1 / shop a rows at or after T0
    assert got["y"].isna().tolist() == [True, False, True, False, True, True, False]


def test_output_arrow_and_full_names(project: Workspace) -> None:
    entity = pd.DataFrame({"user_id": [1], "shop": ["a"], "event_timestamp": pd.to_datetime([T0], utc=True)})
    table = project.features.get_training_set(entity, features=["stats:x"], output="arrow", full_feature_names=True)
    assert table.column_names == ["user_id", "shop", "event_timestamp", "stats__x"]
    assert table.column("stats__x").to_pylist() == [1.0]


def test_training_set_to_dataset_records_lineage(project: Workspace) -> None:
    entity = pd.DataFrame({"user_id": [1, 2], "shop": ["a", "a"],
                           "event_timestamp": pd.to_datetime([T0 + timedelta(hours=5)] * 2, utc=True)})
    info = project.features.get_training_set(entity, features=["stats:x"], dataset="churn")
    assert info.rows == 2 and info.lineage["views"] == {"stats": 1}
    back = pd.read_parquet(info.uri)
    assert back["x"].iloc[0] == 4.0 and pd.isna(back["x"].iloc[1])  # user 2's value is 3h old, TTL 2h


def test_read_offline_window_and_backfill(project: Workspace) -> None:
    table = project.features.read_offline("stats", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=5))
    assert sorted(table.column("x").to_pylist()) == [2.0, 3.0, 5.0]
    assert table.schema.field("ts").type.tz == "UTC"
    result = project.features.backfill("stats", T0, T0 + timedelta(hours=2))
    assert result["rows"] == 3
    assert sorted(pd.read_parquet(result["uri"])["x"].tolist()) == [1.0, 2.0, 3.0]


def test_offline_append_feeds_training_sets(project: Workspace) -> None:
    project.features.offline_append("stats", [{"user_id": 9, "ts": T0, "created": T0, "x": 9.5, "n": 1}])
    entity = pd.DataFrame({"user_id": [9], "shop": ["a"], "event_timestamp": pd.to_datetime([T0], utc=True)})
    assert project.features.get_training_set(entity, features=["stats:x"])["x"].tolist() == [9.5]


ALL_TYPES_VIEWS = '''
from datetime import timedelta

import pandas as pd

from shipyard.features import (Bool, Entity, FeatureView, Field, FileSource, Float64, Int64, RequestSource, String,
                               Timestamp, on_demand_feature_view)

user = Entity("user", join_keys=["user_id"], value_types="int64")
typed = FeatureView(
    "typed", entities=[user],
    fields=[Field("f", Float64), Field("i", Int64), Field("s", String), Field("b", Bool), Field("t", Timestamp)],
    source=FileSource("typed.parquet"), timestamp_field="ts", ttl=timedelta(hours=3),
)
request = RequestSource("request", [Field("mult", Float64)])


@on_demand_feature_view(sources=[typed[["f", "i"]], request], fields=[Field("scaled", Float64)])
def scaled(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"scaled": df["f"] * df["mult"] + df["i"]})
'''


def test_arrow_output_is_the_pandas_output_as_arrow(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "views.py").write_text(ALL_TYPES_VIEWS)
    hours = [T0 + timedelta(hours=h) for h in (0, 1, 2, 3)]
    pd.DataFrame({
        "user_id": [1, 1, 2, 2], "ts": pd.to_datetime(hours, utc=True),
        "f": [0.5, float("nan"), None, 2.5], "i": [1, None, 3, 4], "s": ["a", None, "c", "d"],
        "b": [True, None, False, True], "t": pd.to_datetime([hours[0], None, hours[1], hours[2]], utc=True),
    }).to_parquet(tmp_path / "typed.parquet")
    ws = _workspace(tmp_path)
    try:
        ws.features.apply(tmp_path)
        entity = pd.DataFrame({
            "user_id": [1, 2, 1, 3, 2], "mult": [2.0, 1.0, 3.0, 1.0, -1.0], "label": ["x", "y", None, "z", "w"],
            "event_timestamp": pd.to_datetime([hours[0], hours[3], hours[1], hours[1], T0 + timedelta(hours=9)],
                                              utc=True),
        }, index=[10, 11, 12, 13, 14])
        refs = ["typed:f", "typed:i", "typed:s", "typed:b", "typed:t", "scaled:scaled"]
        frame = ws.features.get_training_set(entity, features=refs)
        table = ws.features.get_training_set(entity, features=refs, output="arrow")
        assert frame["f"].isna().tolist() == [False, False, True, True, True]  # NaN value, no row, too old
        assert frame["scaled"].tolist()[:1] == [2.0]
        expected = pa.Table.from_pandas(frame, preserve_index=False)
        assert table.equals(expected, check_metadata=True), (table.schema, expected.schema)
        pd.testing.assert_frame_equal(table.to_pandas(), frame)
    finally:
        ws.close()
