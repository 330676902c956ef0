"""Point-in-time join: Shipyard (DuckDB engine) vs Feast (DuckDB and file offline stores) vs pandas.merge_asof.

Data: E entities; view A with 5 float features hourly (TTL 2 days); view B with 5 integer features
daily (TTL 30 days); N entity rows at random keys (5% unknown) and times (some before any value,
some past the TTL). Every tool reads the same Parquet files and runs in its own subprocess, in the
same run, so its peak memory (ru_maxrss) is its own and every ratio compares figures of one run.
Every tool's timed result is a pandas DataFrame (Shipyard ``output="pandas"``, Feast ``.to_df()``,
``merge_asof`` natively). Every returned value is checked against pandas.merge_asof (by key,
tolerance = TTL); rows without a value must come back as nulls, not vanish, and null is not 0.
A tool that fails, times out or returns other values gets no ratio and fails the run, unless it
is named in ``--known-wrong`` (then its defect is printed and the run goes on).

usage: python benchmarks/bench_pit.py --feast-python VENV/bin/python [--scale small|large]
           [--skip feast-duckdb,feast-file] [--known-wrong feast-file]
(FEAST_PYTHON may name the interpreter instead; a Feast virtualenv: ``python3 -m venv VENV &&
VENV/bin/pip install feast``.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SCALES = {"small": (10_000, 1_000_000, 100_000), "large": (100_000, 10_000_000, 1_000_000)}
START = pd.Timestamp("2024-01-01", tz="UTC")
A_COLS = [f"a{i}" for i in range(5)]
B_COLS = [f"b{i}" for i in range(5)]
HERE = Path(__file__).resolve().parent


def generate(folder: Path, entities: int, a_rows: int, entity_rows: int) -> None:
    rng = np.random.default_rng(7)
    hours = a_rows // entities
    idx = np.arange(hours * entities)
    a_ts = START + pd.to_timedelta(idx // entities, unit="h") + pd.to_timedelta(rng.integers(0, 3600, idx.size), unit="s")
    pd.DataFrame({"user_id": (idx % entities).astype("int64"), "ts": a_ts,
                  **{c: rng.random(idx.size) for c in A_COLS}}).to_parquet(folder / "view_a.parquet", index=False)
    days = hours // 24 + 40
    jdx = np.arange(days * entities)
    b_ts = START - pd.Timedelta(days=40) + pd.to_timedelta(jdx // entities, unit="D") + pd.to_timedelta(
        rng.integers(0, 86400, jdx.size), unit="s")
    # a tenth of the entities stop getting daily values after the first days, so their B values expire
    stale = (jdx % entities) % 10 == 0
    keep = ~stale | (jdx // entities < 3)
    pd.DataFrame({"user_id": (jdx % entities)[keep].astype("int64"), "ts": b_ts[keep],
                  **{c: rng.integers(0, 1000, int(keep.sum())) for c in B_COLS}}).to_parquet(
        folder / "view_b.parquet", index=False)
    span = pd.Timedelta(hours=hours + 72) + pd.Timedelta(days=1)
    e_ts = START - pd.Timedelta(days=1) + pd.to_timedelta(rng.integers(0, int(span.total_seconds()), entity_rows),
                                                          unit="s")
    pd.DataFrame({"row_id": np.arange(entity_rows, dtype="int64"),
                  "user_id": rng.integers(0, int(entities * 1.05), entity_rows).astype("int64"),
                  "event_timestamp": e_ts}).to_parquet(folder / "entity.parquet", index=False)


SHIPYARD = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
from shipyard.config import load_settings
from shipyard.workspace import Workspace
data, out, project = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
(project / "features").mkdir(parents=True, exist_ok=True)
(project / "features" / "views.py").write_text('''
from datetime import timedelta
from shipyard.features import Entity, FeatureView, Field, FileSource, Float64, Int64
user = Entity("user", join_keys=["user_id"], value_types="int64")
view_a = FeatureView("view_a", [user], [Field(f"a{i}", Float64) for i in range(5)],
                     FileSource("%s/view_a.parquet"), timestamp_field="ts", ttl=timedelta(days=2))
view_b = FeatureView("view_b", [user], [Field(f"b{i}", Int64) for i in range(5)],
                     FileSource("%s/view_b.parquet"), timestamp_field="ts", ttl=timedelta(days=30))
''' % (data, data))
ws = Workspace(load_settings(project, user="bench"))
ws.features.apply(project)
entity = pd.read_parquet(data / "entity.parquet")
features = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]
start = time.perf_counter()
result = ws.features.get_training_set(entity, features=features, output="pandas")
seconds = time.perf_counter() - start
result[["row_id"] + [f.split(":")[1] for f in features]].to_parquet(out)
print(json.dumps({"seconds": seconds, "rows": len(result),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

MERGE_ASOF = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
data, out = Path(sys.argv[1]), sys.argv[2]
entity = pd.read_parquet(data / "entity.parquet")
start = time.perf_counter()
result = entity.sort_values("event_timestamp")
for name, ttl in (("view_a", "2D"), ("view_b", "30D")):
    view = pd.read_parquet(data / f"{name}.parquet").rename(columns={"ts": "event_timestamp"})
    result = pd.merge_asof(result, view.sort_values("event_timestamp"), on="event_timestamp", by="user_id",
                           tolerance=pd.Timedelta(ttl), direction="backward")
result = result.sort_values("row_id")
seconds = time.perf_counter() - start
result.drop(columns=["user_id", "event_timestamp"]).to_parquet(out)
print(json.dumps({"seconds": seconds, "rows": len(result),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(label: str, argv: list[str], timeout: float) -> dict:
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"label": label, "error": f"timeout after {timeout:.0f}s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
        return {"label": label, "error": tail[0][:120]}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info.update(label=label, wall=time.perf_counter() - started)
    return info


def check(reference: pd.DataFrame, path: str, rows: int) -> str:
    got = pd.read_parquet(path).sort_values("row_id").reset_index(drop=True)
    if len(got) != rows:
        return f"{len(got)} rows, expected {rows}"
    bad = 0
    for col in A_COLS + B_COLS:
        want = reference[col].to_numpy(dtype="float64", na_value=np.nan)
        have = got[col].to_numpy(dtype="float64", na_value=np.nan)
        bad += int((~((want == have) | (np.isnan(want) & np.isnan(have)))).sum())
    return "ok" if bad == 0 else f"{bad} values differ"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--feast-python", default=os.environ.get("FEAST_PYTHON", ""),
                        help="python of a virtualenv with feast (or FEAST_PYTHON)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--skip", default="", help="comma-separated tools to skip: feast-duckdb,feast-file")
    parser.add_argument("--known-wrong", default="",
                        help="comma-separated tools whose wrong answers are reported without failing the run")
    args = parser.parse_args()
    entities, a_rows, entity_rows = SCALES[args.scale]
    skip = set(filter(None, args.skip.split(",")))
    known_wrong = set(filter(None, args.known_wrong.split(",")))
    feast_tools = [kind for kind in ("duckdb", "file") if f"feast-{kind}" not in skip]
    if feast_tools and not (args.feast_python and os.path.exists(args.feast_python)):
        raise SystemExit("Feast's python is needed for " + ", ".join(f"feast-{k}" for k in feast_tools)
                         + " (--feast-python or FEAST_PYTHON), or leave those tools out with --skip")
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-pit-") as tmp:
        folder = Path(tmp)
        generate(folder, entities, a_rows, entity_rows)
        py = sys.executable
        results = [
            run("shipyard (duckdb)", [py, "-c", SHIPYARD, str(folder), str(folder / "sy.parquet"),
                                      str(folder / "project")], args.timeout),
            run("pandas.merge_asof", [py, "-c", MERGE_ASOF, str(folder), str(folder / "ma.parquet")], args.timeout),
        ]
        outputs = {"shipyard (duckdb)": "sy.parquet", "pandas.merge_asof": "ma.parquet"}
        for kind in feast_tools:
            label = f"feast {kind}"
            results.append(run(label, [args.feast_python, str(HERE / "_pit_feast.py"), str(folder),
                                       str(folder / f"feast_{kind}.parquet"), kind], args.timeout))
            outputs[label] = f"feast_{kind}.parquet"
        if "error" in results[1]:
            raise SystemExit(f"the reference (pandas.merge_asof) failed: {results[1]['error']}")
        reference = pd.read_parquet(folder / "ma.parquet").sort_values("row_id").reset_index(drop=True)
        print(f"\nPoint-in-time join, {entities:,} entities / {a_rows:,} view-A rows / {entity_rows:,} entity rows "
              f"(2 views, 10 features); one run, every tool's result a pandas DataFrame")
        print(f"{'tool':<20} {'join s':>9} {'peak MB':>9}  check")
        for r in results:
            if "error" not in r:
                r["check"] = check(reference, str(folder / outputs[r["label"]]), entity_rows)
            verdict = r.get("check", r.get("error"))
            seconds = f"{r['seconds']:>9.2f} {r['peak_mb']:>9.0f}" if "seconds" in r else f"{'-':>9} {'-':>9}"
            print(f"{r['label']:<20} {seconds}  {verdict}")
            if verdict != "ok":
                tool = r["label"].replace("shipyard (duckdb)", "shipyard").replace(" ", "-")
                if tool in known_wrong:
                    print(f"{'':<20} ({tool} is listed in --known-wrong: no ratio)")
                else:
                    failed.append(f"{r['label']}: {verdict}")
        ours = results[0]
        if ours.get("check") == "ok":
            print("\nratios (other / shipyard), same run, tools with correct answers only:")
            for r in results[1:]:
                if r.get("check") == "ok":
                    print(f"  {r['label']:<20} time x{r['seconds'] / ours['seconds']:.1f}   "
                          f"peak memory x{r['peak_mb'] / ours['peak_mb']:.2f}")
    if failed:
        raise SystemExit("wrong answers or failed runs: " + "; ".join(failed))


if __name__ == "__main__":
    main()
