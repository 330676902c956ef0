"""`shipyard init` writes a commented example into features/, scenes/ and pipelines/.

Commented, they define nothing (a fresh project applies no change); uncommented, each is valid:
the feature definitions plan, the scene compiles against the feature service and a model, the
pipeline validates.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from shipyard.cli import main
from shipyard.config import EXAMPLES, load_settings
from shipyard.workspace import Workspace


def uncommented(text: str) -> str:
    """The example's code: the lines after the first blank comment line, without their '# '."""
    lines = text.splitlines()
    body = lines[lines.index("#") + 1:]
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body) + "\n"


def test_init_writes_commented_examples_that_define_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "p"
    for relative, text in EXAMPLES.items():
        written = (root / relative).read_text()
        assert written == text and all(not line or line.startswith("#") for line in written.splitlines())
        assert relative in result.output
    ws = Workspace(load_settings(root, user="alice"))
    try:
        assert ws.features.plan(root / "features").changes == []
    finally:
        ws.close()


def test_init_leaves_existing_folders_alone(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "mine.py").write_text("x = 1\n")
    CliRunner().invoke(main, ["init", str(tmp_path)])
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["mine.py"]
    assert (tmp_path / "scenes" / "example.yaml").exists()


def test_uncommented_examples_are_valid(tmp_path: Path) -> None:
    from shipyard.models import load_model, save_model
    from shipyard.serving import ModelCatalog, compile_scene
    from shipyard.serving.sources import StoreFeatures

    root = tmp_path / "p"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    (root / "features" / "example.py").write_text(uncommented(EXAMPLES["features/example.py"]))
    (root / "data").mkdir()
    now = dt.datetime.now(dt.UTC)
    pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [now, now], "amount_30d": [100.0, 50.0],
                  "n_tx": [3, 1]}).to_parquet(root / "data" / "customer_stats.parquet")
    ws = Workspace(load_settings(root, user="alice"))
    try:
        plan = ws.features.apply(root / "features")
        assert {c.name for c in plan.changes} >= {"customer", "customer_stats", "ratios", "risk"}

        scene = yaml.safe_load(uncommented(EXAMPLES["scenes/example.yaml"]))
        X = pd.DataFrame({"amount_30d": [100.0, 50.0, 20.0, 80.0], "n_tx": [3, 1, 2, 5],
                          "amount_ratio": [1.0, 2.0, 0.5, 3.0]})
        model = LogisticRegression().fit(X, np.array([0, 1, 0, 1]))
        models = ModelCatalog()
        models.add("credit", load_model(save_model(model, tmp_path / "m", input_example=X)), aliases=["champion"])
        compiled = compile_scene(scene, 1, models=models, features=StoreFeatures(ws))
        assert compiled.outputs == ["decision", "pd"]

        pipeline = yaml.safe_load(uncommented(EXAMPLES["pipelines/example.yaml"]))
        bound = ws.pipelines.validate(pipeline, {})
        assert bound.order[0] == "data" and "evaluate" in bound.order
    finally:
        ws.close()
