"""The REST routes through ``sy.Client(...).models`` and the ``shipyard models`` commands."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shipyard.artifacts import sha256_dir
from shipyard.client import Client
from shipyard.errors import Conflict, Forbidden, NotFound
from shipyard.models.remote import RemoteRegistry
from shipyard.server import create_app
from tests.conftest import user_token


def client_as(app, ws, name: str, *roles: str) -> Client:
    """A client of ``app`` acting as ``name`` with ``roles`` in the default project."""
    token = ""
    for role in roles:
        token = user_token(ws, name, role, "default")
    client = Client("http://testserver", token=token)
    client._http = TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})
    return client


@pytest.fixture
def app(sqlite_workspace, monkeypatch):
    # Only the registry's routes (and the access guard): these tests must not depend on other subsystems.
    monkeypatch.setattr("shipyard.server.API_MODULES", ["shipyard.auth.http", "shipyard.models.http"])
    return create_app(sqlite_workspace)


@pytest.fixture
def api(app, sqlite_workspace):
    client = client_as(app, sqlite_workspace, "alice", "modeler", "operator", "reviewer")
    yield client
    client.close()


def test_release_workflow_over_rest(api, app, sqlite_workspace, model_dir, tmp_path):
    alice, bob = RemoteRegistry(api), RemoteRegistry(client_as(app, sqlite_workspace, "bob", "reviewer"))
    assert alice.create_model("credit", "PD model").requires_approval is True
    mv = alice.register(model_dir, "credit", metrics={"auc": 0.8}, tags={"team": "risk"})
    assert (mv.version, mv.status, mv.created_by, mv.metrics) == (1, "validated", "alice", {"auc": 0.8})
    assert mv.sha256 == sha256_dir(model_dir)[0]
    with pytest.raises(Forbidden, match="cannot also approve"):
        alice.approve("credit", 1)
    assert bob.approve("credit", 1, comment="ok").approved_by == "bob"
    alice.register(model_dir, "credit")
    bob.approve("credit", 2)
    assert alice.set_alias("credit", "champion", 1).aliases == ["champion"]
    alice.set_alias("credit", "champion", 2)
    assert alice.get_alias("credit", "champion").version == 2
    assert alice.list_aliases("credit") == {"champion": 2}
    assert alice.rollback("credit", "champion").version == 1
    assert [(m.action, m.version) for m in alice.alias_history("credit", "champion")] == [
        ("set", 1), ("set", 2), ("rollback", 1)]
    with pytest.raises(Conflict, match="alias 'champion' points at it"):
        alice.delete_version("credit", 1)
    alice.delete_version("credit", 2)
    with pytest.raises(NotFound, match="no version 2"):
        alice.get_version("credit", 2)
    assert [v.version for v in alice.list_versions("credit")] == [1]
    assert alice.validate("credit", 1).status == "validated"
    out = alice.download("credit", "champion", tmp_path / "dl")
    assert sha256_dir(out) == sha256_dir(model_dir)
    kinds = [e["kind"] for e in alice.history("credit")]
    assert kinds[:3] == ["model.version_validated", "model.validation_started", "model.version_deleted"]
    assert [m.name for m in alice.list_models()] == ["credit"]


def test_upload_as_zip_and_register_from_an_artifact_path(api, sqlite_workspace, model_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in model_dir.rglob("*"):
            if file.is_file():
                archive.write(file, "model/" + file.relative_to(model_dir).as_posix())
    data = api.post("/api/v1/models/credit/versions/upload", content=buffer.getvalue(),
                    params={"metadata": json.dumps({"lineage": {"dataset_version": "german@1"}})})
    assert (data["version"], data["lineage"]) == (1, {"dataset_version": "german@1"})
    sqlite_workspace.artifacts.put_dir("staging/credit", model_dir)
    mv = RemoteRegistry(api).register("artifacts:/staging/credit", "credit", run_id="r1")
    assert (mv.version, mv.source_run_id, mv.sha256) == (2, "r1", data["sha256"])


def test_bad_uploads_get_clear_400s(api, model_dir):
    response = api._http.post("/api/v1/models/credit/versions/upload", content=b"not an archive")
    assert response.status_code == 400
    assert "neither a tar(.gz) nor a zip" in response.json()["error"]["message"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(model_dir / "MLmodel", arcname="../../etc/MLmodel")
    response = api._http.post("/api/v1/models/credit/versions/upload", content=buffer.getvalue())
    assert response.status_code == 400
    assert "escapes the model folder" in response.json()["error"]["message"]
    response = api._http.put("/api/v1/models/credit/aliases/champion", json={"version": 0})
    assert response.status_code == 400 and response.json()["error"]["details"]["problems"][0]["field"] == "version"
    response = api._http.get("/api/v1/models/credit/versions/1")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert api._http.get("/api/v1/models").json() == []


def test_cli_release_workflow(sqlite_workspace, model_dir, tmp_path, monkeypatch):
    from shipyard.cli import main

    settings = sqlite_workspace.settings
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.setenv("SHIPYARD_VALIDATION_SUBPROCESS", "false")
    monkeypatch.setenv("SHIPYARD_VALIDATION_TIMING_CALLS", "10")
    for role in ("modeler", "reviewer", "operator"):
        alice = user_token(sqlite_workspace, "alice", role, "default")
    bob = user_token(sqlite_workspace, "bob", "reviewer", "default")
    runner = CliRunner()

    def run(*args: str, code: int = 0, token: str = alice) -> str:
        result = runner.invoke(main, ["models", *args], env={"SHIPYARD_TOKEN": token})
        assert result.exit_code == code, result.output
        return result.output

    assert "registered credit version 1" in run("register", str(model_dir), "--name", "credit", "--wait")
    run("register", str(model_dir), "--name", "credit")
    out = run("approve", "credit", "1", code=1)
    assert "cannot also approve" in out
    # the reviewer is whoever's token is used: no flag names another user
    assert "No such option" in run("approve", "credit", "1", "--as", "bob", code=2)
    assert "approved credit version 1 as bob" in run("approve", "credit", "1", "--comment", "ok", token=bob)
    run("approve", "credit", "2", token=bob)
    assert "credit@champion -> version 1" in run("alias", "credit", "champion", "1")
    run("alias", "credit", "champion", "2")
    assert "rolled back to version 1" in run("rollback", "credit", "champion")
    versions = run("versions", "credit").splitlines()
    assert versions[0].split()[:3] == ["VERSION", "STATUS", "APPROVED"]
    assert versions[1].split()[:4] == ["1", "validated", "bob", "champion"]
    assert "champion->1" in run("list")
    assert "validated" in run("validate", "credit", "2")
    run("download", "credit", "champion", str(tmp_path / "dl"))
    assert sha256_dir(tmp_path / "dl") == sha256_dir(model_dir)
    events = json.loads(run("history", "credit", "--json"))
    assert events[0]["kind"] == "model.version_validated" and events[-1]["kind"] == "model.created"
    assert "model.alias_rolled_back" in run("history", "credit")
    model = sqlite_workspace.registry.load("credit", "champion")
    assert np.asarray(model.predict(model.input_example)).shape == (8,)
