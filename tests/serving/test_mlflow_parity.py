"""/invocations side by side with real MLflow: every body format answers exactly what
``mlflow.pyfunc.load_model(<the same package>).predict(<the same frame>)`` gives, written as MLflow's
scoring server writes it (``predictions_to_json``) — values, int/float/str/bool types and shape —
for packages MLflow saved and packages Shipyard saved."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.server import create_app
from tests.conftest import auth_headers

pytest.importorskip("mlflow")
import mlflow.lightgbm  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.xgboost  # noqa: E402
from mlflow.pyfunc.scoring_server import predictions_to_json  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning")
NUMERIC = ["duration_in_month", "credit_amount", "age", "installment_rate"]


def credit_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "duration_in_month": rng.integers(4, 72, n),
        "credit_amount": rng.lognormal(8, 0.6, n).round(2),
        "age": rng.integers(19, 75, n),
        "installment_rate": rng.uniform(0.5, 4.0, n),
        "purpose": rng.choice(["car", "radio/tv", "education", "business"], n),
        "owns_home": rng.random(n) < 0.4,
    })


def target(X: pd.DataFrame) -> np.ndarray:
    logit = 0.04 * (X.duration_in_month - 20) + 0.0002 * (X.credit_amount - 3000) - 0.03 * (X.age - 35)
    return (logit + np.random.default_rng(1).normal(0, 0.5, len(X)) > 0).astype(int).to_numpy()


class MlflowFrameOut(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"per_month": model_input["credit_amount"] / model_input["duration_in_month"],
                             "band": np.where(model_input["age"] > 40, "senior", "junior")})


class MlflowDictOut(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return {"total": float(model_input["credit_amount"].sum()), "rows": int(len(model_input)),
                "ages": model_input["age"].to_numpy()}


class MlflowListOut(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [f"{p}:{d}" for p, d in zip(model_input["purpose"], model_input["duration_in_month"], strict=True)]


class ShipyardFrameOut(PythonModel):
    def predict(self, df):
        return pd.DataFrame({"per_month": df["credit_amount"] / df["duration_in_month"],
                             "high": df["credit_amount"] > 3000})


class ShipyardDictOut(PythonModel):
    def predict(self, df):
        return {"mean_age": float(df["age"].mean()), "durations": df["duration_in_month"].to_numpy()}


class ShipyardListOut(PythonModel):
    def predict(self, df):
        return [int(d) * 2 for d in df["duration_in_month"]]


def _packages(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (package folder, input columns)."""
    X = credit_frame(400, 0)
    y = target(X)
    Xn = X[NUMERIC]
    mixed = make_pipeline(
        ColumnTransformer([("purpose", OneHotEncoder(handle_unknown="ignore"), ["purpose"]),
                           ("numbers", StandardScaler(), NUMERIC)], remainder="passthrough"),
        LogisticRegression(max_iter=1000)).fit(X, y)
    fitted = {
        "clf": LogisticRegression(max_iter=1000).fit(Xn, y),
        "reg": Ridge().fit(Xn, X.credit_amount / X.duration_in_month),
        "pipe": make_pipeline(StandardScaler(), LogisticRegression()).fit(Xn, y),
        "mixed": mixed,
        "lgb": lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(Xn, y),
        "lgbreg": lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(Xn, X.age.astype(float)),
        "xgb": xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(Xn, y),
    }
    out: dict[str, tuple[Path, list[str]]] = {}
    reqs = ["scikit-learn"]
    for key, model in fitted.items():
        cols = list(X.columns) if key == "mixed" else NUMERIC
        example = X[cols].head(5)
        saver = (mlflow.lightgbm if key.startswith("lgb") else mlflow.xgboost if key == "xgb" else mlflow.sklearn)
        saver.save_model(model, str(root / f"ml_{key}"), input_example=example, pip_requirements=reqs)
        out[f"ml_{key}"] = (root / f"ml_{key}", cols)
        save_model(model, root / f"sy_{key}", input_example=example)
        out[f"sy_{key}"] = (root / f"sy_{key}", cols)
    for key, model in {"frame": MlflowFrameOut(), "dict": MlflowDictOut(), "list": MlflowListOut()}.items():
        mlflow.pyfunc.save_model(str(root / f"ml_py_{key}"), python_model=model, input_example=X.head(5),
                                 pip_requirements=reqs)
        out[f"ml_py_{key}"] = (root / f"ml_py_{key}", list(X.columns))
    for key, model in {"frame": ShipyardFrameOut(), "dict": ShipyardDictOut(), "list": ShipyardListOut()}.items():
        save_model(model, root / f"sy_py_{key}", input_example=X.head(5))
        out[f"sy_py_{key}"] = (root / f"sy_py_{key}", list(X.columns))
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    root = tmp_path_factory.mktemp("parity")
    packages = _packages(root / "packages")
    ws = Workspace(load_settings(root / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=5))
    for name, (folder, _) in packages.items():
        mv = ws.registry.register(folder, name)
        assert mv.status == "validated", (name, mv.status_reason)
        ws.registry.set_alias(name, "champion", mv.version, force=True)
    app = create_app(ws, follow_interval=0, single_model="ml_mixed@champion")
    with TestClient(app, headers=auth_headers(ws)) as client:
        yield client, packages
    ws.close()


