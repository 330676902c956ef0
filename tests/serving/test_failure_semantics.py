"""Failure semantics a rollout can trust: a fallback is a failure of the arm and step that needed it,
circuit breakers are per arm and dependency, breaches wait for min_requests and are watched on a
sliding window, and errors name the arm. Four challengers (raising on 30 %, slow, shifted,
healthy), each judged with and without a fallback."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from shipyard.errors import ModelError, ShipyardError
from shipyard.serving import ModelCatalog, ServingEngine, compile_scene
from shipyard.serving import flow as F
from shipyard.serving.release import CanaryRollout, scene_status

MIN_REQUESTS = 30
LIMITS = {"error_rate": 0.05, "p99_ms": 100, "psi": 0.25, "min_requests": MIN_REQUESTS}
SLOW_S = 0.15  # well above the p99 limit, so the slow arm breaches it whatever the machine does


def healthy_score(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def raises_for(x: float) -> bool:
    """30 % of the request grid below, exactly: x = k/100 - 5 raises when k % 10 < 3."""
    return int(round((x + 5) * 100)) % 10 < 3


class Model:
    input_names = ["x"]
    signature = None
    has_fast_path = True

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        x = X[:, 0]
        if self.kind == "raising" and any(raises_for(v) for v in x):
            raise RuntimeError("challenger raised")
        if self.kind == "failing":
            raise RuntimeError("challenger is broken")
        if self.kind == "slow":
            time.sleep(SLOW_S)
        if self.kind == "shifted":
            return healthy_score(x + 1.5)
        return healthy_score(x)


def record(i: int) -> dict[str, Any]:
    k = (i * 7919) % 1000  # walks the whole grid of 1,000 values
    return {"id": f"req-{i}", "x": k / 100 - 5}


def scene_spec(fallback: bool, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "s", "inputs": {"id": "string", "x": "double"}, "outputs": ["score"],
        "flow": [F.model("m", "champion", output="score", id="score_step")],
        "traffic": {"key": "id", "arms": {"chal": {"models": {"m": "2"}}}},
        "limits": dict(limits or LIMITS)}
    if fallback:
        spec["fallback"] = {"score": 0.5}
    return spec


def make_engine(challenger: str, fallback: bool, limits: dict[str, Any] | None = None) -> ServingEngine:
    models = ModelCatalog()
    models.add("m", Model("healthy"), version=1, aliases=["champion"])
    models.add("m", Model(challenger), version=2)
    spec = scene_spec(fallback, limits)
    engine = ServingEngine(models=models, scenes=lambda n, v: (1, spec))
    engine.install_scene(compile_scene(spec, 1, models=models))
    return engine


def call(engine: ServingEngine, i: int, arm: str | None = None) -> tuple[str, dict[str, Any] | None, Exception | None]:
    """(arm, body, error) of one request."""
    try:
        body = engine.predict_scene("s", [record(i)], single=True, override=arm)
    except ShipyardError as exc:
        return exc.details["arm"], None, exc
    return body["arm"], body, None


CASES = [("raising", "error rate"), ("slow", "p99"), ("shifted", "score PSI"), ("healthy", None)]


@pytest.mark.parametrize("fallback", [False, True], ids=["no-fallback", "fallback"])
@pytest.mark.parametrize(("challenger", "breach"), CASES, ids=[c for c, _ in CASES])
def test_four_challengers_are_judged_right(challenger: str, breach: str | None, fallback: bool) -> None:
    """Both arms answer the same inputs, in turn (the arm header), so control's scores are the
    reference the challenger's are compared with request for request."""
    engine = make_engine(challenger, fallback)
    rollout = CanaryRollout(None, engine, "s", "chal", steps=(50, 100))
    seen: dict[str, list[str]] = {"control": [], "chal": []}  # per arm: "ok", "fallback" or "error"
    i = 0
    while rollout.status == "running" and i < 2000:
        arm, body, error = call(engine, i // 2, arm="chal" if i % 2 == 0 else "control")
        seen[arm].append("error" if error else "fallback" if body["fallback"] else "ok")
        i += 1
        rollout.watch()  # between step checks, as the runner does every 0.25 s
        if i % 50 == 0:
            rollout.advance()
    assert set(seen["control"]) == {"ok"}, "the challenger's failures never reach control"
    if breach is None:
        assert rollout.status == "promoted", rollout.to_dict()
        assert set(seen["chal"]) == {"ok"} and [c["percent"] for c in rollout.checks] == [50, 100]
        assert all(c["count"] >= MIN_REQUESTS and c["psi"] == 0 for c in rollout.checks)
        return
    assert rollout.status == "rolled_back", rollout.to_dict()
    assert breach in rollout.reason and rollout.percent == 0, rollout.reason
    last = rollout.checks[-1]
    if challenger == "raising":
        # judged as soon as the arm has min_requests requests, not before and not later
        assert last["count"] == MIN_REQUESTS == len(seen["chal"])
        failures = [s for s in seen["chal"] if s != "ok"]
        expected = sum(raises_for(record(j)["x"]) for j in range(MIN_REQUESTS))
        assert last["errors"] == len(failures) == expected
        assert set(failures) == {"fallback" if fallback else "error"}
        assert last["fallbacks"] == (len(failures) if fallback else 0)
        assert last["failed_steps"] == {"score_step": len(failures)}
        assert last["error_rate"] == pytest.approx(len(failures) / MIN_REQUESTS)
    if challenger == "slow":
        assert last["count"] == MIN_REQUESTS and last["p99_ms"] >= SLOW_S * 1000
    if challenger == "shifted":
        from shipyard.risk.metrics import psi

        n = last["count"]
        xs = np.array([record(j)["x"] for j in range(n)])
        assert last["psi"] == pytest.approx(psi(healthy_score(xs), healthy_score(xs + 1.5), bins=10))


def test_a_fallback_counts_as_a_failure_of_its_arm_and_step_and_keeps_its_score_out() -> None:
    engine = make_engine("raising", fallback=True, limits={"min_requests": 1})
    n = 200
    answers = [call(engine, i, arm="chal")[1] for i in range(n)]
    fell_back = [a["fallback"] for a in answers]
    expected = [raises_for(record(i)["x"]) for i in range(n)]
    assert fell_back == expected  # (the breaker never opens: failures are never 5 in a row here)
    summary = engine.scene("s").stats["chal"].summary()
    assert summary["count"] == n and summary["errors"] == summary["fallbacks"] == sum(expected)
    assert summary["error_rate"] == pytest.approx(np.mean(expected))
    assert summary["failed_steps"] == {"score_step": sum(expected)}
    # the fallback's 0.5 is not the arm's score: the scores are exactly the model's answers
    scores = healthy_score(np.array([record(i)["x"] for i in range(n) if not expected[i]]))
    assert summary["scores"] == pytest.approx(scores.tolist())
    # every answer counts in the latency percentiles, fallbacks included
    latencies = [e[1] for e in engine.scene("s").stats["chal"].events]
    assert summary["p99_ms"] == pytest.approx(float(np.percentile(latencies, 99) * 1000))
    status = scene_status(engine, "s")
    assert status["arms"]["chal"]["fallbacks"] == sum(expected) and status["arms"]["control"]["count"] == 0


def test_breakers_are_per_arm_so_a_failing_arm_never_pushes_control_onto_the_fallback() -> None:
    engine = make_engine("failing", fallback=True)
    for i in range(20):  # the challenger's circuit opens after 5 failures in a row
        arm, body, _ = call(engine, i, arm="chal")
        assert body["fallback"] is True
    assert engine.scene("s").guard.breakers.states() == {"chal": {"model m v2": "open"}}
    assert "circuit open at step 'score_step'" in body["fallback_reason"]
    for i in range(20, 60):
        arm, body, _ = call(engine, i, arm="control")
        assert body["fallback"] is False
        assert body["outputs"]["score"] == pytest.approx(float(healthy_score(np.array([record(i)["x"]]))[0]))
    status = scene_status(engine, "s")
    assert status["arms"]["chal"]["errors"] == 20 and status["arms"]["control"]["errors"] == 0
    assert status["circuits"] == {"chal": {"model m v2": "open"}}


def test_min_requests_holds_back_error_and_latency_breaches() -> None:
    engine = make_engine("failing", fallback=False)
    rollout = CanaryRollout(None, engine, "s", "chal", steps=(100,))
    for i in range(MIN_REQUESTS - 1):
        call(engine, i)
        assert rollout.watch() == "running" and rollout.advance() == "running"
    assert scene_status(engine, "s")["arms"]["chal"]["errors"] == MIN_REQUESTS - 1
    call(engine, MIN_REQUESTS)
    assert rollout.watch() == "rolled_back" and "error rate 1.000 > 0.05" in rollout.reason


def test_the_watch_judges_a_sliding_window_of_the_step() -> None:
    """A healthy stretch early in a step does not dilute failures that start later: the watch
    judges the last ``window_s`` seconds (at least min_requests requests), the step check all of it."""
    from shipyard.serving.arms import ERROR, OK, ArmStats

    stats = ArmStats()
    now = time.time()
    stats.events.extend((now - 100 + k * 0.1, 0.001, 0.0, OK, 0.5, None) for k in range(500))      # old, healthy
    stats.events.extend((now - 5 + k * 0.1, 0.001, 0.0, ERROR, None, "m") for k in range(10))      # recent failures
    stats.events.extend((now - 4 + k * 0.1, 0.001, 0.0, OK, 0.5, None) for k in range(30))
    whole = stats.summary(now - 200)
    window = stats.summary(now - 200, window_s=10, at_least=20)
    assert whole["count"] == 540 and whole["error_rate"] == pytest.approx(10 / 540)
    assert window["count"] == 40 and window["error_rate"] == pytest.approx(10 / 40)
    # too few requests in the window: the newest min_requests are judged instead
    assert stats.summary(now - 200, window_s=10, at_least=100)["count"] == 100
    assert stats.summary(now - 3, window_s=10, at_least=100)["count"] == 20  # never before the step


def test_error_bodies_name_the_arm(tmp_path) -> None:
    from shipyard.config import load_settings
    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    engine = make_engine("failing", fallback=False)
    with pytest.raises(ModelError) as info:
        engine.predict_scene("s", [record(0)], override="chal")
    assert info.value.details["arm"] == "chal" and info.value.message.startswith("arm 'chal': step 'score_step'")
    from tests.conftest import auth_headers

    ws = Workspace(load_settings(tmp_path, user="t"))
    with TestClient(create_app(ws, engine=engine, follow_interval=0), headers=auth_headers(ws)) as client:
        r = client.post("/v1/scenes/s/predict", json=record(1), headers={"X-Shipyard-Arm": "chal"})
        ok = client.post("/v1/scenes/s/predict", json=record(1), headers={"X-Shipyard-Arm": "control"})
    assert r.status_code == 500 and ok.status_code == 200
    error = r.json()["error"]
    assert error["details"]["arm"] == "chal" and error["details"]["step"] == "score_step"
    assert "arm 'chal'" in error["message"] and "challenger is broken" in error["message"]
    ws.close()


def test_a_timeout_is_charged_to_the_step_it_was_in_and_opens_only_that_arms_circuit() -> None:
    limits = {"timeout_ms": 60, "min_requests": 1}
    engine = make_engine("slow", fallback=True, limits=limits)
    for i in range(7):
        arm, body, _ = call(engine, i, arm="chal")
        assert body["fallback"] is True
    assert "circuit open at step 'score_step'" in body["fallback_reason"]
    assert engine.scene("s").guard.breakers.states() == {"chal": {"model m v2": "open"}}
    first = engine.scene("s").stats["chal"].summary()
    assert first["errors"] == 7 and first["failed_steps"] == {"score_step": 7}
    arm, body, _ = call(engine, 99, arm="control")
    assert body["fallback"] is False and math.isfinite(body["outputs"]["score"])


def test_a_raising_challenger_with_a_fallback_is_rolled_back_on_a_running_server(sqlite_workspace, saved_models):
    """End to end: the runner on the server rolls back a challenger raising on 30 % of requests
    although every one of them was answered 200 by the fallback; control never fell back."""
    from shipyard.server import create_app
    from shipyard.serving import apply_scene
    from tests.serving.conftest import CREDIT_INPUTS, LiveServer, credit_record, register
    from tests.serving.test_rollout_http import Load, wait_until_ended

    ws = sqlite_workspace
    register(ws, saved_models["lr_a"], "credit")
    register(ws, saved_models["lr_b"], "credit", alias="challenger")
    apply_scene(ws, {"name": "credit", "inputs": CREDIT_INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")], "fallback": {"score": 0.5},
                     "traffic": {"key": "user_id", "arms": {"b": {"models": {"credit": "challenger"}}}},
                     "limits": {"error_rate": 0.05, "p99_ms": 500, "min_requests": 15}})
    app = create_app(ws, follow_interval=0)
    with LiveServer(app) as server:
        node = app.state.serving.engine.scene("credit").compiled.plans["b"].model_nodes()[0]
        node.model = RaisingSometimes(node.model)
        with Load(server.url) as load:
            r = httpx.post(f"{server.url}/api/v1/scenes/credit/rollout", headers=server.headers,
                           json={"arm": "b", "steps": [50, 100], "interval_s": 5})
            assert r.status_code == 202, r.text
            final = wait_until_ended(server.url)
        bodies = [httpx.post(f"{server.url}/v1/scenes/credit/predict", json=credit_record(i),
                             headers=server.headers).json()
                  for i in range(10)]
    assert final["status"] == "rolled_back", final
    assert "error rate" in final["reason"] and "last 10 s" in final["reason"]
    assert final["checks"][-1]["fallbacks"] == final["checks"][-1]["errors"] > 0
    assert {status for status, _ in load.results} == {200}
    assert all(b["arm"] == "control" and b["fallback"] is False for b in bodies)


class RaisingSometimes:
    """Wraps a real model; raises on the rows whose income is 2 of the 7 values of the load (29 %)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_names = model.input_names
        self.signature = model.signature
        self.has_fast_path = model.has_fast_path

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        if any(int(v) % 7 in (2, 4) for v in X[:, 0]):
            raise RuntimeError("challenger raised")
        return self.model.predict_array(X)
