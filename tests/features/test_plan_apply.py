"""Plan and apply against the registry on every metadata backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.store.schema import feature_applies, feature_object_versions
from shipyard.workspace import Workspace

DEFS = """
from datetime import timedelta
from shipyard.features import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, String

user = Entity("user", join_keys=["user_id"], value_types="int64")
stats = FeatureView(
    "stats", entities=[user], fields=[Field("amount", {amount_type}), Field("city", String)],
    source=FileSource("stats.parquet"), timestamp_field="ts", ttl=timedelta(days={ttl}),
    sql={sql!r},
)
svc = FeatureService("svc", [stats])
"""


def write(root: Path, amount_type: str = "Float64", ttl: int = 2, sql: str | None = None, extra: str = "") -> Path:
    (root / "features").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": [1], "ts": pd.to_datetime(["2024-01-01"], utc=True), "amount": [1.0],
                  "city": ["x"]}).to_parquet(root / "stats.parquet")
    (root / "features" / "defs.py").write_text(textwrap.dedent(DEFS.format(amount_type=amount_type, ttl=ttl, sql=sql))
                                                + extra)
    return root


def count_versions(ws: Workspace) -> int:
    with ws.store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(feature_object_versions)).scalar_one()


def test_plan_then_apply_then_change(workspace: Workspace, tmp_path: Path) -> None:
    root = write(tmp_path / "repo")
    store = workspace.features
    plan = store.plan(root)
    assert [(c.kind, c.name) for c in plan.added] == [("entity", "user"), ("feature_view", "stats"),
                                                      ("feature_service", "svc")]
    assert count_versions(workspace) == 0  # plan writes nothing
    applied = store.apply(root)
    assert applied.apply_id and store.get_view("stats").version == 1
    assert store.plan(root).has_changes is False

    write(root, ttl=3, extra="more = FeatureView('more', [user], [Field('z', Float64)], "
                             "FileSource('stats.parquet'), timestamp_field='ts', sql='SELECT *, 1.0 AS z FROM source')\n")
    plan = store.plan(root)
    assert [c.name for c in plan.changed] == ["stats"] and [c.name for c in plan.added] == ["more"]
    assert not plan.breaking and any("ttl_seconds" in d for d in plan.changed[0].details)
    store.apply(root)
    assert store.get_view("stats").version == 2
    assert store.get_view("stats", version=1).ttl.days == 2 and store.get_view("stats").ttl.days == 3
    assert [v.name for v in store.list_views()] == ["more", "stats"]

    write(root, ttl=3)  # 'more' removed
    plan = store.plan(root)
    assert [c.name for c in plan.removed] == ["more"]
    store.apply(root, allow_breaking=True)
    with pytest.raises(NotFound, match="feature view 'more' is not registered"):
        store.get_view("more")
    assert store.get_view("more", version=1).name == "more"  # old versions stay readable (lineage)


def test_type_change_is_breaking_and_nothing_is_half_applied(workspace: Workspace, tmp_path: Path) -> None:
    root = write(tmp_path / "repo")
    store = workspace.features
    store.apply(root)
    before = count_versions(workspace)
    write(root, amount_type="Int64", ttl=5)
    plan = store.plan(root)
    assert [c.name for c in plan.breaking] == ["stats"]
    assert "feature 'amount' type changed from float64 to int64" in plan.breaking[0].breaking
    assert "[BREAKING]" in plan.render()
    with pytest.raises(Conflict, match="breaking changes: feature view 'stats'.*Nothing was applied"):
        store.apply(root)
    assert count_versions(workspace) == before
    assert store.get_view("stats").field("amount").dtype == "float64"
    store.apply(root, allow_breaking=True)
    assert store.get_view("stats").field("amount").dtype == "int64"


def test_failure_inside_apply_rolls_everything_back(workspace: Workspace, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "repo")
    store = workspace.features
    import shipyard.features.registry as registry_module

    def explode(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(registry_module, "record_event", explode)  # fails after every row was written
    with pytest.raises(RuntimeError, match="disk full"):
        store.apply(root)
    assert count_versions(workspace) == 0
    with workspace.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feature_applies)).scalar_one() == 0
    with pytest.raises(NotFound):
        store.get_view("stats")


def test_key_change_is_breaking(workspace: Workspace, tmp_path: Path) -> None:
    root = write(tmp_path / "repo")
    workspace.features.apply(root)
    text = (root / "features" / "defs.py").read_text().replace('value_types="int64"', 'value_types="string"')
    (root / "features" / "defs.py").write_text(text)
    plan = workspace.features.plan(root)
    assert any("join key 'user_id' type changed from int64 to string" in b for c in plan.breaking for b in c.breaking)


def test_bad_sql_and_missing_timestamp_column_fail_plan(workspace: Workspace, tmp_path: Path) -> None:
    root = write(tmp_path / "repo", sql="SELEC * FROM source")
    with pytest.raises(InvalidInput, match=r"feature view 'stats' \(.*defs.py:\d+\): its source or SQL failed"):
        workspace.features.plan(root)
    root = write(tmp_path / "repo", sql="SELECT user_id, amount, city, ts AS happened FROM source")
    with pytest.raises(InvalidInput, match="source has no timestamp column 'ts'.*set timestamp_field="):
        workspace.features.plan(root)
    assert count_versions(workspace) == 0
    # sources are not read when checks are skipped
    assert workspace.features.plan(root, check_sources=False).added
