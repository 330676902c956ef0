"""The HTTP routes and CLI commands are thin shells over the same calls."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shipyard.cli import main
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import auth_headers
from tests.features.pit_support import T0, write_project


def _project(root: Path) -> Path:
    stats = pd.DataFrame({"user_id": [1], "ts": pd.to_datetime([T0], utc=True),
                          "created": pd.to_datetime([T0], utc=True), "x": [1.5], "n": [2]})
    pairs = pd.DataFrame({"user_id": [1], "shop": ["a"], "ts": pd.to_datetime([T0], utc=True), "y": [2.0],
                          "label": ["p"]})
    return write_project(root, stats, pairs, ttl_hours=24)


def test_http_plan_apply_views_training_set(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    # definitions are read from the project's own folder, named relative to it
    _project(sqlite_workspace.settings.project_dir / "repo")
    client = TestClient(create_app(sqlite_workspace), headers=auth_headers(sqlite_workspace))
    plan = client.post("/api/v1/features/plan", json={"path": "repo"}).json()
    assert plan["summary"]["added"] == ["entity:pair", "entity:user", "feature_view:pair_stats", "feature_view:stats"]
    assert client.post("/api/v1/features/apply", json={"path": "repo"}).status_code == 200
    assert [v["name"] for v in client.get("/api/v1/features/views").json()] == ["pair_stats", "stats"]
    assert client.get("/api/v1/features/views/stats").json()["version"] == 1
    missing = client.get("/api/v1/features/views/ghost")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    rows = [{"user_id": 1, "event_timestamp": (T0 + timedelta(hours=1)).isoformat()},
            {"user_id": 1, "event_timestamp": (T0 - timedelta(hours=1)).isoformat()}]
    body = client.post("/api/v1/features/training-set", json={"entity_rows": rows, "features": ["stats:x"]}).json()
    assert [r["x"] for r in body["rows"]] == [1.5, None]
    bad = client.post("/api/v1/features/training-set", json={"entity_rows": rows, "features": ["stats:nope"]})
    assert bad.status_code == 400 and "has no feature 'nope'" in bad.json()["error"]["message"]


def test_cli_plan_apply_list_training_set(tmp_path: Path) -> None:
    root = _project(tmp_path / "repo")
    runner = CliRunner()
    args = ["--project", str(root), "features"]
    result = runner.invoke(main, [*args, "plan"])
    assert result.exit_code == 0 and "+ feature view stats" in result.output
    assert runner.invoke(main, [*args, "apply"]).exit_code == 0
    listed = runner.invoke(main, [*args, "list"])
    assert "stats" in listed.output and "x:float64" in listed.output
    pd.DataFrame({"user_id": [1], "event_timestamp": [(T0 + timedelta(hours=2)).isoformat()]}).to_csv(
        tmp_path / "entities.csv", index=False)
    out = tmp_path / "train.parquet"
    result = runner.invoke(main, [*args, "training-set", "--entities", str(tmp_path / "entities.csv"),
                                  "--features", "stats:x,stats:n", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)[["x", "n"]].values.tolist() == [[1.5, 2]]
    failed = runner.invoke(main, [*args, "training-set", "--entities", str(tmp_path / "entities.csv"),
                                  "--features", "ghost:x"])
    assert failed.exit_code == 1 and "feature view 'ghost' is not registered" in failed.output
