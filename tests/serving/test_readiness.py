"""Warm readiness: /readyz is 503 (naming what is pending or failed) until the served scenes and
models are loaded and warm, then 200; /healthz answers throughout; the first request after ready
loads nothing."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.server import create_app
from shipyard.serving import apply_scene
from shipyard.serving import flow as F


class SlowLoad(PythonModel):
    """Doubles x; loading it takes ``SLOW_LOAD_S`` seconds and appends a line to ``SLOW_LOAD_MARKER``."""

    def load_context(self, context: Any) -> None:
        marker = os.environ.get("SLOW_LOAD_MARKER")
        if marker:
            with open(marker, "a") as out:
                out.write("load\n")
            time.sleep(float(os.environ.get("SLOW_LOAD_S", "0")))
        if os.environ.get("SLOW_LOAD_FAIL"):
            raise RuntimeError("disk on fire")

    def predict(self, df: Any) -> Any:
        return df["x"].to_numpy() * 2.0


def loads(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(tmp_path / "project", user="t", validation_subprocess=False,
                                 validation_timing_calls=5, prediction_log_spool="off"))
    folder = save_model(SlowLoad(), tmp_path / "slow", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    mv = ws.registry.register(folder, "slow", await_validation=True)
    ws.registry.set_alias("slow", "champion", mv.version, force=True)
    ws.auth.set_public("default", "scene", "warm", True, actor="t")
    apply_scene(ws, {"name": "warm", "inputs": {"x": "double"}, "outputs": ["y"], "flow": [F.model("slow", output="y")]})
    ws.close()
    marker = tmp_path / "loads.txt"
    monkeypatch.setenv("SLOW_LOAD_MARKER", str(marker))
    monkeypatch.setenv("SLOW_LOAD_S", "1.5")
    # a fresh workspace, as a starting server has: nothing loaded yet
    ws = Workspace(load_settings(tmp_path / "project", user="t", prediction_log_spool="off"))
    yield ws
    ws.close()


def wait_ready(client: TestClient, timeout: float = 60) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Poll /readyz until 200; the 503 bodies seen on the way and the 200 body."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return seen, r.json()
        assert r.status_code == 503
        seen.append(r.json())
        assert client.get("/healthz").status_code == 200  # liveness does not wait for warmth
        time.sleep(0.05)
    raise AssertionError(f"not ready in {timeout} s: {seen[-1:]}")


def test_readiness_waits_for_a_slow_model_then_the_first_request_loads_nothing(workspace: Any,
                                                                               tmp_path: Path) -> None:
    marker = tmp_path / "loads.txt"
    app = create_app(workspace)
    with TestClient(app) as client:
        warming, ready = wait_ready(client)
        assert warming, "readiness was true before the slow model finished loading"
        assert all(w["status"] == "warming" for w in warming)
        # the first answers may still be listing the scenes; then the slow scene is named
        assert any("scene:warm" in w["pending"] and "scene:warm" in w["reason"] for w in warming)
        assert ready["status"] == "ready" and ready["warm"] == ["scene:warm"] and not ready["pending"]
        assert ready["instance"]  # the prediction log's instance id
        assert loads(marker) == 1  # loaded once, by the warm-up
        r = client.post("/v1/scenes/warm/predict", json={"x": 3.0})
        assert r.status_code == 200 and r.json()["outputs"]["y"] == 6.0
        assert loads(marker) == 1  # the first request after ready loaded nothing


def test_a_failing_scene_is_named_and_readiness_gives_up_waiting_after_the_timeout(
        workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOW_LOAD_FAIL", "1")  # the model cannot be loaded any more
    monkeypatch.setenv("SLOW_LOAD_S", "0")
    workspace.settings = dataclasses.replace(workspace.settings, readiness_timeout_s=3.0)
    with TestClient(create_app(workspace)) as client:
        warming, ready = wait_ready(client)
        failed = [w for w in warming if w["failed"]]
        assert failed and "disk on fire" in failed[-1]["failed"]["scene:warm"]
        assert "failed scene:warm" in failed[-1]["reason"]
        # past readiness_timeout_s the server takes traffic, still naming what failed
        assert ready["status"] == "ready" and "scene:warm" in ready["failed"]
        assert "readiness_timeout_s=3" in ready["reason"]


def test_readiness_timeout_zero_does_not_wait(workspace: Any) -> None:
    workspace.settings = dataclasses.replace(workspace.settings, readiness_timeout_s=0.0)
    with TestClient(create_app(workspace)) as client:
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
