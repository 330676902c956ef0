"""Definitions as code: construction errors, specs round-trip, repo loading errors at file and line."""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import shipyard.features as sf
from shipyard.errors import InvalidInput, ModelError
from shipyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    OnDemandFeatureView,
    RequestSource,
)
from shipyard.features.definitions import from_spec
from shipyard.features.repo import load_repo


def test_public_api_is_curated() -> None:
    assert set(sf.__all__) >= {"Entity", "FeatureView", "OnDemandFeatureView", "FeatureService", "FileSource",
                               "SqlSource", "DuckDBSource", "PushSource", "Field", "FeatureStore"}
    assert all(hasattr(sf, name) for name in sf.__all__)


def _view(**kw: object) -> FeatureView:
    user = Entity("user", ["user_id"], "int64")
    args = dict(entities=[user], fields=[Field("amount", Float64)], source=FileSource("x.parquet"))
    args.update(kw)
    return FeatureView("stats", **args)  # type: ignore[arg-type]


def test_view_attributes_used_by_online_code() -> None:
    view = _view(ttl=timedelta(days=2), timestamp_field="ts", created_timestamp_field="created")
    assert view.join_keys == ["user_id"] and view.entities[0].join_keys == ["user_id"]
    assert [(f.name, f.dtype) for f in view.fields] == [("amount", "float64")]
    assert view.ttl == timedelta(days=2) and view.timestamp_field == "ts" and view.created_timestamp_field == "created"
    assert view.version == 0
    back = from_spec("feature_view", view.to_spec(), 3)
    assert back == view and back.version == 3 and back.ttl == timedelta(days=2)


@pytest.mark.parametrize("kwargs, needle", [
    ({"fields": [Field("amount", Float64), Field("amount", Int64)]}, "both a feature and a feature"),
    ({"fields": []}, "has no fields"),
    ({"ttl": timedelta(0)}, "ttl must be a positive"),
    ({"source": "x.parquet"}, "source must be"),
    ({"fields": [Field("user_id", Float64)]}, "both a join key and a feature"),
])
def test_bad_view_arguments_are_named(kwargs: dict, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        _view(**kwargs)


def test_unknown_type_lists_the_choices() -> None:
    with pytest.raises(InvalidInput, match="unknown type 'decimal'.*float64, int64, string, bool, timestamp"):
        Field("amount", "decimal")


def double_amount(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"doubled": df["amount"] * 2 + df["bonus"]})


def test_on_demand_view_same_code_after_registry_round_trip() -> None:
    stats = _view()
    odfv = OnDemandFeatureView("doubled_view", [stats[["amount"]], RequestSource("req", [Field("bonus", Float64)])],
                               [Field("doubled", Float64)], udf=double_amount)
    frame = pd.DataFrame({"amount": [1.0, 2.5], "bonus": [0.5, 0.0]})
    direct = odfv.execute(frame)
    rebuilt = from_spec("on_demand_feature_view", odfv.to_spec(), 1)
    assert rebuilt.execute(frame)["doubled"].tolist() == direct["doubled"].tolist() == [2.5, 5.0]
    with pytest.raises(Exception, match="needs inputs"):
        odfv.execute(frame[["amount"]])


def broken(df: pd.DataFrame) -> pd.DataFrame:
    raise ValueError("boom")


