"""Tracking: log 100,000 metric points and 1,000 params + 1,000 tags into SQLite, in one run.

Shipyard's ``Run.log_batch`` vs MLflow's ``MlflowClient.log_batch`` into a SQLite-backed MLflow
tracking store, with the same batch sizes: MLflow caps a call at 1,000 metrics and 100 params /
100 tags, so both log 100 calls of 1,000 metric points (10 keys x 100 steps) and 10 calls of
100 params + 100 tags. Each repetition uses a fresh database; database creation and schema
migration are outside the timed section, starting and ending the run are inside it. The figure
reported is the median of the repetitions.

    PYTHONPATH=src python benchmarks/bench_tracking.py [--repeat 3] [--points 100000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

METRICS_PER_CALL = 1_000
PARAMS_PER_CALL = 100
TAGS_PER_CALL = 100
KEYS = 10


def _metric_batches(points: int, now_ms: int) -> list[list[tuple[str, float, int, int]]]:
    rows = [(f"metric_{i % KEYS}", (i % 997) / 997.0, i // KEYS, now_ms + i) for i in range(points)]
    return [rows[i : i + METRICS_PER_CALL] for i in range(0, points, METRICS_PER_CALL)]


def _param_batches(count: int) -> list[tuple[dict[str, str], dict[str, str]]]:
    out = []
    for start in range(0, count, PARAMS_PER_CALL):
        params = {f"param_{i}": f"value_{i}" for i in range(start, min(start + PARAMS_PER_CALL, count))}
        tags = {f"tag_{i}": f"value_{i}" for i in range(start, min(start + TAGS_PER_CALL, count))}
        out.append((params, tags))
    return out


def bench_shipyard(folder: Path, points: int, params: int) -> tuple[float, float]:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(folder, user="bench"))
    ws.tracking.get_or_create_experiment("bench")
    metric_batches = _metric_batches(points, int(time.time() * 1000))
    param_batches = _param_batches(params)
    start = time.perf_counter()
    run = ws.tracking.start_run(experiment="bench", source="bench", commit="")
    for batch in metric_batches:
        run.log_batch(metrics=batch)
    after_metrics = time.perf_counter()
    for p, t in param_batches:
        run.log_batch(params=p, tags=t)
    run.end()
    end = time.perf_counter()
    record = ws.tracking.get_run(run.id)
    assert len(record.params) == params and len(record.tags) == params and len(record.metrics) == KEYS
    assert len(ws.tracking.metric_history(run.id, "metric_0")) == points // KEYS
    ws.close()
    return after_metrics - start, end - after_metrics


def bench_mlflow(folder: Path, points: int, params: int) -> tuple[float, float]:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient()
    experiment_id = client.create_experiment("bench", artifact_location=str(folder / "mlartifacts"))
    metric_batches = [[Metric(k, v, ts, step) for k, v, step, ts in batch]
                      for batch in _metric_batches(points, int(time.time() * 1000))]
    param_batches = [([Param(k, v) for k, v in p.items()], [RunTag(k, v) for k, v in t.items()])
                     for p, t in _param_batches(params)]
    start = time.perf_counter()
    run_id = client.create_run(experiment_id).info.run_id
    for batch in metric_batches:
        client.log_batch(run_id, metrics=batch)
    after_metrics = time.perf_counter()
    for p, t in param_batches:
        client.log_batch(run_id, params=p, tags=t)
    client.set_terminated(run_id)
    end = time.perf_counter()
    data = client.get_run(run_id).data
    assert len(data.params) == params and len(data.metrics) == KEYS
    assert len(client.get_metric_history(run_id, "metric_0")) == points // KEYS
    return after_metrics - start, end - after_metrics


def _median_of(fn: Callable[[Path, int, int], tuple[float, float]], repeat: int, points: int, params: int) -> list[float]:
    totals, metric_times, param_times = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            m, p = fn(Path(tmp), points, params)
        metric_times.append(m)
        param_times.append(p)
        totals.append(m + p)
    return [statistics.median(metric_times), statistics.median(param_times), statistics.median(totals)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--params", type=int, default=1_000, help="params, and as many tags")
    args = parser.parse_args()

    ours = _median_of(bench_shipyard, args.repeat, args.points, args.params)
    theirs = _median_of(bench_mlflow, args.repeat, args.points, args.params)
    header = f"{'tool':<10} {'metrics s':>10} {'params+tags s':>14} {'total s':>9} {'points/s':>11}"
    print(f"{args.points:,} metric points in batches of {METRICS_PER_CALL:,}; {args.params:,} params + "
          f"{args.params:,} tags in batches of {PARAMS_PER_CALL}+{TAGS_PER_CALL}; median of {args.repeat}")
    print(header)
    print("-" * len(header))
    for name, (m, p, total) in (("shipyard", ours), ("mlflow", theirs)):
        print(f"{name:<10} {m:>10.3f} {p:>14.3f} {total:>9.3f} {args.points / m:>11,.0f}")
    print("-" * len(header))
    print(f"ratio (mlflow / shipyard, total): {theirs[2] / ours[2]:.1f}x  "
          f"(metrics {theirs[0] / ours[0]:.1f}x, params+tags {theirs[1] / ours[1]:.1f}x)")


if __name__ == "__main__":
    main()
