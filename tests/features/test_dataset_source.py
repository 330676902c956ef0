"""Feature views over versioned datasets: read as the pinned or latest version, and named in the
dataset's lineage when materialized or joined into a training set (as runs, pipeline runs and model
versions are)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from shipyard.config import load_settings
from shipyard.errors import NotFound
from shipyard.features import DatasetSource
from shipyard.features.sources import source_from_spec
from shipyard.workspace import Workspace

T0 = datetime(2024, 1, 1, tzinfo=UTC)

VIEWS = """
from shipyard.features import DatasetSource, Entity, FeatureView, Field, Float64

user = Entity("user", join_keys=["user_id"], value_types="int64")
spend = FeatureView("spend", entities=[user], fields=[Field("amount", Float64)],
                    source=DatasetSource("txns"), timestamp_field="ts")
spend_v1 = FeatureView("spend_v1", entities=[user], fields=[Field("amount", Float64)],
                       source=DatasetSource("txns", version=1), timestamp_field="ts")
"""


def _txns(scale: float) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1, 1, 2], "ts": [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=1)],
                         "amount": [10.0 * scale, 20.0 * scale, 30.0 * scale]})


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "project"
    (root / "features").mkdir(parents=True)
    (root / "landing").mkdir()
    (root / "features" / "views.py").write_text(textwrap.dedent(VIEWS))
    workspace = Workspace(load_settings(root, user="alice"))
    _txns(1).to_parquet(root / "landing" / "txns.parquet")
    workspace.data.add_source("landing", "file", {"root": str(root / "landing")}, actor="alice")
    workspace.data.create_dataset("txns", "landing", {"path": "txns.parquet"}, actor="alice")
    workspace.data.refresh("txns", actor="alice")
    workspace.features.apply()
    yield workspace
    workspace.close()


def _readers(ws: Workspace) -> set[tuple[str, int]]:
    return {(r["id"], r["version"]) for r in ws.data.lineage("txns")["readers"].get("feature_view", [])}


def test_materializing_and_training_sets_record_the_dataset_version_read(ws: Workspace) -> None:
    assert _readers(ws) == set()  # applying or describing a view reads nothing
    ws.features.get_view("spend")
    assert _readers(ws) == set()
    ws.features.materialize(T0 - timedelta(days=1), T0 + timedelta(days=1), views=["spend"])
    assert _readers(ws) == {("spend", 1)}
    online = ws.features.get_online_features([{"user_id": 1}, {"user_id": 2}], features=["spend:amount"])
    assert online["amount"] == [20.0, 30.0], online

    # a new version: the unpinned view reads it, the pinned one keeps reading version 1
    root = ws.settings.project_dir
    _txns(2).to_parquet(root / "landing" / "txns.parquet")
    ws.data.refresh("txns", actor="alice")
    entity = pd.DataFrame({"user_id": [1, 2], "event_timestamp": [T0 + timedelta(hours=1)] * 2})
    got = ws.features.get_training_set(entity, features=["spend:amount", "spend_v1:amount"],
                                       full_feature_names=True)
    assert got["spend__amount"].tolist() == [20.0, 60.0]  # as of 01:00, version 2 (amounts doubled)
    assert got["spend_v1__amount"].tolist() == [10.0, 30.0]
    assert _readers(ws) == {("spend", 1), ("spend", 2), ("spend_v1", 1)}
    info = ws.features.get_training_set(entity, features=["spend:amount"], dataset="train_set")
    assert info.lineage["datasets"] == ["txns@2"]
    # each reader and version is one edge, however often it reads
    ws.features.materialize(T0 - timedelta(days=1), T0 + timedelta(days=1), views=["spend"])
    reads = ws.data.lineage("txns")["readers"]["feature_view"]
    assert sorted((r["id"], r["version"]) for r in reads) == [("spend", 1), ("spend", 2), ("spend_v1", 1)]

    out = CliRunner().invoke(__import__("shipyard.cli", fromlist=["main"]).main,
                             ["-p", str(root), "datasets", "lineage", "txns"])
    assert out.exit_code == 0, out.output
    assert {r["id"] for r in json.loads(out.output)["readers"]["feature_view"]} == {"spend", "spend_v1"}


def test_a_view_over_a_dataset_without_the_version_is_refused(ws: Workspace) -> None:
    root = ws.settings.project_dir
    (root / "features" / "views.py").write_text(textwrap.dedent(VIEWS) + textwrap.dedent("""
        later = FeatureView("later", entities=[user], fields=[Field("amount", Float64)],
                            source=DatasetSource("txns", version=5), timestamp_field="ts")
    """))
    with pytest.raises(NotFound, match="has no version 5"):
        ws.features.apply()
    with pytest.raises(ValueError, match="version must be a version number"):
        DatasetSource("txns", version=0)


def test_the_source_round_trips_through_its_spec() -> None:
    source = DatasetSource("txns", 3, "t")
    assert source_from_spec(source.to_spec()) == source
    assert source.to_spec() == {"type": "dataset", "dataset": "txns", "version": 3, "name": "t"}