def same(actual: Any, expected: Any, where: str = "$") -> None:
    """Equal values of the same JSON types (an int is not a float, a bool not a number)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), f"{where}: {actual!r} vs {expected!r}"
        for key in expected:
            same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} vs {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{where}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} vs {expected!r}"


def bodies(frame: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    records = frame.to_dict(orient="records")
    split = {"columns": list(frame.columns), "data": [list(r.values()) for r in records]}
    columns = {c: [r[c] for r in records] for c in frame.columns}
    as_json = {"dataframe_split": {"dataframe_split": split}, "dataframe_records": {"dataframe_records": records},
               "instances": {"instances": records}, "inputs": {"inputs": columns}}
    out = {k: (json.dumps(v).encode(), "application/json") for k, v in as_json.items()}
    out["csv"] = (frame.to_csv(index=False).encode(), "text/csv")
    return out


def mlflow_answer(folder: Path, frame: pd.DataFrame) -> Any:
    buffer = io.StringIO()
    predictions_to_json(mlflow.pyfunc.load_model(str(folder)).predict(frame), buffer)
    return json.loads(buffer.getvalue())


NAMES = [f"{who}_{key}" for who in ("ml", "sy") for key in
         ("clf", "reg", "pipe", "mixed", "lgb", "lgbreg", "xgb", "py_frame", "py_dict", "py_list")]


@pytest.mark.parametrize("name", NAMES)
def test_invocations_answer_what_mlflow_pyfunc_predicts(served, name):
    client, packages = served
    folder, cols = packages[name]
    frame = credit_frame(7, 42)[cols]
    expected = mlflow_answer(folder, frame)
    for fmt, (body, content_type) in bodies(frame).items():
        r = client.post(f"/v1/models/{name}/champion/invocations", content=body,
                        headers={"content-type": content_type})
        assert r.status_code == 200, (fmt, r.text)
        same(r.json(), expected, f"{name} {fmt}")
        assert r.headers["x-shipyard-model-version"] == "1"


def test_mlflow_classifier_gives_labels_and_shipyard_classifier_its_score(served):
    """The rule is the package's: MLflow's sklearn flavor says predict (labels), Shipyard's loader
    says the positive-class probability; /predict keeps Shipyard's score for both."""
    client, packages = served
    frame = credit_frame(5, 3)[NUMERIC]
    body = {"dataframe_records": frame.to_dict(orient="records")}
    labels = client.post("/v1/models/ml_clf/champion/invocations", json=body).json()["predictions"]
    assert set(labels) <= {0, 1} and all(type(v) is int for v in labels)
    scores = client.post("/v1/models/sy_clf/champion/invocations", json=body).json()["predictions"]
    assert all(type(v) is float and 0 < v < 1 for v in scores)
    model = mlflow.sklearn.load_model(str(packages["ml_clf"][0]))
    assert labels == model.predict(frame).tolist()
    np.testing.assert_allclose(scores, model.predict_proba(frame)[:, 1], rtol=1e-12)
    richer = client.post("/v1/models/ml_clf/champion/predict", json=body).json()["predictions"]
    np.testing.assert_allclose(richer, model.predict_proba(frame)[:, 1], rtol=1e-12)


def test_single_model_server_answers_like_mlflow(served):
    client, packages = served
    frame = credit_frame(6, 9)
    expected = mlflow_answer(packages["ml_mixed"][0], frame)
    for fmt, (body, content_type) in bodies(frame).items():
        r = client.post("/invocations", content=body, headers={"content-type": content_type})
        assert r.status_code == 200, (fmt, r.text)
        same(r.json(), expected, fmt)


def test_params_reach_the_package_as_mlflow_passes_them(served):
    """MLflow hands a model only the params its signature declares; a Shipyard package declares
    none, so ``labels`` is dropped there as here (the scores come back)."""
    client, packages = served
    frame = credit_frame(4, 5)[NUMERIC]
    body = {"dataframe_records": frame.to_dict(orient="records"), "params": {"labels": True}}
    r = client.post("/v1/models/sy_clf/champion/invocations", json=body)
    pyfunc = mlflow.pyfunc.load_model(str(packages["sy_clf"][0]))
    assert r.json()["predictions"] == pyfunc.predict(frame, params={"labels": True}).tolist()
    assert all(type(v) is float for v in r.json()["predictions"])
