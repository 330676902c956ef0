"""How long `shipyard server` takes to exit on SIGTERM.

A project with one scene (an expression, every request logged) is served by `shipyard server`
(``--workers 1`` and ``2``). Each run warms the server, keeps ``--clients`` clients sending requests
(closed loop, keep-alive) and sends SIGTERM; reported are the seconds from the signal to the
process's exit, and the phases of each worker's own shutdown log (ms after the worker got the
signal: requests finished, prediction log flushed, complete). Requests in flight are tiny here, so
the time is the server's own.

    python benchmarks/bench_shutdown.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_project(root: Path) -> str:
    """The scene's project; returns a predict-only token, as a client uses."""
    from shipyard.config import load_settings
    from shipyard.serving import apply_scene
    from shipyard.serving import flow as F
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root, user="bench"))
    apply_scene(ws, {"name": "double", "inputs": {"x": "double"}, "outputs": ["y"], "flow": [F.expr("y", "x * 2")]})
    from shipyard.auth.bootstrap import ensure_first_admin

    ensure_first_admin(ws.auth, root)
    ws.auth.create_user("bench-app", kind="service", roles={"default": "predictor"}, actor="bench")
    token = ws.auth.create_token("bench-app", scopes=["predict"], actor="bench").token
    ws.close()
    return token


def one_run(project: Path, workers: int, clients: int, token: str) -> tuple[float, list[tuple[str, float]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project), "server", "--port",
                             str(port), "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(proc.stderr.read())
        time.sleep(0.1)
    time.sleep(2.0 if workers > 1 else 0.5)  # every worker up
    stop = threading.Event()
    refused: list[int] = []

    def load() -> None:
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            while not stop.is_set():
                try:
                    status = client.post("/v1/scenes/double/predict", json={"x": 1.0}).status_code
                except httpx.HTTPError:
                    return
                if status not in (200, 503):  # 503: the server is draining
                    refused.append(status)
                    return

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    elapsed = time.monotonic() - began
    stop.set()
    for t in threads:
        t.join(10)
    if refused:
        raise RuntimeError(f"requests were answered with HTTP {sorted(set(refused))}, not predictions")
    phases = [(m.group(2), float(m.group(1))) for m in re.finditer(r"shutdown \+(\d+) ms: ([^\n(;]+)", proc.stderr.read())]
    return elapsed, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        token = make_project(project)
        print(f"{'workers':>7} {'exit s p50':>11} {'exit s max':>11}   worker phases, ms after its signal (median)")
        for workers in (1, 2):
            exits, phases = [], {}
            for _ in range(args.runs):
                elapsed, found = one_run(project, workers, args.clients, token)
                exits.append(elapsed)
                for name, ms in found:
                    phases.setdefault(name.strip(), []).append(ms)
            summary = ", ".join(f"{name} {np.median(v):.0f}" for name, v in phases.items()
                                if not name.startswith(("SIGTERM", "hot swap")))
            print(f"{workers:>7} {np.median(exits):>11.2f} {max(exits):>11.2f}   {summary}")


if __name__ == "__main__":
    main()
