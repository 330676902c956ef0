"""Model routes on registered packages: the fast path equals the frame path (property test, and
both equal mlflow.pyfunc), bad bodies are 400s naming the item or field for models with and
without a signature, and every failure of a model's code is a named, counted error."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from shipyard.errors import ModelError
from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.server import create_app
from shipyard.serving import ServingEngine, apply_scene
from shipyard.serving import flow as F
from shipyard.serving.codec import mlflow_jsonable
from shipyard.serving.engine import ServedModel
from shipyard.serving.sources import ModelCatalog
from shipyard.serving.steps import to_python
from tests.conftest import auth_headers

mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
from mlflow.pyfunc.scoring_server import predictions_to_json  # noqa: E402

COLS = ["income", "debt", "age"]


class Divides(PythonModel):
    def predict(self, df):
        return df["income"].to_numpy() * (1 / 0)


class BadHook(PythonModel):
    def preprocess(self, df):
        return df[["no_such_column"]]

    def predict(self, df):
        return df.sum(axis=1).to_numpy()


class BadLoad(PythonModel):
    def load_context(self, context):
        raise RuntimeError("artifact store unreachable")

    def predict(self, df):
        return df.sum(axis=1).to_numpy()


class Unsigned(PythonModel):
    def predict(self, df):
        return np.asarray(df, dtype=float).sum(axis=1)


class RaisingFeatures:
    """A feature source whose on-demand function raises (as a user's transform would)."""

    def on_demand(self, row):
        return {"income": row["user_id"] / 2, "debt": 1.0, "age": 30.0}  # str / int: TypeError

    def lookup(self, service, entity_rows):
        return [self.on_demand(r) for r in entity_rows]

    def feature_names(self, service):
        return COLS


def data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"income": rng.normal(5, 2, n), "debt": rng.normal(2, 1, n), "age": rng.normal(45, 12, n)})
    return X, (X.debt * 1.5 - X.income * 0.6 + rng.normal(0, 1, n) > -1).astype(int).to_numpy()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    root = tmp_path_factory.mktemp("invocations")
    X, y = data()
    signed = {"inputs": json.dumps([{"type": "double", "name": c} for c in COLS])}
    folders = {
        "lr": save_model(LogisticRegression().fit(X, y), root / "lr", input_example=X.head(5)),
        "lgb": save_model(lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(X, y), root / "lgb",
                          input_example=X.head(5)),
        # saved with a signature only: an example would make save_model call them
        "divides": save_model(Divides(), root / "divides", signature=signed),
        "badhook": save_model(BadHook(), root / "badhook", signature=signed),
        "badload": save_model(BadLoad(), root / "badload", signature=signed),
        "unsigned": save_model(Unsigned(), root / "unsigned"),
    }
    ws = Workspace(load_settings(root / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=5))
    for name, folder in folders.items():
        mv = ws.registry.register(folder, name)
        assert (mv.status == "validated") == (name in ("lr", "lgb")), (name, mv.status_reason)
        ws.registry.set_alias(name, "champion", mv.version, force=True)
    assert "artifact store unreachable" in ws.registry.get_version("badload", 1).status_reason
    catalog = ModelCatalog()
    for name in ("lr", "divides", "badhook"):
        catalog.add(name, ws.registry.load(name, 1), version=1, aliases=["champion"])
    app = create_app(ws, follow_interval=0)
    with TestClient(app, raise_server_exceptions=False, headers=auth_headers(ws)) as client:
        yield client, ws, folders, catalog
    ws.close()


# -- the fast path equals the frame path ----------------------------------------------------------
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
value = st.one_of(finite, st.integers(min_value=-10_000, max_value=10_000))
row = st.fixed_dictionaries({c: value for c in COLS})
row_with_gaps = st.fixed_dictionaries({c: st.one_of(value, st.none()) for c in COLS})


def _mlflow_json(folder, records):
    """MLflow's answer on the frame Shipyard builds: a JSON 30 in a double column is 30.0 (MLflow's
    schema check refuses an int64 column for a double input; Shipyard takes whole numbers there)."""
    frame = pd.DataFrame(records, columns=COLS).astype("float64")
    buffer = io.StringIO()
    predictions_to_json(mlflow_pyfunc.load_model(str(folder)).predict(frame), buffer)
    return json.loads(buffer.getvalue())["predictions"]


