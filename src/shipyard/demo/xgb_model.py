"""The demo's gradient-boosted model: every feature, categorical ones included, as its WOE from a
``Binner`` fitted on the training rows, then XGBoost.

It is logged as a :class:`~shipyard.models.python_model.PythonModel` referenced by class, with two
artifacts in open formats — the binning spec (JSON) and XGBoost's own model file — so it loads
without pickle, and serving applies the same bins the model was trained on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.models.python_model import PythonModel, PythonModelContext
from shipyard.risk.binning import Binner

if TYPE_CHECKING:
    from shipyard.models.log_model import LoggedModel

CLASS_REF = "shipyard.demo.xgb_model:WoeXGBoost"
PARAMS: dict[str, Any] = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.9}
BINNING: dict[str, Any] = {"method": "optimal", "max_bins": 6, "min_bin_share": 0.05}


class WoeXGBoost(PythonModel):
    """WOE of each feature (by name) -> XGBoost probability of bad."""

    classes = [0, 1]

    def __init__(self, binner: Binner | None = None, booster: Any = None) -> None:
        self.binner = binner
        self.booster = booster

    def load_context(self, context: PythonModelContext) -> None:
        from xgboost import Booster

        self.binner = Binner.from_spec(Path(context.artifacts["binning"]).read_text())
        self.booster = Booster(model_file=context.artifacts["booster"])

    def preprocess(self, df: pd.DataFrame) -> np.ndarray:
        return self.binner.transform_arrays({c: df[c] for c in self.binner.bins_}, len(df))

    def predict(self, woe: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(woe), dtype=np.float64)


def fit_woe_xgboost(X: pd.DataFrame, y: np.ndarray, random_state: int = 7) -> WoeXGBoost:
    """Bin every column of ``X`` against ``y`` and fit XGBoost on the WOE values."""
    from xgboost import XGBClassifier

    binner = Binner(**BINNING).fit(X, y)
    woe = binner.transform(X)
    booster = XGBClassifier(**PARAMS, random_state=random_state).fit(woe, y).get_booster()
    return WoeXGBoost(binner, booster)


def log_woe_xgboost(model: WoeXGBoost, input_example: pd.DataFrame, **log_options: Any) -> LoggedModel:
    """Log ``model`` by class reference with its two artifacts (see the module docstring)."""
    from shipyard.models.log_model import log_model

    with tempfile.TemporaryDirectory(prefix="shipyard-demo-xgb-") as tmp:
        spec = Path(tmp) / "binning.json"
        spec.write_text(model.binner.to_json())
        booster = Path(tmp) / "booster.json"
        model.booster.save_model(str(booster))
        return log_model(CLASS_REF, "model", artifacts={"binning": str(spec), "booster": str(booster)},
                         input_example=input_example, **log_options)
