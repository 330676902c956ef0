"""Online feature routes and the remote client: same answers and same errors as in-process calls."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.client import Client
from shipyard.errors import InvalidInput, NotFound
from shipyard.features.online_features import get_online_features
from shipyard.server import create_app
from tests.conftest import auth_headers
from tests.features import online_support

embedded_feature_store = online_support.embedded_feature_store


@pytest.fixture
def remote(embedded_feature_store):
    store = embedded_feature_store
    app = create_app(store.ws)
    with TestClient(app, headers=auth_headers(store.ws)) as http:
        client = Client("http://testserver")
        client._http = http
        yield store, http, client


def _rows(now: dt.datetime) -> list[dict]:
    return [{"customer_id": i, "event_timestamp": now.isoformat(), "amount": i * 2.5, "n": i, "city": f"c{i}",
             "vip": i % 2 == 0, "seen": now.isoformat()} for i in range(5)]


def test_push_then_read_over_http(remote) -> None:
    store, http, _client = remote
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    resp = http.post("/api/v1/features/push", json={"view": "cust_stats", "rows": _rows(now)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"view": "cust_stats", "rows": 5, "written": 5, "duplicates": 0, "stale": 0,
                           "offline_rows": 5}
    again = http.post("/api/v1/features/push", json={"view": "cust_stats", "rows": _rows(now)}).json()
    assert again["duplicates"] == 5 and again["offline_rows"] == 0
    body = {"features": ["cust_stats:amount", "cust_stats:vip", "cust_stats:seen"],
            "entities": {"customer_id": [4, 9, 1]}}
    results = http.post("/api/v1/features/online", json=body).json()["results"]
    assert results == {"customer_id": [4, 9, 1], "amount": [10.0, None, 2.5], "vip": [True, None, False],
                       "seen": [now.isoformat(), None, now.isoformat()]}
    local = get_online_features(store, {"customer_id": [4, 9, 1]}, features=body["features"])
    assert local["amount"] == results["amount"] and local["vip"] == results["vip"]
    rows = http.post("/api/v1/features/online", json={"service": "risk",
                                                      "entities": [{"customer_id": 2, "mult": 3.0}]}).json()
    assert rows["results"] == {"customer_id": [2], "mult": [3.0], "amount": [5.0], "n": [2], "scaled": [16.0]}


def test_http_errors_name_the_field(remote) -> None:
    _store, http, _client = remote
    now = dt.datetime.now(dt.UTC)
    bad = _rows(now)
    bad[1]["amount"] = "lots"
    resp = http.post("/api/v1/features/push", json={"view": "cust_stats", "rows": bad})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid_input" and error["details"]["field"] == "amount"
    assert "'amount'" in error["message"] and "float64" in error["message"]
    resp = http.post("/api/v1/features/online", json={"features": ["nope:x"], "entities": {"customer_id": [1]}})
    assert resp.status_code == 404 and "nope" in resp.json()["error"]["message"]
    resp = http.post("/api/v1/features/online", json={"features": ["cust_stats:amount"]})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "entities"
    resp = http.post("/api/v1/features/online", content=b"{oops", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_remote_client_matches_in_process(remote) -> None:
    store, _http, client = remote
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = _rows(now)
    for row in rows:
        row["event_timestamp"] = now  # datetimes are sent as ISO text
    assert client.features.push("cust_stats", rows).written == 5
    got = client.features.get_online_features([{"customer_id": 3}, {"customer_id": 42}],
                                              features=["cust_stats:amount", "cust_stats:n"], full_feature_names=True)
    assert got == {"customer_id": [3, 42], "cust_stats__amount": [7.5, None], "cust_stats__n": [3, None]}
    with pytest.raises(InvalidInput, match="'n'"):
        client.features.push("cust_stats", [{**rows[0], "n": "seven"}])
    with pytest.raises(NotFound):
        client.features.get_online_features({"customer_id": [1]}, features=["missing:x"])
    (result,) = client.features.materialize(now - dt.timedelta(days=1), now + dt.timedelta(seconds=1),
                                            views=["cust_stats"])
    assert result.view == "cust_stats" and result.rows_read == 5
    report = client.features.monitor(["cust_stats"])
    assert report["views"][0]["online"]["entities"] == 5
    assert client.features.skew("cust_stats")["rows"] == 0


def test_push_accepts_json_sent_as_a_form_or_untyped(remote) -> None:
    # `curl -d '{...}'` labels the body application/x-www-form-urlencoded; no route takes forms
    store, http, _client = remote
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = orjson.dumps({"view": "cust_stats", "rows": _rows(now)})
    resp = http.post("/api/v1/features/push", content=body,
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["written"] == 5
    untyped = http.post("/api/v1/features/push", content=body, headers={"content-type": ""})
    assert untyped.status_code == 200 and untyped.json()["duplicates"] == 5
    # a body labelled as something else is still refused, naming the problem
    text = http.post("/api/v1/features/push", content=body, headers={"content-type": "text/plain"})
    assert text.status_code == 400 and text.json()["error"]["code"] == "invalid_input"


def test_remote_client_compacts_like_the_store(remote) -> None:
    store, _http, client = remote
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for i in range(3):
        store.push("cust_stats", [{**row, "event_timestamp": (now + dt.timedelta(seconds=i)).isoformat()}
                                  for row in _rows(now)])
    before = store.read_offline("cust_stats").num_rows
    [result] = client.features.compact("cust_stats", grace_seconds=0)
    assert (result["files_before"], result["files_after"], result["rows_merged"]) == (3, 1, 15)
    assert store.read_offline("cust_stats").num_rows == before == 15
    with pytest.raises(InvalidInput, match="target_rows"):
        client.features.compact("cust_stats", target_rows=0)