def _both(served: ServedModel, records: list[dict[str, Any]]) -> tuple[Any, Any]:
    model = served.model
    fast = served.invoke(records)  # the matrix path
    slow = mlflow_jsonable(model.predict_pyfunc(records))  # the typed-frame path
    return fast, slow


@pytest.mark.parametrize("name, rows", [("lr", row), ("lgb", row_with_gaps)])
def test_fast_path_equals_frame_path_and_mlflow(env, name, rows):
    _, ws, folders, _ = env
    served = ServedModel(name, "1", 1, ws.registry.load(name, 1))
    assert served.numeric and served.pyfunc_fast

    @given(st.lists(rows, min_size=1, max_size=12))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(records):
        fast, slow = _both(served, records)
        assert fast == slow
        assert fast == _mlflow_json(folders[name], records)
        predicted = served.predict(records)  # /predict: matrix path against the frame path
        assert predicted == to_python(served.model.predict(pd.DataFrame(records, columns=COLS).astype("float64")))

    check()


# -- bodies ---------------------------------------------------------------------------------------
ROW = {"income": 4.0, "debt": 2.5, "age": 40.0}


@pytest.mark.parametrize("name", ["badhook", "unsigned", "lr"])
@pytest.mark.parametrize(("body", "field"), [
    ({"dataframe_records": ["AAA"]}, "dataframe_records[0]"),
    ({"dataframe_records": [ROW, 7]}, "dataframe_records[1]"),
    ({"instances": [[1.0, 2.0, 3.0], [1.0, 2.0]]}, "instances[1]"),
    ({"inputs": [ROW, [1.0, 2.0, 3.0]]}, "inputs[1]"),
    ({"instances": [[1.0, 2.0, 3.0], "x"]}, "instances[1]"),
    ({"dataframe_split": {"columns": COLS, "data": [[1.0, 2.0]]}}, "dataframe_split.data[0]"),
    ({"records": [ROW, "x"]}, "records[1]"),
    ({"inputs": "x"}, "inputs"),
])
def test_malformed_batches_are_400_naming_the_item(env, name, body, field):
    client = env[0]
    for route in ("invocations", "predict"):
        r = client.post(f"/v1/models/{name}/champion/{route}", json=body)
        assert r.status_code == 400, (route, r.text)
        assert r.json()["error"]["details"]["field"] == field


@pytest.mark.parametrize("name", ["badhook", "lr"])
@pytest.mark.parametrize(("body", "csv", "field"), [
    ({"dataframe_records": [{**ROW, "age": "forty"}]}, None, "age"),
    ({"instances": [[4.0, "2.5", 40.0]]}, None, "debt"),
    ({"inputs": {"income": [1.0], "debt": [True], "age": [3.0]}}, None, "debt"),
    (None, b"income,debt,age\n4.0,2.5,forty\n", "age"),
    (None, b"income,debt,age\n4.0,2.5\n", "line 2"),
    ({"dataframe_records": [{"income": 4.0, "debt": 2.5}]}, None, "age"),
    ({"dataframe_records": [{**ROW, "zzz": 1}]}, None, "zzz"),
])
def test_signature_type_mismatches_are_400_naming_the_field(env, name, body, csv, field):
    client = env[0]
    for route in ("invocations", "predict"):
        if csv is not None:
            r = client.post(f"/v1/models/{name}/champion/{route}", content=csv, headers={"content-type": "text/csv"})
        else:
            r = client.post(f"/v1/models/{name}/champion/{route}", json=body)
        assert r.status_code == 400, (route, r.text)
        assert r.json()["error"]["details"]["field"] == field


