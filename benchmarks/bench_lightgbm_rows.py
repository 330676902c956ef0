"""LightGBM single rows and small batches: the private fast paths of ``lightgbm_fast`` against the
public ``Booster.predict`` fallback, in one process, alternating, on the same rows.

    python benchmarks/bench_lightgbm_rows.py [--trees 300] [--features 30] [--calls 3000] [--rounds 5]

A binary model of ``--trees`` trees is trained on seeded data; each round times ``--calls`` calls of
each path (one row, then 8-row batches) and the medians of the rounds' p50s are printed with the
ratio. Every answer of both paths is checked equal to ``Booster.predict``; a mismatch fails the run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import lightgbm as lgb
import numpy as np

from shipyard.models.flavors.lightgbm import build_loaded


def p50_us(fn, rows: list[np.ndarray]) -> float:
    samples = []
    for row in rows:
        t = time.perf_counter()
        fn(row)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20_000, args.features))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=len(X)) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 31}, lgb.Dataset(X, y), args.trees)
    names = tuple(booster.feature_name())
    paths = {"private (lightgbm_fast)": build_loaded(booster, booster, None, names, "lightgbm"),
             "public (Booster.predict)": build_loaded(booster, booster, None, names, "lightgbm", private=False)}
    ones = [X[i : i + 1] for i in rng.integers(0, len(X), args.calls)]
    eights = [X[i : i + 8] for i in rng.integers(0, len(X) - 8, args.calls)]
    for label, loaded in paths.items():  # every answer checked before anything is timed
        for rows in ones[:500] + eights[:500]:
            if not np.array_equal(loaded.predict_array(rows), booster.predict(rows, num_threads=1)):
                sys.exit(f"{label} differs from Booster.predict")
    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, loaded in paths.items():
            for size, rows in (("1 row", ones), ("8 rows", eights)):
                figures.setdefault((label, size), []).append(p50_us(loaded.predict_array, rows))
    print(f"LightGBM {lgb.__version__}, {args.trees} trees, {args.features} features; p50 µs per call, "
          f"median of {args.rounds} rounds of {args.calls} calls")
    for size in ("1 row", "8 rows"):
        private = statistics.median(figures[("private (lightgbm_fast)", size)])
        public = statistics.median(figures[("public (Booster.predict)", size)])
        print(f"  {size:7} private {private:8.1f}   public {public:8.1f}   public / private {public / private:5.2f}x")


if __name__ == "__main__":
    main()
