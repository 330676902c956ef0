"""REST routes of pipelines and schedules: permissions (user code needs upload_code, files stay in the
project), no server paths in responses, background runs followed by polling and by server-sent events."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import user_token


@pytest.fixture
def server_ws(tmp_path: Path) -> Iterator[Workspace]:
    settings = load_settings(tmp_path / "project", validation_subprocess=False, validation_timing_calls=5)
    ws = Workspace(settings, principal=SERVER)
    yield ws
    ws.close()


@pytest.fixture
def client(server_ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(server_ws, follow_interval=0), raise_server_exceptions=False) as http:
        yield http


def _as(ws: Workspace, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(ws, role + '_user', role, 'default')}"}


DOC = {
    "name": "web",
    "params": {"n": 60},
    "nodes": [
        {"id": "data", "component": "load_dataset", "params": {"dataset": "nums"}, "position": {"x": 0, "y": 0}},
        {"id": "split", "component": "split", "inputs": {"data": "data"},
         "params": {"target": "bad", "seed": 1}, "position": {"x": 200, "y": 0}},
        {"id": "profile", "component": "profile", "inputs": {"data": "split.train"}, "params": {"target": "bad"}},
    ],
}
USER_CODE = "from shipyard.pipelines import component\n\n" \
            "@component(inputs={'data': 'table'}, outputs={'n': 'json'})\n" \
            "def count(data):\n    print('counting', len(data))\n    return {'n': len(data)}\n"


def _events(client: TestClient, path: str, headers: dict[str, str]) -> list[tuple[str, dict]]:
    found = []
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                found.append((event, json.loads(line[6:])))
                if event == "run":
                    break
    return found


def test_pipelines_and_schedules_over_http(client: TestClient, server_ws: Workspace) -> None:
    project = server_ws.settings.project_dir
    (project / "data").mkdir(parents=True)
    pd.DataFrame({"x": range(60), "bad": [0, 1] * 30}).to_csv(project / "data" / "nums.csv", index=False)
    server_ws.data.add_source("files", "file", {"root": "data"}, actor="admin")
    server_ws.data.create_dataset("nums", "files", {"path": "nums.csv", "profile": False}, actor="admin")
    server_ws.data.refresh("nums", actor="admin")
    (project / "pipelines").mkdir(exist_ok=True)
    (project / "pipelines" / "steps.py").write_text(textwrap.dedent(USER_CODE))
    modeler, viewer, operator = _as(server_ws, "modeler"), _as(server_ws, "viewer"), _as(server_ws, "operator")

    palette = client.get("/api/v1/pipelines/components", headers=viewer).json()
    assert "split" in {c["name"] for c in palette}
    bad = dict(DOC, nodes=[*DOC["nodes"], {"id": "loop", "component": "split", "inputs": {"data": "loop.train"},
                                           "params": {"target": "bad"}}])
    refused = client.post("/api/v1/pipelines/validate", json={"document": bad}, headers=viewer)
    assert refused.status_code == 400 and refused.json()["error"]["details"]["node"] == "loop"
    assert client.post("/api/v1/pipelines", json={"document": DOC}, headers=viewer).status_code == 403
    saved = client.post("/api/v1/pipelines", json={"document": DOC}, headers=operator)
    assert saved.status_code == 201 and saved.json()["version"] == 1
    with_code = dict(DOC, name="web_code", nodes=[*DOC["nodes"], {"id": "count", "component": "pipelines/steps.py:count",
                                                                  "inputs": {"data": "split.test"}}])
    assert client.post("/api/v1/pipelines", json={"document": with_code}, headers=operator).status_code == 403
    assert client.post("/api/v1/pipelines", json={"document": with_code}, headers=modeler).status_code == 201
    outside = dict(DOC, name="web_out", nodes=[{"id": "f", "component": "load_file", "params": {"path": "/etc/passwd"}}])
    assert client.post("/api/v1/pipelines", json={"document": outside}, headers=modeler).status_code == 403
    assert client.get("/api/v1/pipelines/web", headers=viewer).json()["document"]["nodes"][0]["position"] == \
        {"x": 0, "y": 0}

    started = client.post("/api/v1/pipelines/web_code/runs", json={"workers": 1}, headers=operator)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    events = _events(client, f"/api/v1/pipelines/runs/{run_id}/events", viewer)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "run" and events[-1][1]["status"] == "succeeded"
    statuses = {(d["node_id"], d["status"]) for e, d in events if e == "node"}
    assert ("count", "succeeded") in statuses
    assert any(e == "log" and d["node"] == "count" and "counting 18" in d["text"] for e, d in events)
    record = client.get(f"/api/v1/pipelines/runs/{run_id}", headers=viewer).json()
    assert {n["node_id"]: n["status"] for n in record["nodes"]} == {
        "data": "succeeded", "split": "succeeded", "profile": "succeeded", "count": "succeeded"}
    assert not (server_ws.settings.state_dir / "pipelines" / "tmp" / run_id).exists()
    log = client.get(f"/api/v1/pipelines/runs/{run_id}/nodes/count/logs", headers=viewer).json()
    assert "counting 18" in log["text"] and log["complete"]
    again = client.post("/api/v1/pipelines/web_code/runs", json={}, headers=operator).json()["run_id"]
    deadline = time.time() + 60
    while time.time() < deadline and client.get(f"/api/v1/pipelines/runs/{again}", headers=viewer).json()[
            "status"] == "running":
        time.sleep(0.1)
    assert {n["status"] for n in client.get(f"/api/v1/pipelines/runs/{again}", headers=viewer).json()["nodes"]} == \
        {"cached"}
    # a cached node has no log of its own: the answer says where it is
    cached_log = client.get(f"/api/v1/pipelines/runs/{again}/nodes/count/logs", headers=viewer).json()
    assert cached_log["text"] == "" and cached_log["complete"]
    assert f"from run {run_id}" in cached_log["note"] and f"/pipelines/runs/{run_id}/nodes/count/logs" in \
        cached_log["note"]
    script = client.get("/api/v1/pipelines/web/script", headers=viewer)
    assert script.status_code == 200 and "def node_split(" in script.text and str(project) not in script.text
    assert client.post("/api/v1/pipelines/nosuch/runs", json={}, headers=operator).status_code == 404

    # schedules: an operator schedules stored pipelines; code-running kinds need upload_code
    body = {"name": "nightly", "kind": "pipeline", "target": "web", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}
    assert client.post("/api/v1/schedules", json=body, headers=viewer).status_code == 403
    assert client.post("/api/v1/schedules", json=body, headers=operator).status_code == 201
    code = {"name": "py", "kind": "python", "target": "mod:fn", "interval_s": 60}
    assert client.post("/api/v1/schedules", json=code, headers=operator).status_code == 403
    assert client.post("/api/v1/schedules", json=code, headers=modeler).status_code == 201
    missing = dict(body, name="x", target="no_such_pipeline")
    assert client.post("/api/v1/schedules", json=missing, headers=operator).status_code == 404
    assert client.post("/api/v1/schedules/nightly/pause", headers=operator).json()["paused"]
    assert not client.post("/api/v1/schedules/nightly/resume", headers=operator).json()["paused"]
    queued = client.post("/api/v1/schedules/nightly/trigger", headers=operator)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    history = client.get("/api/v1/schedules/nightly/history", headers=viewer).json()
    assert [h["trigger"] for h in history] == ["manual"]
    assert {s["name"] for s in client.get("/api/v1/schedules", headers=viewer).json()} == {"nightly", "py"}
    status = client.get("/api/v1/scheduler/status", headers=viewer).json()
    assert status["active"] is False and status["runs"] == {"queued": 1}
    assert client.delete("/api/v1/schedules/py", headers=operator).status_code == 204


def test_a_load_file_path_from_a_run_parameter_stays_in_the_project(client: TestClient, server_ws: Workspace,
                                                                  tmp_path: Path) -> None:
    """The path check must see the path the run will read, not the "${param}" placeholder."""
    secret = tmp_path / "outside.csv"
    secret.write_text("TOPSECRET\n1\n")
    project = server_ws.settings.project_dir
    (project / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"x": [1, 2]}).to_csv(project / "data" / "in.csv", index=False)
    operator = _as(server_ws, "operator")
    doc = {"name": "by_param", "params": {"p": "data/in.csv"},
           "nodes": [{"id": "f", "component": "load_file", "params": {"path": "${p}"}}]}
    assert client.post("/api/v1/pipelines", json={"document": doc}, headers=operator).status_code == 201
    for params in ({"p": str(secret)}, {"p": "../../" + secret.name}, {"p": ".shipyard/secret.key"}):
        refused = client.post("/api/v1/pipelines/by_param/runs", json={"params": params, "workers": 0},
                              headers=operator)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["details"] == {"field": "params.path", "node": "f"}
    defaults = dict(doc, name="by_default", params={"p": str(secret)})
    assert client.post("/api/v1/pipelines", json={"document": defaults}, headers=operator).status_code == 403
    assert client.post("/api/v1/pipelines/validate", json={"document": doc, "params": {"p": str(secret)}},
                       headers=operator).status_code == 403
    schedule = {"name": "nightly", "kind": "pipeline", "target": "by_param", "cron": "0 2 * * *",
                "args": {"params": {"p": str(secret)}}}
    assert client.post("/api/v1/schedules", json=schedule, headers=operator).status_code == 403
    assert client.post("/api/v1/pipelines/by_param/runs", json={"workers": 0}, headers=operator).status_code == 202


def test_a_run_body_with_a_field_the_route_does_not_take_is_refused(client: TestClient, server_ws: Workspace) -> None:
    operator = _as(server_ws, "operator")
    doc = {"name": "tiny", "nodes": [{"id": "f", "component": "load_file", "params": {"path": "data/x.csv"}}]}
    assert client.post("/api/v1/pipelines", json={"document": doc}, headers=operator).status_code == 201
    for field in ("start", "stop", "form"):
        r = client.post("/api/v1/pipelines/tiny/runs", json={field: "f"}, headers=operator)
        assert r.status_code == 400, (field, r.text)
        error = r.json()["error"]
        assert error["details"]["problems"][0]["field"] == field and "from" in error["message"], error
    assert server_ws.pipelines.runs("tiny", 10) == []
