"""On-demand views get their inputs in the declared types online as offline (float64 with NaN,
nullable Int64/boolean with <NA>, text, UTC timestamps), also for unknown or expired entities whose
every input is missing; offline and online give the same result for every input (property test)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import load_settings
from shipyard.features.online_features import get_online_features
from shipyard.features.push import push
from shipyard.workspace import Workspace

DEFINITIONS = '''
from datetime import timedelta

import numpy as np
import pandas as pd

from shipyard.features import (Bool, Entity, FeatureView, Field, Float64, Int64, PushSource, RequestSource, String,
                               Timestamp, on_demand_feature_view)

account = Entity("account", ["account_id"], value_types="int64")
stats = FeatureView(
    "stats", [account],
    [Field("x", Float64), Field("k", Int64), Field("s", String), Field("b", Bool), Field("t", Timestamp)],
    source=PushSource("stats_push"), ttl=timedelta(days=1),
)
request = RequestSource("request", [Field("mult", Float64), Field("now", Timestamp)])


@on_demand_feature_view(sources=[stats, request],
                        fields=[Field("absx", Float64), Field("logx", Float64), Field("k2", Int64),
                                Field("slen", Int64), Field("notb", Bool), Field("age_s", Float64),
                                Field("scaled", Float64), Field("kx", Float64)])
def derived(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "absx": df["x"].abs(),
        "logx": np.log1p(df["x"].abs()),
        "k2": df["k"] * 2,
        "slen": df["s"].str.len(),
        "notb": ~df["b"],
        "age_s": (df["now"] - df["t"]).dt.total_seconds(),
        "scaled": df["x"] * df["mult"],
        "kx": df["k"].astype("Float64") + df["x"],
    })
'''
OUTPUTS = ["absx", "logx", "k2", "slen", "notb", "age_s", "scaled", "kx"]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # online TTLs count from the wall clock
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = tmp_path_factory.mktemp("odfv") / "project"
    ws = Workspace(load_settings(project, user="alice", validation_subprocess=False))
    folder = project / "features"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "definitions.py").write_text(DEFINITIONS)
    ws.features.apply(folder)
    yield ws.features
    ws.close()


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item"):
        v = v.item()
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def _both(store: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    refs = [f"derived:{o}" for o in OUTPUTS]
    online = get_online_features(store, rows, features=refs)
    entity_df = pd.DataFrame(rows).assign(event_timestamp=NOW)
    offline = store.get_training_set(entity_df, features=refs)
    return ({o: [_plain(v) for v in online[o]] for o in OUTPUTS},
            {o: [_plain(v) for v in offline[o]] for o in OUTPUTS})


def _same(a: list[Any], b: list[Any]) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and
               (x == y or (isinstance(x, float) and math.isclose(x, y, rel_tol=1e-12))))
               for x, y in zip(a, b, strict=True))


def test_unknown_and_expired_entities_give_missing_outputs_not_errors(store) -> None:
    known, expired, unknown = next(_ids) * 1000, next(_ids) * 1000, next(_ids) * 1000
    push(store, "stats", [
        {"account_id": known, "event_timestamp": NOW - dt.timedelta(hours=1), "x": -2.5, "k": 3, "s": "abc",
         "b": True, "t": NOW - dt.timedelta(hours=2)},
        {"account_id": expired, "event_timestamp": NOW - dt.timedelta(days=3), "x": 1.0, "k": 1, "s": "z",
         "b": False, "t": NOW - dt.timedelta(days=3)},
    ])
    for ids in ([unknown], [expired], [unknown, expired], [known, unknown]):
        rows = [{"account_id": i, "mult": 2.0, "now": NOW} for i in ids]
        online, offline = _both(store, rows)
        for o in OUTPUTS:
            assert _same(online[o], offline[o]), (ids, o, online[o], offline[o])
        missing = [i != known for i in ids]
        assert [v is None for v in online["absx"]] == missing
        assert [v is None for v in online["slen"]] == missing
    online, _ = _both(store, [{"account_id": known, "mult": 2.0, "now": NOW}])
    assert online["absx"] == [2.5] and online["logx"] == [pytest.approx(math.log1p(2.5))]
    assert online["k2"] == [6.0] and online["slen"] == [3.0] and online["notb"] == [False]
    assert online["age_s"] == [7200.0] and online["scaled"] == [-5.0] and online["kx"] == [0.5]


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
entity = st.fixed_dictionaries({
    "state": st.sampled_from(["fresh", "expired", "unknown"]),
    "x": st.none() | finite,
    "k": st.none() | st.integers(min_value=-10**6, max_value=10**6),
    "s": st.none() | st.text(alphabet="abcxyz é", max_size=5),
    "b": st.none() | st.booleans(),
    "t": st.none() | st.integers(min_value=0, max_value=10**6).map(lambda s: NOW - dt.timedelta(seconds=s)),
    "mult": st.none() | finite,
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entities=st.lists(entity, min_size=1, max_size=4))
def test_offline_and_online_agree_for_every_input(store, entities) -> None:
    pushed, rows = [], []
    for e in entities:
        account = next(_ids) * 1000
        if e["state"] != "unknown":
            age = dt.timedelta(hours=1) if e["state"] == "fresh" else dt.timedelta(days=3)
            pushed.append({"account_id": account, "event_timestamp": NOW - age,
                           **{f: e[f] for f in ("x", "k", "s", "b", "t")}})
        rows.append({"account_id": account, "mult": e["mult"], "now": NOW})
    if pushed:
        push(store, "stats", pushed)
    online, offline = _both(store, rows)
    for o in OUTPUTS:
        assert _same(online[o], offline[o]), (o, online[o], offline[o], entities)


def test_a_request_value_of_the_wrong_type_names_the_field(store) -> None:
    from shipyard.errors import SchemaMismatch

    with pytest.raises(SchemaMismatch, match=r"input 'mult' is declared float64 but holds 'lots'") as e:
        get_online_features(store, [{"account_id": 1, "mult": "lots", "now": NOW}], features=["derived:absx"])
    assert e.value.details["field"] == "mult" and isinstance(e.value, ValueError)
    # ISO text for a timestamp request field is read as the time it names
    ok = get_online_features(store, [{"account_id": 1, "mult": 1, "now": NOW.isoformat()}], features=["derived:absx"])
    assert ok["absx"] == [None]
