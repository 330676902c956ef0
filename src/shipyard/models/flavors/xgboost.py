"""XGBoost flavor: ``Booster`` and the scikit-learn API (``XGBClassifier``, ``XGBRegressor``, ...).

Saved in XGBoost's own format (``model.ubj`` by default, ``model_format="json"`` for JSON; never
pickle) in a section with MLflow's keys (``data``, ``model_class``, ``model_format``,
``xgb_version``), so either tool loads the other's files.

Fast path: ``Booster.inplace_predict`` on the NumPy array (no DMatrix), with a cached column
permutation and the iteration range the scikit-learn wrapper would use (early stopping).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput, NotFound, require
from shipyard.models.flavors.base import LoadOptions, module_of
from shipyard.models.loaded import LoadedModel

BOOSTER_CLASS = "xgboost.core.Booster"


class XGBoostFlavor:
    name = "xgboost"
    pip_requirements: tuple[str, ...] = ("xgboost", "numpy")

    def matches(self, model: Any) -> bool:
        return module_of(model) == "xgboost"

    def feature_names(self, model: Any) -> list[str] | None:
        booster = model if type(model).__name__ == "Booster" else model.get_booster()
        return list(booster.feature_names) if booster.feature_names else None

    def save(self, model: Any, path: Path, *, model_format: str = "ubj", **_: Any) -> dict[str, Any]:
        xgb = require("xgboost", "xgboost")
        if model_format not in ("ubj", "json"):
            raise InvalidInput(f"model_format must be 'ubj' or 'json', not {model_format!r}")
        file = f"model.{model_format}"
        model.save_model(str(path / file))
        return {
            "xgb_version": xgb.__version__,
            "data": file,
            "model_class": f"{type(model).__module__}.{type(model).__name__}",
            "model_format": model_format,
            "code": None,
        }

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        require("xgboost", "xgboost")
        file = str(section.get("data") or "model.ubj")
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"model file {file!r} named in MLmodel is missing from {str(path)!r}; re-save or re-download the model",
                {"path": str(target), "file": file},
            )
        class_path = str(section.get("model_class") or BOOSTER_CLASS)
        module, _, name = class_path.rpartition(".")
        if not module.startswith("xgboost"):
            raise InvalidInput(f"model_class {class_path!r} is not an XGBoost class; the MLmodel is corrupt")
        model = getattr(importlib.import_module(module), name)()
        model.load_model(str(target))
        if class_path == BOOSTER_CLASS:
            booster, classes = model, None
            iteration_range = (0, 0)
        else:
            booster = model.get_booster()
            classes = np.asarray(model.classes_).tolist() if hasattr(model, "classes_") else None
            best = getattr(model, "best_iteration", None)
            iteration_range = (0, best + 1) if best is not None and _early_stopped(booster) else (0, 0)
        return build_loaded(booster, model, classes, iteration_range, options.input_names, self.name)


def _early_stopped(booster: Any) -> bool:
    return booster.attr("best_iteration") is not None


def build_loaded(
    booster: Any,
    native: Any,
    classes: list[Any] | None,
    iteration_range: tuple[int, int],
    input_names: tuple[str, ...] | None,
    flavor: str,
) -> LoadedModel:
    names = list(booster.feature_names or [])
    perm = None
    if input_names and names and list(input_names) != names and set(input_names) == set(names):
        order = list(input_names)
        perm = np.array([order.index(n) for n in names], dtype=np.intp)
    inplace = booster.inplace_predict

    def predict_array(X: np.ndarray) -> np.ndarray:
        if perm is not None:
            X = X[:, perm]
        return inplace(X, iteration_range=iteration_range, validate_features=False)

    return LoadedModel(
        flavor,
        native,
        predict_array=predict_array,
        classes=classes,
        feature_names=list(input_names) if input_names else (names or None),
    )


FLAVOR = XGBoostFlavor()
