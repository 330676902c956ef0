"""Online features: Shipyard vs Feast on the same data, SQLite and Redis backends.

    python benchmarks/bench_online.py [--entities 10000] [--rows-a 1000000] [--rows-b 100000] [--reads 2000]
                                      [--backends sqlite,redis] [--redis redis://127.0.0.1:6379/0] [--skip-feast]

Data: E entities; view_a has 5 float features (TTL 2 days) and ``rows_a`` rows over the last 10 days,
view_b 5 integer features (TTL 30 days) and ``rows_b`` rows. Both stores materialize the same
Parquet files over the same window (``--materialize-runs`` times: the first into a fresh store, the
rest overwriting it), then read 10 features (5 from each view) for 1 and for 100
entities: in-process (``get_online_features``) and over HTTP (``shipyard server`` vs ``feast
serve``). Feast runs in its own virtualenv (``--feast-python``) as a subprocess. Materialization
speed is input rows per second. Feast's Redis store uses database 13, which is flushed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FEATURES = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]

DEFINITIONS = """
from datetime import timedelta

from shipyard.features import Entity, FeatureView, Field, FileSource, Float64, Int64

user = Entity("user", ["user_id"], value_types="int64")
view_a = FeatureView("view_a", [user], [Field(f"a{{i}}", Float64) for i in range(5)],
                     source=FileSource("{data}/view_a.parquet"), timestamp_field="ts", ttl=timedelta(days=2))
view_b = FeatureView("view_b", [user], [Field(f"b{{i}}", Int64) for i in range(5)],
                     source=FileSource("{data}/view_b.parquet"), timestamp_field="ts", ttl=timedelta(days=30))
