"""GET /pipelines/runs/{id}?document=true: the document a run ran, so a pipeline run from a file (never
saved) can still be drawn; without the flag the answer is as before."""

from __future__ import annotations

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

DOC = {
    "name": "from_file",
    "nodes": [
        {"id": "data", "component": "load_dataset", "params": {"dataset": "nums"}, "position": {"x": 10, "y": 20}},
        {"id": "split", "component": "split", "inputs": {"data": "data"}, "params": {"target": "bad", "seed": 1}},
    ],
}


@pytest.fixture
def server_ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(load_settings(tmp_path / "project", validation_subprocess=False), principal=SERVER)
    project = ws.settings.project_dir
    (project / "data").mkdir(parents=True)
    pd.DataFrame({"x": range(40), "bad": [0, 1] * 20}).to_csv(project / "data" / "nums.csv", index=False)
    ws.data.add_source("files", "file", {"root": "data"}, actor="admin")
    ws.data.create_dataset("nums", "files", {"path": "nums.csv", "profile": False}, actor="admin")
    ws.data.refresh("nums", actor="admin")
    yield ws
    ws.close()


def test_a_run_gives_the_document_it_ran(server_ws: Workspace) -> None:
    record = server_ws.pipelines.run(DOC, workers=0)
    assert record.status == "succeeded", record.error
    viewer = {"Authorization": f"Bearer {user_token(server_ws, 'vic', 'viewer', 'default')}"}
    with TestClient(create_app(server_ws, follow_interval=0)) as client:
        assert client.get("/api/v1/pipelines/from_file", headers=viewer).status_code == 404  # never saved
        plain = client.get(f"/api/v1/pipelines/runs/{record.id}", headers=viewer).json()
        assert "document" not in plain
        doc = client.get(f"/api/v1/pipelines/runs/{record.id}", params={"document": "true"}, headers=viewer).json()
        assert doc["document"] == server_ws.pipelines.get_run(record.id).document
        assert {n["id"] for n in doc["document"]["nodes"]} == {"data", "split"}
        assert doc["document"]["nodes"][0]["position"] == {"x": 10, "y": 20}
        assert {n["node_id"]: n["status"] for n in doc["nodes"]} == {n["node_id"]: n["status"] for n in plain["nodes"]}
        assert all("log_path" not in n for n in doc["nodes"])
        assert client.get(f"/api/v1/pipelines/runs/{record.id}", params={"document": "true"}).status_code == 401
