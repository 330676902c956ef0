"""Data-quality report on synthetic data: Shipyard's profile vs a pandas describe + corr baseline.

Data (seeded): 1,000,000 rows × 50 columns — x0–x9 normal, x10–x14 lognormal, x15–x19 Poisson,
x20–x39 normal, c0–c9 categorical (5–200 levels), 5 % missing in x0–x4, a logistic target with about
19 % bad. Run: ``PYTHONPATH=src python benchmarks/bench_profile.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for i in range(10):
        cols[f"x{i}"] = rng.normal(size=rows)
    for i in range(10, 15):
        cols[f"x{i}"] = rng.lognormal(size=rows)
    for i in range(15, 20):
        cols[f"x{i}"] = rng.poisson(3.0, size=rows).astype(float)
    for i in range(20, 40):
        cols[f"x{i}"] = rng.normal(size=rows) + (0.9 * cols["x0"] if i == 20 else 0.0)
    for i in range(5):
        x = cols[f"x{i}"]
        x[rng.random(rows) < 0.05] = np.nan
    logit = -1.8 + 0.6 * np.nan_to_num(cols["x0"]) + 0.3 * np.log(cols["x10"]) - 0.2 * cols["x15"] + 0.4
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    df = pd.DataFrame(cols)
    for i in range(10):
        levels = [5, 10, 20, 50, 200, 8, 12, 3, 30, 100][i]
        codes = rng.integers(0, levels, size=rows)
        df[f"c{i}"] = pd.Categorical.from_codes(codes, [f"L{k}" for k in range(levels)]).astype(str)
    df["bad"] = y
    return df


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, df: pd.DataFrame) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    c, t = _cpu(), time.perf_counter()
    fn(df)
    return time.perf_counter() - t, _cpu() - c


def run_shipyard(df: pd.DataFrame) -> None:
    from shipyard.data.profile import profile

    p = profile(df, target="bad")
    p.to_html()
    p.to_json()


def run_pandas(df: pd.DataFrame) -> None:
    num = df.select_dtypes("number")
    num.describe(percentiles=[0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    num.corr()
    df.isna().mean()
    df.nunique()
    for c in df.columns:
        df[c].value_counts().head(10)


def run_duckdb(df: pd.DataFrame) -> None:
    import duckdb

    con = duckdb.connect()
    con.register("d", df)
    con.execute("SUMMARIZE d").fetchall()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    t = time.perf_counter()
    df = make_data(args.rows)
    print(f"data: {len(df):,} rows × {df.shape[1] - 1} columns + target, built in {time.perf_counter() - t:.1f}s, "
          f"{os.cpu_count()} cpus")
    ship, ship_cpu = timed(run_shipyard, df)
    base, base_cpu = timed(run_pandas, df)
    duck, duck_cpu = timed(run_duckdb, df)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"{'tool':<58}{'wall s':>8}{'cpu s':>8}{'wall vs shipyard':>18}")
    rows = [
        ("shipyard profile (stats, corr, IV, flags, HTML + JSON)", ship, ship_cpu),
        ("pandas describe + corr + nunique + value_counts", base, base_cpu),
        ("duckdb SUMMARIZE (no corr, no target, approx distinct)", duck, duck_cpu),
    ]
    for name, secs, cpu in rows:
        print(f"{name:<58}{secs:>8.2f}{cpu:>8.2f}{secs / ship:>17.2f}x")
    print(f"peak RSS of the process: {rss:,.0f} MB")
    print(f"ratio pandas / shipyard: {base / ship:.2f}x; duckdb SUMMARIZE / shipyard: {duck / ship:.2f}x")


if __name__ == "__main__":
    main()
