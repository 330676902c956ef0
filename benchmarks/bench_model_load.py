"""Model load + single-row predict: Shipyard's fast path vs ``mlflow.pyfunc``.

The same LightGBM model (300 trees, 30 features, binary, seeded data) is saved once by
``shipyard.models.save_model`` and once by ``mlflow.lightgbm.save_model``. Each side is timed on:
loading the directory (median of a few fresh loads), and N single-row predictions — Shipyard
through ``LoadedModel.predict_array`` (NumPy row in signature order) and through ``predict(dict)``
(a JSON-like record validated against the signature); MLflow through
``mlflow.pyfunc.load_model(...).predict(<one-row DataFrame>)``, the call its scoring server makes.

Run: ``PYTHONPATH=src python benchmarks/bench_model_load.py [--calls 3000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from shipyard.models import load_model, save_model

N_FEATURES = 30
N_TREES = 300


def make_model(seed: int = 0) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(20_000, N_FEATURES)), columns=[f"x{i}" for i in range(N_FEATURES)])
    logit = X.iloc[:, :6].to_numpy() @ np.array([0.8, -0.5, 0.4, 0.3, -0.2, 0.1]) - 1.2
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "verbose": -1, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=N_TREES), X


def per_call(fn: Callable[[], Any], calls: int) -> np.ndarray:
    for _ in range(min(200, calls)):
        fn()
    out = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out * 1e6


def load_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()

    booster, X = make_model()
    row_df = X.iloc[[123]].reset_index(drop=True)
    row_np = row_df.to_numpy()
    record = {k: float(v) for k, v in row_df.iloc[0].items()}

    import mlflow.lightgbm
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        sy_dir, ml_dir = Path(tmp) / "shipyard", Path(tmp) / "mlflow"
        save_model(booster, sy_dir, input_example=X.head(3))
        mlflow.lightgbm.save_model(booster, ml_dir, input_example=X.head(3), pip_requirements=["lightgbm"])

        sy_load = load_time(lambda: load_model(sy_dir))
        ml_load = load_time(lambda: mlflow.pyfunc.load_model(str(ml_dir), suppress_warnings=True))
        sy = load_model(sy_dir)
        ml = mlflow.pyfunc.load_model(str(ml_dir), suppress_warnings=True)

        ref = booster.predict(row_np)
        assert np.array_equal(sy.predict_array(row_np), ref)
        assert np.array_equal(sy.predict(record), ref)
        assert np.allclose(np.asarray(ml.predict(row_df)), ref, rtol=0, atol=1e-12)

        fast = per_call(lambda: sy.predict_array(row_np), args.calls)
        rec = per_call(lambda: sy.predict(record), args.calls)
        mlf = per_call(lambda: ml.predict(row_df), args.calls)

    rows = [
        ("shipyard predict_array (fast path)", sy_load, fast),
        ("shipyard predict(record)", sy_load, rec),
        ("mlflow pyfunc predict(DataFrame)", ml_load, mlf),
    ]
    print(f"LightGBM {N_TREES} trees x {N_FEATURES} features, single-row predict, {args.calls} calls each")
    print(f"{'path':38} {'load ms':>9} {'p50 us':>9} {'p99 us':>9}")
    for name, load, t in rows:
        print(f"{name:38} {load:9.1f} {np.percentile(t, 50):9.1f} {np.percentile(t, 99):9.1f}")
    p50_ratio = np.percentile(mlf, 50) / np.percentile(fast, 50)
    p99_ratio = np.percentile(mlf, 99) / np.percentile(fast, 99)
    rec_ratio = np.percentile(mlf, 50) / np.percentile(rec, 50)
    print(f"ratio mlflow/shipyard fast path: p50 {p50_ratio:.1f}x, p99 {p99_ratio:.1f}x; "
          f"record path p50 {rec_ratio:.1f}x; load {ml_load / sy_load:.1f}x")


if __name__ == "__main__":
    main()
