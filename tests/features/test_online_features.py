"""Online reads: batch retrieval, services, on-demand views (same code as offline), TTL, latency."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.features.online_features import get_online_features
from shipyard.features.push import push
from tests.features import online_support

online = online_support.online
feature_store = online_support.feature_store
embedded_feature_store = online_support.embedded_feature_store


def _seed(store, now: dt.datetime) -> None:
    push(store, "cust_stats", [
        {"customer_id": i, "event_timestamp": now - dt.timedelta(days=3 if i == 4 else 0), "amount": i + 0.5,
         "n": i, "city": f"c{i}", "vip": bool(i % 2), "seen": now} for i in range(5)
    ])
    push(store, "pair_stats", [{"customer_id": 1, "merchant": "m", "event_timestamp": now, "amount": 9.0, "visits": 2}])


def test_batch_read_with_nulls_for_missing_and_expired(feature_store) -> None:
    now = dt.datetime.now(dt.UTC)
    _seed(feature_store, now)
    out = get_online_features(feature_store, {"customer_id": [2, 4, 77, 1], "merchant": ["m", "m", "m", "m"]},
                              features=["cust_stats:amount", "cust_stats:vip", "pair_stats:visits"],
                              full_feature_names=True)
    assert out["customer_id"] == [2, 4, 77, 1]
    assert out["cust_stats__amount"] == [2.5, None, None, 1.5]  # 4 is older than the 2-day TTL
    assert out["cust_stats__vip"] == [False, None, None, True]
    assert out["pair_stats__visits"] == [None, None, None, 2]


def test_service_runs_on_demand_view_like_offline(feature_store) -> None:
    now = dt.datetime.now(dt.UTC)
    _seed(feature_store, now)
    rows = [{"customer_id": 3, "mult": 2.0}, {"customer_id": 0, "mult": -1.0}, {"customer_id": 50, "mult": 1.0}]
    out = get_online_features(feature_store, rows, service="risk")
    assert out["amount"] == [3.5, 0.5, None]
    assert out["n"] == [3, 0, None]
    assert out["scaled"] == [3.5 * 2.0 + 1.0, 0.5 * -1.0 + 1.0, None]
    entity_df = pd.DataFrame({"customer_id": [3, 0, 50], "mult": [2.0, -1.0, 1.0],
                              "event_timestamp": [now + dt.timedelta(seconds=1)] * 3})
    offline = feature_store.get_training_set(entity_df, service="risk")
    assert [None if pd.isna(v) else v for v in offline["scaled"]] == out["scaled"]


def test_bad_requests_name_the_problem(embedded_feature_store) -> None:
    store = embedded_feature_store
    with pytest.raises(InvalidInput, match="join keys"):
        get_online_features(store, {"merchant": ["m"]}, features=["pair_stats:visits"])
    with pytest.raises(InvalidInput, match="no feature 'nope'"):
        get_online_features(store, {"customer_id": [1]}, features=["cust_stats:nope"])
    with pytest.raises(NotFound, match="missing_view"):
        get_online_features(store, {"customer_id": [1]}, features=["missing_view:x"])
    with pytest.raises(InvalidInput, match="full_feature_names"):
        get_online_features(store, {"customer_id": [1], "merchant": ["m"]},
                            features=["cust_stats:amount", "pair_stats:amount"])
    with pytest.raises(InvalidInput, match="request field 'mult'"):
        get_online_features(store, {"customer_id": [1]}, features=["scaled_amount:scaled"])
    with pytest.raises(InvalidInput, match="either"):
        get_online_features(store, {"customer_id": [1]})


def test_feature_store_methods_delegate(embedded_feature_store) -> None:
    store = embedded_feature_store
    now = dt.datetime.now(dt.UTC)
    row = {"customer_id": 1, "event_timestamp": now, "amount": 1.0, "n": 1, "city": "x", "vip": True, "seen": now}
    assert store.push("cust_stats", [row]).written == 1
    assert store.get_online_features({"customer_id": [1]}, ["cust_stats:n"]) == {"customer_id": [1], "n": [1]}
    (result,) = store.materialize(now - dt.timedelta(days=1), now + dt.timedelta(seconds=1), ["cust_stats"])
    assert result.view == "cust_stats" and result.rows_read == 1
    assert store.materialize_incremental(now + dt.timedelta(seconds=2), ["cust_stats"])[0].rows_read == 0
    store.log_features("r1", now, {"customer_id": 1}, {"cust_stats:n": 1})
    assert store.skew("cust_stats").feature("cust_stats:n").mismatches == 0
    assert store.monitor(["cust_stats"])["views"][0]["online"]["entities"] == 1


def test_on_demand_execute_gives_the_same_columns_with_or_without_a_copy() -> None:
    """Online reads hand the function their own frame (no copy); offline callers keep theirs
    untouched. A function that writes into its input and returns it, and one returning integers for
    a float feature, give the same typed columns either way."""
    from shipyard.features import Field, Float64, OnDemandFeatureView, RequestSource

    def in_place(df: pd.DataFrame) -> pd.DataFrame:
        df["twice"] = df["x"] * 2
        df["count"] = df["x"].fillna(0).round().astype("int64")
        return df

    view = OnDemandFeatureView("doubled", [RequestSource("req", [Field("x", Float64)])],
                               [Field("twice", Float64), Field("count", Float64)], udf=in_place)
    given = pd.DataFrame({"x": [1.25, -2.0, None]})
    copied = view.execute(given)
    assert list(given.columns) == ["x"]  # the caller's frame is left as it was
    owned = view.execute(pd.DataFrame({"x": [1.25, -2.0, None]}), owned=True)
    pd.testing.assert_frame_equal(copied, owned)
    assert copied["twice"].tolist()[:2] == [2.5, -4.0] and pd.isna(copied["twice"].iloc[2])
    assert copied["count"].dtype == "float64" and copied["count"].tolist() == [1.0, -2.0, 0.0]
