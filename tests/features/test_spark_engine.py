"""The Spark engine reads views itself: Parquet sources and the pushed offline log go straight into
Spark (DuckDB is not involved), with the DuckDB engine's results. Enabled by SHIPYARD_TEST_SPARK=1."""

from __future__ import annotations

import os
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import load_settings
from shipyard.errors import ConfigError, InvalidInput
from shipyard.features.offline.engine import ROW, TS, ViewRequest
from shipyard.features.store import OFFLINE_LOG_PREFIX
from shipyard.workspace import Workspace
from tests.features.pit_reference import naive_pit
from tests.features.pit_support import T0

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(os.environ.get("SHIPYARD_TEST_SPARK") != "1", reason="set SHIPYARD_TEST_SPARK=1"),
]

VIEWS = """
from datetime import timedelta
from shipyard.features import Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource, Timestamp

user = Entity("user", join_keys=["user_id"], value_types="int64")
stats = FeatureView(
    "stats", entities=[user], fields=[Field("x", Float64), Field("n", Int64), Field("seen", Timestamp)],
    source=PushSource("stats_push", batch_source=FileSource("{source}")), timestamp_field="ts",
    created_timestamp_field="created", ttl={ttl},
)
"""


def _project(root: Path, history: pd.DataFrame, ttl_hours: int | None, fmt: str = "parquet") -> Workspace:
    (root / "features").mkdir(parents=True, exist_ok=True)
    source = f"history.{fmt}"
    if fmt == "csv":
        history.to_csv(root / source, index=False)
    else:
        history.to_parquet(root / source)
    ttl = "None" if ttl_hours is None else f"timedelta(hours={ttl_hours})"
    (root / "features" / "views.py").write_text(textwrap.dedent(VIEWS.format(source=source, ttl=ttl)))
    ws = Workspace(load_settings(root, user="alice"))
    ws.features.apply(root)
    return ws


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "created", "x", "n", "seen"])
    frame = frame.astype({"user_id": "int64", "x": "float64", "n": "int64"})
    for col in ("ts", "created", "seen"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


@st.composite
def rows(draw: Any, size: int, salt: int) -> list[dict[str, Any]]:
    """View rows; ``salt`` keeps created times of different lists apart, so no two rows tie."""
    out = []
    for _ in range(draw(st.integers(0, size))):
        ts = T0 + timedelta(hours=draw(st.integers(0, 30)))
        out.append({"user_id": draw(st.integers(0, 3)), "ts": ts,
                    "created": ts + timedelta(hours=draw(st.integers(0, 3)), seconds=len(out), microseconds=salt),
                    "x": float(draw(st.integers(-9, 9))), "n": draw(st.integers(0, 9)),
                    "seen": ts - timedelta(minutes=draw(st.integers(0, 90)))})
    return out


def _entity(draw_rows: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _ in draw_rows],
                         "event_timestamp": pd.to_datetime([T0 + timedelta(minutes=m) for _, m in draw_rows],
                                                           utc=True)})


def _reference(entity: pd.DataFrame, data: pd.DataFrame, ttl_hours: int | None) -> list[dict[str, Any]]:
    ttl = None if ttl_hours is None else timedelta(hours=ttl_hours)
    return naive_pit(entity.to_dict("records"), data.to_dict("records"), ["user_id"], "ts", ["x", "n", "seen"], ttl,
                     "created")


def _check(got: pd.DataFrame, want: list[dict[str, Any]]) -> None:
    for i, row in enumerate(want):
        for col in ("x", "n", "seen"):
            value, expected = got[col].iloc[i], row[col]
            if expected is None or (isinstance(expected, float) and pd.isna(expected)):
                assert pd.isna(value), (i, col, value)
            else:
                assert value == expected, (i, col, value, expected)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=rows(12, 0), pushed=rows(12, 1), ttl_hours=st.sampled_from([None, 2, 12]),
       entity=st.lists(st.tuples(st.integers(0, 4), st.integers(-60, 34 * 60)), min_size=1, max_size=15))
def test_source_and_pushed_log_match_reference_and_duckdb(tmp_path_factory: pytest.TempPathFactory, history: list,
                                                          pushed: list, ttl_hours: int | None, entity: list) -> None:
    root = tmp_path_factory.mktemp("spark-log")
    ws = _project(root, _frame(history), ttl_hours)
    try:
        log = _frame(pushed)
        for start in range(0, len(log), 3):  # several small files, as pushes leave them
            ws.features.offline_append("stats", log.iloc[start:start + 3])
        frame = _entity(entity)
        refs = ["stats:x", "stats:n", "stats:seen"]
        spark = ws.features.get_training_set(frame, features=refs, engine="spark")
        duck = ws.features.get_training_set(frame, features=refs, engine="duckdb")
        _check(spark, _reference(frame, pd.concat([_frame(history), log]), ttl_hours))
        pd.testing.assert_frame_equal(spark, duck, check_dtype=False)
    finally:
        ws.close()


def _entity_table(entity: pd.DataFrame) -> pa.Table:
    ts = entity["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return pa.table({ROW: pa.array(range(len(entity)), pa.int64()), "user_id": pa.array(entity["user_id"], pa.int64()),
                     TS: pa.array(ts, pa.timestamp("us"))})


