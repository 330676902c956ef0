"""Validation checks: output comparison, timing, a real separate process, MLflow-saved models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shipyard.config import load_settings
from shipyard.models import save_model
from shipyard.models.validation import check_model_dir, compare_outputs
from shipyard.workspace import Workspace


def test_compare_outputs_names_the_first_differing_row():
    expected = np.array([0.1, 0.2, 0.3, 0.52, 0.7])
    actual = np.array([0.1, 0.2, 0.3, 0.41, 0.9])
    assert compare_outputs(actual, expected, 1e-6, "prediction differs") == "prediction differs at row 3: 0.41 vs 0.52"
    assert compare_outputs(expected + 1e-9, expected, 1e-6, "x") is None
    assert compare_outputs(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 1e-6, "x") is None
    assert compare_outputs(np.array([1, 2]), np.array([1, 2, 3]), 1e-6, "x") == (
        "x: output shape (2,) differs from the recorded shape (3,)")
    matrix = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert compare_outputs(matrix[:, ::-1], matrix, 1e-6, "p") == "p at row 0, column 0: 0.8 vs 0.2"
    assert compare_outputs(np.array(["a", "b"]), np.array(["a", "c"]), 0, "labels") == "labels at row 1: 'b' vs 'c'"


def test_check_model_dir_records_checks_and_latency(fitted, tmp_path):
    clf, X = fitted
    folder = save_model(clf, tmp_path / "m", input_example=X.head(6))
    result = check_model_dir(folder, tolerance=1e-9, timing_calls=50)
    assert result.ok, result.reason
    assert result.report["example_rows"] == 6 and result.report["fast_path"] is True
    latency = result.report["latency_ms"]
    assert latency["calls"] == 50 and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert latency["mean"] <= latency["max"]


def test_validation_runs_in_a_separate_process(fitted, tmp_path):
    clf, X = fitted
    folder = save_model(clf, tmp_path / "m", input_example=X.head(5))
    ws = Workspace(load_settings(tmp_path / "project", user="alice", validation_subprocess=True,
                                 validation_timing_calls=30))
    try:
        mv = ws.registry.register(folder, "credit")
        assert mv.status == "validating" and mv.validation["mode"] == "subprocess"
        done = ws.registry.wait_for_validation("credit", 1, timeout=120)
        assert done.status == "validated", done.status_reason
        assert done.validation["pid"] != os.getpid()
        assert done.validation["latency_ms"]["calls"] == 30
        assert done.validation["attempt"] == mv.validation["attempt"]
        log = (ws.settings.state_dir / "logs" / "validation-credit-1.log").read_text()
        assert "model credit version 1: validated" in log
    finally:
        ws.close()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
def test_mlflow_saved_sklearn_model_registers_validates_and_predicts(sqlite_workspace, fitted, tmp_path):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    clf, X = fitted
    path = tmp_path / "mlflow_model"
    mlflow_sklearn.save_model(clf, str(path), input_example=X.head(5))
    reg = sqlite_workspace.registry
    mv = reg.register(path, "mlflow_credit")
    assert mv.flavor == "sklearn"
    assert mv.status == "validated", mv.status_reason
    assert "baseline" in mv.validation["expected_output"]
    np.testing.assert_allclose(mv.validation["baseline_output"], clf.predict_proba(X.head(5))[:, 1], rtol=1e-12)
    model = reg.load("mlflow_credit", 1)
    np.testing.assert_allclose(model.predict(X.head(40)), clf.predict_proba(X.head(40))[:, 1], rtol=1e-12)


def test_s3_register_and_load(s3_bucket, fitted, tmp_path):
    root, options = s3_bucket
    clf, X = fitted
    folder = save_model(clf, tmp_path / "m", input_example=X.head(5))
    ws = Workspace(load_settings(tmp_path / "project", artifact_root=root, artifact_options=options, user="alice",
                                 validation_subprocess=False, validation_timing_calls=10))
    try:
        mv = ws.registry.register(folder, "credit")
        assert mv.status == "validated", mv.status_reason
        assert mv.artifact_uri == f"{root}/models/credit/1"
        assert ws.artifacts.list("models/credit/1")
        model = ws.registry.load("credit", 1)
        np.testing.assert_allclose(model.predict(X.head(20)), clf.predict_proba(X.head(20))[:, 1], rtol=1e-12)
        cached = Path(model.path)
        assert cached.is_relative_to(ws.settings.state_dir / "cache")
        out = ws.registry.download("credit", 1, tmp_path / "dl")
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in folder.iterdir())
    finally:
        ws.close()