"""


def make_data(folder: Path, entities: int, rows_a: int, rows_b: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    end = pd.Timestamp.now(tz="UTC").floor("s")
    start = end - pd.Timedelta(days=10)
    span = int((end - start).total_seconds())
    a = pd.DataFrame({"user_id": rng.integers(0, entities, rows_a, dtype=np.int64),
                      "ts": start + pd.to_timedelta(rng.integers(0, span, rows_a), unit="s")})
    for i in range(5):
        a[f"a{i}"] = rng.normal(size=rows_a)
    b = pd.DataFrame({"user_id": rng.integers(0, entities, rows_b, dtype=np.int64),
                      "ts": start + pd.to_timedelta(rng.integers(0, span // 86400 + 1, rows_b) * 86400, unit="s")})
    for i in range(5):
        b[f"b{i}"] = rng.integers(0, 1000, rows_b, dtype=np.int64)
    a["ts"] = a["ts"].astype("datetime64[us, UTC]")
    b["ts"] = b["ts"].astype("datetime64[us, UTC]")
    # one row per (entity, time): without a created timestamp a tie has no defined winner
    a = a.drop_duplicates(["user_id", "ts"])
    b = b.drop_duplicates(["user_id", "ts"])
    a.to_parquet(folder / "view_a.parquet", index=False)
    b.to_parquet(folder / "view_b.parquet", index=False)
    keys = [int(k) for k in rng.permutation(np.intersect1d(a.user_id.unique(), b.user_id.unique()))[:2000]]
    meta = {"start": start.isoformat(), "end": (end + pd.Timedelta(seconds=1)).isoformat(), "keys": keys,
            "rows": len(a) + len(b)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def timed(fn, n: int) -> dict:
    fn(0)
    samples = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {"p50_us": statistics.median(samples) * 1e6, "p99_us": samples[int(0.99 * (len(samples) - 1))] * 1e6}


class Http:
    """Keep-alive JSON POSTs over the standard library (the same client on both sides)."""

    def __init__(self, port: int) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get_ok(self, path: str) -> bool:
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            self.conn.close()
            return False

    def post(self, path: str, body: dict) -> bytes:
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {data[:300]!r}")
        return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_shipyard(project: Path, meta: dict, online_url: str, reads: int, materialize_runs: int) -> dict:
    from shipyard.config import load_settings
    from shipyard.features.materialize import materialize
    from shipyard.features.online import online_store_of
    from shipyard.features.online_features import get_online_features
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(project, online_store=online_url))
    store = ws.features
    store.apply(project / "features")
    keys = meta["keys"]
    out: dict = {"materialize_s": []}  # the first run writes a fresh store, later ones overwrite every entity
    for _ in range(materialize_runs):
        t0 = time.perf_counter()
        results = materialize(store, meta["start"], meta["end"])
        out["materialize_s"].append(time.perf_counter() - t0)
    out["written"] = sum(r.rows_written for r in results)

    def one(i: int) -> dict:
        return get_online_features(store, {"user_id": [keys[i % len(keys)]]}, features=FEATURES)

    def hundred(i: int) -> dict:
        return get_online_features(store, {"user_id": [keys[(i * 100 + j) % len(keys)] for j in range(100)]},
                                   features=FEATURES)

    sample = one(0)
    out["check"] = {"a0": sample["a0"][0], "b0": sample["b0"][0]}
    out["in_process_1"] = timed(one, reads)
    out["in_process_100"] = timed(hundred, max(reads // 10, 50))

    port = free_port()
    env = {**os.environ, "SHIPYARD_ONLINE_STORE": online_url}
    server = subprocess.Popen([str(Path(sys.executable).parent / "shipyard"), "--project", str(project), "server",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        client = Http(port)
        deadline = time.time() + 60
        while time.time() < deadline and not client.get_ok("/healthz"):
            time.sleep(0.3)

        def http_one(i: int) -> None:
            body = {"features": FEATURES, "entities": {"user_id": [keys[i % len(keys)]]}}
            client.post("/api/v1/features/online", body)

        def http_hundred(i: int) -> None:
            body = {"features": FEATURES, "entities": {"user_id": [keys[(i * 100 + j) % len(keys)] for j in range(100)]}}
            client.post("/api/v1/features/online", body)

        out["http_1"] = timed(http_one, max(reads // 4, 100))
        out["http_100"] = timed(http_hundred, max(reads // 20, 50))
    finally:
        server.terminate()
        server.wait(timeout=30)
    online = online_store_of(store)
    if hasattr(online, "delete_prefix"):
        online.delete_prefix()
    ws.close()
    return out


def run_feast(python: str, data: Path, backend: str, redis_url: str, reads: int, materialize_runs: int) -> dict:
    host = redis_url.split("://", 1)[1].split("/", 1)[0]
    conn = f"{host},db=13"
    done = subprocess.run([python, str(HERE / "_online_feast.py"), str(data), backend, conn, str(reads),
                           str(materialize_runs)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"Feast run failed:\n{done.stderr[-3000:]}")
    if backend == "redis":
        import redis

        redis.Redis.from_url(f"redis://{host}/13").flushdb()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rows-a", type=int, default=1_000_000)
    parser.add_argument("--rows-b", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--feast-python", default="/work/venv-feast/bin/python")
    parser.add_argument("--materialize-runs", type=int, default=3,
                        help="materializations timed per tool: the first into a fresh store, the rest overwrite")
    parser.add_argument("--skip-feast", action="store_true", help="run Shipyard only (no ratios)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-online-"))
    data = root / "data"
    data.mkdir()
    meta = make_data(data, args.entities, args.rows_a, args.rows_b)
    rows: list[tuple[str, str, dict, dict]] = []
    mats: list[tuple[str, float, float]] = []
    for backend in args.backends.split(","):
        project = root / f"project-{backend}"
        (project / "features").mkdir(parents=True)
        (project / "features" / "definitions.py").write_text(DEFINITIONS.format(data=data))
        url = "sqlite" if backend == "sqlite" else f"{args.redis}?prefix=bench-{uuid.uuid4().hex[:8]}:"
        ours = run_shipyard(project, meta, url, args.reads, args.materialize_runs)
        if args.skip_feast:
            print(f"[{backend}] materialize {_rates(meta['rows'], ours['materialize_s'])}; read p50/p99 µs: " + ", ".join(
                      f"{path} {ours[path]['p50_us']:.1f}/{ours[path]['p99_us']:.1f}"
                      for path in ("in_process_1", "in_process_100", "http_1", "http_100")))
            continue
        theirs = run_feast(args.feast_python, data, backend, args.redis, args.reads, args.materialize_runs)
        agree = all(abs((ours["check"][k] or 0) - (theirs["check"][k] or 0)) < 1e-9 for k in ("a0", "b0"))
        print(f"[{backend}] same values for a sample entity: {agree} (shipyard {ours['check']}, feast {theirs['check']})")
        for path in ("in_process_1", "in_process_100", "http_1", "http_100"):
            rows.append((backend, path, ours[path], theirs[path]))
        mats.append((backend, ours["materialize_s"], theirs["materialize_s"]))

    if args.skip_feast:
        return
    print(f"\nOnline read of 10 features (5 float + 5 int from two views); {args.entities:,} entities")
    print(f"{'backend':8} {'path':16} {'shipyard p50':>13} {'p99':>10} {'feast p50':>11} {'p99':>10} {'p50 ratio':>10} {'p99 ratio':>10}")
    for backend, path, ours, theirs in rows:
        print(f"{backend:8} {path:16} {ours['p50_us']:11.1f}µs {ours['p99_us']:8.1f}µs {theirs['p50_us']:9.1f}µs "
              f"{theirs['p99_us']:8.1f}µs {theirs['p50_us'] / ours['p50_us']:9.1f}x {theirs['p99_us'] / ours['p99_us']:9.1f}x")
    print(f"\nMaterialization of {meta['rows']:,} offline rows (input rows per second; first run into a fresh "
          "store, then the median of the runs that overwrite it)")
    print(f"{'backend':8} {'run':6} {'shipyard rows/s':>16} {'feast rows/s':>13} {'ratio':>8}")
    for backend, ours_s, theirs_s in mats:
        for label, mine, other in (("first", ours_s[0], theirs_s[0]),
                                   ("later", _median(ours_s[1:]), _median(theirs_s[1:]))):
            if mine is None or other is None:
                continue
            print(f"{backend:8} {label:6} {meta['rows'] / mine:16,.0f} {meta['rows'] / other:13,.0f} "
                  f"{other / mine:7.1f}x")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rates(rows: int, seconds: list[float]) -> str:
    return ", ".join(f"{rows / s:,.0f} rows/s ({s:.3f} s)" for s in seconds)


if __name__ == "__main__":
    main()
