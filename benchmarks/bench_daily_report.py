"""Daily model report over a large prediction log, and the 30-day trend from stored statistics.

Data (generated once by DuckDB straight into the prediction log's Parquet layout, typed columns by
default, ``--layout json`` for the layout written before them):
ROWS logged requests of scene ``bench`` on 2026-01-05 in files of 500,000 rows, each with 50
numeric features f0–f49 (uniform and sums of uniforms, 2 % missing in f0), the outputs ``pd``
and ``decision``; the baseline is 200,000 rows of the same distributions (f1 shifted).

Run (one process measures, a fresh child builds the report so its peak memory is its own)::

    PYTHONPATH=src python benchmarks/bench_daily_report.py [--rows 10000000] [--dir DIR] [--layout typed|json]

Without ``--dir`` the data goes to a fresh temporary folder, removed at the end; with it, the
folder is kept and a log generated earlier there is reused.

Prints: generation time (once), daily report wall time and the child's peak RSS, then the
30-day trend (29 more stored days) read time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = "2026-01-05"
SCENE = "bench"
FEATURES = 50
FILE_ROWS = 500_000


def _feature_sql(j: int) -> str:
    # numbers with 4 decimals keep the JSON at the size real logs have
    expr = f"random() * {j + 1}" if j % 2 else f"(random() + random() + random()) * {j + 1}"
    if j == 0:
        return f"CASE WHEN random() < 0.02 THEN NULL ELSE round({expr}, 4) END"
    return f"round({expr}, 4)"


def generate(root: Path, rows: int, layout: str) -> float:
    import duckdb

    folder = root / "artifacts" / "prediction_logs" / f"scene={SCENE}" / f"date={DAY}"
    marker = root / "layout.txt"
    if folder.exists() and len(list(folder.glob("*.parquet"))) * FILE_ROWS >= rows and \
            marker.exists() and marker.read_text() == layout:
        return 0.0
    if folder.exists():
        for old in folder.glob("*.parquet"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    con = duckdb.connect()
    day0 = 1_767_571_200_000  # 2026-01-05T00:00Z in ms
    decision = "CASE WHEN p > 0.5 THEN 'reject' WHEN p > 0.3 THEN 'review' ELSE 'approve' END"
    if layout == "json":  # the layout written before typed columns: each request's fields as JSON text
        feats = ", ".join(f"'f{j}': {_feature_sql(j)}" for j in range(FEATURES))
        fields = f"""to_json([{{'applicant_id': i}}])::VARCHAR AS inputs,
                     to_json([{{{feats}}}])::VARCHAR AS features,
                     to_json([{{'pd': p, 'decision': {decision}}}])::VARCHAR AS outputs,"""
        meta = "CAST(NULL AS VARCHAR) AS models,"
    else:  # typed: one column per field, one row per served record
        feats = ", ".join(f'{_feature_sql(j)} AS "features.f{j}"' for j in range(FEATURES))
        fields = f"""i AS "inputs.applicant_id", {feats}, p AS "outputs.pd", {decision} AS "outputs.decision","""
        meta = "'bench-host-1-0' AS instance, CAST(0 AS INTEGER) AS row, CAST(NULL AS VARCHAR) AS models,"
    for part, lo in enumerate(range(0, rows, FILE_ROWS)):
        hi = min(rows, lo + FILE_ROWS)
        step = 86_400_000 / rows
        con.execute(f"""
            COPY (
              SELECT CAST({day0} + i * {step} AS BIGINT) AS ts, 'r' || i AS request_id, '{SCENE}' AS scene,
                     CAST(1 + (i % 2) AS BIGINT) AS version, 'control' AS arm, 'live' AS kind, {meta}
                     1 + random() * 9 AS latency_ms, random() AS features_ms,
                     random() AS model_ms, random() < 0.01 AS fallback, CAST(NULL AS VARCHAR) AS error,
                     {fields.rstrip().rstrip(",")}
              FROM (SELECT i, random() * random() AS p FROM range({lo}, {hi}) t(i))
            ) TO '{folder}/part-{part:04d}.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    con.close()
    marker.write_text(layout)
    return time.perf_counter() - start