def test_parquet_source_and_log_are_read_by_spark_not_duckdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.features.offline import spark_engine

    history = _frame([{"user_id": 1, "ts": T0, "created": T0, "x": 1.0, "n": 1, "seen": T0}])
    ws = _project(tmp_path, history, None)
    try:
        for hour in (1, 2, 3):
            ws.features.push("stats", [{"user_id": 1, "ts": T0 + timedelta(hours=hour), "created": None,
                                        "x": float(hour * 10), "n": hour, "seen": T0}])
        ws.features.compact("stats", target_rows=2, grace_seconds=3600)  # two files merged, both kept for readers
        stored = ws.artifacts.list(f"{OFFLINE_LOG_PREFIX}/stats")
        assert sum(p.endswith(".parquet") for p in stored) == 4

        def no_duckdb(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("DuckDB was used to read a Parquet view")

        import duckdb

        monkeypatch.setattr(duckdb, "connect", no_duckdb)
        monkeypatch.setattr(spark_engine, "connect", no_duckdb)
        engine = spark_engine.SparkEngine(ws.artifacts, OFFLINE_LOG_PREFIX)
        view = ws.features.get_feature_view("stats")
        req = ViewRequest(view, ["x", "n"], ["x", "n"])
        read = sorted(f.rsplit("/", 1)[-1] for f in engine.view_frame(req).inputFiles())
        live = sorted(p.rsplit("/", 1)[-1] for p in engine.log_paths("stats"))
        assert len(live) == 2 and any(name.startswith("compact-") for name in live)
        assert read == sorted(["history.parquet", *live])  # the replaced files are not read
        entity = _entity([(1, 30), (1, 90), (1, 200), (2, 200)])
        got = engine.point_in_time_join(_entity_table(entity), [req]).to_pydict()
        assert got["x"] == [1.0, 10.0, 30.0, None] and got["n"] == [1, 1, 3, None]
    finally:
        ws.close()


def test_csv_source_with_naive_times_reads_as_utc(tmp_path: Path) -> None:
    history = _frame([{"user_id": 1, "ts": T0, "created": T0, "x": 2.5, "n": 4, "seen": T0 - timedelta(hours=1)},
                      {"user_id": 2, "ts": T0 + timedelta(hours=3), "created": T0, "x": 3.5, "n": 5, "seen": T0}])
    for col in ("ts", "created", "seen"):
        history[col] = history[col].dt.tz_localize(None)  # the CSV holds wall times without a zone
    ws = _project(tmp_path, history, None, fmt="csv")
    try:
        entity = pd.DataFrame({"user_id": [1, 2, 2],
                               "event_timestamp": [T0 + timedelta(hours=1), T0 + timedelta(hours=2),
                                                   T0 + timedelta(hours=4)]})
        entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"]).dt.tz_localize(None)
        refs = ["stats:x", "stats:seen"]
        spark = ws.features.get_training_set(entity, features=refs, engine="spark")
        duck = ws.features.get_training_set(entity, features=refs, engine="duckdb")
        assert spark["x"].tolist()[0] == 2.5 and pd.isna(spark["x"].iloc[1]) and spark["x"].iloc[2] == 3.5
        assert spark["seen"].iloc[0] == pd.Timestamp(T0 - timedelta(hours=1))
        pd.testing.assert_frame_equal(spark, duck, check_dtype=False)
    finally:
        ws.close()


def test_sql_views_still_read_through_duckdb(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    _frame([{"user_id": 1, "ts": T0, "created": T0, "x": 2.0, "n": 1, "seen": T0}]).to_parquet(tmp_path / "h.parquet")
    (tmp_path / "features" / "views.py").write_text(textwrap.dedent("""
        from shipyard.features import DuckDBSource, Entity, FeatureView, Field, FileSource, Float64

        user = Entity("user", join_keys=["user_id"], value_types="int64")
        doubled = FeatureView(
            "doubled", entities=[user], fields=[Field("x2", Float64)], timestamp_field="ts",
            source=DuckDBSource("SELECT user_id, ts, x * 2 AS x2 FROM h", {"h": FileSource("h.parquet")}),
        )
    """))
    ws = Workspace(load_settings(tmp_path, user="alice"))
    try:
        ws.features.apply(tmp_path)
        entity = pd.DataFrame({"user_id": [1, 1], "event_timestamp": pd.to_datetime(
            [T0 - timedelta(hours=1), T0 + timedelta(hours=1)], utc=True)})
        got = ws.features.get_training_set(entity, features=["doubled:x2"], engine="spark")
        assert pd.isna(got["x2"].iloc[0]) and got["x2"].iloc[1] == 4.0
    finally:
        ws.close()


@pytest.mark.parametrize(("path", "error", "words"), [
    ("missing.parquet", InvalidInput, "Spark could not read its source"),
    ("s3://no-bucket/history.parquet", ConfigError, "hadoop-aws"),
])
def test_unreadable_sources_name_the_view_and_the_fix(tmp_path: Path, path: str, error: type, words: str) -> None:
    from shipyard.features.offline.spark_engine import SparkEngine

    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "views.py").write_text(textwrap.dedent(f"""
        from shipyard.features import Entity, FeatureView, Field, FileSource, Float64

        user = Entity("user", join_keys=["user_id"], value_types="int64")
        remote = FeatureView("remote", entities=[user], fields=[Field("x", Float64)], timestamp_field="ts",
                             source=FileSource("{path}"))
    """))
    ws = Workspace(load_settings(tmp_path, user="alice"))
    try:
        ws.features.apply(tmp_path, check_sources=False)
        view = ws.features.get_feature_view("remote")
        with pytest.raises(error) as info:
            SparkEngine(ws.artifacts, OFFLINE_LOG_PREFIX).view_frame(ViewRequest(view, ["x"], ["x"]))
        assert "'remote'" in info.value.message and words in info.value.message
    finally:
        ws.close()