def test_models_without_a_signature_take_every_format(env):
    client, _, folders, _ = env
    frame = pd.DataFrame([ROW, {"income": 1.0, "debt": 2.0, "age": 3}])
    expected = _mlflow_json(folders["unsigned"], frame.to_dict(orient="records"))
    records = frame.to_dict(orient="records")
    for body in ({"dataframe_records": records},
                 {"dataframe_split": {"columns": COLS, "data": [list(r.values()) for r in records]}},
                 {"instances": [list(r.values()) for r in records]}):
        r = client.post("/v1/models/unsigned/champion/invocations", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected
    r = client.post("/v1/models/unsigned/champion/invocations", content=frame.to_csv(index=False).encode(),
                    headers={"content-type": "text/csv"})
    assert r.json()["predictions"] == expected


# -- one error boundary around user code ----------------------------------------------------------
def _counted(client: TestClient, scene: str, version: str, code: str, status: int) -> float:
    text = client.get("/metrics").text
    errors = re.search(rf'shipyard_prediction_errors_total\{{arm="[^"]*",code="{code}",project="default",scene="{re.escape(scene)}",'
                       rf'version="{version}"\}} ([0-9.]+)', text)
    requests = re.search(rf'shipyard_predictions_total\{{arm="[^"]*",project="default",scene="{re.escape(scene)}",status="{status}",'
                         rf'version="{version}"\}} ([0-9.]+)', text)
    assert errors and requests, text[-2000:]
    assert float(errors.group(1)) == float(requests.group(1))
    return float(errors.group(1))


@pytest.mark.parametrize(("name", "ref", "version", "exception", "text"), [
    ("divides", "champion", 1, "ZeroDivisionError", "division by zero"),
    ("badhook", "champion", 1, "KeyError", "no_such_column"),
    ("badload", "champion", 1, "RuntimeError", "artifact store unreachable"),
])
def test_model_code_failures_are_named_and_counted(env, name, ref, version, exception, text):
    client = env[0]
    before = None
    for i, route in enumerate(("invocations", "predict")):
        r = client.post(f"/v1/models/{name}/{ref}/{route}", json={"dataframe_records": [ROW]})
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["code"] == "model_error" and err["code"] != "internal"
        assert err["message"].startswith(f"model {name!r} version {version}")
        assert exception in err["message"] and text in err["message"]
        assert err["details"]["model"] == name and err["details"]["version"] == version
        assert err["details"]["exception"] == exception
        count = _counted(client, f"model:{name}", str(version), "model_error", 500)
        assert before is None or count == before + 1
        before = count
        assert i in (0, 1)


def test_scene_steps_name_the_step_and_the_model(env):
    client, ws, _, catalog = env
    engine = ServingEngine(ws, models=catalog, features=RaisingFeatures())
    for scene, flow in {
        "hooked": [F.model("badhook", output="score", id="scorer")],
        "ruled": [F.rules([{"when": "income > 'x'", "then": "reject"}], id="policy")],
        "ondemand": [F.features("applicant", {"user_id": "user_id"}, id="lookup"),
                     F.model("lr", output="score", id="scorer")],
    }.items():
        inputs = {"user_id": "string"} if scene == "ondemand" else {c: "double" for c in COLS}
        apply_scene(ws, {"name": scene, "inputs": inputs, "flow": flow}, models=catalog,
                    features=engine.features)
    app = create_app(ws, engine=engine, follow_interval=0)
    with TestClient(app, raise_server_exceptions=False, headers=auth_headers(ws)) as scenes:
        cases = {"hooked": (ROW, "scorer", "KeyError"), "ruled": (ROW, "policy", "TypeError"),
                 "ondemand": ({"user_id": "u7"}, "lookup", "TypeError")}
        for scene, (record, step, exception) in cases.items():
            r = scenes.post(f"/v1/scenes/{scene}/predict", json=record)
            assert r.status_code == 500, r.text
            err = r.json()["error"]
            assert err["code"] == "model_error" and err["details"]["step"] == step
            assert err["details"]["exception"] == exception and exception in err["message"]
            assert err["details"]["scene"] == scene
            if scene == "hooked":
                assert err["details"]["model"] == "badhook" and err["details"]["version"] == 1
            assert _counted(scenes, scene, "1", "model_error", 500) == 1


def test_loaded_model_wraps_any_exception(env):
    model = env[3].load("divides", 1)
    with pytest.raises(ModelError, match="ZeroDivisionError") as info:
        model.predict_pyfunc([ROW])
    assert info.value.details["exception"] == "ZeroDivisionError"
