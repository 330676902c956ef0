"""Prediction routes in-process (TestClient): formats, exact values and every bad-input case."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from shipyard.server import create_app
from shipyard.serving import ServingEngine, apply_scene
from shipyard.serving import flow as F
from shipyard.serving.prediction_log import PredictionLog
from tests.conftest import auth_headers

ROW = {"income": 4.0, "debt": 2.5, "age": 40.0}


class Float32Model:
    input_names = ["x"]
    signature = None
    has_fast_path = True

    def predict_array(self, X):
        return (X[:, 0] * 0.1).astype(np.float32)


class Raising:
    input_names = ["income", "debt", "age"]
    signature = None
    has_fast_path = True

    def predict_array(self, X):
        raise ValueError("model exploded")


@pytest.fixture(scope="module")
def app_client(module_workspace, loaded):
    from tests.serving.conftest import make_catalog, make_features

    ws = module_workspace
    catalog, feature_source = make_catalog(loaded), make_features()
    catalog.add("f32", Float32Model(), version=1, aliases=["champion"])
    catalog.add("bad", Raising(), version=1, aliases=["champion"])
    apply_scene(ws, {"name": "credit", "inputs": {"user_id": "string", "amount": "double", "note": "string?"},
                     "flow": [F.features("applicant", {"user_id": "user_id"}),
                              F.model("credit", output="score"),
                              F.rules([{"when": "score > 0.5", "then": "reject"}], default="approve")],
                     "outputs": ["score", "decision", "note"]}, models=catalog, features=feature_source)
    apply_scene(ws, {"name": "broken", "inputs": {"income": "double", "debt": "double", "age": "double"},
                     "flow": [F.model("bad", output="score", id="scorer")]}, models=catalog)
    plog = PredictionLog(ws.artifacts, flush_interval=0.2)
    engine = ServingEngine(ws, models=catalog, features=feature_source, prediction_log=plog)
    app = create_app(ws, engine=engine, single_model="credit@champion", max_request_bytes=20_000,
                     follow_interval=0)
    with TestClient(app, headers=auth_headers(ws)) as client:
        client.engine = engine
        yield client


def test_scene_predict_single_and_batch(app_client, loaded):
    feature_source = app_client.engine.features
    r = app_client.post("/v1/scenes/credit/predict", json={"user_id": "u3", "amount": 100.0, "note": "2024-01-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    f = feature_source.lookup("applicant", [{"user_id": "u3"}])[0]
    expected = loaded["lr_a"].predict_array(np.array([[f["income"], f["debt"], f["age"]]]))[0]
    assert body["outputs"]["score"] == expected
    assert body["outputs"]["note"] == "2024-01-01"  # never turned into a date
    assert body["outputs"]["decision"] == ("reject" if expected > 0.5 else "approve")
    assert body["version"] == 1 and body["arm"] == "control" and body["models"] == {"credit": 1}
    assert set(body["latency_ms"]) == {"features", "model", "queue", "total"} and body["fallback"] is False
    assert r.headers["x-request-id"] == body["request_id"]
    batch = app_client.post("/v1/scenes/credit/predict",
                            json={"records": [{"user_id": "u1", "amount": 1}, {"user_id": "u2", "amount": 2}]})
    assert batch.status_code == 200 and len(batch.json()["outputs"]) == 2
    as_list = app_client.post("/v1/scenes/credit/predict", json=[{"user_id": "u1", "amount": 1}])
    assert as_list.json()["outputs"][0] == batch.json()["outputs"][0]


@pytest.mark.parametrize(("body", "status", "field", "text"), [
    (b'{"user_id": "u1", "amount": NaN}', 400, "amount", "NaN or Infinity"),
    (b'{"user_id": "u1", "amount": Infinity}', 400, "amount", "NaN or Infinity"),
    (b'{"user_id": "u1", "amount": 1e999}', 400, "amount", "NaN or Infinity"),
    (b'{"user_id": "u1", "amount": 1', 400, "body", "malformed JSON"),
    (b'{"user_id": "u1"}', 400, "amount", "missing field(s) 'amount'"),
    (b'{"user_id": "u1", "amount": 1, "zzz": 2}', 400, "zzz", "unknown field(s) 'zzz'"),
    (b'{"user_id": "u1", "amount": "12"}', 400, "amount", "must be double, got str"),
    (b'{"user_id": 7, "amount": 1}', 400, "user_id", "must be string"),
    (b'{"user_id": "u1", "amount": true}', 400, "amount", "must be double"),
    (b'{"user_id": null, "amount": 1}', 400, "user_id", "null but required; send a string or declare it optional ('string?')"),
    (b'"just a string"', 400, "body", "JSON object"),
    (b'', 400, "body", "empty"),
])
def test_scene_bad_input_names_the_field(app_client, body, status, field, text):
    r = app_client.post("/v1/scenes/credit/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert text in err["message"] and err["details"]["field"] == field
    assert err["details"]["request_id"]


def test_oversized_unknown_and_raising(app_client):
    big = orjson.dumps({"user_id": "u1" * 20_000, "amount": 1.0})
    r = app_client.post("/v1/scenes/credit/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = app_client.post("/v1/scenes/nope/predict", json={"a": 1})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = app_client.post("/v1/models/nope/champion/predict", json={"a": 1})
    assert r.status_code == 404
    r = app_client.post("/v1/scenes/broken/predict", json=ROW)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "model_error" and err["details"]["step"] == "scorer" and "model exploded" in err["message"]
    # the server keeps serving
    assert app_client.post("/v1/scenes/credit/predict", json={"user_id": "u1", "amount": 1}).status_code == 200


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": ["income", "debt", "age"], "data": [[4.0, 2.5, 40.0], [1.0, 1.0, 30]]}},
    {"dataframe_records": [ROW, {"income": 1.0, "debt": 1.0, "age": 30}]},
    {"instances": [ROW, {"income": 1.0, "debt": 1.0, "age": 30}]},
    {"instances": [[4.0, 2.5, 40.0], [1.0, 1.0, 30]]},
    {"inputs": {"income": [4.0, 1.0], "debt": [2.5, 1.0], "age": [40.0, 30]}},
    {"inputs": [ROW, {"income": 1.0, "debt": 1.0, "age": 30}]},
])
def test_mlflow_formats(app_client, loaded, payload):
    expected = loaded["lr_a"].predict_array(np.array([[4.0, 2.5, 40.0], [1.0, 1.0, 30.0]])).tolist()
    for path in ("/invocations", "/v1/models/credit/champion/invocations", "/v1/models/credit/1/invocations"):
        r = app_client.post(path, json=payload)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}


def test_csv_and_direct_predict(app_client, loaded):
    csv = b"income,debt,age\n4.0,2.5,40\n1,1,30\n"
    r = app_client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    expected = loaded["lr_a"].predict_array(np.array([[4.0, 2.5, 40.0], [1.0, 1.0, 30.0]])).tolist()
    assert r.json() == {"predictions": expected}
    bad = app_client.post("/invocations", content=b"income,debt,age\nx,1,2\n", headers={"content-type": "text/csv"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "income"
    one = app_client.post("/v1/models/credit/champion/predict", json=ROW).json()
    assert one["predictions"] == expected[0] and one["model"]["version"] == 1
    assert app_client.get("/ping").status_code == 200


@pytest.mark.parametrize(("payload", "field"), [
    ({"dataframe_records": [{"income": 4.0, "debt": 2.5}]}, "age"),
    ({"dataframe_records": [{**ROW, "x": 1}]}, "x"),
    ({"dataframe_records": [{**ROW, "age": "40"}]}, "age"),
    ({"dataframe_split": {"columns": ["income"], "data": [[1, 2]]}}, "dataframe_split.data[0]"),
    ({"instances": [[1.0, 2.0]]}, None),
    ({"instances": [], "inputs": []}, "inputs"),
])
def test_model_bad_input(app_client, payload, field):
    r = app_client.post("/v1/models/credit/champion/invocations", json=payload)
    assert r.status_code == 400, r.text
    if field:
        assert r.json()["error"]["details"]["field"] == field


def test_float32_outputs_are_exact(app_client):
    # /predict: the shortest decimal that reads back as the same float32
    r = app_client.post("/v1/models/f32/champion/predict", json={"instances": [[1.0], [3.0], [7.0]]})
    assert r.json()["predictions"] == [0.1, 0.3, 0.7]
    # /invocations: MLflow's form, the float32 widened to the double it is (ndarray.tolist)
    r = app_client.post("/v1/models/f32/champion/invocations", json={"instances": [[1.0], [3.0], [7.0]]})
    expected = (np.array([1.0, 3.0, 7.0]) * 0.1).astype(np.float32)
    assert r.json()["predictions"] == expected.tolist()
    assert np.array_equal(np.asarray(r.json()["predictions"]), expected)


def test_metrics_and_prediction_log(app_client, module_workspace):
    from shipyard.serving.prediction_log import read_prediction_log

    for i in range(5):
        app_client.post("/v1/scenes/credit/predict", json={"user_id": f"u{i}", "amount": float(i)})
    text = app_client.get("/metrics").text
    assert 'shipyard_predictions_total{arm="control",project="default",scene="credit",status="ok",version="1"}' in text
    assert 'stage="features"' in text and 'stage="model"' in text
    app_client.engine.prediction_log.flush()
    frame = read_prediction_log(module_workspace.artifacts, "credit")
    assert len(frame) >= 5
    last = frame.iloc[-1]
    assert last["inputs"] == [{"user_id": "u4", "amount": 4.0}] and set(last["features"][0]) == {"income", "debt", "age"}
    assert last["arm"] == "control" and last["version"] == 1 and last["models"] == {"credit": 1}


def test_openapi_documents_prediction_routes(app_client):
    spec = app_client.get("/openapi.json").json()
    body = spec["paths"]["/v1/scenes/{scene}/predict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["oneOf"]
    assert "text/csv" in spec["paths"]["/invocations"]["post"]["requestBody"]["content"]


def test_invocations_without_a_single_model_say_how_to_get_one(module_workspace):
    app = create_app(module_workspace, follow_interval=0)
    with TestClient(app) as client:
        for resp in (client.post("/invocations", json={"inputs": [[1.0]]}), client.get("/ping")):
            assert resp.status_code == 404
            err = resp.json()["error"]
            assert "--model NAME@ALIAS" in err["message"] and err["details"]["field"] == "--model"
