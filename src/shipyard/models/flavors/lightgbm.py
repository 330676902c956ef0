"""LightGBM flavor: ``Booster`` and the scikit-learn API (``LGBMClassifier``/``LGBMRegressor``).

Saved as LightGBM's native text model (``model.lgb``, no pickle) in a section with MLflow's keys
(``data``, ``model_class``, ``lgb_version``), so ``mlflow.lightgbm.load_model`` returns the
``Booster``. A scikit-learn wrapper's classes are kept in ``classes`` so Shipyard still knows it
is a classifier. Models MLflow saved with the scikit-learn API (``model.pkl`` pickle/cloudpickle
or ``model.skops``) load too; pickles only with ``trusted=True``.

Fast path: ``Booster.predict`` on the NumPy array with a cached column permutation, single-
threaded for small batches (thread start-up costs more than it saves on a few rows).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import NotFound, require
from shipyard.models.flavors.base import LoadOptions, module_of, refuse_untrusted
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


def build_loaded(booster: Any, native: Any, classes: list[Any] | None, input_names: tuple[str, ...] | None, flavor: str) -> LoadedModel:
    names = list(booster.feature_name())
    perm = None
    if input_names and list(input_names) != names and set(input_names) == set(names):
        order = list(input_names)
        perm = np.array([order.index(n) for n in names], dtype=np.intp)
    predict = booster.predict
    small = _single_thread_predictor(booster)
    one_row = _single_row_predictor(booster)

    def predict_array(X: np.ndarray) -> np.ndarray:
        if perm is not None:
            X = X[:, perm]
        if X.shape[0] == 1 and one_row is not None:
            return one_row(X)
        if X.shape[0] <= SMALL_BATCH:
            if small is not None:
                return small(X)
            return predict(X, num_threads=1)
        return predict(X)

    return LoadedModel(
        flavor,
        native,
        predict_array=predict_array,
        classes=classes,
        feature_names=list(input_names) if input_names else names,
    )


def _single_thread_predictor(booster: Any) -> Any:
    """``booster.predict(X, num_threads=1)`` without its per-call setup.

    ``Booster.predict`` builds a predictor object (and deep-copies its parameters) on every call,
    which costs about half as much again as scoring one row with 300 trees. For small batches (the
    online path) one predictor is built here and reused; it shares the booster's handle and keeps
    no state between calls, so threads can share it. Returns None when this LightGBM has no such
    predictor (the caller then uses ``booster.predict``).
    """
    try:
        from lightgbm.basic import _InnerPredictor

        inner = _InnerPredictor.from_booster(booster=booster, pred_parameter={"num_threads": 1})
        run = inner.predict
    except (ImportError, AttributeError, TypeError):
        return None

    def small(X: np.ndarray) -> np.ndarray:
        return run(data=X, start_iteration=0, num_iteration=booster.best_iteration, raw_score=False,
                   pred_leaf=False, pred_contrib=False, data_has_header=False, validate_features=False)

    try:  # the same call as booster.predict on a probe row, or not at all
        probe = np.zeros((1, booster.num_feature()), dtype=np.float64)
        if not np.array_equal(small(probe), booster.predict(probe, num_threads=1)):
            return None
    except Exception:
        return None
    return small


def _single_row_predictor(booster: Any) -> Any:
    """One row through LightGBM's single-row C entry point, its configuration prepared once.

    The online path scores one row per request; ``_InnerPredictor.predict`` still converts and
    checks the matrix and sizes its output on every call (67-84 us against 18-34 us here for 300
    trees). Each thread gets its own prepared configuration (LightGBM does not promise that one is
    safe to share) and each call its own output buffer. Returns None when this LightGBM lacks the
    entry point or disagrees with ``booster.predict`` on probe rows.
    """
    try:
        import ctypes
        import threading
        import weakref

        from lightgbm.basic import _C_API_DTYPE_FLOAT64, _C_API_PREDICT_NORMAL, _LIB, _c_str, _safe_call

        handle = booster._handle
        init, run, free = (_LIB.LGBM_BoosterPredictForMatSingleRowFastInit,
                           _LIB.LGBM_BoosterPredictForMatSingleRowFast, _LIB.LGBM_FastConfigFree)
    except (ImportError, AttributeError):
        return None
    ncol = booster.num_feature()
    num_iteration = booster.best_iteration or -1
    width = booster.num_model_per_iteration()
    local = threading.local()

    def config() -> Any:
        found = getattr(local, "config", None)
        if found is None:
            found = ctypes.c_void_p()
            _safe_call(init(handle, ctypes.c_int(_C_API_PREDICT_NORMAL), ctypes.c_int(0),
                            ctypes.c_int(num_iteration), ctypes.c_int(_C_API_DTYPE_FLOAT64),
                            ctypes.c_int32(ncol), _c_str("num_threads=1"), ctypes.byref(found)))
            weakref.finalize(local, free, found)  # freed when the loaded model is dropped
            local.config = found
        return found

    out_len = ctypes.c_int64(0)  # written by LightGBM, never read: one for all threads is fine
    out_len_ref = ctypes.byref(out_len)
    void_p = ctypes.c_void_p

    def one(X: np.ndarray) -> np.ndarray:
        row = X[0] if X.dtype == np.float64 and X.flags.c_contiguous else np.ascontiguousarray(X[0], np.float64)
        out = np.empty(width, dtype=np.float64)
        _safe_call(run(config(), void_p(row.ctypes.data), out_len_ref, void_p(out.ctypes.data)))
        return out

    try:  # the same numbers as booster.predict on probe rows, or not used at all
        probes = np.random.default_rng(0).normal(size=(4, ncol))
        for probe in probes:
            want = booster.predict(probe[None, :], num_threads=1)
            got = one(probe[None, :])
            if not np.array_equal(got.reshape(want.shape), want):
                return None
    except Exception:
        return None
    if width > 1:
        return lambda X: one(X).reshape(1, width)
    return one


FLAVOR = LightGBMFlavor()
