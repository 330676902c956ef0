"""Embedded online store choice: SQLite vs LMDB on batch writes and 1/100-key reads.

    python benchmarks/bench_embedded_choice.py [--rows 200000]

Each store holds one view of 10 float features; reads fetch all 10 features.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from shipyard.features.online.lmdb_store import LMDBOnlineStore
from shipyard.features.online.sqlite_store import SQLiteOnlineStore


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(rows: int, reads: int) -> list[dict]:
    names = [f"f{i}" for i in range(10)]
    rng = random.Random(7)
    keys = [(i,) for i in range(rows)]
    values = [{n: rng.random() for n in names} for _ in range(rows)]
    stamps = [1_700_000_000_000_000 + i for i in range(rows)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, store in (
            ("sqlite", SQLiteOnlineStore(Path(tmp) / "online.sqlite")),
            ("lmdb", LMDBOnlineStore(Path(tmp) / "online.lmdb")),
        ):
            start = time.perf_counter()
            for i in range(0, rows, 10_000):
                store.write_batch("v", keys[i : i + 10_000], values[i : i + 10_000], stamps[i : i + 10_000])
            write_s = time.perf_counter() - start
            one, hundred = [], []
            for _ in range(reads):
                key = [keys[rng.randrange(rows)]]
                t0 = time.perf_counter()
                store.read("v", names, key)
                one.append(time.perf_counter() - t0)
            for _ in range(reads // 10):
                batch = [keys[rng.randrange(rows)] for _ in range(100)]
                t0 = time.perf_counter()
                store.read("v", names, batch)
                hundred.append(time.perf_counter() - t0)
            results.append(
                {
                    "store": label,
                    "write_rows_s": rows / write_s,
                    "read1_p50_us": statistics.median(one) * 1e6,
                    "read1_p99_us": _percentile(one, 0.99) * 1e6,
                    "read100_p50_us": statistics.median(hundred) * 1e6,
                    "read100_p99_us": _percentile(hundred, 0.99) * 1e6,
                }
            )
            store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()
    results = run(args.rows, args.reads)
    print(f"rows={args.rows}, 10 float features")
    print(f"{'store':8} {'write rows/s':>14} {'1-key p50 µs':>13} {'1-key p99 µs':>13} {'100-key p50 µs':>15} {'100-key p99 µs':>15}")
    for r in results:
        print(
            f"{r['store']:8} {r['write_rows_s']:14,.0f} {r['read1_p50_us']:13.1f} {r['read1_p99_us']:13.1f} "
            f"{r['read100_p50_us']:15.1f} {r['read100_p99_us']:15.1f}"
        )
    s, m = results
    print(
        f"ratio sqlite/lmdb: writes {s['write_rows_s'] / m['write_rows_s']:.2f}x, "
        f"1-key p50 {s['read1_p50_us'] / m['read1_p50_us']:.2f}x, 100-key p50 {s['read100_p50_us'] / m['read100_p50_us']:.2f}x"
    )


if __name__ == "__main__":
    main()
