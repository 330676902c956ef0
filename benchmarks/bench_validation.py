"""Registration + validation (+ stress test) of a small scikit-learn model, out of process.

Each version is registered with ``await_validation=True`` and ``validation_subprocess: true``:
the files are copied into the registry, then validated in a separate, clean process (sha256 of
a private copy, load, predict on the input example, fast path, 200 timed single-row calls). Two
ways to get that process, timed in the same run:

- ``fork`` (Shipyard's default on Linux): a warm template that imported NumPy, pandas and
  scikit-learn once; every version runs in a fresh fork of it;
- ``fresh interpreter`` (the anchor, and Shipyard's way where there is no ``fork``): a new Python
  process per version, which imports everything again.

Then ``stress_test_model`` (the release check) runs ``--stress-calls`` calls at ``--stress-rate``/s
on the version. The table gives per-version wall time (first version, then the median and max of
the others) and the ratio.

Run: ``python benchmarks/bench_validation.py [--versions 8] [--stress-rate 1000 --stress-calls 1000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from shipyard.config import load_settings
from shipyard.models import save_model, validator
from shipyard.serving.release import stress_test_model
from shipyard.workspace import Workspace


def small_model(root: Path) -> Path:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(1_000, 8)), columns=[f"x{i}" for i in range(8)])
    y = (X.x0 - 0.5 * X.x1 + rng.normal(0, 1, len(X)) > 0).astype(int)
    return save_model(LogisticRegression().fit(X, y), root / "model", input_example=X.head(5))


def run(mode: str, folder: Path, root: Path, versions: int, rate: float, calls: int) -> dict[str, float]:
    validator._worker = None  # a new worker, so the first version pays its start-up
    forking = validator._forking
    if mode == "fresh interpreter":
        validator._forking = lambda: False
    ws = Workspace(load_settings(root / mode.replace(" ", "-"), user="bench", validation_subprocess=True))
    register, stress = [], []
    try:
        for _ in range(versions):
            start = time.perf_counter()
            mv = ws.registry.register(folder, "credit", await_validation=True)
            register.append(time.perf_counter() - start)
            assert mv.status == "validated", mv.status_reason
            start = time.perf_counter()
            stress_test_model(ws, "credit", mv.version, rate=rate, count=calls)
            stress.append(time.perf_counter() - start)
    finally:
        ws.close()
        validator._forking = forking
        if validator._worker is not None:
            validator._worker.close()
    rest = register[1:] or register
    return {"first": register[0], "median": statistics.median(rest), "max": max(rest),
            "stress": statistics.median(stress), "total_first": register[0] + stress[0],
            "total_median": statistics.median(r + s for r, s in zip(register, stress, strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=8)
    parser.add_argument("--stress-rate", type=float, default=1000.0)
    parser.add_argument("--stress-calls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        root = Path(tmp)
        folder = small_model(root)
        results = {mode: run(mode, folder, root, args.versions, args.stress_rate, args.stress_calls)
                   for mode in ("fork", "fresh interpreter")}
    print(f"{args.versions} versions of a LogisticRegression (8 features); stress test "
          f"{args.stress_calls} calls at {args.stress_rate:g}/s")
    print(f"{'validation process':<20} {'first s':>8} {'median s':>9} {'max s':>7} {'stress s':>9} "
          f"{'first+stress':>13} {'median+stress':>14}")
    for mode, r in results.items():
        print(f"{mode:<20} {r['first']:8.2f} {r['median']:9.2f} {r['max']:7.2f} {r['stress']:9.2f} "
              f"{r['total_first']:13.2f} {r['total_median']:14.2f}")
    fork, fresh = results["fork"], results["fresh interpreter"]
    print(f"ratio (fresh interpreter / fork), register+validate per version: {fresh['median'] / fork['median']:.1f}x")


if __name__ == "__main__":
    main()
