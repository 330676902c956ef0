"""MLflow interop both ways: Shipyard loads MLflow-saved models; mlflow.pyfunc loads Shipyard's."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shipyard.errors import Forbidden
from shipyard.models import load_model, save_model
from shipyard.models.python_model import PythonModel

pytest.importorskip("mlflow")
import mlflow.lightgbm  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.xgboost  # noqa: E402

REQS = ["scikit-learn"]


def close(actual, expected) -> None:
    """Equal to 1e-12 (BLAS may round the last bit differently for DataFrame vs array layouts)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=1e-12)  # explicit requirements keep mlflow from probing the environment


@pytest.fixture(scope="module")
def models(credit_data):
    X, y = credit_data
    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y),
        "xgb": xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y),
        "lgb": lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y),
    }


def test_mlflow_sklearn_skops(tmp_path: Path, credit_data, models) -> None:
    X, _ = credit_data
    mlflow.sklearn.save_model(models["logreg"], tmp_path / "m", input_example=X.head(2), pip_requirements=REQS)
    assert (tmp_path / "m" / "model.skops").is_file()
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "sklearn" and loaded.metadata["saved_by"] == "mlflow"
    assert loaded.input_names == list(X.columns)
    close(loaded.predict(X), models["logreg"].predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict_array(X.to_numpy()), loaded.predict(X))


def test_mlflow_sklearn_pickle(tmp_path: Path, credit_data, models) -> None:
    X, _ = credit_data
    mlflow.sklearn.save_model(models["forest"], tmp_path / "m", serialization_format="pickle", pip_requirements=REQS)
    with pytest.raises(Forbidden, match="model.pkl"):
        load_model(tmp_path / "m")
    loaded = load_model(tmp_path / "m", trusted=True)
    np.testing.assert_array_equal(loaded.predict(X), models["forest"].predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict(X, labels=True), models["forest"].predict(X))


def test_mlflow_xgboost(tmp_path: Path, credit_data, models) -> None:
    X, _ = credit_data
    mlflow.xgboost.save_model(models["xgb"], tmp_path / "m", pip_requirements=["xgboost"])
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "xgboost" and loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(X), models["xgb"].predict_proba(X)[:, 1])


def test_mlflow_lightgbm(tmp_path: Path, credit_data, models) -> None:
    X, y = credit_data
    mlflow.lightgbm.save_model(models["lgb"], tmp_path / "clf", pip_requirements=["lightgbm"])
    loaded = load_model(tmp_path / "clf", trusted=True)  # MLflow pickles scikit-learn-API models
    assert loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(X), models["lgb"].predict_proba(X)[:, 1])
    booster = models["lgb"].booster_
    mlflow.lightgbm.save_model(booster, tmp_path / "booster", pip_requirements=["lightgbm"])
    native = load_model(tmp_path / "booster")
    np.testing.assert_array_equal(native.predict(X), booster.predict(X.to_numpy()))


class AddOne(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["age"].to_numpy() * 2.0 + model_input["tenure"].to_numpy()


def test_mlflow_pyfunc_python_model(tmp_path: Path, credit_data) -> None:
    X, _ = credit_data
    mlflow.pyfunc.save_model(tmp_path / "m", python_model=AddOne(), input_example=X.head(2), pip_requirements=REQS)
    with pytest.raises(Forbidden):
        load_model(tmp_path / "m")
    loaded = load_model(tmp_path / "m", trusted=True)
    assert loaded.flavor == "mlflow_pyfunc"
    expected = X.age.to_numpy() * 2.0 + X.tenure.to_numpy()
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_array_equal(loaded.predict(X.iloc[5].to_dict()), expected[5:6])
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X), expected)


class Hooked(PythonModel):
    classes = [0, 1]

    def preprocess(self, df: pd.DataFrame) -> pd.DataFrame:
        return df[["debt_ratio", "late_payments"]]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-(df["debt_ratio"].to_numpy() + 0.5 * df["late_payments"].to_numpy() - 1)))


@pytest.mark.parametrize("kind", ["logreg", "xgb", "lgb", "hooked"])
def test_mlflow_pyfunc_loads_shipyard_models(tmp_path: Path, credit_data, models, kind: str) -> None:
    X, _ = credit_data
    model = Hooked() if kind == "hooked" else models[kind]
    save_model(model, tmp_path / "m", input_example=X.head(3))
    shipyard_out = load_model(tmp_path / "m", trusted=True).predict(X)
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == "shipyard.models.pyfunc_loader"
    close(pyfunc.predict(X), shipyard_out)
    close(pyfunc.predict(X.head(4), params=None), shipyard_out[:4])


def test_mlflow_native_loader_reads_shipyard_sklearn(tmp_path: Path, credit_data, models) -> None:
    X, _ = credit_data
    save_model(models["logreg"], tmp_path / "m", input_example=X.head(2))
    again = mlflow.sklearn.load_model(str(tmp_path / "m"))
    close(again.predict_proba(X), models["logreg"].predict_proba(X))
