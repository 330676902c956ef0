"""Drift of a current sample against a reference: Shipyard's drift() vs Evidently's DataDriftPreset.

Data (seeded): ROWS × COLS floats in each sample, columns alternating normal, lognormal and
uniform; the current sample shifts every fifth column by 0.3σ. Shipyard computes PSI, Jensen–
Shannon, KS (+ p-value) and normed Wasserstein for every column, exactly, from the rows.
Evidently runs its default preset (normed Wasserstein per numeric column) and the preset with
``method="psi"``. Its numbers are compared where the definitions agree: normed Wasserstein is the
same definition; Evidently's PSI uses Sturges bins over both samples (no missing values here,
shares of 0 → 1e-4), so Shipyard's PSI is computed on those same edges for the comparison
(its own default is 10 quantile bins of the reference).

Both sides start from the same pandas DataFrames in memory (Evidently's process reads them from
Parquet before its clock starts). A mismatch where the definitions agree (|Δ| > 1e-9, or a column
Evidently did not answer) fails the run. Shipyard sorts column groups on every core; Evidently's
work is mostly on one: both sides' CPU times are printed beside the wall-clock ratio.

Evidently 0.7 does not import with the pandas in Shipyard's environment (pandas 3), so it runs in
its own virtualenv, named by SHIPYARD_EVIDENTLY_PYTHON (or ``--evidently-python``); without one the
run stops unless ``--skip-evidently`` says to run Shipyard alone::

    python3 -m venv VENV && VENV/bin/pip install evidently==0.7.23 'pandas<3' pyarrow
    SHIPYARD_EVIDENTLY_PYTHON=VENV/bin/python PYTHONPATH=src \\
        python benchmarks/bench_drift.py --sizes 200000x20 1000000x100 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make(rows: int, cols: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = {}
    for j in range(cols):
        kind = j % 3
        x = rng.normal(size=rows) if kind == 0 else rng.lognormal(size=rows) if kind == 1 else rng.random(rows)
        if shift and j % 5 == 0:
            x = x + 0.3 * float(np.std(x))
        out[f"c{j}"] = x
    return pd.DataFrame(out)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def shipyard(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, float, object]:
    from shipyard.monitoring import drift

    c, t = _cpu(), time.perf_counter()
    report = drift(ref, cur)
    return time.perf_counter() - t, _cpu() - c, report


def psi_on_sturges(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    """Shipyard's PSI on Evidently's bins (Sturges edges of both samples), for the columns where the
    definitions agree: no empty bin on either side (Evidently fills an empty share with 1e-4 or, when
    some share is below 1e-4, with a millionth of the smallest share; Shipyard always with 1e-4)."""
    from shipyard.monitoring import stats as S

    out = {}
    for c in ref.columns:
        r, k = ref[c].to_numpy(), cur[c].to_numpy()
        edges = np.histogram_bin_edges(np.concatenate([r, k]), bins="sturges")[1:-1]
        e, _ = S.bin_counts(r, edges)
        a, _ = S.bin_counts(k, edges)
        if (e > 0).all() and (a > 0).all():
            out[c] = float(S.psi_from_counts(e, a))
    return out


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


TOLERANCE = 1e-9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["200000x20"])
    parser.add_argument("--psi-max-cells", type=int, default=20_000_000,
                        help="run Evidently's PSI preset only up to this many cells per sample")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each side per size (medians and the ratio of medians are printed)")
    parser.add_argument("--evidently-python", default=os.environ.get("SHIPYARD_EVIDENTLY_PYTHON", ""),
                        help="python of a virtualenv with evidently (or SHIPYARD_EVIDENTLY_PYTHON)")
    parser.add_argument("--skip-evidently", action="store_true", help="run Shipyard alone (no ratios)")
    args = parser.parse_args()
    evidently = "" if args.skip_evidently else args.evidently_python
    if not args.skip_evidently:
        if not evidently:
            raise SystemExit("Evidently's python is needed (SHIPYARD_EVIDENTLY_PYTHON or --evidently-python): "
                             "python3 -m venv VENV && VENV/bin/pip install evidently==0.7.23 'pandas<3' pyarrow; "
                             "or pass --skip-evidently")
        if not Path(evidently).exists():
            raise SystemExit(f"Evidently's python {evidently} does not exist")
        probe = subprocess.run([evidently, "-c", "import evidently; print(evidently.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise SystemExit(f"{evidently} cannot import evidently: {probe.stderr.strip()[-300:]}")
        print(f"Evidently {probe.stdout.strip()} from its own virtualenv")
    here = Path(__file__).resolve().parent
    print(f"load average {load()} on {os.cpu_count()} cores; median of {args.repeat} run(s) per side")
    print(f"{'size':>12} {'shipyard s':>11} {'(cpu s)':>8} {'evidently s':>12} {'(cpu s)':>8} {'psi preset s':>13} "
          f"{'ratio':>7} {'cpu ratio':>9} {'max |Δ wasserstein|':>20} {'max |Δ psi|':>12} {'drifted':>8}")
    failures = []
    for size in args.sizes:
        rows, cols = (int(v) for v in size.lower().split("x"))
        ref, cur = make(rows, cols, 1, False), make(rows, cols, 2, True)
        runs = [shipyard(ref, cur) for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        report = runs[-1][2]
        drifted = len(report.drifted)
        ev_s = ev_cpu = ev_psi_s = float("nan")
        d_w = d_psi = float("nan")
        compared = 0
        if evidently:
            with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
                ref.to_parquet(f"{tmp}/ref.parquet")
                cur.to_parquet(f"{tmp}/cur.parquet")
                # the PSI preset is compared at the smaller sizes only (one more long run otherwise)
                extra = ["--no-psi"] if rows * cols > args.psi_max_cells else []
                subprocess.run([evidently, str(here / "_drift_evidently.py"), f"{tmp}/ref.parquet",
                                f"{tmp}/cur.parquet", f"{tmp}/out.json", "--repeat", str(args.repeat), *extra],
                               check=True)
                ev = json.loads(Path(f"{tmp}/out.json").read_text())
            ev_s, ev_psi_s = ev["default_s"], ev["psi_s"]
            ev_cpu = statistics.median(r[1] for r in ev["default_runs"])
            missing = sorted(set(ref.columns) - set(ev["wasserstein"]))
            if missing:
                failures.append(f"{size}: Evidently gave no Wasserstein distance for {missing}")
            d_w = max(abs(report.column(c).wasserstein - v) for c, v in ev["wasserstein"].items())
            if not d_w <= TOLERANCE:
                failures.append(f"{size}: normed Wasserstein differs by {d_w:.3e} (> {TOLERANCE})")
            if ev["psi"]:
                ours = psi_on_sturges(ref, cur)
                gaps = [abs(ours[c] - v) for c, v in ev["psi"].items() if c in ours]
                d_psi = max(gaps, default=float("nan"))
                compared = len(gaps)
                if gaps and not d_psi <= TOLERANCE:
                    failures.append(f"{size}: PSI on Evidently's bins differs by {d_psi:.3e} (> {TOLERANCE})")
        ratio = ev_s / wall if evidently else float("nan")
        cpu_ratio = ev_cpu / cpu if evidently else float("nan")
        print(f"{size:>12} {wall:>11.2f} {cpu:>8.2f} {ev_s:>12.2f} {ev_cpu:>8.2f} {ev_psi_s:>13.2f} {ratio:>6.1f}x "
              f"{cpu_ratio:>8.1f}x {d_w:>20.2e} {d_psi:>12.2e} {drifted:>4}/{cols}  "
              f"(PSI compared on {compared} column(s) without empty bins; load average {load()})", flush=True)
    if failures:
        raise SystemExit("values differ where the definitions agree:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
