"""GET /api/v1/models/-/versions: versions of every model, newest first, with the total — checked
against each model's own version list filtered in Python."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from shipyard.models import save_model
from shipyard.server import create_app
from tests.conftest import as_user, auth_headers


@pytest.fixture(scope="module")
def model_dir(credit_data, tmp_path_factory):
    X, y = credit_data
    return save_model(LogisticRegression(max_iter=300).fit(X, y), tmp_path_factory.mktemp("m") / "m",
                      input_example=X.head(3))


@pytest.fixture
def registry_ws(workspace, model_dir):
    reg = workspace.registry
    reg.create_model("gated", requires_approval=True)
    reg.create_model("open", requires_approval=False)
    for name, count in (("gated", 4), ("open", 2), ("auto", 3)):
        for _ in range(count):
            reg.register(model_dir, name, await_validation=True)
    reviewer = as_user(workspace, "rita", "reviewer")
    reviewer.registry.approve("gated", 1)
    reviewer.registry.reject("gated", 2)
    reviewer.registry.approve("auto", 3)
    reviewer.close()
    reg.set_alias("gated", "champion", 1)
    return workspace


@pytest.fixture
def client(registry_ws, monkeypatch):
    monkeypatch.setattr("shipyard.server.API_MODULES", ["shipyard.auth.http", "shipyard.models.http"])
    with TestClient(create_app(registry_ws), headers=auth_headers(registry_ws)) as c:
        yield c


def _all_versions(ws):
    reg = ws.registry
    out = [v for m in reg.list_models() for v in reg.list_versions(m.name)]
    return sorted(out, key=lambda v: (-v.created_at, v.name, -v.version))


def test_every_version_newest_first_with_paging(client, registry_ws):
    expected = [(v.name, v.version) for v in _all_versions(registry_ws)]
    got = []
    for offset in range(0, 12, 4):
        doc = client.get("/api/v1/models/-/versions", params={"limit": 4, "offset": offset}).json()
        assert doc["total"] == len(expected) == 9
        got += [(v["name"], v["version"]) for v in doc["versions"]]
    assert got == expected
    champion = next(v for v in client.get("/api/v1/models/-/versions").json()["versions"]
                    if (v["name"], v["version"]) == ("gated", 1))
    assert champion["aliases"] == ["champion"]


def test_awaiting_approval_is_validated_unapproved_versions_of_gated_models(client, registry_ws):
    models = {m.name: m for m in registry_ws.registry.list_models()}
    expected = [(v.name, v.version) for v in _all_versions(registry_ws)
                if models[v.name].requires_approval and v.status == "validated" and v.approved_by is None]
    doc = client.get("/api/v1/models/-/versions", params={"awaiting_approval": "true"}).json()
    assert [(v["name"], v["version"]) for v in doc["versions"]] == expected
    assert doc["total"] == len(expected)
    assert ("gated", 3) in expected and ("gated", 1) not in expected and ("gated", 2) not in expected
    assert not any(name == "open" for name, _ in expected)
    rejected = client.get("/api/v1/models/-/versions", params={"status": "rejected"}).json()
    assert [(v["name"], v["version"]) for v in rejected["versions"]] == [("gated", 2)]


def test_bad_status_is_refused_naming_the_field(client):
    bad = client.get("/api/v1/models/-/versions", params={"status": "approved"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "status" and "validated" in bad.json()["error"]["message"]
    assert client.get("/api/v1/models/-/versions", params={"limit": 5000}).status_code == 400
