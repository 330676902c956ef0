"""Pipelines: cached re-run of the German credit pipeline, per-node executor overhead, scheduler start
latency, and Kedro running the same modelling steps side by side.

1. The example credit-scorecard pipeline (dataset → split → profile → binning/WOE → selection →
   scorecard + XGBoost → evaluation → registration) runs once, then ``--repeat`` more times with
   every node cached (``ws.pipelines.run``; and once through the ``shipyard pipelines run`` command,
   whose figure includes starting Python and importing Shipyard).
2. Executor overhead per node: a chain of ``--nodes`` trivial nodes (a user component returning a
   small JSON value) with caching off, on a warm pool of one worker process and in-process; and the
   same chain when every node is a cache hit. Overhead = wall time / nodes (the component itself
   takes microseconds).
3. Scheduler start latency: a per-second cron schedule (``* * * * * *``) of a one-node pipeline, run
   by an in-process scheduler until ``--slots`` runs started; latency = slot time → the node's start
   (and → the job's start), p50 / p99 / max.
4. Kedro (SequentialRunner, MemoryDatasets) runs the same split → binning/WOE → selection →
   scorecard → evaluation functions. Kedro has no caching: every run recomputes every node.

    pip install kedro            # the anchor, not a Shipyard dependency
    python benchmarks/bench_pipelines.py [--repeat 5] [--nodes 50] [--slots 100]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _ws(folder: Path):  # noqa: ANN202 - Workspace
    from shipyard.config import init_project, load_settings
    from shipyard.workspace import Workspace

    project = init_project(folder)
    return Workspace(load_settings(project, user="bench", validation_timing_calls=20)), project


def bench_cached(folder: Path, repeat: int) -> dict[str, float]:
    from shipyard.demo.pipeline import run_credit_pipeline

    ws, project = _ws(folder / "credit")
    start = time.perf_counter()
    out = run_credit_pipeline(ws, project, say=lambda _: None)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        record = ws.pipelines.run(out["document"])
        times.append(time.perf_counter() - start)
        assert {n.status for n in record.nodes} == {"cached"}, record.counts()
    start = time.perf_counter()
    breakpoint_run = ws.pipelines.run(out["document"], start="evaluate")
    from_evaluate = time.perf_counter() - start
    assert breakpoint_run.status == "succeeded"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shipyard.cli", "-p", str(project), "pipelines", "run", out["document"]],
                   check=True, capture_output=True, env=env)
    cli = time.perf_counter() - start
    ws.close()
    return {"first_s": first, "cached_median_s": statistics.median(times), "cached_max_s": max(times),
            "from_evaluate_s": from_evaluate, "cli_cached_s": cli}


CHAIN = '''
from shipyard.pipelines import component


@component(outputs={"value": "json"})
def seed():
    return {"i": 0}


@component(inputs={"value": "json"}, outputs={"value": "json"})
def step(value):
    return {"i": value["i"] + 1}
'''


def _chain(folder: Path, nodes: int, cache: bool) -> Path:
    (folder / "chain.py").write_text(textwrap.dedent(CHAIN))
    doc = {"name": f"chain{'_cached' if cache else ''}", "nodes": [{"id": "n0", "component": "chain.py:seed",
                                                                    "cache": cache}]}
    for i in range(1, nodes):
        doc["nodes"].append({"id": f"n{i}", "component": "chain.py:step", "inputs": {"value": f"n{i - 1}"},
                             "cache": cache})
    path = folder / f"{doc['name']}.json"
    path.write_text(json.dumps(doc))
    return path


def bench_overhead(folder: Path, nodes: int, repeat: int) -> dict[str, float]:
    from shipyard.pipelines.pool import WorkerPool

    ws, project = _ws(folder / "overhead")
    uncached, cached = _chain(project, nodes, False), _chain(project, nodes, True)
    out: dict[str, list[float]] = {"worker_ms": [], "inprocess_ms": [], "cached_ms": []}
    with WorkerPool(1) as pool:
        pool.warm()
        ws.pipelines.run(uncached, pool=pool)  # imports and first-time work out of the timing
        ws.pipelines.run(cached, workers=0)
        for _ in range(repeat):
            start = time.perf_counter()
            record = ws.pipelines.run(uncached, pool=pool)
            out["worker_ms"].append((time.perf_counter() - start) * 1000 / nodes)
            assert record.status == "succeeded"
            start = time.perf_counter()
            ws.pipelines.run(uncached, workers=0)
            out["inprocess_ms"].append((time.perf_counter() - start) * 1000 / nodes)
            start = time.perf_counter()
            record = ws.pipelines.run(cached, workers=0)
            out["cached_ms"].append((time.perf_counter() - start) * 1000 / nodes)
            assert {n.status for n in record.nodes} == {"cached"}
    ws.close()
    return {k: statistics.median(v) for k, v in out.items()}


def bench_scheduler(folder: Path, slots: int) -> dict[str, float]:
    import sqlalchemy as sa

    from shipyard.pipelines.scheduler import Scheduler
    from shipyard.store.schema import pipeline_run_nodes, pipeline_runs

    ws, project = _ws(folder / "scheduler")
    doc = _chain(project, 1, False)
    ws.schedules.add("tick", "pipeline", str(doc), actor="bench", cron="* * * * * *", missed="catchup",
                     max_concurrency=2, args={"workers": 1})
    sched = Scheduler(ws, lease_s=10, tick_s=0.25, max_workers=4, pipeline_workers=2)
    sched.start()
    deadline = time.time() + slots * 3 + 60
    while time.time() < deadline:
        done = [r for r in ws.schedules.history("tick", slots + 50) if r.status in ("succeeded", "failed")]
        if len(done) > slots:  # one more than measured: the first is warm-up
            break
        time.sleep(1)
    sched.stop()
    runs = sorted((r for r in ws.schedules.history("tick", 10_000) if r.started_at), key=lambda r: r.slot_at)
    # the first slot waits for the lease and the worker start-up; leave it out as warm-up
    runs = runs[1:slots + 1]
    job = [r.started_at - r.slot_at for r in runs]
    node = []
    with ws.store.read() as conn:
        for r in runs:
            started = conn.execute(sa.select(pipeline_run_nodes.c.started_at).join(
                pipeline_runs, pipeline_runs.c.id == pipeline_run_nodes.c.run_id).where(
                pipeline_runs.c.id == r.result.get("pipeline_run"))).scalar()
            if started is not None:
                node.append(started - r.slot_at)
    failed = sum(r.status != "succeeded" for r in runs)
    ws.close()
    return {"runs": len(runs), "failed": failed, **_pcts("job_ms", job), **_pcts("node_ms", node)}


def _pcts(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {f"{name}_p50": statistics.median(ordered), f"{name}_p99": p99, f"{name}_max": ordered[-1]}


def bench_kedro(repeat: int) -> dict[str, float]:
    import pandas as pd
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline
    from kedro.runner import SequentialRunner

    from shipyard.pipelines.builtins import data as b_data
    from shipyard.pipelines.builtins import modelling as b_model
    from shipyard.pipelines.context import NodeContext

    logging.getLogger("kedro").setLevel(logging.WARNING)
    csv = Path(__file__).resolve().parents[1] / "src" / "shipyard" / "demo" / "germancredit.csv"
    tmp = Path(tempfile.mkdtemp(prefix="kedro-bench-"))

    def ctx(name: str) -> NodeContext:
        return NodeContext(name, run_id=None, pipeline_run_id="kedro", resolved={}, out_dir=tmp / name)

    t, bad = "creditability", "bad"

    def split(df):  # noqa: ANN001, ANN202
        parts = b_data.split(ctx("split"), df, target=t, test_size=0.3, seed=7)
        return parts["train"], parts["test"]

    def binning(train):  # noqa: ANN001, ANN202
        return b_model.bin_woe(ctx("binning"), train, target=t, bad_value=bad, max_bins=6)

    def select(train, binner):  # noqa: ANN001, ANN202
        return b_model.select_variables(ctx("select"), train, binner, target=t, bad_value=bad)

    def scorecard(train, binner, features):  # noqa: ANN001, ANN202
        return b_model.train_scorecard(ctx("scorecard"), train, binner, target=t, features=features, bad_value=bad)

    def xgb(train, binner, features):  # noqa: ANN001, ANN202
        return b_model.train_model(ctx("xgboost"), train, target=t, features=features, binner=binner,
                                   seed=7, bad_value=bad,
                                   params={"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05,
                                           "subsample": 0.9})

    def evaluate(model, test, train):  # noqa: ANN001, ANN202
        return b_model.evaluate(ctx("evaluate"), model, test, target=t, train=train, bad_value=bad)

    def profile(train):  # noqa: ANN001, ANN202
        return b_data.profile(ctx("profile"), train, target=t, bad_value=bad)

    pipe = pipeline([
        node(split, "raw", ["train", "test"], name="split"),
        node(profile, "train", "profile", name="profile"),
        node(binning, "train", "binner", name="binning"),
        node(select, ["train", "binner"], "features", name="select"),
        node(scorecard, ["train", "binner", "features"], "card", name="scorecard"),
        node(xgb, ["train", "binner", "features"], "xgb", name="xgboost"),
        node(evaluate, ["card", "test", "train"], "metrics", name="evaluate"),
        node(evaluate, ["xgb", "test", "train"], "metrics_xgb", name="evaluate_xgboost"),
    ])
    times = []
    try:
        for _ in range(repeat + 1):
            catalog = DataCatalog({"raw": MemoryDataset(pd.read_csv(csv))})
            start = time.perf_counter()
            SequentialRunner().run(pipe, catalog)
            times.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"first_s": times[0], "median_s": statistics.median(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--skip-scheduler", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> None:
    cached = bench_cached(folder, args.repeat)
    kedro = bench_kedro(args.repeat)
    for handler in list(logging.getLogger().handlers):  # importing Kedro installs its own root handler
        logging.getLogger().removeHandler(handler)
    logging.basicConfig(level=logging.WARNING)
    overhead = bench_overhead(folder, args.nodes, args.repeat)
    print("\n== German credit pipeline (10 nodes)")
    print(f"{'shipyard first run (10 nodes executed)':48} {cached['first_s']:8.2f} s")
    print(f"{'shipyard cached re-run, API (median / max)':48} {cached['cached_median_s']:8.3f} s / "
          f"{cached['cached_max_s']:.3f} s   (goal < 1 s)")
    print(f"{'shipyard cached re-run, CLI process':48} {cached['cli_cached_s']:8.2f} s")
    print(f"{'shipyard --from evaluate (evaluate + register)':48} {cached['from_evaluate_s']:8.2f} s")
    print(f"{'kedro SequentialRunner, same 8 steps (median)':48} {kedro['median_s']:8.2f} s   (no caching)")
    print(f"ratio kedro run / shipyard cached re-run: {kedro['median_s'] / cached['cached_median_s']:.1f}x")
    print(f"\n== executor overhead per node ({args.nodes}-node chain, median of {args.repeat})")
    print(f"{'worker process (warm pool)':48} {overhead['worker_ms']:8.1f} ms   (goal < 50 ms)")
    print(f"{'in-process (workers=0)':48} {overhead['inprocess_ms']:8.1f} ms")
    print(f"{'cache hit':48} {overhead['cached_ms']:8.1f} ms")
    if not args.skip_scheduler:
        sched = bench_scheduler(folder, args.slots)
        print(f"\n== scheduler start latency, per-second cron, {sched['runs']} runs ({sched['failed']} failed)")
        print(f"{'slot → node start p50 / p99 / max':48} {sched['node_ms_p50']:6.0f} / {sched['node_ms_p99']:.0f} / "
              f"{sched['node_ms_max']:.0f} ms   (goal p99 < 1000 ms)")
        print(f"{'slot → job start p50 / p99 / max':48} {sched['job_ms_p50']:6.0f} / {sched['job_ms_p99']:.0f} / "
              f"{sched['job_ms_max']:.0f} ms")


if __name__ == "__main__":
    main()
