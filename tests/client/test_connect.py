"""``sy.connect(url)`` and SHIPYARD_TRACKING_URI point the module-level calls at a server; uploads stream."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import shipyard as sy
import shipyard.workspace as workspace_module
from shipyard.client import Client
from shipyard.config import load_settings
from shipyard.errors import Forbidden, PayloadTooLarge, Unauthorized
from shipyard.server import create_app
from shipyard.tracking.remote import RemoteRun
from shipyard.workspace import Workspace
from tests.client.conftest import model_folder
from tests.conftest import auth_headers, user_token


@pytest.fixture(autouse=True)
def no_ambient_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No token or tracking URI from the environment, no saved credentials, no session left behind."""
    for name in ("SHIPYARD_TOKEN", "SHIPYARD_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(workspace_module, "_current", None)
    yield
    workspace_module._current = None


def test_connect_url_runs_log_model_register_and_load_on_the_server(served, tmp_path: Path) -> None:
    modeler = user_token(served.ws, "carl", "modeler", "*")
    session = sy.connect(served.url, token=modeler)
    assert isinstance(session, Client) and workspace_module.current() is session
    folder, model, X = model_folder(tmp_path)
    del folder
    with sy.start_run(experiment="remote_training") as run:
        assert isinstance(run, RemoteRun)
        run.log_metrics({"auc": 0.8})
        logged = sy.log_model(model, "model", input_example=X.head(3), registered_model_name="remote_lr",
                              await_validation=True)
    version = logged.registered_version
    assert version.status == "validated" and version.created_by == "carl"
    # recorded on the server, as the token's user: never a name the client sent
    record = served.ws.tracking.get_run(run.id)
    assert record.info.user == "carl" and record.metrics == {"auc": 0.8} and record.info.status == "FINISHED"
    assert any(a.path == "model/MLmodel" for a in served.ws.tracking.list_artifacts(run.id))
    loaded = session.registry.load("remote_lr", version.version)
    np.testing.assert_allclose(np.asarray(loaded.predict(X.head(10))), model.predict_proba(X.head(10))[:, 1])
    # a modeler may not approve: the server's answer comes back as the same class
    with pytest.raises(Forbidden):
        session.registry.approve("remote_lr", version.version)


def test_tracking_uri_and_token_from_the_environment(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TRACKING_URI", served.url)
    monkeypatch.setenv("SHIPYARD_TOKEN", user_token(served.ws, "dora", "modeler", "*"))
    with sy.start_run(experiment="from_env") as run:
        run.log_params({"k": 1})
    assert isinstance(run, RemoteRun)
    assert served.ws.tracking.get_run(run.id).info.user == "dora"
    assert sy.connect().user == "dora"


def test_saved_login_credentials_are_used(served) -> None:
    from shipyard.auth.credentials import save_server_token

    with pytest.raises(Unauthorized):
        Client(served.url).whoami()  # no token anywhere
    save_server_token(served.url, "erin", user_token(served.ws, "erin", "viewer", "*"))
    assert sy.connect(served.url).user == "erin"


def test_connect_url_refuses_local_settings(served) -> None:
    from shipyard.errors import InvalidInput

    with pytest.raises(InvalidInput, match="metadata_url"):
        sy.connect(served.url, metadata_url="sqlite:///x.db")


def test_upload_streams_past_the_request_limit_without_holding_the_file(served, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    chunk = np.random.default_rng(0).bytes(1 << 20)
    with big.open("wb") as out:
        for _ in range(24):  # 24 MiB, above max_request_bytes (10 MiB)
            out.write(chunk)
    client = Client(served.url, token=served.admin_token)
    run = client.runs.start_run(experiment="uploads")
    tracemalloc.start()
    try:
        artifact = client.runs.log_artifact(run.id, big, "blobs")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    run.end()
    # client and server (the same process here) never held the file: peak well under its size
    assert peak < 8 << 20, f"peak traced memory {peak} bytes"
    assert artifact.path == "blobs/big.bin" and artifact.size == 24 << 20
    assert artifact.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()


@pytest.fixture
def small_limit_app(tmp_path: Path) -> Iterator[tuple[TestClient, Workspace]]:
    ws = Workspace(load_settings(tmp_path / "small", user="alice", max_upload_bytes=100_000))
    with TestClient(create_app(ws), headers=auth_headers(ws)) as http:
        yield http, ws
    ws.close()


def test_the_upload_limit_is_enforced_while_streaming(small_limit_app) -> None:
    http, ws = small_limit_app
    run_id = http.post("/api/v1/runs", json={"experiment": "limits"}).json()["info"]["id"]
    pulled = 0

    def body() -> Iterator[bytes]:
        nonlocal pulled
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n\r\n'
        for _ in range(200):  # 12.8 MB offered, without a Content-Length
            pulled += 1
            yield b"x" * 65536
        yield b"\r\n--b--\r\n"

    response = http.post(f"/api/v1/runs/{run_id}/artifacts", content=body(),
                         headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["details"]["limit"] == 100_000
    assert "max_upload_bytes" in response.json()["error"]["message"]
    assert pulled >= 2  # (the test client sends the whole body; the next test counts what is read)
    assert ws.tracking.list_artifacts(run_id) == []
    with pytest.raises(PayloadTooLarge):  # the same class through the client
        client = Client("http://testserver")
        client._http = http
        run = client.runs.get_run(run_id)
        big = Path(ws.settings.project_dir) / "big.bin"
        big.write_bytes(b"y" * 200_000)
        client.runs.log_artifact(run.id, big)


def test_receive_files_stops_reading_at_the_limit(tmp_path: Path) -> None:
    import asyncio

    from starlette.requests import Request

    from shipyard.http_multipart import receive_files

    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        if pulled == 1:
            head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n\r\n'
            return {"type": "http.request", "body": head, "more_body": True}
        return {"type": "http.request", "body": b"x" * 65536, "more_body": pulled < 1000}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    with pytest.raises(PayloadTooLarge, match="max_upload_bytes"):
        asyncio.run(receive_files(Request(scope, receive), tmp_path, limit=100_000))
    assert pulled == 3  # 2 x 64 KiB passed the 100,000-byte limit: nothing more was read
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 100_000


def test_bad_multipart_bodies_are_400s_naming_the_fix(small_limit_app) -> None:
    http, ws = small_limit_app
    run_id = http.post("/api/v1/runs", json={"experiment": "bad"}).json()["info"]["id"]
    url = f"/api/v1/runs/{run_id}/artifacts"
    not_multipart = http.post(url, content=b"raw", headers={"content-type": "application/octet-stream"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["error"]["message"]
    field = http.post(url, data={"note": "x"}, files={"other": ("a.txt", b"a")})
    assert field.status_code == 400 and field.json()["error"]["details"]["field"] == "file"
    escape = http.post(url, files={"file": ("../../etc/passwd", b"x")})
    assert escape.status_code == 400
    twice = http.post(url, files=[("file", ("a.txt", b"1")), ("file", ("a.txt", b"2"))])
    assert twice.status_code == 400 and "more than once" in twice.json()["error"]["message"]
    assert ws.tracking.list_artifacts(run_id) == []
    ok = http.post(url, params={"path": "docs"}, files=[("file", ("a.txt", b"1")), ("file", ("sub/b.txt", b"22"))])
    assert ok.status_code == 201
    assert [(a["path"], a["size"]) for a in ok.json()["artifacts"]] == [("docs/a.txt", 1), ("docs/sub/b.txt", 2)]


def test_the_raw_put_still_works_and_says_it_is_deprecated(small_limit_app) -> None:
    http, ws = small_limit_app
    run_id = http.post("/api/v1/runs", json={"experiment": "raw"}).json()["info"]["id"]
    response = http.put(f"/api/v1/runs/{run_id}/artifacts", params={"path": "notes/readme.md"}, content=b"# hi")
    assert response.status_code == 201 and response.json()["size"] == 4
    assert response.headers["deprecation"] == "true" and "successor-version" in response.headers["link"]
    assert ws.tracking.read_artifact(run_id, "notes/readme.md") == b"# hi"
    spec = http.get("/openapi.json").json()["paths"]["/api/v1/runs/{run_id}/artifacts"]
    assert spec["put"]["deprecated"] is True and "multipart/form-data" in spec["post"]["requestBody"]["content"]
