"""LightGBM's per-call predictors for the online path; the only module that uses LightGBM's
private names (``_InnerPredictor``, ``_LIB``, ``Booster._handle``).

``Booster.predict`` builds a predictor object and deep-copies its parameters on every call, and
scoring one row through it costs about twice what LightGBM's single-row C entry point costs (see
docs/benchmarks.md, "LightGBM single rows"). The private paths are used only on LightGBM versions
whose private names the tests checked (``PRIVATE_VERSIONS``), only when every name is there, and
only when they give the same numbers as ``Booster.predict`` on probe rows; otherwise, and with
``private=False``, the public ``Booster.predict(X, num_threads=1)`` does the work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

# The oldest and newest (major, minor) checked by tests/models/test_lightgbm_small_batch.py; a newer
# release uses the public path until the tests pass on it and this bound is raised.
PRIVATE_VERSIONS = ((4, 0), (4, 7))

Predict = Callable[[np.ndarray], np.ndarray]
# Up to this many trees a single-row prediction holds the GIL (about 10 µs for 300 trees here).
GIL_HELD_TREES = 1000


def private_allowed(version: str) -> bool:
    """Whether the private paths may be tried on this LightGBM version."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None:
        return False
    major_minor = (int(found.group(1)), int(found.group(2)))
    return PRIVATE_VERSIONS[0] <= major_minor <= PRIVATE_VERSIONS[1]


def _use_private(private: bool | None) -> bool:
    if private is False:
        return False
    import lightgbm

    return private_allowed(lightgbm.__version__)


def public_predictor(booster: Any) -> Predict:
    """``Booster.predict`` on one thread: thread start-up costs more than it saves on a few rows."""

    def predict(X: np.ndarray) -> np.ndarray:
        return booster.predict(X, num_threads=1)

    return predict


def small_batch_predictor(booster: Any, private: bool | None = None) -> Predict:
    """A predictor for a few rows: one reused ``_InnerPredictor`` (it shares the booster's handle
    and keeps no state between calls, so threads can share it), or the public fallback."""
    if not _use_private(private):
        return public_predictor(booster)
    try:
        from lightgbm.basic import _InnerPredictor

        inner = _InnerPredictor.from_booster(booster=booster, pred_parameter={"num_threads": 1})
        run = inner.predict
    except (ImportError, AttributeError, TypeError):
        return public_predictor(booster)

    def small(X: np.ndarray) -> np.ndarray:
        return run(data=X, start_iteration=0, num_iteration=booster.best_iteration, raw_score=False,
                   pred_leaf=False, pred_contrib=False, data_has_header=False, validate_features=False)

    try:  # the same call as booster.predict on a probe row, or not at all
        probe = np.zeros((1, booster.num_feature()), dtype=np.float64)
        if not np.array_equal(small(probe), booster.predict(probe, num_threads=1)):
            return public_predictor(booster)
    except Exception:  # noqa: BLE001 - any surprise of a private API means: use the public one
        return public_predictor(booster)
    return small


def single_row_predictor(booster: Any, private: bool | None = None) -> Predict:
    """A predictor for one row: LightGBM's single-row C entry point with its configuration
    prepared once per thread (LightGBM does not promise that one is safe to share) and an output
    buffer per call, or the public fallback."""
    if not _use_private(private):
        return public_predictor(booster)
    try:
        import ctypes
        import threading
        import weakref

        from lightgbm.basic import _C_API_DTYPE_FLOAT64, _C_API_PREDICT_NORMAL, _LIB, _c_str, _safe_call

        handle = booster._handle
        init, free = _LIB.LGBM_BoosterPredictForMatSingleRowFastInit, _LIB.LGBM_FastConfigFree
        run = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        if booster.num_trees() <= GIL_HELD_TREES:
            # One row through a few hundred trees takes a few µs: the call keeps the GIL (a PyDLL
            # function of the same library) rather than giving it up and then competing for it
            # again with the server's event loop; a larger model lets other threads run meanwhile.
            run = ctypes.PyDLL(_LIB._name).LGBM_BoosterPredictForMatSingleRowFast
            run.restype = ctypes.c_int
    except (ImportError, AttributeError):
        return public_predictor(booster)
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
                return public_predictor(booster)
    except Exception:  # noqa: BLE001 - any surprise of a private API means: use the public one
        return public_predictor(booster)
    if width > 1:
        return lambda X: one(X).reshape(1, width)
    return one