def baseline_frame(rows: int = 200_000):  # noqa: ANN201 - DataFrame
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    cols = {}
    for j in range(FEATURES):
        scale = j + 1
        x = rng.random(rows) * scale if j % 2 else rng.random((rows, 3)).sum(axis=1) * scale
        if j == 1:
            x = x + 0.3  # a drifted input
        cols[f"f{j}"] = np.round(x, 4)
    p = rng.random(rows) * rng.random(rows)
    cols["pd"] = p
    cols["decision"] = np.where(p > 0.5, "reject", np.where(p > 0.3, "review", "approve"))
    return pd.DataFrame(cols)


def child(root: Path) -> None:
    """Build the report in this fresh process; print wall time and peak RSS as JSON."""
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root / "project", metadata_url=f"sqlite:///{root / 'meta.db'}",
                                 artifact_root=str(root / "artifacts"), user="bench"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    report = ws.monitoring.daily_report(SCENE, DAY, "bench")
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = usage.ru_maxrss
    print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime - cpu0, "peak_mb": peak_kb / 1024,
                      "rows": report.rows,
                      "warnings": report.warnings, "errors": report.plugin_errors,
                      "max_psi": report.data["day_stats"]["summary"].get("max_psi")}))
    ws.close()


def trend(root: Path) -> None:
    import sqlalchemy as sa

    from shipyard.config import load_settings
    from shipyard.store.schema import monitoring_daily_stats as D
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root / "project", metadata_url=f"sqlite:///{root / 'meta.db'}",
                                 artifact_root=str(root / "artifacts"), user="bench"))
    with ws.store.begin() as conn:
        row = dict(conn.execute(sa.select(D).where((D.c.scene == SCENE) & (D.c.day == DAY))).mappings().one())
        conn.execute(D.delete().where((D.c.scene == SCENE) & (D.c.day < DAY)))
        for d in range(1, 30):  # 29 earlier days with the same statistics
            day = f"2025-12-{d:02d}" if d <= 31 else DAY
            conn.execute(D.insert().values({**row, "day": day}))
    start = time.perf_counter()
    frame = ws.monitoring.trend(SCENE, days=40, until=DAY)
    section = ws.monitoring.daily._trend_section(SCENE, DAY)
    wall = time.perf_counter() - start
    print(f"30-day trend: {len(frame)} stored days read and charted in {wall * 1000:.0f} ms "
          f"({len(section.blocks)} blocks)")
    ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", default="", help="keep the data here for later runs (default: a temporary folder)")
    parser.add_argument("--layout", choices=("typed", "json"), default="typed",
                        help="the log's file layout: typed columns (written since typed logging) or JSON text")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.dir))
        return
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-daily-"))
    try:
        run(args, root)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    took = generate(root, args.rows, args.layout)
    print(f"log ({args.layout} layout): {args.rows:,} rows x {FEATURES} features"
          + (f" generated in {took:.0f} s" if took else " (reused)"))
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root / "project", metadata_url=f"sqlite:///{root / 'meta.db'}",
                                 artifact_root=str(root / "artifacts"), user="bench"))
    ws.monitoring.create_baseline("bench-train", baseline_frame(), "bench", scene=SCENE)
    ws.monitoring.configure(SCENE, "bench", baseline="bench-train", score="pd", decision="decision")
    ws.close()
    load0 = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--dir", str(root), "--child"], capture_output=True, text=True,
                         env={**os.environ}, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"load average before/after: {load0:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"daily report: {result['rows']:,} records in {result['wall_s']:.1f} s (CPU {result['cpu_s']:.1f} s), "
          f"peak RSS {result['peak_mb']:.0f} MB"
          f" (goal: < 60 s, < 4096 MB); max input PSI {result['max_psi']:.3f}; plugin errors {result['errors']}")
    trend(root)


if __name__ == "__main__":
    main()
