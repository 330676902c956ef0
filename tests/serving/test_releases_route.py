"""GET /api/v1/scenes/{name}/releases: every release of a scene, oldest first, as stored."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.server import create_app
from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.release import list_releases
from tests.conftest import auth_headers, user_token
from tests.serving.conftest import CREDIT_INPUTS, register

SCENE = {"name": "credit", "inputs": CREDIT_INPUTS, "outputs": ["score"],
         "flow": [F.model("credit", "champion", output="score")],
         "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}}}


def test_releases_are_listed_oldest_first(sqlite_workspace, saved_models):
    ws = sqlite_workspace
    register(ws, saved_models["lr_a"], "credit")
    register(ws, saved_models["lr_b"], "credit", alias="challenger")
    apply_scene(ws, SCENE)
    with TestClient(create_app(ws, follow_interval=0), headers=auth_headers(ws)) as client:
        assert client.get("/api/v1/scenes/credit/releases").json() == []
        for percent in (5, 25):
            moved = client.post("/api/v1/scenes/credit/canary", params={"percent": percent, "arm": "b"})
            assert moved.status_code == 200, moved.text
        viewer = {"Authorization": f"Bearer {user_token(ws, 'vic', 'viewer', 'default')}"}
        listed = client.get("/api/v1/scenes/credit/releases", headers=viewer)
        assert listed.status_code == 200
        stored = list_releases(ws, "credit")
        assert [(r["id"], r["arm"], r["percent"], r["status"]) for r in listed.json()] == \
            [(r["id"], r["arm"], r["percent"], r["status"]) for r in stored]
        assert [r["percent"] for r in listed.json()] == [5, 25] and {r["status"] for r in listed.json()} == {"manual"}
        missing = client.get("/api/v1/scenes/nope/releases")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
        assert TestClient(client.app).get("/api/v1/scenes/credit/releases").status_code == 401
