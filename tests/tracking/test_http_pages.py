"""Routes the web UI's runs pages use: paged search with a total, metric histories of several runs
at once, and the HTML reports logged to runs — each checked against the one-run calls it replaces."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from shipyard.server import create_app
from tests.conftest import auth_headers, user_token


@pytest.fixture
def client(workspace, monkeypatch):
    monkeypatch.setattr("shipyard.server.API_MODULES", ["shipyard.auth.http", "shipyard.tracking.http"])
    with TestClient(create_app(workspace), headers=auth_headers(workspace)) as c:
        yield c


@pytest.fixture
def runs(workspace) -> list[str]:
    rng = random.Random(3)
    ids = []
    for i in range(23):
        with workspace.tracking.start_run(experiment="exp" if i % 3 else "other", name=f"r{i}") as run:
            run.log_params({"model": rng.choice(["lgbm", "xgb"])})
            for step in range(rng.randint(0, 4)):
                run.log_metric("loss", rng.random(), step=step)
            run.log_metric("auc", rng.random())
            if i % 5 == 0:
                workspace.tracking.log_bytes(run.id, f"<html>{i}</html>".encode(), f"reports/r{i}.html")
                workspace.tracking.log_bytes(run.id, b"{}", "reports/data.json")
        ids.append(run.id)
    return ids


@pytest.mark.parametrize("body", [
    {},
    {"experiment": "exp"},
    {"filter": "params.model = 'lgbm' and metrics.auc > 0.3"},
    {"experiment": ["exp", "other"], "filter": "metrics.loss is null"},
])
def test_search_total_counts_every_match_and_pages_cover_them(client, runs, body):
    everything = client.post("/api/v1/runs/search", json={**body, "max_results": 1000}).json()["runs"]
    seen = []
    offset = 0
    while True:
        page = client.post("/api/v1/runs/search", json={**body, "max_results": 4, "offset": offset,
                                                        "include_total": True, "order_by": ["metrics.auc DESC"]})
        assert page.status_code == 200, page.text
        doc = page.json()
        assert doc["total"] == len(everything)
        seen += [r["info"]["id"] for r in doc["runs"]]
        if len(doc["runs"]) < 4:
            break
        offset += 4
    assert sorted(seen) == sorted(r["info"]["id"] for r in everything)
    aucs = [next(r for r in everything if r["info"]["id"] == rid)["metrics"]["auc"] for rid in seen]
    assert aucs == sorted(aucs, reverse=True)
    assert "total" not in client.post("/api/v1/runs/search", json=body).json()


def test_metric_histories_equal_the_one_run_history(client, runs):
    chosen = runs[:6]
    doc = client.post("/api/v1/runs/metric-histories", json={"run_ids": chosen, "keys": ["loss", "auc", "none"]})
    assert doc.status_code == 200, doc.text
    histories = doc.json()["histories"]
    assert sorted(histories) == sorted(chosen)
    for rid in chosen:
        for key in ("loss", "auc", "none"):
            one = client.get(f"/api/v1/runs/{rid}/metrics/history", params={"key": key}).json()["metrics"]
            assert histories[rid][key] == one


def test_metric_histories_refuse_bad_input(client, runs, workspace):
    unknown = client.post("/api/v1/runs/metric-histories", json={"run_ids": [runs[0], "f" * 32], "keys": ["auc"]})
    assert unknown.status_code == 404 and "f" * 32 in unknown.json()["error"]["message"]
    empty = client.post("/api/v1/runs/metric-histories", json={"run_ids": [], "keys": ["auc"]})
    assert empty.status_code == 400 and empty.json()["error"]["details"]["problems"][0]["field"] == "run_ids"
    too_many = client.post("/api/v1/runs/metric-histories", json={"run_ids": runs[:1], "keys": ["k"] * 101})
    assert too_many.status_code == 400 and "keys" in too_many.json()["error"]["message"]


def test_reports_are_the_html_artifacts_newest_first(client, runs, workspace):
    doc = client.get("/api/v1/runs/reports").json()["reports"]
    expected = {(rid, f"reports/r{i}.html") for i, rid in enumerate(runs) if i % 5 == 0}
    assert {(r["run_id"], r["path"]) for r in doc} == expected
    stamps = [r["created_at"] for r in doc]
    assert stamps == sorted(stamps, reverse=True)
    assert all(r["run_name"] == f"r{runs.index(r['run_id'])}" for r in doc)
    workspace.tracking.delete_run(runs[0])
    assert runs[0] not in {r["run_id"] for r in client.get("/api/v1/runs/reports").json()["reports"]}
    assert len(client.get("/api/v1/runs/reports", params={"limit": 2}).json()["reports"]) == 2
    assert client.get("/api/v1/runs/reports", params={"limit": 0}).status_code == 400


def test_a_viewer_may_read_these_and_an_anonymous_caller_may_not(client, runs, workspace):
    viewer = {"Authorization": f"Bearer {user_token(workspace, 'vic', 'viewer', 'default')}"}
    assert client.get("/api/v1/runs/reports", headers=viewer).status_code == 200
    anonymous = TestClient(client.app)
    assert anonymous.get("/api/v1/runs/reports").status_code == 401
    assert anonymous.post("/api/v1/runs/metric-histories", json={"run_ids": runs[:1], "keys": ["auc"]}).status_code == 401
