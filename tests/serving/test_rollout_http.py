"""Canary rollouts and stress tests on a running server: HTTP routes, the client and the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.client import Client
from shipyard.errors import Conflict
from shipyard.server import create_app
from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.release import list_releases, rollout_status
from shipyard.store import leases
from tests.conftest import user_token
from tests.serving.conftest import CREDIT_INPUTS as INPUTS
from tests.serving.conftest import FailingModel as Failing
from tests.serving.conftest import LiveServer, register
from tests.serving.conftest import credit_record as rec
from tests.serving.live import auth_for

SCENE = {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
         "flow": [F.model("credit", "champion", output="score")],
         "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}},
         "limits": {"error_rate": 0.05, "p99_ms": 500, "min_requests": 15}}
WAIT_S = 60.0  # generous: the rollouts below need a few seconds


class Load:
    """Requests to the scene from a background thread until stopped: (status, arm) of each."""

    def __init__(self, url: str, start: int = 0) -> None:
        self.url, self.i = url, start
        self.results: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, headers=auth_for(self.url), timeout=10) as client:
            while not self._stop.is_set():
                r = client.post("/v1/scenes/credit/predict", json=rec(self.i))
                self.results.append((r.status_code, r.json().get("arm") if r.status_code == 200 else None))
                self.i += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def wait_until_ended(url: str, scene: str = "credit") -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/api/v1/scenes/{scene}/rollout", headers=auth_for(url)).json()
        if state["status"] != "running":
            return state
        time.sleep(0.1)
    raise AssertionError(f"rollout still running after {WAIT_S} s: {state}")


def rollout_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shipyard-rollout-")]


@pytest.fixture
def ws(sqlite_workspace, saved_models):
    register(sqlite_workspace, saved_models["lr_a"], "credit")                       # v1 champion
    register(sqlite_workspace, saved_models["lr_b"], "credit", alias="challenger")   # v2 challenger
    apply_scene(sqlite_workspace, SCENE)
    return sqlite_workspace


@pytest.fixture
def served(ws) -> Iterator[tuple[Any, LiveServer]]:
    app = create_app(ws, follow_interval=0)
    with LiveServer(app) as server:
        yield app, server
    assert not rollout_threads()  # shutdown stopped every runner


def test_healthy_challenger_is_promoted_through_every_step(served):
    app, server = served
    with Load(server.url) as load:
        r = httpx.post(f"{server.url}/api/v1/scenes/credit/rollout", headers=auth_for(server.url),
                       json={"arm": "b", "steps": [20, 50, 100], "interval_s": 0.2})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["status"] == "running" and started["percent"] == 20 and started["release"] >= 1
        final = wait_until_ended(server.url)
    assert final["status"] == "promoted", final
    assert final["release"] == started["release"] and final["percent"] == 100
    assert [c["percent"] for c in final["checks"]] == [20, 50, 100]
    assert all(c["count"] >= 15 and not c["breaches"] for c in final["checks"])
    assert app.state.serving.engine.scene("credit").compiled.traffic.canary_percent == 100
    assert {status for status, _ in load.results} == {200}
    assert {arm for _, arm in load.results} == {"control", "b"}


def test_failing_challenger_is_rolled_back_and_gets_no_more_requests(served):
    app, server = served
    engine = app.state.serving.engine
    engine.scene("credit").compiled.plans["b"].model_nodes()[0].model = Failing()
    with Load(server.url):
        r = httpx.post(f"{server.url}/api/v1/scenes/credit/rollout", headers=auth_for(server.url),
                       json={"arm": "b", "steps": [30, 100], "interval_s": 0.2})
        assert r.status_code == 202, r.text
        final = wait_until_ended(server.url)
    assert final["status"] == "rolled_back" and final["percent"] == 0, final
    assert "error rate" in final["reason"] and final["checks"][-1]["breaches"]
    assert engine.scene("credit").compiled.traffic.canary_percent == 0
    with Load(server.url, start=50_000) as after:
        while len(after.results) < 60:
            time.sleep(0.05)
    assert set(after.results) == {(200, "control")}
    assert [r["status"] for r in list_releases(app.state.workspace, "credit")] == ["rolled_back"]


def test_abort_from_another_worker_stops_the_runner_and_a_second_start_gets_409(ws, tmp_path):
    """Two servers on one metadata store stand for two workers: the rollout runs in the first,
    the abort arrives at the second, and the first one's runner notices it and stops. A rollout
    left running by servers that shut down is continued by the next server to start."""
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    other_ws = Workspace(load_settings(ws.settings.project_dir, validation_subprocess=False))
    runner_app = create_app(ws, follow_interval=0)
    try:
        with LiveServer(runner_app) as one, LiveServer(create_app(other_ws, follow_interval=0)) as two:
            engine = runner_app.state.serving.engine
            with Load(one.url):
                body = {"arm": "b", "steps": [10, 100], "min_requests": 10**6, "interval_s": 0.1}
                started = httpx.post(f"{one.url}/api/v1/scenes/credit/rollout", headers=auth_for(one.url), json=body).json()
                assert engine.scene("credit").compiled.traffic.canary_percent == 10
                # one running rollout per scene, whichever worker is asked
                for url in (one.url, two.url):
                    r = httpx.post(f"{url}/api/v1/scenes/credit/rollout", headers=auth_for(url), json=body)
                    assert r.status_code == 409, r.text
                    assert r.json()["error"]["details"]["release"] == started["release"]
                    assert f"release {started['release']}" in r.json()["error"]["message"]
                r = httpx.post(f"{two.url}/api/v1/scenes/credit/canary", headers=auth_for(two.url), params={"percent": 50, "arm": "b"})
                assert r.status_code == 409  # no hand-set share in the middle of a rollout
                assert httpx.get(f"{two.url}/api/v1/scenes/credit/rollout", headers=auth_for(two.url)).json()["status"] == "running"
                # the abort is recorded as made by whoever's token asked for it
                bob = {"Authorization": f"Bearer {user_token(ws, 'bob', 'operator')}"}
                r = httpx.delete(f"{two.url}/api/v1/scenes/credit/rollout", headers=bob)
                assert r.status_code == 200, r.text
                assert (r.json()["status"], r.json()["percent"]) == ("aborted", 0)
                deadline = time.monotonic() + WAIT_S
                while rollout_threads() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not rollout_threads()
                assert engine.scene("credit").compiled.traffic.canary_percent == 0
            rows = list_releases(ws, "credit")
            assert [(r["status"], r["percent"], r["reason"]) for r in rows] == [("aborted", 0, "aborted by bob")]
            assert httpx.delete(f"{one.url}/api/v1/scenes/credit/rollout", headers=auth_for(one.url)).status_code == 409  # nothing to abort
            # a new rollout may start now; the servers shutting down leave it running, its lease freed
            r = httpx.post(f"{one.url}/api/v1/scenes/credit/rollout", headers=auth_for(one.url), json=body)
            assert r.status_code == 202 and r.json()["release"] != started["release"]
            assert len(rollout_threads()) == 1
        assert not rollout_threads()
        last = list_releases(ws, "credit")[-1]
        assert (last["id"], last["status"], last["percent"]) == (r.json()["release"], "running", 10)
        waiting = rollout_status(ws, "credit")
        assert waiting["driven_by"] is None and waiting["freed_by"] == leases.this_process()
        # no server ran meanwhile; the next one to start continues the rollout at its recorded step
        again_app = create_app(other_ws, follow_interval=0)
        with LiveServer(again_app) as again:
            deadline = time.monotonic() + WAIT_S
            while rollout_status(ws, "credit").get("driven_by") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            status = rollout_status(ws, "credit")
            assert status["driven_by"] == leases.this_process() and status["takeovers"] == 1
            assert status["release"] == last["id"] and status["status"] == "running"
            assert again_app.state.serving.engine.scene("credit").compiled.traffic.canary_percent == 10
            assert len(rollout_threads()) == 1
            r = httpx.delete(f"{again.url}/api/v1/scenes/credit/rollout", headers=auth_for(again.url))
            assert r.status_code == 200 and r.json()["status"] == "aborted"
    finally:
        other_ws.close()
    assert not rollout_threads()
    assert [(r["status"], r["percent"]) for r in list_releases(ws, "credit")] == [("aborted", 0), ("aborted", 0)]


BAD_STARTS = [
    ("nope", {"arm": "b", "steps": [10, 100]}, 404, "scene"),
    ("credit", {"arm": "zzz", "steps": [10, 100]}, 400, "arm"),
    ("credit", {"arm": "control", "steps": [10, 100]}, 400, "arm"),
    ("credit", {"steps": [10, 100]}, 400, "arm"),
    ("credit", {"arm": "b", "steps": []}, 400, "steps"),
    ("credit", {"arm": "b", "steps": [50, 25]}, 400, "steps"),
    ("credit", {"arm": "b", "steps": [25, 25]}, 400, "steps"),
    ("credit", {"arm": "b", "steps": [0, 50]}, 400, "steps"),
    ("credit", {"arm": "b", "steps": [50, 150]}, 400, "steps"),
    ("credit", {"arm": "b", "steps": ["x"]}, 400, "steps"),
    ("credit", {"arm": "b", "steps": [10], "min_requests": 0}, 400, "min_requests"),
    ("credit", {"arm": "b", "steps": [10], "interval_s": 0}, 400, "interval_s"),
]


def test_bad_rollout_requests_name_the_field(served):
    app, server = served
    for scene, body, status, field in BAD_STARTS:
        r = httpx.post(f"{server.url}/api/v1/scenes/{scene}/rollout", headers=auth_for(server.url), json=body)
        assert r.status_code == status, (body, r.text)
        error = r.json()["error"]
        if status == 404:
            assert error["details"]["scene"] == "nope"
        else:
            where = error["details"].get("field") or error["details"]["problems"][0]["field"]
            assert where.split(".")[0] == field, (body, error)
    assert list_releases(app.state.workspace, "credit") == [] and not rollout_threads()


def test_rollout_status_and_abort_without_a_release(served):
    _, server = served
    r = httpx.get(f"{server.url}/api/v1/scenes/credit/rollout", headers=auth_for(server.url))
    assert r.status_code == 404 and "no release yet" in r.json()["error"]["message"]
    assert httpx.get(f"{server.url}/api/v1/scenes/nope/rollout", headers=auth_for(server.url)).status_code == 404
    with Client(server.url, token=server.headers['Authorization'][7:]) as client, pytest.raises(Conflict, match="nothing to abort"):
        client.scenes.abort_rollout("credit")


def test_cli_rollout_wait_status_and_abort(served):
    app, server = served
    runner = CliRunner()
    with Load(server.url):
        r = runner.invoke(main, ["scenes", "rollout", "credit", "--arm", "b", "--steps", "20,100",
                                 "--min-requests", "10", "--interval", "0.2", "--server", server.url, "--wait"], env={"SHIPYARD_TOKEN": server.headers["Authorization"][7:]})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("started release 1: arm b of credit at 20 %")
    assert "promoted at 100 %" in lines[-1] and "all canary steps passed" in lines[-1]
    r = runner.invoke(main, ["scenes", "rollout-status", "credit", "--server", server.url], env={"SHIPYARD_TOKEN": server.headers["Authorization"][7:]})
    assert r.exit_code == 0 and "release 1 of credit: arm b promoted at 100 %" in r.output
    r = runner.invoke(main, ["scenes", "rollout-abort", "credit", "--server", server.url], env={"SHIPYARD_TOKEN": server.headers["Authorization"][7:]})
    assert r.exit_code == 1 and "nothing to abort" in r.output
    # a rollout that fails makes --wait exit non-zero
    app.state.serving.engine.scene("credit").compiled.plans["b"].model_nodes()[0].model = Failing()
    app.state.serving.engine.scene("credit").compiled.traffic.set_canary(0)
    with Load(server.url, start=10_000):
        r = runner.invoke(main, ["scenes", "rollout", "credit", "--arm", "b", "--steps", "50,100",
                                 "--interval", "0.2", "--server", server.url, "--wait"], env={"SHIPYARD_TOKEN": server.headers["Authorization"][7:]})
    assert r.exit_code == 1, r.output
    assert "rolled_back at 0 %" in r.output.splitlines()[-1] and "error rate" in r.output
    r = runner.invoke(main, ["scenes", "rollout", "credit", "--arm", "b", "--steps", "50,20", "--server", server.url], env={"SHIPYARD_TOKEN": server.headers["Authorization"][7:]})
    assert r.exit_code == 1 and "steps must increase" in r.output


def test_stress_test_over_http_and_cli(served):
    app, server = served
    ws = app.state.workspace
    # the acting user is the token's, whatever a header claims
    carol = {"Authorization": f"Bearer {user_token(ws, 'carol', 'modeler')}", "X-Shipyard-User": "mallory"}
    r = httpx.post(f"{server.url}/api/v1/models/credit/versions/1/stress-test", json={"rate": 400, "count": 120},
                   headers=carol)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["name"], result["version"], result["count"], result["errors"]) == ("credit", 1, 120, 0)
    stored = ws.registry.get_version("credit", 1).validation["stress_test"]
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "count", "target_rate"):
        assert stored[key] == result[key]
    assert stored["p50_ms"] <= stored["p90_ms"] <= stored["p99_ms"] <= stored["max_ms"]
    events = [e for e in ws.registry.history("credit") if e["kind"] == "model.stress_tested"]
    assert len(events) == 1 and events[0]["actor"] == "carol"
    r = httpx.post(f"{server.url}/api/v1/models/credit/versions/1/stress-test", headers=auth_for(server.url), json={"rate": 0, "count": 10})
    assert r.status_code == 400 and r.json()["error"]["details"]["problems"][0]["field"] == "rate"
    assert httpx.post(f"{server.url}/api/v1/models/credit/versions/9/stress-test", headers=auth_for(server.url), json={}).status_code == 404
    from shipyard.client import Client
    from shipyard.errors import NotFound

    remote = Client(server.url, token=server.headers['Authorization'][7:]).models.stress_test("credit", 1, rate=400, count=60)
    assert remote["count"] == 60 and remote["errors"] == 0
    assert ws.registry.get_version("credit", 1).validation["stress_test"]["count"] == 60
    with pytest.raises(NotFound):
        Client(server.url, token=server.headers['Authorization'][7:]).models.stress_test("credit", 9)

    env = {"SHIPYARD_PROJECT_DIR": str(ws.settings.project_dir)}
    r = CliRunner().invoke(main, ["models", "stress-test", "credit", "challenger", "--rate", "400", "--count", "80"],
                           env=env)
    assert r.exit_code == 0, r.output
    stored = ws.registry.get_version("credit", 2).validation["stress_test"]
    assert stored["count"] == 80 and stored["errors"] == 0
    assert r.output.startswith("credit version 2: 80 calls")
    assert f"p99 {stored['p99_ms']:.3f}" in r.output and f"p50 {stored['p50_ms']:.3f}" in r.output
