"""Scorecard flavor: a :class:`shipyard.risk.scorecard.Scorecard` saved as its JSON spec.

Saved as ``scorecard.json`` (no pickle, so it loads without ``trusted``). ``predict`` returns the
total points of each row (the number risk teams cut on); ``native`` is the ``Scorecard`` itself for
``predict_proba`` and the points table. The fast path takes a 2-D array in ``input_names`` order;
categorical variables are passed as text (an object array), numeric ones as numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import NotFound
from shipyard.models.flavors.base import LoadOptions
from shipyard.models.loaded import LoadedModel


class ScorecardFlavor:
    name = "scorecard"
    pip_requirements: tuple[str, ...] = ("numpy", "pandas", "scikit-learn")

    def matches(self, model: Any) -> bool:
        return type(model).__module__ == "shipyard.risk.scorecard" and type(model).__name__ == "Scorecard"

    def feature_names(self, model: Any) -> list[str] | None:
        return [str(n) for n in model.feature_names_in_]

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        spec = model.to_spec()
        (path / "scorecard.json").write_text(json.dumps(spec))
        return {"data": "scorecard.json", "spec_format": spec["format"], "spec_version": spec["version"],
                "code": None}

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        from shipyard.risk.scorecard import Scorecard

        file = str(section.get("data") or "scorecard.json")
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"scorecard file {file!r} named in MLmodel is missing from {str(path)!r}; re-save the model",
                {"path": str(target), "file": file},
            )
        card = Scorecard.from_spec(target.read_text())
        names = list(options.input_names) if options.input_names else [str(n) for n in card.feature_names_in_]
        pos = {n: names.index(n) for n in card.feature_names_in_}

        def predict_array(X: np.ndarray) -> np.ndarray:
            return card.score_arrays({n: X[:, j] for n, j in pos.items()})

        return LoadedModel(self.name, card, predict_array=predict_array, feature_names=names)


FLAVOR = ScorecardFlavor()
