"""Head-of-line blocking: does a slow arm slow the others down?

A server (one uvicorn worker) serves a scene with two arms and no features step: control doubles
``x``; the challenger does the same after sleeping the request's ``delay``. An open-loop load sends
``--control-rate`` requests/s to control and ``--challenger-rate`` to the challenger (arm chosen
by header) through alternating blocks: "steady" blocks send the challenger no delay, "slow" blocks
``--delay`` seconds. Reported: control's client-side p50/p99 in each kind of block, the
challenger's p50, and control's slow/steady p99 ratio. Requests sent in the first 100 ms of a block
are left out (a slow call begun in one block is not counted in the next).

``--inline`` runs every flow on the event loop, as the server did before arms got thread pools, so
both can be compared on the same machine. ``--throughput`` adds a closed-loop run of control alone
(``--connections`` keep-alive connections) to show what the hop to a thread costs.

    python benchmarks/bench_head_of_line.py
    python benchmarks/bench_head_of_line.py --inline
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

SERVER = textwrap.dedent('''
    import os, sys, time
    import uvicorn
    from shipyard.config import load_settings
    from shipyard.server import create_app
    from shipyard.serving import ModelCatalog, ServingEngine, compile_scene
    from shipyard.serving import flow as F
    from shipyard.workspace import Workspace

    class Fast:
        input_names = ["x"]
        signature = None
        has_fast_path = True
        def predict_array(self, X):
            return X[:, 0] * 2.0

    class Sleepy(Fast):
        input_names = ["x", "delay"]
        def predict_array(self, X):
            if X[0, 1] > 0:
                time.sleep(float(X[0, 1]))
            return X[:, 0] * 2.0

    project, port, inline = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    models = ModelCatalog()
    models.add("fast", Fast(), version=1, aliases=["champion"])
    models.add("sleepy", Sleepy(), version=1, aliases=["champion"])
    spec = {"name": "hol", "inputs": {"x": "double", "delay": "double"}, "outputs": ["y"],
            "flow": [F.model("fast", output="y")],
            "traffic": {"arms": {"chal": {"flow": [F.model("sleepy", output="y")]}}}, "log": {"sample_rate": 0.0}}
    engine = ServingEngine(models=models, scenes=lambda n, v: (1, spec))
    served = engine.install_scene(compile_scene(spec, 1, models=models))
    if inline:  # every flow on the event loop
        served.calls_out = {arm: False for arm in served.calls_out}
    ws = Workspace(load_settings(project, user="bench"))
    # the clients' credentials: a predict-only token of a service account, handed over in a file
    from pathlib import Path
    from shipyard.auth.bootstrap import ensure_first_admin
    ensure_first_admin(ws.auth, Path(project))
    ws.auth.create_user("bench-app", kind="service", roles={"default": "predictor"}, actor="bench")
    Path(project, "token.txt").write_text(ws.auth.create_token("bench-app", scopes=["predict"], actor="bench").token)
    # a server process, tuned like `shipyard server` (app_factory) tunes it
    uvicorn.run(create_app(ws, engine=engine, follow_interval=0, recover=False, tune_gc=True), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)
''')


HEADERS: dict[str, str] = {}  # the token, once the server has made it


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(inline: bool) -> tuple[subprocess.Popen[bytes], str, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory()
    script = Path(tmp.name) / "serve.py"
    script.write_text(SERVER)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    proc = subprocess.Popen([sys.executable, str(script), str(Path(tmp.name) / "project"), str(port),
                             "1" if inline else "0"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                HEADERS["Authorization"] = "Bearer " + (Path(tmp.name) / "project" / "token.txt").read_text()
                return proc, url, tmp
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.1)


def open_loop(url: str, args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    local = threading.local()
    results: dict[tuple[str, str], list[float]] = {}
    lock = threading.Lock()

    def post(arm: str, delay: float) -> float:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=60, headers=HEADERS)
        began = time.perf_counter()
        r = client.post("/v1/scenes/hol/predict", json={"x": 1.0, "delay": delay}, headers={"X-Shipyard-Arm": arm})
        r.raise_for_status()
        return time.perf_counter() - began

    def one(phase: str, arm: str) -> None:
        elapsed = post(arm, args.delay if phase == "slow" and arm == "chal" else 0.0)
        if phase != "guard":
            with lock:
                results.setdefault((phase, arm), []).append(elapsed)

    schedule = []
    for block in range(args.blocks):
        phase = "steady" if block % 2 == 0 else "slow"
        for arm, rate in (("control", args.control_rate), ("chal", args.challenger_rate)):
            schedule.extend((block * args.block + k / rate, phase if k / rate >= 0.1 else "guard", arm)
                            for k in range(int(args.block * rate)))
    schedule.sort()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda _: post("control", 0.0), range(64)))  # connect every client thread
        began = time.perf_counter()
        for at, phase, arm in schedule:
            wait = began + at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            pool.submit(one, phase, arm)
    return results


def closed_loop(url: str, connections: int, seconds: float) -> float:
    done = [0] * connections
    stop = time.perf_counter() + seconds

    def run(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            while time.perf_counter() < stop:
                client.post("/v1/scenes/hol/predict", json={"x": 1.0, "delay": 0.0},
                            headers={"X-Shipyard-Arm": "control"}).raise_for_status()
                done[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inline", action="store_true", help="run flows on the event loop (the old way)")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--block", type=float, default=1.0)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--control-rate", type=float, default=100.0)
    parser.add_argument("--challenger-rate", type=float, default=12.0)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    proc, url, tmp = start(args.inline)
    try:
        lat = open_loop(url, args)
        throughput = closed_loop(url, args.connections, 5.0) if args.throughput else None
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()

    def ms(values: list[float], q: float) -> float:
        return float(np.percentile(values, q) * 1000)

    steady, slow = lat[("steady", "control")], lat[("slow", "control")]
    mode = "flows on the event loop" if args.inline else "thread pool per arm"
    print(f"{mode}: control {args.control_rate:g}/s, challenger {args.challenger_rate:g}/s "
          f"sleeping {args.delay * 1000:g} ms in slow blocks ({len(steady)} + {len(slow)} control requests)")
    print(f"{'':<26}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'control, steady blocks':<26}{ms(steady, 50):>9.2f}{ms(steady, 99):>9.2f}")
    print(f"{'control, slow blocks':<26}{ms(slow, 50):>9.2f}{ms(slow, 99):>9.2f}")
    print(f"{'challenger, slow blocks':<26}{ms(lat[('slow', 'chal')], 50):>9.2f}{ms(lat[('slow', 'chal')], 99):>9.2f}")
    print(f"control p99 slow / steady: {ms(slow, 99) / ms(steady, 99):.2f}x")
    if throughput is not None:
        print(f"control alone, closed loop over {args.connections} connections: {throughput:,.0f} requests/s")


if __name__ == "__main__":
    main()
