"""Binning + WOE benchmark: Shipyard vs optbinning, toad and scorecardpy.

Synthetic seeded data (as in the risk-toolkit issue): x0-x9 normal, x10-x14 lognormal, x15-x19
Poisson (repeating the pattern for wider tables), a logistic target with ~19% bad, 5% missing in
x0-x4. Every candidate runs in its own subprocess on the same data; we time "fit" (binning + WOE for
all features) and "transform" (raw values -> WOE), and record the subprocess's peak RSS growth
over its state after generating the data (``resource.getrusage``).

    python benchmarks/bench_binning.py                 # 200,000 x 20
    python benchmarks/bench_binning.py --large         # also 1,000,000 x 50
    python benchmarks/bench_binning.py --only shipyard # Shipyard alone, no ratios

scorecardpy 0.1.9.7 does not run on pandas 3 (it calls ``to_numeric(errors="ignore")`` and relies
on ``astype(str)`` turning NaN into text); give it its own environment with pandas 2 via
``--scorecardpy-python VENV/bin/python`` or SCORECARDPY_PYTHON (that environment needs numpy,
pandas and scorecardpy). A candidate that fails (an anchor that is not installed included) is
shown in the table and makes the run exit non-zero; leave anchors out explicitly with ``--only``
or ``--candidates``. The anchors' bins differ by design, so the total IV is printed beside each
figure rather than checked for equality.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

SHIPYARD = ["optimal", "optimal_b20", "monotonic", "tree", "chimerge", "mdlp", "caim", "equal_freq"]
ANCHORS = ["optbinning", "toad_dt", "toad_quantile", "toad_chi", "scorecardpy"]
TIMEOUT = {"toad_chi": 120}


def make_data(n: int, p: int, seed: int = 42) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for j in range(p):
        k = j % 20
        if k < 10:
            cols[f"x{j}"] = rng.normal(size=n)
        elif k < 15:
            cols[f"x{j}"] = rng.lognormal(0.0, 1.0, size=n)
        else:
            cols[f"x{j}"] = rng.poisson(3 + k % 5, size=n).astype(np.float64)
    w = rng.normal(0.0, 0.4, size=p)
    z = np.zeros(n)
    for j in range(p):
        v = np.log(cols[f"x{j}"]) if 10 <= j % 20 < 15 else cols[f"x{j}"]
        z += w[j] * (v - v.mean()) / v.std()
    b0 = -1.45 - 0.5 * float(np.var(z)) / 2
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(b0 + z)))).astype(np.int64)
    for j in range(min(5, p)):
        cols[f"x{j}"][rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(cols), y


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(name: str, n: int, p: int) -> dict:
    X, y = make_data(n, p)
    base = _peak_mb()
    iv = float("nan")
    quiet = contextlib.redirect_stdout(io.StringIO())
    if name.startswith("shipyard:"):
        from shipyard.risk import Binner

        method = name.split(":", 1)[1]
        # optimal_b20: optbinning's default constraints (pre-bins >= 5% of rows, so at most 20 bins)
        params = {"method": "optimal", "max_bins": 20} if method == "optimal_b20" else {"method": method}
        t0 = time.perf_counter()
        b = Binner(**params).fit(X, y)
        t1 = time.perf_counter()
        b.transform(X)
        t2 = time.perf_counter()
        iv = float(b.iv_table()["iv"].sum())
    elif name == "optbinning":
        from optbinning import BinningProcess

        t0 = time.perf_counter()
        bp = BinningProcess(list(X.columns)).fit(X, y)
        t1 = time.perf_counter()
        bp.transform(X, metric="woe")
        t2 = time.perf_counter()
        iv = float(bp.summary()["iv"].sum())
    elif name.startswith("toad_"):
        import toad

        method = name.split("_", 1)[1]
        t0 = time.perf_counter()
        comb = toad.transform.Combiner().fit(X, y, method=method, n_bins=10 if method != "chi" else None)
        binned = comb.transform(X)
        woe = toad.transform.WOETransformer().fit(binned, y)
        t1 = time.perf_counter()
        woe.transform(comb.transform(X))
        t2 = time.perf_counter()
        iv = float(sum(toad.stats._IV(binned[c].to_numpy(), y)[0] for c in X.columns))
    elif name == "scorecardpy":
        import scorecardpy as sc

        dt = X.assign(y=y)
        with quiet:
            t0 = time.perf_counter()
            bins = sc.woebin(dt, y="y", method="tree", no_cores=1, ignore_datetime_cols=False)
            t1 = time.perf_counter()
            sc.woebin_ply(dt.drop(columns=["y"]), bins, no_cores=1)
            t2 = time.perf_counter()
        iv = float(sum(float(b["total_iv"].iloc[0]) for b in bins.values()))
    else:
        raise SystemExit(f"unknown candidate {name}")
    return {"name": name, "fit_s": t1 - t0, "transform_s": t2 - t1, "peak_mb": _peak_mb() - base, "iv": iv}


PYTHON: dict[str, str] = {}


def run_candidate(name: str, n: int, p: int) -> dict:
    cmd = [PYTHON.get(name, sys.executable), os.path.abspath(__file__), "--worker", name, "--n", str(n), "--p", str(p)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT.get(name, 900))
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"did not finish in {TIMEOUT.get(name, 900)} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return {"name": name, "error": last[:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict], n: int, p: int) -> str:
    lines = [f"### {n:,} rows x {p} features", "",
             "| candidate | fit (s) | transform (s) | peak RSS growth (MB) | total IV |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} | | | |")
        else:
            lines.append(f"| {r['name']} | {r['fit_s']:.3f} | {r['transform_s']:.3f} | {r['peak_mb']:.0f} | {r['iv']:.4f} |")
    by = {r["name"]: r for r in results if "error" not in r}
    ratios = []

    def ratio(label: str, ours: str, theirs: str, key: str) -> None:
        if ours in by and theirs in by:
            ratios.append(f"| {label} | {by[theirs][key] / by[ours][key]:.1f}x |")

    ratio("optbinning BinningProcess fit / Shipyard optimal fit", "shipyard:optimal", "optbinning", "fit_s")
    ratio("optbinning BinningProcess fit / Shipyard monotonic fit", "shipyard:monotonic", "optbinning", "fit_s")
    ratio("toad Combiner dt fit / Shipyard tree fit", "shipyard:tree", "toad_dt", "fit_s")
    ratio("toad Combiner quantile fit / Shipyard equal_freq fit", "shipyard:equal_freq", "toad_quantile", "fit_s")
    ratio("scorecardpy woebin (tree) / Shipyard tree fit", "shipyard:tree", "scorecardpy", "fit_s")
    ratio("scorecardpy woebin_ply / Shipyard transform", "shipyard:optimal", "scorecardpy", "transform_s")
    ratio("optbinning transform / Shipyard transform", "shipyard:optimal", "optbinning", "transform_s")
    ratio("optbinning BinningProcess fit / Shipyard optimal (max 20 bins) fit", "shipyard:optimal_b20",
          "optbinning", "fit_s")
    for ours in ("shipyard:optimal", "shipyard:optimal_b20"):
        if ours in by and "optbinning" in by:
            ratios.append(f"| {ours} total IV / optbinning total IV | {by[ours]['iv'] / by['optbinning']['iv']:.4f} |")
    if "shipyard:chimerge" in by:
        ratios.append(f"| Shipyard ChiMerge fit (s) | {by['shipyard:chimerge']['fit_s']:.3f} |")
    lines += ["", "| ratio (higher = Shipyard faster) | value |", "| --- | ---: |", *ratios]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--p", type=int, default=20)
    ap.add_argument("--large", action="store_true", help="also run 1,000,000 x 50")
    ap.add_argument("--only", choices=["shipyard", "anchors"], default=None)
    ap.add_argument("--scorecardpy-python", default=os.environ.get("SCORECARDPY_PYTHON"),
                    help="interpreter of an environment with pandas 2 (or SCORECARDPY_PYTHON)")
    ap.add_argument("--candidates", default=None, help="comma-separated subset of candidate names")
    args = ap.parse_args()
    if args.scorecardpy_python:
        PYTHON["scorecardpy"] = args.scorecardpy_python
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.n, args.p)))
        return
    names = ([] if args.only == "anchors" else [f"shipyard:{m}" for m in SHIPYARD]) + \
        ([] if args.only == "shipyard" else ANCHORS)
    if args.candidates:
        names = [c for c in names if c in args.candidates.split(",")]
    scales = [(args.n, args.p)] + ([(1_000_000, 50)] if args.large else [])
    failed = []
    for n, p in scales:
        results = []
        for name in names:
            r = run_candidate(name, n, p)
            print(json.dumps(r), file=sys.stderr, flush=True)
            results.append(r)
            if "error" in r:
                failed.append(f"{name} at {n:,} x {p}: {r['error']}")
        print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        print(table(results, n, p), flush=True)
        print()
    if failed:
        raise SystemExit("candidates that did not run (no ratio for them):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
