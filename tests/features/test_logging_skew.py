"""Feature logging stores exactly what was served; skew numbers equal a naive recomputation."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.features.logging import feature_logger, log_features, read_feature_logs, training_set_from_logs
from shipyard.features.online import online_store_of
from shipyard.features.online_features import get_online_features
from shipyard.features.push import push
from shipyard.features.skew import skew
from tests.features import online_support

embedded_feature_store = online_support.embedded_feature_store
REFS = ["cust_stats:amount", "cust_stats:n", "cust_stats:city"]


def _serve_and_log(store, customers: list[int], now: dt.datetime, tag: str) -> list[dict]:
    served = []
    for c in customers:
        vector = get_online_features(store, {"customer_id": [c]}, features=REFS)
        values = {ref: vector[ref.split(":")[1]][0] for ref in REFS}
        log_features(store, f"{tag}{c}", now, {"customer_id": c}, values)
        served.append({"request_id": f"{tag}{c}", "customer_id": c, **values})
    return served


@pytest.fixture
def scenario(embedded_feature_store):
    store = embedded_feature_store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pushed = {i: {"customer_id": i, "event_timestamp": now - dt.timedelta(hours=1), "amount": i * 1.1, "n": i,
                  "city": f"c{i % 3}", "vip": False, "seen": now} for i in range(20)}
    push(store, "cust_stats", list(pushed.values()))
    served = _serve_and_log(store, [*range(20), 99], now, "r")
    # a faulty writer puts values into the online store that the offline log never saw
    bad = {3: 999.0, 7: -5.5}
    online_store_of(store).write_batch(
        "cust_stats", [(c,) for c in bad], [{**pushed[c], "amount": v} for c, v in bad.items()],
        [now - dt.timedelta(minutes=30)] * len(bad))
    served += _serve_and_log(store, list(bad), now + dt.timedelta(seconds=1), "late")
    return store, now, pushed, served


def test_logs_hold_exactly_the_served_vectors(scenario) -> None:
    store, now, _pushed, served = scenario
    logger = feature_logger(store)
    assert logger.pending == len(served) and not logger.files
    logs = read_feature_logs(store, now - dt.timedelta(days=1), now + dt.timedelta(days=1))
    assert logger.files and all(f"date={now.date().isoformat()}" in f for f in logger.files)
    assert logs.attrs["feature_columns"] == REFS and logs.attrs["entity_columns"] == ["customer_id"]
    expected = pd.DataFrame(served).sort_values("request_id").reset_index(drop=True)
    got = logs.sort_values("request_id").reset_index(drop=True)
    assert got["request_id"].tolist() == expected["request_id"].tolist()
    for ref in REFS:
        assert [None if pd.isna(v) else v for v in got[ref]] == [None if pd.isna(v) else v for v in expected[ref]]
    assert str(got["cust_stats:n"].dtype) == "Int64"  # integers stay integers next to a missing value
    assert read_feature_logs(store, now + dt.timedelta(seconds=1), now + dt.timedelta(days=1))["request_id"].tolist() \
        == ["late3", "late7"]


def test_training_set_from_logs_joins_labels(scenario) -> None:
    store, now, _pushed, _served = scenario
    labels = pd.DataFrame({"request_id": ["r1", "r2", "late3", "nope"], "label": [0, 1, 1, 0]})
    samples = training_set_from_logs(store, labels=labels)
    assert sorted(samples["request_id"]) == ["late3", "r1", "r2"]
    row = samples.set_index("request_id").loc["late3"]
    assert row["cust_stats:amount"] == 999.0 and row["label"] == 1
    with pytest.raises(InvalidInput, match="join labels"):
        training_set_from_logs(store, labels=labels, on="customer")


def test_skew_matches_naive_recomputation(scenario) -> None:
    store, now, pushed, served = scenario
    report = skew(store, "cust_stats", now - dt.timedelta(days=1), now + dt.timedelta(days=1))
    assert report.rows == len(served)  # the unknown entity's all-missing vector too (missing offline as well)
    assert sorted(report.not_logged) == ["cust_stats:seen", "cust_stats:vip"]
    # naive reference: offline truth is the pushed row (the faulty writes never reached it)
    for ref in REFS:
        name = ref.split(":")[1]
        compared = served
        diffs = [(s[ref], pushed[s["customer_id"]][name] if s["customer_id"] in pushed else None)
                 for s in compared]
        mismatched = [(a, b) for a, b in diffs if a != b]
        entry = report.feature(ref)
        assert entry.compared == len(compared)
        assert entry.mismatches == len(mismatched)
        assert entry.mismatch_rate == pytest.approx(len(mismatched) / len(compared))
        if name == "amount":
            assert entry.max_abs_diff == pytest.approx(max(abs(a - b) for a, b in mismatched))
            numeric = [(a, b) for a, b in diffs if a is not None and b is not None]
            assert entry.mean_abs_diff == pytest.approx(sum(abs(a - b) for a, b in numeric) / len(numeric))
            assert [t["request_id"] for t in entry.top] == ["late3", "late7"]
            assert entry.top[0]["served"] == 999.0 and entry.top[0]["offline"] == pytest.approx(3.3)
    assert report.rows_with_mismatch == 2
    assert report.mismatch_rate == pytest.approx(2 / report.rows)


def test_skew_of_a_service_and_unknown_target(scenario) -> None:
    store, now, _pushed, _served = scenario
    report = skew(store, "risk")
    assert [f.feature for f in report.features] == ["cust_stats:amount", "cust_stats:n"]
    assert report.not_logged == ["scaled_amount:scaled"]
    assert report.feature("cust_stats:amount").mismatches == 2
    with pytest.raises(NotFound, match="neither"):
        skew(store, "nothing_here")


def test_serving_before_materialization_flags_every_row(embedded_feature_store) -> None:
    """A missed materialization: the offline store has the rows, the online store has none, so every
    served vector is all missing. Skew counts those vectors and flags every one."""
    store = embedded_feature_store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = [{"customer_id": i, "event_timestamp": now - dt.timedelta(hours=1), "amount": i + 0.25, "n": i,
             "city": f"c{i}", "vip": True, "seen": now} for i in range(6)]
    store.offline_append("cust_stats", rows)  # written offline only: never materialized
    served = _serve_and_log(store, list(range(6)), now, "early")
    assert all(s[ref] is None for s in served for ref in REFS)  # what the online store gave
    report = skew(store, "cust_stats", now - dt.timedelta(days=1), now + dt.timedelta(days=1))
    assert report.rows == 6 and report.rows_with_mismatch == 6 and report.mismatch_rate == 1.0
    for ref in REFS:
        entry = report.feature(ref)
        assert entry.compared == 6 and entry.mismatches == 6 and entry.null_mismatches == 6
        assert sorted(t["offline"] for t in entry.top)[:1] == [sorted(r[ref.split(":")[1]] for r in rows)[0]]
    # vectors logged for another target carry none of these features and are not counted
    log_features(store, "other", now, {"customer_id": 1}, {"pair_stats:visits": None})
    assert skew(store, "cust_stats", now - dt.timedelta(days=1), now + dt.timedelta(days=1)).rows == 6
