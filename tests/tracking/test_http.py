"""REST routes through a real uvicorn server, and the remote client re-raising the same errors."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from shipyard.client import Client
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.server import create_app
from tests.conftest import user_token


@pytest.fixture
def server_url(workspace, monkeypatch) -> Iterator[str]:
    token = user_token(workspace, "alice", "modeler", "default")
    monkeypatch.setenv("SHIPYARD_TOKEN", token)  # sy.Client and raw requests below act as alice
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(workspace), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_remote_run_round_trip(server_url: str, workspace, tmp_path: Path) -> None:
    client = Client(server_url)
    runs = client.runs
    created = runs.create_experiment("credit", tags={"owner": "risk"})
    assert runs.get_experiment("credit").id == created.id
    assert [e.name for e in runs.list_experiments()] == ["credit"]
    with runs.start_run(experiment="credit", name="remote-1", tags={"via": "http"}) as run:
        run.log_params({"model": "lgbm", "depth": 6})
        run.log_metric("auc", 0.7, step=1)
        run.log_metrics({"auc": 0.8, "ks": 0.42}, step=2)
        run.log_batch(metrics=[("loss", 1.0 / (i + 1), i, None) for i in range(12_000)])  # split into 2 requests
        with runs.start_run(experiment="credit") as child:
            child.log_metric("auc", 0.6)
        (tmp_path / "model.txt").write_text("tree 1\n")
        artifact = run.log_artifact(tmp_path / "model.txt", artifact_path="model")
    # what the server stored is what the local API sees
    record = workspace.tracking.get_run(run.id)
    assert record.info.status == "FINISHED" and record.info.name == "remote-1"
    assert record.params == {"depth": "6", "model": "lgbm"}
    assert record.metrics == {"auc": 0.8, "ks": 0.42, "loss": 1.0 / 12_000}
    assert record.tags == {"via": "http"}
    assert workspace.tracking.get_run(child.id).info.parent_run_id == run.id
    remote = runs.get_run(run.id)
    # the same run, except that the server never shows where its files are on disk
    assert remote.info.artifact_uri == f"artifacts:/runs/{run.id}/artifacts"
    assert str(workspace.settings.project_dir) not in repr(remote)
    # the server rewrites its own paths in answers: a source under its temporary folder reads <tmp>/...
    from shipyard.auth.redact import REDACTOR

    local = replace(record, info=replace(record.info, artifact_uri=remote.info.artifact_uri,
                                         source_name=REDACTOR.text(record.info.source_name)))
    assert remote == local
    assert len(runs.metric_history(run.id, "loss")) == 12_000
    assert [m.value for m in runs.metric_history(run.id, "auc")] == [0.7, 0.8]
    assert artifact.path == "model/model.txt" and artifact.size == 7
    assert [a.path for a in runs.list_artifacts(run.id)] == ["model/model.txt"]
    assert runs.read_artifact(run.id, "model/model.txt") == b"tree 1\n"
    out = runs.download_artifacts(run.id, "model", tmp_path / "dl")
    assert (out / "model.txt").read_text() == "tree 1\n"

    found = runs.search_runs("credit", filter="metrics.auc > 0.65", order_by="metrics.auc DESC")
    assert [r.id for r in found] == [run.id]
    frame = runs.compare_runs([run.id, child.id])
    assert frame.loc["metrics.auc"].tolist() == [0.8, 0.6]
    assert frame.loc["params.model"].tolist() == ["lgbm", None]
    client.close()


def test_remote_errors_are_the_same_classes(server_url: str) -> None:
    client = Client(server_url)
    runs = client.runs
    with pytest.raises(NotFound, match="run 'nope'"):
        runs.get_run("nope")
    with pytest.raises(NotFound, match="experiment 'ghost'"):
        runs.get_experiment("ghost")
    run = runs.start_run(experiment="credit")
    run.log_param("depth", 6)
    with pytest.raises(Conflict, match="param 'depth'"):
        run.log_param("depth", 7)
    with pytest.raises(InvalidInput, match="metric 'auc'"):  # refused on the client before sending
        run.log_metric("auc", float("nan"))
    with pytest.raises(InvalidInput, match="filter"):
        runs.search_runs(filter="metrics.auc >> 1")
    run.end("KILLED")
    with pytest.raises(Conflict, match="already ended as KILLED"):
        runs.end_run(run.id, "FINISHED")
    client.close()


def test_raw_routes_validate_fields(server_url: str) -> None:
    api = httpx.Client(base_url=server_url + "/api/v1", headers={"Authorization": "Bearer " + os.environ["SHIPYARD_TOKEN"]})
    run = api.post("/runs", json={"experiment": "credit", "name": "raw"}).json()
    run_id = run["info"]["id"]
    bad = api.post(f"/runs/{run_id}/log-batch", json={"metrics": [{"key": "auc", "value": "high"}]})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"
    assert "metrics.0.value" in bad.json()["error"]["message"]
    nan = api.post(f"/runs/{run_id}/log-batch", content=b'{"metrics": [{"key": "auc", "value": NaN}]}',
                   headers={"content-type": "application/json"})
    assert nan.status_code == 400 and "metric 'auc'" in nan.json()["error"]["message"]
    big = api.post("/runs/search", json={"max_results": 0})
    assert big.status_code == 400 and "max_results" in big.json()["error"]["message"]
    ok = api.post(f"/runs/{run_id}/log-batch", json={
        "metrics": [{"key": "auc", "value": 0.5, "step": 3}], "params": {"lr": 0.1}, "tags": {"t": "x"},
    })
    assert ok.status_code == 204
    assert api.post(f"/runs/{run_id}/params", json={"params": {"depth": 4}}).status_code == 204
    assert api.post(f"/runs/{run_id}/tags", json={"tags": {"t": "y"}}).status_code == 204
    put = api.put(f"/runs/{run_id}/artifacts", params={"path": "notes/readme.md"}, content=b"# hi")
    assert put.status_code == 201 and put.json()["size"] == 4
    escape = api.put(f"/runs/{run_id}/artifacts", params={"path": "../../etc/passwd"}, content=b"x")
    assert escape.status_code == 400
    renamed = api.patch(f"/runs/{run_id}", json={"name": "renamed", "status": "FAILED"}).json()
    assert renamed["info"]["name"] == "renamed" and renamed["info"]["status"] == "FAILED"
    assert renamed["params"] == {"depth": "4", "lr": "0.1"} and renamed["tags"] == {"t": "y"}
    assert renamed["metrics"] == {"auc": 0.5}
    assert api.delete(f"/runs/{run_id}").status_code == 204
    assert api.post("/runs/search", json={}).json()["runs"] == []
    missing = api.get("/runs/nope/metrics/history", params={"key": "auc"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    api.close()