@pytest.mark.parametrize("name", ["__ts", "__f", "__event_ts"])
def test_field_names_starting_with_two_underscores_are_reserved(name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved; rename the field") as err:
        Field(name, Float64)
    assert err.value.details["field"] == name


def test_on_demand_errors_keep_the_view_name() -> None:
    odfv = OnDemandFeatureView("bad", [RequestSource("req", [Field("a", Float64)])], [Field("b", Float64)], udf=broken)
    with pytest.raises(ModelError, match="'bad' raised ValueError: boom"):
        odfv.execute(pd.DataFrame({"a": [1.0]}))


def test_service_expands_views() -> None:
    stats = _view(fields=[Field("amount", Float64), Field("count", Int64)])
    assert FeatureService("svc", [stats]).features == ["stats:amount", "stats:count"]
    assert FeatureService("svc", [stats[["count"]], "stats:amount"]).features == ["stats:count", "stats:amount"]


def _repo(tmp_path: Path, body: str) -> Path:
    (tmp_path / "features").mkdir(exist_ok=True)
    (tmp_path / "features" / "defs.py").write_text(textwrap.dedent(body))
    return tmp_path


HEADER = """\
from shipyard.features import Entity, FeatureView, FeatureService, Field, FileSource, Float64
user = Entity("user", ["user_id"])
"""


def test_repo_errors_point_at_file_and_line(tmp_path: Path) -> None:
    root = _repo(tmp_path, HEADER + "bad = Field('x', 'complex')\n")
    with pytest.raises(InvalidInput) as err:
        load_repo(root)
    assert f"{root / 'features' / 'defs.py'}:3:" in err.value.message
    assert err.value.details["line"] == 3


def test_unknown_entity_is_reported_at_the_view(tmp_path: Path) -> None:
    root = _repo(tmp_path, HEADER + (
        "stats = FeatureView('stats', [Entity('ghost', ['g'])], [Field('a', Float64)], FileSource('x.parquet'))\n"))
    with pytest.raises(InvalidInput, match=r"defs.py:3: feature view 'stats' uses entity 'ghost'"):
        load_repo(root)


def test_unknown_feature_in_service(tmp_path: Path) -> None:
    root = _repo(tmp_path, HEADER + (
        "stats = FeatureView('stats', [user], [Field('a', Float64)], FileSource('x.parquet'))\n"
        "svc = FeatureService('svc', ['stats:nope'])\n"))
    with pytest.raises(InvalidInput, match=r"defs.py:4: .*unknown feature 'nope' of view 'stats' \(its features: a\)"):
        load_repo(root)
    root = _repo(tmp_path, HEADER + "svc = FeatureService('svc', ['missing_view:a'])\n")
    with pytest.raises(InvalidInput, match="unknown feature view 'missing_view'"):
        load_repo(root)


def test_duplicate_names_and_syntax_errors(tmp_path: Path) -> None:
    root = _repo(tmp_path, HEADER + "user2 = Entity('user', ['other'])\n")
    with pytest.raises(InvalidInput, match="entity 'user' is defined twice"):
        load_repo(root)
    root = _repo(tmp_path, HEADER + "def oops(:\n")
    with pytest.raises(InvalidInput, match="defs.py:3: syntax error"):
        load_repo(root)


@pytest.mark.parametrize("importer", ["a_service", "z_service"])  # loads before / after defs.py
def test_definitions_imported_from_a_sibling_file_are_the_same_definitions(tmp_path: Path, importer: str) -> None:
    _repo(tmp_path, HEADER + "stats = FeatureView('stats', [user], [Field('a', Float64)], FileSource('x.parquet'))\n")
    (tmp_path / "features" / f"{importer}.py").write_text(
        "from defs import stats\nfrom shipyard.features import FeatureService\n"
        "svc = FeatureService('svc', [stats])\n")
    repo = load_repo(tmp_path)
    assert sorted((d.kind, d.name) for d in repo.definitions) == [
        ("entity", "user"), ("feature_service", "svc"), ("feature_view", "stats")]
    assert "defs" not in sys.modules
    # an edit is seen by the next load in the same process
    (tmp_path / "features" / "defs.py").write_text(
        HEADER + "stats = FeatureView('stats', [user], [Field('b', Float64)], FileSource('x.parquet'))\n")
    (tmp_path / "features" / f"{importer}.py").write_text(
        "from defs import stats\nfrom shipyard.features import FeatureService\n"
        "svc = FeatureService('svc', ['stats:b'])\n")
    again = load_repo(tmp_path)
    view = next(d for d in again.definitions if d.name == "stats")
    assert [f.name for f in view.fields] == ["b"]


def test_relative_source_paths_resolve_against_the_project(tmp_path: Path) -> None:
    root = _repo(tmp_path, HEADER + "stats = FeatureView('stats', [user], [Field('a', Float64)], "
                                    "FileSource('data/x.parquet'))\n")
    repo = load_repo(root / "features")
    view = next(d for d in repo.definitions if d.name == "stats")
    assert view.source.path == str((tmp_path / "data" / "x.parquet").resolve())


def test_a_project_under_a_hidden_folder_loads_its_features(tmp_path: Path) -> None:
    # e.g. the demo's project in ~/.local/share/shipyard/demo: only names below features/ are hidden
    (tmp_path / ".local" / "proj").mkdir(parents=True)
    root = _repo(tmp_path / ".local" / "proj", HEADER + (
        "stats = FeatureView('stats', [user], [Field('a', Float64)], FileSource('x.parquet'))\n"))
    (root / "features" / ".scratch").mkdir()
    (root / "features" / ".scratch" / "draft.py").write_text("raise RuntimeError('hidden files are not loaded')\n")
    repo = load_repo(root)
    assert repo.files == [root.resolve() / "features" / "defs.py"]
    assert [d.name for d in repo.of_kind("feature_view")] == ["stats"]
