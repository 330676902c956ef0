"""The example credit-scorecard pipeline on German credit: registered model and lineage, a second run
that reuses every node, ``--from evaluate``, and a generated script that reproduces the test AUC.

Reference values: the registered model's probabilities scored by scikit-learn's ``roc_auc_score`` on
the test split the pipeline produced; the script is run with plain ``python`` in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from shipyard.config import init_project, load_settings
from shipyard.demo.pipeline import run_credit_pipeline
from shipyard.pipelines.types import decode
from shipyard.workspace import Workspace

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict]:
    project = init_project(tmp_path_factory.mktemp("credit") / "project")
    ws = Workspace(load_settings(project, user="alice", validation_subprocess=False, validation_timing_calls=20))
    lines: list[str] = []
    out = run_credit_pipeline(ws, project, say=lines.append)
    out["lines"] = lines
    yield ws, out
    ws.close()


def _value(ws: Workspace, record, node: str, output: str):  # noqa: ANN001, ANN202 - test helper
    ref = record.node(node).outputs[output]
    return decode(ref["type"], ws.artifacts.get_bytes(ref["path"], expected_sha256=ref["sha256"]))


def test_pipeline_registers_the_scorecard_with_its_lineage(credit: tuple[Workspace, dict]) -> None:
    ws, out = credit
    record = ws.pipelines.get_run(out["pipeline_run"])
    assert record.status == "succeeded" and all(n.status == "succeeded" for n in record.nodes)
    name, version = out["model"]["name"], out["model"]["version"]
    mv = ws.registry.get_version(name, version)
    assert mv.lineage == {"dataset_version": "german_credit@1"} and mv.status == "validated"
    assert mv.source_run_id == record.node("register").tracking_run_id
    readers = ws.data.lineage("german_credit")["readers"]
    assert f"{name}/{version}" in {r["id"] for r in readers["model_version"]}
    assert record.id in {r["id"] for r in readers["pipeline_run"]}
    # the evaluate node's AUC is the AUC of the registered model on the pipeline's test split
    test = _value(ws, record, "split", "test")
    features = _value(ws, record, "select", "features")
    card = ws.registry.load(name, version).native
    y = (test["creditability"] == "bad").astype(int)
    expected = roc_auc_score(y, card.predict_proba(test[features])[:, 1])
    assert out["test_auc"] == pytest.approx(expected, abs=1e-12)
    assert 0.65 < out["test_auc"] < 0.9 and 0.65 < out["xgb_test_auc"] < 0.9
    assert len(test) == 300 and set(features) <= set(test.columns)
    profile = ws.data.version("german_credit")
    assert profile.profile["overview"]["rows"] == 1000 and "iv" in profile.profile


def test_second_run_reuses_every_node_and_from_evaluate_reruns_what_follows(credit: tuple[Workspace, dict]) -> None:
    ws, out = credit
    again = ws.pipelines.run(out["document"], workers=1)
    assert again.status == "succeeded" and {n.status for n in again.nodes} == {"cached"}
    breakpoint_run = ws.pipelines.run(out["document"], start="evaluate", workers=1)
    statuses = {n.node_id: n.status for n in breakpoint_run.nodes}
    assert statuses["evaluate"] == "succeeded" and statuses["register"] == "succeeded"
    assert {statuses[n] for n in ("split", "scorecard", "select")} == {"reused"}
    assert {statuses[n] for n in ("data", "profile", "binning", "xgboost", "evaluate_xgboost")} == {"not_selected"}
    assert breakpoint_run.node("evaluate").metrics["test_auc"] == out["test_auc"]


def test_generated_script_reproduces_the_model_and_its_test_auc(credit: tuple[Workspace, dict], tmp_path: Path) -> None:
    ws, out = credit
    script = tmp_path / "credit_scorecard.py"
    script.write_text(ws.pipelines.codegen(out["document"]))
    compile(script.read_text(), str(script), "exec")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, str(script), "--output", str(tmp_path / "out")], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["evaluate"]["test_auc"] == pytest.approx(out["test_auc"], abs=1e-9)
    assert metrics["evaluate_xgboost"]["test_auc"] == pytest.approx(out["xgb_test_auc"], abs=1e-9)
    assert (tmp_path / "out" / "credit_scorecard_pipeline.pkl").stat().st_size > 0
    assert (tmp_path / "out" / "evaluate" / "report.html").exists()
    text = script.read_text()
    for needle in ("def node_split(", "def node_register(", "def main(", "def train_scorecard(",
                   "def _subset_binner(", "german_credit version 1"):
        assert needle in text, needle
