"""Before/after for the predict route: the same server from two source trees, timed in turns.

One project and model (bench_serving.py's LightGBM, 300 trees x 30 features, predict-only token),
one uvicorn server per source tree (``LABEL=SRC_DIR``, e.g. ``git archive`` of the earlier commit's
``src``), every answer checked against ``Booster.predict`` before and after. Each round times every
server once with ``wrk -t1 -c32``, the order reversed every other round; the server's CPU per
request (user and system, from /proc) is given per round and as medians, with the paired
difference to the first tree within each round (the steadier figure on a shared machine):

    git archive HEAD~5 src | tar -x -C BEFORE
    PYTHONPATH=src python benchmarks/bench_serving_ab.py before=BEFORE/src after=src [--seconds 6] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import bench_serving as b
import numpy as np


def user_system(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", help="LABEL=SRC_DIR, two or more; the first is the reference")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.trees)
    if len(trees) < 2 or not shutil.which("wrk"):
        sys.exit("give two or more LABEL=SRC_DIR trees, and install wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-ab-"))
    procs: dict[str, tuple[object, str]] = {}
    try:
        shipyard_dir, _mlflow, _clf, names, row, _label = b.train(work)
        import lightgbm as lgb

        expected = float(lgb.Booster(model_file=str(work / b.BOOSTER_FILE)).predict(np.array([row]))[0])
        body = json.dumps(dict(zip(names, row, strict=True))).encode()
        import shipyard as sy
        from shipyard.auth.bootstrap import ensure_first_admin

        project = work / "project"
        ws = sy.connect(project, validation_subprocess=False)
        ensure_first_admin(ws.auth, project)
        mv = ws.registry.register(shipyard_dir, "bench", await_validation=True)
        ws.registry.set_alias("bench", "champion", mv.version, force=True)
        ws.auth.create_user("bench-app", kind="service", roles={"default": "predictor"}, actor="bench")
        token = {"Authorization": "Bearer " + ws.auth.create_token("bench-app", scopes=["predict"],
                                                                   actor="bench").token}
        ws.close()
        for label, src in trees.items():
            port = b.free_port()
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                   "SHIPYARD_PROJECT_DIR": str(project), "SHIPYARD_SERVE_MODEL": "bench@champion",
                   "PYTHONPATH": str(Path(src).resolve())}
            cmd = ["uvicorn", "shipyard.server:app_factory", "--factory", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--log-level", "warning", "--no-access-log"]
            procs[label] = (b.start(cmd, env, work / f"{label}.log"),
                            f"http://127.0.0.1:{port}/v1/models/bench/champion/predict")
            b.wait_ready(f"http://127.0.0.1:{port}/ping")
        for label, (_proc, url) in procs.items():
            b.check_answer(label, b.answer(label, url, body, token)[0], expected)
            b.wrk(url, body, 2, args.connections, work, token)  # warm-up
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in procs}
        for round_no in range(args.rounds):
            order = list(procs) if round_no % 2 == 0 else list(reversed(procs))
            for label in order:
                proc, url = procs[label]
                before, split = b.cpu_seconds(proc.pid), user_system(proc.pid)
                sample = b.wrk(url, body, args.seconds, args.connections, work, token)
                if sample["non_2xx"]:
                    raise RuntimeError(f"{label}: {sample['non_2xx']} requests failed")
                served = sample["rps"] * args.seconds
                after = user_system(proc.pid)
                sample["cpu_us"] = 1e6 * (b.cpu_seconds(proc.pid) - before) / served
                sample["user_us"] = 1e6 * (after[0] - split[0]) / served
                sample["system_us"] = 1e6 * (after[1] - split[1]) / served
                samples[label].append(sample)
                print(f"round {round_no + 1} {label:10s} {sample['rps']:8.0f} req/s  CPU {sample['cpu_us']:6.1f} us/request "
                      f"(user {sample['user_us']:5.1f}, system {sample['system_us']:5.1f})  p50 {sample['p50_ms']:.2f} ms  "
                      f"load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
        for label, (_proc, url) in procs.items():
            b.check_answer(label, b.answer(label, url, body, token)[0], expected)
    finally:
        for proc, _url in procs.values():
            b.stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print()
    reference = next(iter(samples))
    for label, runs in samples.items():
        line = (f"{label:10s} median {statistics.median(r['rps'] for r in runs):8.0f} req/s, "
                f"CPU {statistics.median(r['cpu_us'] for r in runs):6.1f} us/request "
                f"(user {statistics.median(r['user_us'] for r in runs):5.1f}, "
                f"system {statistics.median(r['system_us'] for r in runs):5.1f}), "
                f"p50 {statistics.median(r['p50_ms'] for r in runs):.2f} ms")
        if label != reference:
            paired = [r["cpu_us"] - ref["cpu_us"] for r, ref in zip(runs, samples[reference], strict=True)]
            line += f"; CPU minus {reference} per round: {statistics.median(paired):+.1f} us (median)"
        print(line)


if __name__ == "__main__":
    main()
