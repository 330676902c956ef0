"""Batch scoring (same path as online), the CLI, and the remote client."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.serving import ServingEngine, apply_scene
from shipyard.serving import flow as F
from shipyard.serving.batch import score_file
from tests.serving.conftest import make_data, register

SCENE_YAML = """
name: credit
description: score and decide
inputs: {income: double, debt: double, age: double, note: "string?"}
outputs: [score, decision]
flow:
  - {type: model, id: scorer, model: credit, ref: champion, output: score}
  - type: rules
    id: policy
    output: decision
    rules:
      - {name: high, when: "score > 0.6", then: reject}
    default: approve
"""


@pytest.fixture
def ws(sqlite_workspace, saved_models):
    register(sqlite_workspace, saved_models["lr_a"], "credit")
    return sqlite_workspace


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_score_file_matches_online(ws, tmp_path, loaded, suffix):
    X, _ = make_data(n=250, seed=3)
    X["note"] = "2024-02-01"
    src = tmp_path / f"in{suffix}"
    X.to_parquet(src) if suffix == ".parquet" else X.to_csv(src, index=False)
    apply_scene(ws, {"name": "credit", "inputs": {"income": "double", "debt": "double", "age": "double",
                                                  "note": "string?"},
                     "flow": [F.model("credit", output="score")]})
    engine = ServingEngine(ws)
    seen = []
    out = tmp_path / f"out{suffix}"
    assert score_file(engine, src, out, scene="credit", chunk_size=100, progress=seen.append) == 250
    assert seen == [100, 100, 50]
    result = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    online = [engine.predict_scene("credit", [r], single=True)["outputs"]["score"]
              for r in X.head(5).to_dict(orient="records")]
    np.testing.assert_allclose(result["score"].head(5), online, rtol=1e-12)
    assert (result["note"] == "2024-02-01").all()
    out2 = tmp_path / f"model{suffix}"
    score_file(engine, src, out2, model="credit@champion")
    model_out = pd.read_parquet(out2) if suffix == ".parquet" else pd.read_csv(out2)
    np.testing.assert_allclose(model_out["prediction"], loaded["lr_a"].predict_array(
        X[["income", "debt", "age"]].to_numpy()), rtol=1e-10)


def test_cli_apply_list_show_and_score(ws, tmp_path):
    scene_file = tmp_path / "credit.yaml"
    scene_file.write_text(SCENE_YAML)
    runner = CliRunner()
    env = {"SHIPYARD_PROJECT_DIR": str(ws.settings.project_dir)}
    r = runner.invoke(main, ["scenes", "apply", str(scene_file)], env=env)
    assert r.exit_code == 0, r.output
    assert "scene credit version 1" in r.output
    r = runner.invoke(main, ["scenes", "apply", str(scene_file)], env=env)
    assert "version 1" in r.output  # unchanged document: no new version
    scene_file.write_text(SCENE_YAML.replace("0.6", "0.7"))
    assert "version 2" in runner.invoke(main, ["scenes", "apply", str(scene_file), "-m", "tighter"], env=env).output
    assert "credit\tv2" in runner.invoke(main, ["scenes", "list"], env=env).output
    shown = runner.invoke(main, ["scenes", "show", "credit", "--version", "1"], env=env).output
    assert '"version": 1' in shown and "0.6" in shown
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENE_YAML.replace("model: credit", "model: nope"))
    r = runner.invoke(main, ["scenes", "apply", str(bad)], env=env)
    assert r.exit_code == 1 and "step 'scorer'" in r.output and "nope" in r.output
    X, _ = make_data(n=30)
    X.to_csv(tmp_path / "in.csv", index=False)
    r = runner.invoke(main, ["score", "--scene", "credit", str(tmp_path / "in.csv"), str(tmp_path / "out.parquet")],
                      env=env)
    assert r.exit_code == 0, r.output
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 30 and set(out["decision"]) <= {"approve", "reject"}


def test_remote_client(ws, live_server):
    from shipyard.client import Client
    from shipyard.errors import SchemaMismatch
    from shipyard.server import create_app

    server = live_server(create_app(ws, follow_interval=0))
    import yaml

    with Client(server.url, token=server.headers["Authorization"][7:]) as client:
        applied = client.scenes.apply(yaml.safe_load(SCENE_YAML))
        assert applied["version"] == 1
        assert [s["name"] for s in client.scenes.list()] == ["credit"]
        body = client.scenes.predict("credit", {"income": 4.0, "debt": 2.5, "age": 40.0})
        assert body["outputs"]["decision"] in ("approve", "reject") and body["version"] == 1
        assert len(client.scenes.predict("credit", records=[{"income": 1.0, "debt": 1.0, "age": 30.0}] * 3)
                   ["outputs"]) == 3
        assert client.scenes.predict_model("credit", "champion", {"income": 4.0, "debt": 2.5, "age": 40.0}) == \
            body["outputs"]["score"]
        with pytest.raises(SchemaMismatch, match="'age'"):
            client.scenes.predict("credit", {"income": 4.0, "debt": 2.5})


@pytest.mark.spark
@pytest.mark.skipif(os.environ.get("SHIPYARD_TEST_SPARK") != "1", reason="set SHIPYARD_TEST_SPARK=1")
def test_spark_udf_matches_score_file(ws, saved_models, tmp_path, monkeypatch):
    """The Spark pandas-UDF path gives exactly the values ``shipyard score`` writes for the same rows."""
    import sys

    from pyspark.sql import SparkSession

    from shipyard.serving.batch import spark_udf

    X, _ = make_data(n=300, seed=5)
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    X.to_parquet(src)
    assert score_file(ServingEngine(ws), src, out, model="credit@champion", chunk_size=128) == 300
    expected = pd.read_parquet(out)["prediction"].to_numpy()

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[1]").appName("shipyard-test")
             .config("spark.sql.shuffle.partitions", "1").config("spark.default.parallelism", "1")
             .config("spark.ui.enabled", "false").config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "128").config("spark.driver.memory", "512m")
             .getOrCreate())
    try:
        df = spark.createDataFrame(X.assign(row=range(len(X)))).repartition(2)
        udf = spark_udf(saved_models["lr_a"])
        scored = df.withColumn("score", udf("income", "debt", "age")).toPandas().sort_values("row")
    finally:
        spark.stop()
    assert len(scored) == 300
    np.testing.assert_array_equal(scored["score"].to_numpy(), expected)
    np.testing.assert_array_equal(scored[["income", "debt", "age"]].to_numpy(), X.to_numpy())
