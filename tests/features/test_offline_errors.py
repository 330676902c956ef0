"""Bad input to training sets and the offline log: each gives a clear error naming the view/field and fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from shipyard.errors import InvalidInput, NotFound, SchemaMismatch
from shipyard.workspace import Workspace
from tests.features.pit_support import T0, write_project


@pytest.fixture
def ws(sqlite_workspace: Workspace, tmp_path: Path) -> Workspace:
    stats = pd.DataFrame({"user_id": [1], "ts": pd.to_datetime([T0], utc=True),
                          "created": pd.to_datetime([T0], utc=True), "x": [1.0], "n": [1]})
    pairs = pd.DataFrame({"user_id": [1], "shop": ["a"], "ts": pd.to_datetime([T0], utc=True), "y": [2.0],
                          "label": ["p"]})
    root = write_project(tmp_path / "repo", stats, pairs, ttl_hours=24)
    sqlite_workspace.features.apply(root)
    return sqlite_workspace


def entity(**over: object) -> pd.DataFrame:
    cols = {"user_id": [1], "shop": ["a"], "event_timestamp": pd.to_datetime([T0 + timedelta(hours=1)], utc=True)}
    cols.update(over)
    return pd.DataFrame(cols)


def test_unknown_view_and_feature(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="feature view 'nope' is not registered"):
        ws.features.get_training_set(entity(), features=["nope:x"])
    with pytest.raises(InvalidInput, match="feature view 'stats' has no feature 'zz'; its features are x, n"):
        ws.features.get_training_set(entity(), features=["stats:zz"])
    with pytest.raises(InvalidInput, match="exactly one of features"):
        ws.features.get_training_set(entity())


def test_entity_df_without_keys_or_timestamp(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match=r"lacks join key column\(s\) \['shop'\] of feature view 'pair_stats'"):
        ws.features.get_training_set(entity().drop(columns="shop"), features=["pair_stats:y"])
    frame = entity().rename(columns={"event_timestamp": "when"})
    frame["also"] = frame["when"]
    with pytest.raises(InvalidInput, match="needs a timestamp column.*timestamp_column="):
        ws.features.get_training_set(frame, features=["stats:x"])
    got = ws.features.get_training_set(frame, features=["stats:x"], timestamp_column="when")
    assert got["x"].tolist() == [1.0]
    with pytest.raises(InvalidInput, match="holds str values, not timestamps.*pd.to_datetime"):
        ws.features.get_training_set(entity(event_timestamp=["2024-01-01"]), features=["stats:x"])


def test_naive_vs_aware_timestamps(ws: Workspace) -> None:
    naive = entity(event_timestamp=pd.to_datetime([T0.replace(tzinfo=None)]))
    with pytest.raises(InvalidInput, match="'event_timestamp' is naive but feature view 'stats' has time-zone-aware "
                                           "timestamps in 'ts'.*tz_localize"):
        ws.features.get_training_set(naive, features=["stats:x"])
    mixed = pd.DataFrame({"user_id": [1, 1], "shop": ["a", "a"],
                          "event_timestamp": pd.Series([T0, T0.replace(tzinfo=None)], dtype=object)})
    with pytest.raises(InvalidInput, match="mixes time-zone-aware and naive timestamps"):
        ws.features.get_training_set(mixed, features=["stats:x"])


def test_column_collisions_suggest_full_names(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="full_feature_names=True"):
        ws.features.get_training_set(entity(x=[0.0]), features=["stats:x"])


def test_offline_append_wrong_types_and_missing_columns(ws: Workspace) -> None:
    with pytest.raises(SchemaMismatch, match=r"lack columns \['n'\]"):
        ws.features.offline_append("stats", [{"user_id": 1, "ts": T0, "x": 1.0}])
    with pytest.raises(SchemaMismatch, match="column 'x' has values of type string that cannot be stored as double"):
        ws.features.offline_append("stats", [{"user_id": 1, "ts": T0, "x": "high", "n": 1}])
    assert ws.artifacts.list("features/offline/stats") == []  # nothing half-written


def test_read_offline_of_unknown_view(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="feature view 'ghost' is not registered"):
        ws.features.read_offline("ghost")


def test_aware_entity_times_against_a_naive_view_suggest_dropping_the_zone(sqlite_workspace: Workspace,
                                                                          tmp_path: Path) -> None:
    stats = pd.DataFrame({"user_id": [1], "ts": pd.to_datetime([T0.replace(tzinfo=None)]),
                          "created": pd.to_datetime([T0.replace(tzinfo=None)]), "x": [1.0], "n": [1]})
    pairs = pd.DataFrame({"user_id": [1], "shop": ["a"], "ts": pd.to_datetime([T0.replace(tzinfo=None)]),
                          "y": [2.0], "label": ["p"]})
    sqlite_workspace.features.apply(write_project(tmp_path / "naive", stats, pairs, ttl_hours=24))
    with pytest.raises(InvalidInput, match=r"'event_timestamp' is time-zone-aware but feature view 'stats' has "
                                           r"naive .*tz_localize\(None\)"):
        sqlite_workspace.features.get_training_set(entity(), features=["stats:x"])


def test_the_time_zone_check_reads_no_offline_log_files(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the view's own source decides whether its times are zone-aware; the offline log (always
    UTC) is left to the engine, so the check never downloads it."""
    from shipyard.features.offline.scan import Scanner
    from shipyard.features.training import _check_timezones

    ws.features.offline_append("stats", pd.DataFrame({"user_id": [2], "ts": pd.to_datetime([T0], utc=True),
                                                      "created": pd.to_datetime([T0], utc=True), "x": [3.0],
                                                      "n": [3]}))

    def no_log(self: Scanner, view: object) -> None:
        raise AssertionError("the offline log was read")

    monkeypatch.setattr(Scanner, "_log_sql", no_log)
    views = [ws.features.get_feature_view("stats")]
    aware = entity()["event_timestamp"]
    _check_timezones(ws.artifacts, aware, "event_timestamp", views)  # agrees: no error, no log read
    with pytest.raises(InvalidInput, match="is naive but feature view 'stats'"):
        _check_timezones(ws.artifacts, aware.dt.tz_localize(None), "event_timestamp", views)
