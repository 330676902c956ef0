"""LightGBM flavor: ``Booster`` and the scikit-learn API (``LGBMClassifier``/``LGBMRegressor``).

Saved as LightGBM's native text model (``model.lgb``, no pickle) in a section with MLflow's keys
(``data``, ``model_class``, ``lgb_version``), so ``mlflow.lightgbm.load_model`` returns the
``Booster``. A scikit-learn wrapper's classes are kept in ``classes`` so Shipyard still knows it
is a classifier. Models MLflow saved with the scikit-learn API (``model.pkl`` pickle/cloudpickle
or ``model.skops``) load too; pickles only with ``trusted=True``.

Fast path: ``Booster.predict`` on the NumPy array with a cached column permutation, single-
threaded for small batches (thread start-up costs more than it saves on a few rows); single rows
and small batches go through the predictors of ``lightgbm_fast``, which hold the only uses of
LightGBM's private names behind a version check and fall back to ``Booster.predict``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import NotFound, require
from shipyard.models.flavors.base import LoadOptions, module_of, refuse_untrusted
from shipyard.models.flavors.lightgbm_fast import single_row_predictor, small_batch_predictor
from shipyard.models.loaded import LoadedModel

SMALL_BATCH = 64
BOOSTER_CLASS = "lightgbm.basic.Booster"


class LightGBMFlavor:
    name = "lightgbm"
    pip_requirements: tuple[str, ...] = ("lightgbm", "numpy")

    def matches(self, model: Any) -> bool:
        return module_of(model) == "lightgbm"

    def feature_names(self, model: Any) -> list[str] | None:
        booster = _booster(model)
        return list(booster.feature_name()) if booster is not None else None

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        lgb = require("lightgbm", "lightgbm")
        booster = _booster(model)
        if booster is None:
            raise NotFound("the LightGBM model is not fitted; fit it before saving")
        booster.save_model(str(path / "model.lgb"))
        section: dict[str, Any] = {
            "lgb_version": lgb.__version__,
            "data": "model.lgb",
            "model_class": BOOSTER_CLASS,
            "code": None,
            "fitted_class": f"{type(model).__module__}.{type(model).__name__}",
        }
        classes = getattr(model, "classes_", None) if not isinstance(model, lgb.Booster) else None
        if classes is not None:
            section["classes"] = np.asarray(classes).tolist()
        return section

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        lgb = require("lightgbm", "lightgbm")
        file = str(section.get("data") or "model.lgb")
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"model file {file!r} named in MLmodel is missing from {str(path)!r}; re-save or re-download the model",
                {"path": str(target), "file": file},
            )
        model_class = section.get("model_class", BOOSTER_CLASS)
        classes = section.get("classes")
        if model_class == BOOSTER_CLASS:
            booster = lgb.Booster(model_file=str(target))
            native: Any = booster
            if classes is None and _objective(target).startswith(("binary", "cross_entropy")):
                classes = [0, 1]
        else:  # a scikit-learn wrapper saved by MLflow
            fmt = section.get("serialization_format", "cloudpickle")
            if fmt == "skops":
                from shipyard.models.flavors.sklearn import _load_skops

                native = _load_skops(target, section, options)
            else:
                refuse_untrusted(path, file, options)
                with target.open("rb") as fh:
                    native = pickle.load(fh)  # noqa: S301 - trusted store (checked above)
            booster = native.booster_
            if hasattr(native, "classes_"):
                classes = np.asarray(native.classes_).tolist()
        return build_loaded(booster, native, classes, options.input_names, self.name)


def _booster(model: Any) -> Any:
    import lightgbm as lgb

    if isinstance(model, lgb.Booster):
        return model
    try:
        return model.booster_
    except Exception:  # noqa: BLE001 - unfitted wrappers raise their own error types
        return None


def _objective(target: Path) -> str:
    with target.open("r", encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(40), fh, strict=False):
            if line.startswith("objective="):
                return line.split("=", 1)[1].strip()
    return ""


def build_loaded(booster: Any, native: Any, classes: list[Any] | None, input_names: tuple[str, ...] | None,
                 flavor: str, private: bool | None = None) -> LoadedModel:
    """``private``: None uses LightGBM's private single-row path where ``lightgbm_fast`` allows it,
    False only its public API."""
    names = list(booster.feature_name())
    perm = None
    if input_names and list(input_names) != names and set(input_names) == set(names):
        order = list(input_names)
        perm = np.array([order.index(n) for n in names], dtype=np.intp)
    predict = booster.predict
    small = small_batch_predictor(booster, private)
    one_row = single_row_predictor(booster, private)

    def predict_array(X: np.ndarray) -> np.ndarray:
        if perm is not None:
            X = X[:, perm]
        if X.shape[0] == 1:
            return one_row(X)
        if X.shape[0] <= SMALL_BATCH:
            return small(X)
        return predict(X)

    return LoadedModel(
        flavor,
        native,
        predict_array=predict_array,
        classes=classes,
        feature_names=list(input_names) if input_names else names,
    )


FLAVOR = LightGBMFlavor()
