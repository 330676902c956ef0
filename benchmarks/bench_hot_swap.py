"""Latency while a scene's model is hot-swapped under load (moved here from the serving tests:
timing belongs in benchmarks, where a busy machine shows as a figure, not a failed test).

One `credit` scene on a logistic regression (v1) is served by uvicorn in this process; 4 client
threads send predictions back to back. After a steady period the champion alias moves to v2 and
the server's follower swaps it in. Reported, per 250 ms window, the p99 latency: the median
window before the swap (steady), the median and the worst window from the swap on, their ratio to
steady, and the slowest request after the swap. Every request must succeed and the server must end
on v2 (checked; a failure fails the benchmark).

    python benchmarks/bench_hot_swap.py --runs 3
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

INPUTS = {"user_id": "string", "income": "double", "debt": "double", "age": "double"}


def record(i: int) -> dict:
    return {"user_id": f"user-{i}", "income": 2.0 + (i % 7), "debt": 1.0 + (i % 4) * 0.5, "age": 25.0 + i % 40}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_run(root: Path) -> dict[str, float]:
    import uvicorn

    from shipyard.auth.bootstrap import ensure_first_admin
    from shipyard.auth.credentials import project_token
    from shipyard.config import load_settings
    from shipyard.models import save_model
    from shipyard.server import create_app
    from shipyard.serving import apply_scene
    from shipyard.serving import flow as F
    from shipyard.workspace import Workspace

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"income": rng.normal(5, 2, 400), "debt": rng.normal(2, 1, 400),
                      "age": rng.integers(20, 70, 400).astype(float)})
    y = (X.debt * 1.5 - X.income * 0.6 + rng.normal(0, 1, 400) > -1).astype(int).to_numpy()
    settings = load_settings(root, validation_subprocess=False, validation_timing_calls=5)
    admin = Workspace(settings)
    ensure_first_admin(admin.auth, root)
    token = project_token(root)
    admin.close()
    ws = Workspace(settings, token=token)
    for version, C in ((1, 1.0), (2, 0.01)):
        folder = save_model(LogisticRegression(C=C, max_iter=300).fit(X, y), root / f"m{version}", input_example=X.head(5))
        mv = ws.registry.register(folder, "credit", await_validation=True)
        ws.registry.set_alias("credit", "champion" if version == 1 else "challenger", mv.version, force=True)
    apply_scene(ws, {"name": "credit", "inputs": INPUTS, "outputs": ["score"],
                     "flow": [F.model("credit", "champion", output="score")]})
    app = create_app(ws, follow_interval=0.2)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    results: list[tuple[float, float, int, int | None]] = []  # (sent at, latency, status, model version)
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            i = worker * 1_000_000
            while not stop.is_set():
                start = time.perf_counter()
                r = client.post("/v1/scenes/credit/predict", json=record(i))
                version = r.json()["models"].get("credit") if r.status_code == 200 else None
                results.append((start, time.perf_counter() - start, r.status_code, version))
                i += 1

    try:
        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        swap_at = time.perf_counter()
        ws.registry.set_alias("credit", "champion", 2, force=True)
        deadline = time.time() + 15
        while time.time() < deadline and not any(r[3] == 2 for r in results if r[0] >= swap_at):
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
    finally:
        server.should_exit = True
        thread.join(15)
        ws.close()
    failed = {code for _, _, code, _ in results if code != 200}
    during = [r for r in results if r[0] >= swap_at]
    if failed or not during or during[-1][3] != 2:
        raise SystemExit(f"hot swap failed: statuses {failed}, last version {during[-1][3] if during else None}")
    t0 = results[0][0]
    windows: dict[int, list[float]] = {}
    for sent, latency, _, _ in results:
        windows.setdefault(int((sent - t0) / 0.25), []).append(latency)
    first_swap = int((swap_at - t0) / 0.25)
    steady = [float(np.percentile(v, 99)) for k, v in windows.items() if 0 < k < first_swap and len(v) >= 20]
    swap = [float(np.percentile(v, 99)) for k, v in windows.items() if k >= first_swap and len(v) >= 20]
    return {"requests": len(results), "steady_p99_ms": statistics.median(steady) * 1000,
            "swap_p99_median_ms": statistics.median(swap) * 1000, "swap_p99_worst_ms": max(swap) * 1000,
            "slowest_after_swap_ms": max(r[1] for r in during) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1000:g} ms")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="shipyard-bench-swap-") as tmp:
            out = one_run(Path(tmp))
        print(f"run {run + 1}: {out['requests']} requests; p99 per 250 ms window: steady {out['steady_p99_ms']:.1f} ms, "
              f"from the swap on median {out['swap_p99_median_ms']:.1f} ms "
              f"(x{out['swap_p99_median_ms'] / out['steady_p99_ms']:.2f}), worst {out['swap_p99_worst_ms']:.1f} ms "
              f"(x{out['swap_p99_worst_ms'] / out['steady_p99_ms']:.2f}); slowest request after the swap "
              f"{out['slowest_after_swap_ms']:.1f} ms")


if __name__ == "__main__":
    main()
