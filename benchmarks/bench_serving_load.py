"""Open-loop serving latency: p99 at a fixed request rate, measured from each request's scheduled time.

Two cases, each against one uvicorn worker on 127.0.0.1:

- ``model``: a direct model call, ``POST /v1/models/bench/champion/predict`` (LightGBM, 300 trees ×
  30 features), default 1,000 requests/s;
- ``scene``: a scene reading 20 online features from Redis (one feature service) plus 10 request
  fields, then the same model; default 200 requests/s. Redis keys live under a unique prefix and
  are deleted at the end.

The generator runs in ``--procs`` processes (default 2); each schedules its share of the rate on a
fixed timetable and sends over a pool of keep-alive HTTP/1.1 connections (plain asyncio streams).
Every request carries a predict-only bearer token of a service account, as a client's would.
Latency counts from the scheduled send time, so a generator or server that falls behind shows up
as latency rather than as a lower rate. Runs are bounded by ``--seconds`` (and so in count).

    PYTHONPATH=src python benchmarks/bench_serving_load.py --case model --rate 1000
    PYTHONPATH=src python benchmarks/bench_serving_load.py --case scene --rate 200 \
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import free_port, start, stop, train, wait_ready  # noqa: E402

N_REQUEST_FIELDS, N_ONLINE = 10, 20
ENTITIES = 1000
MAX_CONNECTIONS = 64


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _run(port: int, path: str, bodies: list[bytes], rate: float, seconds: float, offset: float,
               t0: float, token: str) -> tuple[list[float], int, int]:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    available = asyncio.Condition()
    latencies: list[float] = []
    errors = 0

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        async with available:
            while not idle and opened >= MAX_CONNECTIONS:
                await available.wait()
            if idle:
                return idle.pop()
            opened += 1
        return await asyncio.open_connection("127.0.0.1", port)

    def drop() -> None:
        nonlocal opened
        opened -= 1

    async def one(due: float, body: bytes) -> None:
        nonlocal errors
        conn = await connection()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            try:
                status = await _send(*conn, head, body)
            except (OSError, asyncio.IncompleteReadError, IndexError):
                # an idle keep-alive connection the server closed: reconnect once (latency still
                # counts from the scheduled time)
                conn[1].close()
                conn = await asyncio.open_connection("127.0.0.1", port)
                status = await _send(*conn, head, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            async with available:
                drop()
                available.notify()
            return
        latencies.append(time.perf_counter() - due)
        if status != 200:
            errors += 1
        async with available:
            idle.append(conn)
            available.notify()

    total = int(rate * seconds)
    tasks = []
    for i in range(total):
        due = t0 + offset + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, bodies[i % len(bodies)])))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    for _, writer in idle:
        writer.close()
    return latencies, errors, total


def _proc(port: int, path: str, bodies: list[bytes], rate: float, seconds: float, offset: float, t0_wall: float,
          token: str, out: Any) -> None:
    # processes share a wall-clock start, then each keeps its own monotonic timetable
    t0 = time.perf_counter() + (t0_wall - time.time())
    # plain asyncio, not uvloop: uvloop rounds timers to whole milliseconds and wakes up to 1 ms early,
    # which would send before the scheduled time and understate latency
    latencies, errors, total = asyncio.run(_run(port, path, bodies, rate, seconds, offset, t0, token))
    out.put((latencies, errors, total))


def fixed_rate(port: int, path: str, bodies: list[bytes], rate: float, seconds: float, procs: int,
               token: str) -> dict[str, Any]:
    """Open-loop load from ``procs`` processes; latency percentiles from the scheduled send times."""
    queue: Any = mp.get_context("fork").Queue()
    t0_wall = time.time() + 1.0
    share = rate / procs
    workers = [mp.get_context("fork").Process(target=_proc, args=(port, path, bodies, share, seconds,
                                                                 k / rate, t0_wall, token, queue))
               for k in range(procs)]
    for w in workers:
        w.start()
    parts = [queue.get(timeout=seconds + 90) for _ in workers]
    for w in workers:
        w.join(10)
    lat = np.concatenate([np.asarray(p[0]) for p in parts]) * 1000
    sent = sum(p[2] for p in parts)
    return {"rate": rate, "seconds": seconds, "sent": sent, "answered": int(lat.size),
            "errors": sum(p[1] for p in parts), "p50_ms": float(np.percentile(lat, 50)),
            "p90_ms": float(np.percentile(lat, 90)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


FEATURE_DEFS = '''
from datetime import timedelta

from shipyard.features import Entity, FeatureService, FeatureView, Field, Float64, PushSource

customer = Entity("customer", ["customer_id"], value_types="int64")
profile = FeatureView("profile", [customer], [Field(f"f{{i}}", Float64) for i in range({lo}, {hi})],
                      source=PushSource("profile_push"), ttl=timedelta(days=30))
profile_service = FeatureService("profile_service", [profile])
'''


def setup_project(project: Path, model_dir: Path, names: list[str], redis_url: str | None,
                  log_rate: float = 0.0) -> str:
    """The project with the model (and the scene); returns a predict-only token, as a client uses."""
    import datetime as dt

    import shipyard as sy
    from shipyard.serving import apply_scene
    from shipyard.serving import flow as F

    options = {"online_store": redis_url} if redis_url else {}
    ws = sy.connect(project, validation_subprocess=False, **options)
    mv = ws.registry.register(model_dir, "bench", await_validation=True)
    ws.registry.set_alias("bench", "champion", mv.version, force=True)
    if redis_url:
        folder = project / "features"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "definitions.py").write_text(FEATURE_DEFS.format(lo=N_REQUEST_FIELDS, hi=N_REQUEST_FIELDS + N_ONLINE))
        ws.features.apply(folder)
        rng = np.random.default_rng(1)
        now = dt.datetime.now(dt.UTC)
        rows = [{"customer_id": c, "event_timestamp": now - dt.timedelta(hours=1),
                 **{n: float(v) for n, v in zip(names[N_REQUEST_FIELDS:], rng.normal(size=N_ONLINE), strict=True)}}
                for c in range(ENTITIES)]
        ws.features.push("profile", rows, to_offline=False)
        inputs = {"customer_id": "long", **{n: "double" for n in names[:N_REQUEST_FIELDS]}}
        apply_scene(ws, {"name": "bench_scene", "inputs": inputs, "outputs": ["score"],
                         "flow": [F.features("profile_service", {"customer_id": "customer_id"}),
                                  F.model("bench", "champion", output="score")],
                         "log": {"sample_rate": log_rate}})
    from shipyard.auth.bootstrap import ensure_first_admin

    ensure_first_admin(ws.auth, project)
    ws.auth.create_user("bench-app", kind="service", roles={"default": "predictor"}, actor="bench")
    token = ws.auth.create_token("bench-app", scopes=["predict"], actor="bench").token
    ws.close()
    return token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["model", "scene"], default="model")
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-rate", type=float, default=0.0,
                        help="the scene's prediction-log sample_rate (0 logs nothing, 1 logs every request)")
    args = parser.parse_args()
    rate = args.rate or (1000.0 if args.case == "model" else 200.0)
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        run(args, rate, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, rate: float, work: Path) -> None:
    model_dir, *_, names, _row, _label = train(work)
    project = work / "project"
    prefix = f"shipyard-bench-{uuid.uuid4().hex[:8]}:"
    redis_url = f"{args.redis}?prefix={prefix}" if args.case == "scene" else None
    token = setup_project(project, model_dir, names, redis_url, args.log_rate)
    rng = np.random.default_rng(2)
    if args.case == "model":
        path = "/v1/models/bench/champion/predict"
        bodies = [json.dumps(dict(zip(names, rng.normal(size=len(names)).tolist(), strict=True))).encode()
                  for _ in range(256)]
    else:
        path = "/v1/scenes/bench_scene/predict"
        bodies = [json.dumps({"customer_id": int(rng.integers(0, ENTITIES)),
                              **dict(zip(names[:N_REQUEST_FIELDS], rng.normal(size=N_REQUEST_FIELDS).tolist(),
                                         strict=True))}).encode() for _ in range(256)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "SHIPYARD_PROJECT_DIR": str(project)}
    if redis_url:
        env["SHIPYARD_ONLINE_STORE"] = redis_url
    port = free_port()
    proc = start(["uvicorn", "shipyard.server:app_factory", "--factory", "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1", "--log-level", "warning", "--no-access-log"], env, work / "server.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping")
        warm = fixed_rate(port, path, bodies, min(rate, 200.0), 2.0, 1, token)
        assert warm["errors"] == 0, (warm, (work / "server.log").read_text()[-2000:])
        result = fixed_rate(port, path, bodies, rate, args.seconds, args.procs, token)
    finally:
        stop(proc)
        if redis_url:
            from shipyard.features.online.redis_store import RedisOnlineStore

            store = RedisOnlineStore(args.redis, prefix=prefix)
            store.delete_prefix()
            store.close()
    print(f"{args.case}: {path} at {rate:.0f} req/s for {args.seconds:g} s from {args.procs} generator "
          f"process(es), {os.cpu_count()} CPUs, log sample_rate {args.log_rate:g}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
