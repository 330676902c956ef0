"""A new flavor plugs in with one FLAVORS entry (the way scorecard and ruleset will)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.models import FLAVORS, LoadedModel, LoadOptions, load_model, read_mlmodel, save_model
from shipyard.models.flavors.base import Flavor, get_flavor


class Linear:
    """A toy JSON-spec model: score = w · x + b."""

    def __init__(self, names: list[str], weights: list[float], bias: float) -> None:
        self.names, self.weights, self.bias = names, weights, bias


class LinearFlavor:
    name = "toy_linear"
    pip_requirements: tuple[str, ...] = ("numpy",)

    def matches(self, model: Any) -> bool:
        return isinstance(model, Linear)

    def feature_names(self, model: Any) -> list[str] | None:
        return model.names

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        (path / "linear.json").write_text(json.dumps(vars(model)))
        return {"data": "linear.json"}

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        spec = json.loads((path / section["data"]).read_text())
        w, b = np.array(spec["weights"]), spec["bias"]
        return LoadedModel(self.name, spec, predict_array=lambda X: X @ w + b, feature_names=spec["names"])


FLAVOR = LinearFlavor()


@pytest.fixture()
def registered(monkeypatch):
    monkeypatch.setitem(FLAVORS, "toy_linear", __name__)


def test_registered_flavor_saves_detects_and_loads(tmp_path: Path, registered) -> None:
    assert isinstance(get_flavor("toy_linear"), Flavor)
    model = Linear(["a", "b"], [2.0, -1.0], 0.5)
    save_model(model, tmp_path / "m", input_example={"a": 1.0, "b": 3.0})
    assert read_mlmodel(tmp_path / "m")["flavors"]["toy_linear"] == {"data": "linear.json"}
    loaded = load_model(tmp_path / "m")
    assert loaded.flavor == "toy_linear" and loaded.input_names == ["a", "b"]
    assert loaded.predict({"b": 3.0, "a": 1.0}).tolist() == [-0.5]
    assert loaded.predict_array(np.array([[1.0, 3.0], [0.0, 0.0]])).tolist() == [-0.5, 0.5]
    assert loaded.expected_output.tolist() == [-0.5]
