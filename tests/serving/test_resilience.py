"""Rate limits, bounded concurrency, fallbacks, circuit breaker and timeouts."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from shipyard.errors import Overloaded, RateLimited, StoreUnavailable
from shipyard.serving import ModelCatalog, ServingEngine, compile_scene
from shipyard.serving import flow as F
from shipyard.serving.resilience import CircuitBreaker, TokenBucket


class Slow:
    input_names = ["x"]
    signature = None
    has_fast_path = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict_array(self, X):
        time.sleep(self.seconds)
        return X[:, 0]


def engine_with(spec, models, features=None):
    engine = ServingEngine(models=models, features=features, scenes=lambda n, v: (1, spec))
    engine.install_scene(compile_scene(spec, 1, models=models, features=features))
    return engine


def slow_catalog(seconds: float) -> ModelCatalog:
    cat = ModelCatalog()
    cat.add("slow", Slow(seconds), version=1, aliases=["champion"])
    return cat


def test_token_bucket_and_breaker_units():
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.take() == 0 and bucket.take() == 0
    wait = bucket.take()
    assert 0 < wait <= 0.1 + 1e-9
    breaker = CircuitBreaker(threshold=2, cooldown=0.05)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow() and breaker.state == "open"
    time.sleep(0.06)
    assert breaker.allow() and not breaker.allow()  # one trial only
    breaker.success()
    assert breaker.state == "closed"


def test_scene_and_client_rate_limits():
    spec = {"name": "s", "inputs": {"x": "double"}, "flow": [F.model("slow", output="y")],
            "limits": {"rate_per_s": 1, "burst": 3}}
    engine = engine_with(spec, slow_catalog(0))
    for _ in range(3):
        engine.predict_scene("s", [{"x": 1.0}])
    with pytest.raises(RateLimited) as info:
        engine.predict_scene("s", [{"x": 1.0}])
    assert info.value.details["retry_after"] >= 1
    assert info.value.details["scene"] == "s" and info.value.details["request_id"]
    spec2 = {**spec, "limits": {"client_rate_per_s": 1, "burst": 1}}
    engine2 = engine_with(spec2, slow_catalog(0))
    engine2.predict_scene("s", [{"x": 1.0}], client="a")
    engine2.predict_scene("s", [{"x": 1.0}], client="b")
    with pytest.raises(RateLimited, match="client 'a'"):
        engine2.predict_scene("s", [{"x": 1.0}], client="a")


def test_bounded_concurrency_answers_503_with_retry_after(tmp_path):
    from shipyard.config import load_settings
    from shipyard.server import create_app
    from shipyard.workspace import Workspace
    from tests.conftest import auth_headers

    spec = {"name": "s", "inputs": {"x": "double"}, "flow": [F.model("slow", output="y")],
            "limits": {"max_concurrency": 1, "timeout_ms": 5000}}
    engine = engine_with(spec, slow_catalog(0.3))
    ws = Workspace(load_settings(tmp_path, user="t"))
    with TestClient(create_app(ws, engine=engine, follow_interval=0), headers=auth_headers(ws)) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            client.post("/v1/scenes/s/predict", json={"x": 1.0}))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses[0] == 200 and 503 in statuses
    refused = next(r for r in results if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "overloaded"
    ws.close()


def test_feature_failure_serves_flagged_fallback_and_opens_breaker(catalog, feature_source):
    spec = {"name": "s", "inputs": {"user_id": "string"}, "outputs": ["score", "decision"],
            "flow": [F.features("applicant", {"user_id": "user_id"}, id="feats"), F.model("credit", output="score"),
                     F.expr("decision", "'reject' if score > 0.5 else 'approve'")],
            "fallback": {"decision": "review", "score": None}}
    engine = engine_with(spec, catalog, feature_source)
    ok = engine.predict_scene("s", [{"user_id": "u1"}], single=True)
    assert ok["fallback"] is False
    calls = []
    real_lookup = feature_source.lookup

    def failing(service, rows):
        calls.append(1)
        raise StoreUnavailable("redis is down")

    feature_source.lookup = failing
    for _ in range(8):
        body = engine.predict_scene("s", [{"user_id": "u1"}], single=True)
        assert body["fallback"] is True and body["outputs"] == {"decision": "review", "score": None}
    assert len(calls) == 5  # breaker opened after 5 consecutive failures: no more calls
    assert engine.scene("s").guard.breakers.states() == {"control": {"features applicant": "open"}}
    assert "circuit open at step 'feats'" in body["fallback_reason"]
    feature_source.lookup = real_lookup


def test_model_failure_without_fallback_is_5xx_and_timeout_falls_back():
    spec = {"name": "s", "inputs": {"x": "double"}, "flow": [F.model("slow", output="y", id="m")],
            "limits": {"timeout_ms": 50}, "fallback": {"y": -1.0}}
    engine = engine_with(spec, slow_catalog(0.3))
    body = engine.predict_scene("s", [{"x": 1.0}], single=True)
    assert body["fallback"] is True and body["outputs"] == {"y": -1.0} and "timeout" in body["fallback_reason"]
    spec_no_fb = {k: v for k, v in spec.items() if k != "fallback"}
    engine2 = engine_with(spec_no_fb, slow_catalog(0.3))
    with pytest.raises(Overloaded, match="timeout of 50 ms"):
        engine2.predict_scene("s", [{"x": 1.0}])


def test_each_worker_enforces_its_share_of_the_limits():
    from shipyard.serving.resilience import Guard

    limits = {"rate_per_s": 10, "burst": 4, "client_rate_per_s": 3, "max_concurrency": 5}
    one, two = Guard("s", limits), Guard("s", limits, workers=2)
    assert (one.bucket.rate, one.bucket.capacity, one.concurrency.limit) == (10, 4, 5)
    assert (two.bucket.rate, two.bucket.capacity, two.concurrency.limit) == (5, 2, 2)
    assert two.clients.rate == 1.5
    # a share is never below one token or one request in flight
    tiny = Guard("s", {"rate_per_s": 1, "max_concurrency": 1}, workers=4)
    assert (tiny.bucket.rate, tiny.bucket.capacity, tiny.concurrency.limit) == (0.25, 1.0, 1)
    assert tiny.bucket.take() == 0 and tiny.bucket.take() > 3.9
    with pytest.raises(RateLimited, match="rate limit of 1/s"):
        tiny.admit(None)
    with pytest.raises(ValueError, match="workers"):
        Guard("s", limits, workers=0)


def test_refused_requests_are_counted_in_the_metrics():
    from shipyard.serving.metrics import ServingMetrics

    spec = {"name": "s", "inputs": {"x": "double"}, "flow": [F.model("slow", output="y")],
            "limits": {"rate_per_s": 1, "burst": 2}}
    models = slow_catalog(0)
    metrics = ServingMetrics()
    engine = ServingEngine(models=models, scenes=lambda n, v: (1, spec), metrics=metrics)
    engine.install_scene(compile_scene(spec, 1, models=models))
    for _ in range(2):
        engine.predict_scene("s", [{"x": 1.0}])
    for _ in range(3):
        with pytest.raises(RateLimited):
            engine.predict_scene("s", [{"x": 1.0}])
    text = metrics.render().decode()
    assert 'shipyard_prediction_errors_total{arm="none",code="rate_limited",project="default",scene="s",version="1"} 3.0' in text
    assert 'shipyard_predictions_total{arm="none",project="default",scene="s",status="429",version="1"} 3.0' in text
    assert 'shipyard_predictions_total{arm="control",project="default",scene="s",status="ok",version="1"} 2.0' in text
