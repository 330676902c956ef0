"""Push: type validation naming the field, online + offline writes, idempotency on (entity, event ts)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from shipyard.errors import InvalidInput
from shipyard.features.push import push
from tests.features import online_support
from tests.features.online_support import T0

online = online_support.online
feature_store = online_support.feature_store
embedded_feature_store = online_support.embedded_feature_store
NAMES = ["amount", "n", "city", "vip", "seen"]


def _rows(n: int, at: dt.datetime, base: float = 0.0) -> list[dict]:
    return [{"customer_id": i, "event_timestamp": at, "amount": base + i * 1.5, "n": i * 10, "city": f"c{i}",
             "vip": i % 2 == 1, "seen": T0 + dt.timedelta(hours=i)} for i in range(n)]


def _offline_rows(store) -> pd.DataFrame:
    return store.read_offline("cust_stats").to_pandas()


def test_push_writes_online_and_offline(feature_store) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = push(feature_store, "cust_stats", _rows(4, now))
    assert (result.rows, result.written, result.duplicates, result.offline_rows) == (4, 4, 0, 4)
    got = feature_store.online_store.read("cust_stats", NAMES, [(i,) for i in range(5)])
    assert got["amount"] == [0.0, 1.5, 3.0, 4.5, None]
    assert got["n"] == [0, 10, 20, 30, None]
    assert got["vip"] == [False, True, False, True, None]
    assert got["seen"][3] == T0 + dt.timedelta(hours=3)
    offline = _offline_rows(feature_store).sort_values("customer_id")
    assert offline.amount.tolist() == [0.0, 1.5, 3.0, 4.5]
    assert offline.city.tolist() == ["c0", "c1", "c2", "c3"]
    assert (offline.event_timestamp == pd.Timestamp(now)).all()


def test_push_accepts_frames_and_column_dicts(feature_store) -> None:
    now = dt.datetime.now(dt.UTC)
    push(feature_store, "cust_stats", pd.DataFrame(_rows(2, now)))
    push(feature_store, "pair_stats", {"customer_id": [1, 1], "merchant": ["a", "b"], "event_timestamp": [now, now],
                                       "amount": [1.0, 2.0], "visits": [3, 4]})
    assert feature_store.online_store.read("pair_stats", ["visits"], [(1, "b"), (1, "a"), (2, "a")])["visits"] == [4, 3, None]
    assert feature_store.online_store.read("cust_stats", ["amount"], [(1,)])["amount"] == [1.5]


def test_push_is_idempotent_on_entity_and_event_time(feature_store) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = _rows(3, now)
    push(feature_store, "cust_stats", rows)
    again = push(feature_store, "cust_stats", rows)
    assert (again.written, again.duplicates, again.offline_rows) == (0, 3, 0)
    assert len(_offline_rows(feature_store)) == 3
    # a late event is kept offline but never hides the fresher online value
    late = _rows(1, now - dt.timedelta(minutes=5), base=100.0)
    result = push(feature_store, "cust_stats", late)
    assert (result.stale, result.offline_rows) == (1, 1)
    assert feature_store.online_store.read("cust_stats", ["amount"], [(0,)])["amount"] == [0.0]
    assert len(_offline_rows(feature_store)) == 4


def test_a_push_retried_after_dying_before_the_offline_append_logs_each_row_once(feature_store,
                                                                                    monkeypatch) -> None:
    rows = _rows(4, dt.datetime.now(dt.UTC))
    push(feature_store, "cust_stats", rows[:1])  # already logged: a retry must not log it again

    def die(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # the writer stops between the online write and the offline append

    monkeypatch.setattr(feature_store, "offline_append", die)
    with pytest.raises(KeyboardInterrupt):
        push(feature_store, "cust_stats", rows[1:3])
    monkeypatch.undo()
    retried = push(feature_store, "cust_stats", rows)
    assert (retried.written, retried.duplicates, retried.offline_rows) == (1, 3, 3)
    assert sorted(_offline_rows(feature_store)["customer_id"]) == [0, 1, 2, 3]


def test_a_row_repeated_within_one_push_is_logged_once(feature_store) -> None:
    rows = _rows(3, dt.datetime.now(dt.UTC))
    result = push(feature_store, "cust_stats", rows + rows[1:] + rows[1:])
    assert (result.written, result.duplicates, result.offline_rows) == (3, 4, 3)
    assert sorted(_offline_rows(feature_store)["customer_id"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("amount", "12.5", "float64"), ("n", 1.5, "int64"), ("vip", "yes", "bool"), ("city", 7, "string"),
     ("seen", "not a time", "timestamp"), ("n", True, "int64")],
)
def test_wrong_types_name_the_field_and_write_nothing(embedded_feature_store, field: str, value: object,
                                                     expected: str) -> None:
    feature_store = embedded_feature_store
    from shipyard.features.online import online_store_of

    rows = _rows(3, dt.datetime.now(dt.UTC))
    rows[2][field] = value
    with pytest.raises(InvalidInput) as info:
        push(feature_store, "cust_stats", rows)
    assert f"'{field}'" in info.value.message and "cust_stats" in info.value.message
    assert info.value.details["field"] == field and info.value.details["row"] == 2
    assert expected in info.value.message
    assert online_store_of(feature_store).stats("cust_stats").entities == 0
    assert len(_offline_rows(feature_store)) == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [(lambda r: r.pop("customer_id"), "customer_id"), (lambda r: r.pop("event_timestamp"), "event_timestamp"),
     (lambda r: r.pop("city"), "city"), (lambda r: r.update(colour="red"), "colour"),
     (lambda r: r.update(customer_id="7"), "customer_id")],
)
def test_missing_or_unknown_columns(embedded_feature_store, mutate, field: str) -> None:
    feature_store = embedded_feature_store
    rows = _rows(2, dt.datetime.now(dt.UTC))
    mutate(rows[1])
    with pytest.raises(InvalidInput) as info:
        push(feature_store, "cust_stats", rows)
    assert info.value.details["field"] == field


def test_push_to_on_demand_view_is_refused(embedded_feature_store) -> None:
    with pytest.raises(InvalidInput, match="on-demand"):
        push(embedded_feature_store, "scaled_amount", [])
