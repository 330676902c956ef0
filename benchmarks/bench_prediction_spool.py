"""The crash-safe prediction log's cost: spooled (fsync'd before the answer) next to the buffered path.

Two measurements, each side by side, spool off then on, alternated ``--rounds`` times:

- ``log``: the ``PredictionLog`` alone, in one process. ``--concurrency`` asyncio tasks each
  submit a record of a 50-feature scene (as the engine builds it) in a closed loop for
  ``--seconds``; the buffered path only appends, the spooled path also awaits its group commit.
  Prints records/s, the wait for the commit (p50/p99) and records per fsync.
- ``http``: one ``shipyard server`` (one worker) on loopback serving a public expression-only scene
  with 50 numeric inputs (so the log, not a model, is the work), ``prediction_log_spool`` off or
  on; ``--concurrency`` keep-alive connections (plain asyncio streams) send requests in a closed
  loop for ``--seconds``. Prints requests/s and latency p50/p99.

    PYTHONPATH=src python benchmarks/bench_prediction_spool.py [--seconds 8] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 50
SCENE = "bench_spool"


def record(i: int) -> dict[str, Any]:
    feats = {f"f{j}": (i * 31 + j) % 1000 / 7 for j in range(FEATURES)}
    return {"ts": int(time.time() * 1000), "request_id": f"r{i}", "scene": SCENE, "version": 1, "arm": "control",
            "kind": "live", "inputs": [{**feats, "applicant_id": str(i)}], "features": None,
            "outputs": [{"score": i % 100 / 100, "decision": "approve"}], "models": {}, "latency_ms": 0.1,
            "features_ms": 0.0, "model_ms": 0.0, "fallback": False, "error": None}


def bench_log(spool: bool, seconds: float, concurrency: int, folder: Path) -> dict[str, float]:
    from shipyard.artifacts import ArtifactStore
    from shipyard.serving.prediction_log import PredictionLog, Ticket

    shutil.rmtree(folder, ignore_errors=True)
    plog = PredictionLog(ArtifactStore(str(folder / "artifacts")), spool_dir=folder / "spool" if spool else None,
                         max_queue=1_000_000)
    plog.start()
    waits: list[float] = []
    counter = [0]

    async def worker(stop: float) -> None:
        while time.perf_counter() < stop:
            i = counter[0]
            counter[0] += 1
            t0 = time.perf_counter()
            ticket = plog.append(record(i))
            if isinstance(ticket, Ticket):
                await ticket.wait_async()
            else:
                await asyncio.sleep(0)  # the request path yields once either way
            waits.append(time.perf_counter() - t0)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*[worker(start + seconds) for _ in range(concurrency)])
        return time.perf_counter() - start

    cpu0 = time.process_time()
    wall = asyncio.run(main())
    cpu = time.process_time() - cpu0
    plog.close(timeout=120)
    w = np.array(waits)
    return {"rate": len(waits) / wall, "p50_ms": float(np.percentile(w, 50) * 1000),
            "p99_ms": float(np.percentile(w, 99) * 1000), "cpu_per_record_us": cpu / len(waits) * 1e6,
            "written": plog.written}


# -- HTTP ----------------------------------------------------------------------------------------------
def make_project(root: Path) -> None:
    from shipyard.config import load_settings
    from shipyard.serving import apply_scene
    from shipyard.serving import flow as F
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root, user="bench"))
    ws.auth.set_public("default", "scene", SCENE, True, actor="bench")
    source = " + ".join(f"f{j}" for j in range(FEATURES))
    apply_scene(ws, {"name": SCENE, "inputs": {f"f{j}": "double" for j in range(FEATURES)}, "outputs": ["score"],
                     "flow": [F.expr("score", f"({source}) / {FEATURES}")]})
    ws.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path, spool: bool) -> tuple[subprocess.Popen[bytes], int]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    env["SHIPYARD_PREDICTION_LOG_SPOOL"] = "" if spool else "off"
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(root), "server", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.2)


async def _connection(port: int, body: bytes, stop: float, latencies: list[float], n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop:
            rid = f"c{n}-{i}".encode()
            i += 1
            request = (b"POST /v1/scenes/" + SCENE.encode() + b"/predict HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nX-Request-Id: " + rid +
                       b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


def bench_http(root: Path, spool: bool, seconds: float, concurrency: int) -> dict[str, float]:
    import orjson

    proc, port = start_server(root, spool)
    body = orjson.dumps({f"f{j}": j / 7 for j in range(FEATURES)})
    latencies: list[float] = []

    async def main() -> float:
        # one second of warm-up, not counted
        await asyncio.gather(*[_connection(port, body, time.perf_counter() + 1, [], n) for n in range(concurrency)])
        start = time.perf_counter()
        await asyncio.gather(*[_connection(port, body, start + seconds, latencies, 1000 + n)
                               for n in range(concurrency)])
        return time.perf_counter() - start

    try:
        wall = asyncio.run(main())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    lat = np.array(latencies)
    return {"rate": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=("log", "http"), default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sy-bench-spool-"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        if args.only in (None, "log"):
            results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for _ in range(args.rounds):
                for spool in (False, True):
                    results[spool].append(bench_log(spool, args.seconds, args.concurrency, tmp / "log"))
            _print("log", results)
        if args.only in (None, "http"):
            root = tmp / "project"
            make_project(root)
            results = {False: [], True: []}
            for _ in range(args.rounds):
                for spool in (False, True):
                    results[spool].append(bench_http(root, spool, args.seconds, args.concurrency))
            _print("http", results)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _print(case: str, results: dict[bool, list[dict[str, float]]]) -> None:
    def best(rows: list[dict[str, float]]) -> dict[str, float]:
        return max(rows, key=lambda r: r["rate"])

    for spool in (False, True):
        for r in results[spool]:
            extra = f", CPU {r['cpu_per_record_us']:.0f} µs/record" if "cpu_per_record_us" in r else ""
            print(f"{case:5} {'spooled ' if spool else 'buffered'}: {r['rate']:9,.0f}/s  p50 {r['p50_ms']:7.2f} ms  "
                  f"p99 {r['p99_ms']:7.2f} ms{extra}")
    b, s = best(results[False]), best(results[True])
    print(f"{case:5} spooled/buffered throughput (best of each): {s['rate'] / b['rate']:.2f}")


if __name__ == "__main__":
    main()
