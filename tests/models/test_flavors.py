"""Round trips for every flavor: saved, reloaded, and scored identically to the native model."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.errors import Forbidden
from shipyard.models import load_model, read_mlmodel, save_model
from shipyard.models.python_model import PythonModel


def _check_round_trip(loaded, X: pd.DataFrame, expected: np.ndarray, tol: float = 1e-12) -> None:
    got = loaded.predict(X)
    fast = loaded.predict_array(X[loaded.input_names].to_numpy())
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    np.testing.assert_array_equal(fast, got)
    one = loaded.predict(X.iloc[0].to_dict())
    np.testing.assert_allclose(one, got[:1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.predict_array(X[loaded.input_names].to_numpy()[0]), got[:1], rtol=0, atol=1e-12)
    # the expected output stored at save time reproduces on reload
    np.testing.assert_array_equal(loaded.predict(loaded.input_example), loaded.expected_output)


def test_sklearn_pipeline_skops(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    save_model(model, tmp_path / "m", input_example=X.head(5))
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "sklearn" and loaded.has_fast_path
    assert read_mlmodel(tmp_path / "m")["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert loaded.input_names == list(X.columns) and loaded.classes == [0, 1]
    _check_round_trip(loaded, X, model.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict(X, labels=True), model.predict(X))
    assert loaded.expected_output.shape == (5,)


def test_sklearn_pickle_needs_trust_and_signature_order(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y * 1.0)
    reordered = X[list(reversed(X.columns))]
    save_model(model, tmp_path / "m", input_example=reordered.head(3), serialization_format="pickle")
    with pytest.raises(Forbidden, match="model.pkl.*trusted=True"):
        load_model(tmp_path / "m")
    loaded = load_model(tmp_path / "m", trusted=True)
    assert loaded.input_names == list(reversed(X.columns)) and not loaded.is_classifier
    _check_round_trip(loaded, X, model.predict(X))


def test_sklearn_column_transformer_falls_back_to_frames(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    Xc = X.assign(region=np.where(X.age > 40, "north", "south"))
    model = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), list(X.columns)), ("cat", OneHotEncoder(), ["region"])]),
        LogisticRegression(),
    ).fit(Xc, y)
    save_model(model, tmp_path / "m", input_example=Xc.head(3))
    loaded = load_model(tmp_path / "m")
    assert not loaded.has_fast_path
    np.testing.assert_array_equal(loaded.predict(Xc), model.predict_proba(Xc)[:, 1])
    np.testing.assert_array_equal(loaded.predict(Xc.iloc[3].to_dict()), model.predict_proba(Xc.iloc[3:4])[:, 1])


def test_lightgbm_classifier_and_booster(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    clf = lgb.LGBMClassifier(n_estimators=40, verbose=-1, random_state=0).fit(X, y)
    save_model(clf, tmp_path / "clf", input_example=X.head(4))
    loaded = load_model(tmp_path / "clf")
    assert loaded.flavor == "lightgbm" and loaded.classes == [0, 1]
    assert (tmp_path / "clf" / "model.lgb").read_text().startswith("tree")
    _check_round_trip(loaded, X, clf.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict(X, labels=True), clf.predict(X))

    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, y * 2.0), num_boost_round=15)
    save_model(booster, tmp_path / "reg")
    reg = load_model(tmp_path / "reg")
    assert reg.input_names == list(X.columns) and not reg.is_classifier
    np.testing.assert_array_equal(reg.predict(X), booster.predict(X))
    np.testing.assert_array_equal(reg.predict_array(X.to_numpy()), booster.predict(X.to_numpy()))


def test_lightgbm_multiclass(tmp_path: Path, credit_data) -> None:
    X, _ = credit_data
    y3 = np.digitize(X.debt_ratio, [0.5, 1.0])
    clf = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y3)
    save_model(clf, tmp_path / "m", input_example=X.head(2))
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X, labels=True), clf.predict(X))
    assert loaded.output_names == ["proba_0", "proba_1", "proba_2"]


@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_xgboost_classifier(tmp_path: Path, credit_data, fmt: str) -> None:
    X, y = credit_data
    clf = xgb.XGBClassifier(n_estimators=30, max_depth=3).fit(X, y)
    save_model(clf, tmp_path / "m", input_example=X.head(3), model_format=fmt)
    assert (tmp_path / "m" / f"model.{fmt}").is_file()
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "xgboost" and loaded.classes == [0, 1]
    _check_round_trip(loaded, X, clf.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict(X, labels=True), clf.predict(X))


def test_xgboost_booster(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(X, y * 1.0), num_boost_round=10)
    save_model(booster, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.input_names == list(X.columns)
    np.testing.assert_array_equal(loaded.predict(X), booster.predict(xgb.DMatrix(X)))


def test_onnx_from_sklearn(tmp_path: Path, credit_data) -> None:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    X, y = credit_data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X.to_numpy(), y)
    onx = to_onnx(model, X.to_numpy()[:1].astype(np.float32))
    save_model(onx, tmp_path / "m", input_example=X.head(3))
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "onnx" and loaded.classes == [0, 1]
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: X.to_numpy().astype(np.float32)})[1]
    ref = np.array([[row[0], row[1]] for row in ref]) if isinstance(ref, list) else ref
    _check_round_trip(loaded, X, np.asarray(ref)[:, 1])
    # float32 ONNX agrees with the float64 sklearn model to float32 precision
    np.testing.assert_allclose(loaded.predict(X), model.predict_proba(X.to_numpy())[:, 1], atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X, labels=True), model.predict(X.to_numpy()))


class Scaled(PythonModel):
    """Hooks: preprocess adds a feature, predict scores it, postprocess rounds."""

    def load_context(self, context) -> None:
        self.weights = np.loadtxt(context.artifacts["weights"])

    def preprocess(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(burden=df["debt_ratio"] * df["income"])

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return df[["age", "burden"]].to_numpy() @ self.weights

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        return np.round(out, 3)


def test_python_model_hooks_and_artifacts(tmp_path: Path, credit_data) -> None:
    X, _ = credit_data
    weights = tmp_path / "w.txt"
    np.savetxt(weights, [0.5, 0.25])
    save_model(Scaled(), tmp_path / "m", input_example=X.head(3), artifacts={"weights": weights})
    with pytest.raises(Forbidden, match="python_model.pkl"):
        load_model(tmp_path / "m")
    loaded = load_model(tmp_path / "m", trusted=True)
    assert loaded.flavor == "python_model" and not loaded.has_fast_path
    expected = np.round(X.age.to_numpy() * 0.5 + (X.debt_ratio * X.income).to_numpy() * 0.25, 3)
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_array_equal(loaded.predict_array(X.to_numpy()), expected)
    np.testing.assert_array_equal(loaded.predict(X.iloc[2].to_dict()), expected[2:3])
    np.testing.assert_array_equal(loaded.expected_output, expected[:3])
