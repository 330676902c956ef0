"""Online features: Shipyard vs Feast on the same data, SQLite and Redis backends, in one run.

    python benchmarks/bench_online.py --feast-python VENV/bin/python [--entities 10000] [--rows-a 1000000]
        [--rows-b 100000] [--reads 2000] [--backends sqlite,redis] [--redis redis://host:6379/0]
        [--materialize-runs 3]
    python benchmarks/bench_online.py --skip-feast ...      # Shipyard alone, no ratios

Feast runs in its own virtualenv as a subprocess (``python3 -m venv VENV && VENV/bin/pip install
'feast[redis]'``); a missing or broken one fails the run. Nothing has a machine-specific default.

Data: E entities; view_a has 5 float features (TTL 2 days) and ``rows_a`` rows over the last 10
days, view_b 5 integer features (TTL 30 days) and ``rows_b`` daily rows. Both tools materialize the
same Parquet files over the same window (``--materialize-runs`` times: the first into a fresh
store, the rest overwriting it; Shipyard also one view at a time, since by default it runs views in
parallel and Feast one after the other), then read 10 features (5 from each view) for 1 and for
100 entities: in-process (``get_online_features``, both sides' answers as a dict of Python lists:
Feast's ``.to_dict()``) and over HTTP (``shipyard server`` vs ``feast serve``, the same client).

Shipyard's HTTP requests carry a read-only bearer token (its server refuses anonymous reads);
``feast serve`` has no authentication, so Feast's carry none.

Every answer is checked, on both sides, against the latest values computed from the Parquet files
with pandas: every key and feature of every timed request (re-run after the timing), plus entities
that do not exist (which must be null, not 0). Any mismatch fails the run. HTTP payloads differ
(Feast sends a status and an event time per value); their sizes are printed.

Redis: unless ``--redis`` is given, the benchmark starts its own redis-server on a free loopback
port for both tools (Shipyard database 0 under its own prefix, Feast database 1) and stops it at
the end; with ``--redis`` Shipyard uses that server under a fresh prefix, deleted at the end, and
Feast still gets the private server. Nothing is flushed. The one-entity Redis read is printed next
to a bare redis-py round trip of the same two keys (one MGET), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FEATURES = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]
NAMES = [f.split(":")[1] for f in FEATURES]
UNKNOWN = 20  # entity ids past the data, asked for in the checks: every value must be null

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
            "unknown": list(range(entities + 1000, entities + 1000 + UNKNOWN)), "rows": len(a) + len(b)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def reference(folder: Path, meta: dict) -> dict[int, dict[str, Any]]:
    """The value each tool must return per entity: the latest row in the window, null past the TTL."""
    now = pd.Timestamp.now(tz="UTC")
    start, end = pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"])
    wanted = set(meta["keys"]) | set(meta["unknown"])
    out: dict[int, dict[str, Any]] = {k: dict.fromkeys(NAMES) for k in wanted}
    for view, ttl, cols in (("view_a", pd.Timedelta(days=2), NAMES[:5]), ("view_b", pd.Timedelta(days=30), NAMES[5:])):
        frame = pd.read_parquet(folder / f"{view}.parquet")
        frame = frame[(frame.ts >= start) & (frame.ts < end) & frame.user_id.isin(wanted)]
        latest = frame.sort_values("ts").groupby("user_id").tail(1)
        latest = latest[latest.ts >= now - ttl]
        # plain Python values (float, int) from each column's own dtype
        for user, *values in zip(latest.user_id.tolist(), *(latest[c].tolist() for c in cols), strict=True):
            out[int(user)].update(zip(cols, values, strict=True))
    return out


def check(label: str, answers: list[tuple[list[int], dict[str, list[Any]]]], want: dict[int, dict[str, Any]],
          problems: list[str]) -> int:
    """Compare every value of every answer with the reference (same type, None only for None)."""
    checked = 0
    for keys, columns in answers:
        for name in NAMES:
            if len(columns.get(name, ())) != len(keys):
                problems.append(f"{label}: {len(columns.get(name, ()))} values of {name} for {len(keys)} keys")
                return checked
        for j, key in enumerate(keys):
            for name in NAMES:
                got, expected = columns[name][j], want[key][name]
                ok = got is None if expected is None else (type(got) is type(expected) and got == expected)
                if not ok:
                    problems.append(f"{label}: user {key} {name} = {got!r}, expected {expected!r}")
                    if len(problems) > 20:
                        return checked
                checked += 1
    return checked


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

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json", **(headers or {})}

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
        self.conn.request("POST", path, json.dumps(body).encode(), self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {data[:300]!r}")
        return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, int]:
    """A private redis-server on a free loopback port, no persistence."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed; install it or pass --backends sqlite")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the private redis-server did not start")


def one_keys(keys: list[int], i: int) -> list[int]:
    return [keys[i % len(keys)]]


def hundred_keys(keys: list[int], i: int) -> list[int]:
    return [keys[(i * 100 + j) % len(keys)] for j in range(100)]


def run_shipyard(project: Path, meta: dict, online_url: str, reads: int, materialize_runs: int,
                 want: dict[int, dict[str, Any]], problems: list[str]) -> dict:
    from shipyard.config import load_settings
    from shipyard.features.online import online_store_of
    from shipyard.features.online_features import get_online_features
    from shipyard.workspace import Workspace

    out: dict = {}
    opened = []
    try:
        # the default (views in parallel) first, then one view at a time into a fresh store
        for label, parallel, url in (("materialize_s", None, online_url),
                                     ("materialize_serial_s", 1, online_url.replace("?prefix=", "?prefix=serial-"))):
            ws = Workspace(load_settings(project / label, online_store=url))
            opened.append(ws)
            store = ws.features
            (project / label / "features").mkdir(parents=True, exist_ok=True)
            (project / label / "features" / "definitions.py").write_text((project / "definitions.py").read_text())
            store.apply(project / label / "features")
            out[label] = []
            for _ in range(materialize_runs):
                t0 = time.perf_counter()
                results = store.materialize(meta["start"], meta["end"], parallel=parallel)
                out[label].append(time.perf_counter() - t0)
            out["written"] = sum(r.rows_written for r in results)
        store = opened[0].features
        keys, unknown = meta["keys"], meta["unknown"]

        def ask(entity_keys: list[int]) -> dict:
            return get_online_features(store, {"user_id": entity_keys}, features=FEATURES)

        def one(i: int) -> dict:
            return ask(one_keys(keys, i))

        def hundred(i: int) -> dict:
            return ask(hundred_keys(keys, i))

        n_one, n_hundred = reads, max(reads // 10, 50)
        out["in_process_1"] = timed(one, n_one)
        online = online_store_of(store)
        if online.kind == "redis":  # the same read as one bare redis-py command, same run
            out["bare_mget_1"] = bare_mget(online_url.split("?")[0], online.prefix, keys, n_one)
        out["in_process_100"] = timed(hundred, n_hundred)
        checked = check("shipyard in-process 1", [(one_keys(keys, i), one(i)) for i in range(n_one)], want, problems)
        checked += check("shipyard in-process 100", [(hundred_keys(keys, i), hundred(i)) for i in range(n_hundred)]
                         + [(unknown, ask(unknown)), *[([k], ask([k])) for k in unknown]], want, problems)

        # the server refuses anonymous reads: a read-only service account's token, as a client would use
        from shipyard.auth.bootstrap import ensure_first_admin

        auth = opened[0].auth
        ensure_first_admin(auth, project / "materialize_s")
        auth.create_user("bench-reader", kind="service", roles={"default": "viewer"}, actor="bench")
        token = auth.create_token("bench-reader", scopes=["read"], actor="bench").token
        port = free_port()
        env = {**os.environ, "SHIPYARD_ONLINE_STORE": online_url}
        cli = Path(sys.executable).parent / "shipyard"  # the console script of this interpreter's install
        server = subprocess.Popen([str(cli), "--project", str(project / "materialize_s"), "server", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            client = Http(port, {"Authorization": f"Bearer {token}"})
            deadline = time.time() + 60
            while not client.get_ok("/healthz"):
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("shipyard server did not start")
                time.sleep(0.3)

            def http(entity_keys: list[int]) -> bytes:
                return client.post("/api/v1/features/online", {"features": FEATURES, "entities": {"user_id": entity_keys}})

            n_http_1, n_http_100 = max(reads // 4, 100), max(reads // 20, 50)
            out["http_1"] = timed(lambda i: http(one_keys(keys, i)), n_http_1)
            out["http_100"] = timed(lambda i: http(hundred_keys(keys, i)), n_http_100)
            answers = []
            sizes = {}
            for label, n, pick in (("1", n_http_1, one_keys), ("100", n_http_100, hundred_keys)):
                for i in range(n):
                    body = http(pick(keys, i))
                    sizes.setdefault(label, len(body))
                    answers.append((pick(keys, i), json.loads(body)["results"]))
            answers += [(unknown, json.loads(http(unknown))["results"])]
            out["http_bytes"] = sizes
            checked += check("shipyard HTTP", answers, want, problems)
        finally:
            server.terminate()
            server.wait(timeout=30)
        out["checked"] = checked
    finally:
        for ws in opened:
            online = online_store_of(ws.features)
            if hasattr(online, "delete_prefix"):
                online.delete_prefix()
            ws.close()
    return out


def bare_mget(url: str, prefix: str, keys: list[int], n: int) -> dict:
    """One MGET of the entity's two rows through a redis-py client of its own (one connection,
    no pool checkout): the floor under a one-entity read, measured in the same run."""
    import redis

    client = redis.Redis.from_url(url, single_connection_client=True, socket_timeout=5)
    try:
        rows = [[f"{prefix}row:{view}:[{k}]".encode() for view in ("view_a", "view_b")] for k in keys]
        if any(v is None for v in client.execute_command("MGET", *rows[0])):
            raise RuntimeError("the bare MGET found no rows; the key layout changed")
        return timed(lambda i: client.execute_command("MGET", *rows[i % len(rows)]), n)
    finally:
        client.close()


def run_feast(python: str, data: Path, backend: str, redis_port: int, reads: int, materialize_runs: int,
              want: dict[int, dict[str, Any]], problems: list[str]) -> dict:
    answers_file = data / f"feast-answers-{backend}.json"
    done = subprocess.run([python, str(HERE / "_online_feast.py"), str(data), backend, f"127.0.0.1:{redis_port},db=1",
                           str(reads), str(materialize_runs), str(answers_file)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the Feast run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    checked = 0
    for label, answers in json.loads(answers_file.read_text()).items():
        checked += check(f"feast {label}", [(keys, columns) for keys, columns in answers], want, problems)
    result["checked"] = checked
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rows-a", type=int, default=1_000_000)
    parser.add_argument("--rows-b", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--redis", default="", help="Shipyard's Redis server (default: a private one for both tools)")
    parser.add_argument("--feast-python", default=os.environ.get("FEAST_PYTHON", ""),
                        help="python of a virtualenv with feast[redis] (or FEAST_PYTHON)")
    parser.add_argument("--materialize-runs", type=int, default=3,
                        help="materializations timed per tool: the first into a fresh store, the rest overwrite")
    parser.add_argument("--skip-feast", action="store_true", help="run Shipyard only (no ratios)")
    args = parser.parse_args()
    if not args.skip_feast and not (args.feast_python and Path(args.feast_python).exists()):
        raise SystemExit("Feast's python is needed (--feast-python or FEAST_PYTHON): create it with "
                         "python3 -m venv VENV && VENV/bin/pip install 'feast[redis]', or pass --skip-feast")

    root = Path(tempfile.mkdtemp(prefix="bench-online-"))
    redis_proc = None
    try:
        data = root / "data"
        data.mkdir()
        meta = make_data(data, args.entities, args.rows_a, args.rows_b)
        want = reference(data, meta)
        backends = args.backends.split(",")
        redis_port = 0
        if "redis" in backends:
            redis_proc, redis_port = start_redis(root)
        problems: list[str] = []
        results = {}
        for backend in backends:
            project = root / f"project-{backend}"
            project.mkdir()
            (project / "definitions.py").write_text(DEFINITIONS.format(data=data))
            base = args.redis or f"redis://127.0.0.1:{redis_port}/0"
            url = "sqlite" if backend == "sqlite" else f"{base}?prefix=bench-{uuid.uuid4().hex[:8]}:"
            ours = run_shipyard(project, meta, url, args.reads, args.materialize_runs, want, problems)
            theirs = None if args.skip_feast else run_feast(args.feast_python, data, backend, redis_port, args.reads,
                                                            args.materialize_runs, want, problems)
            results[backend] = (ours, theirs)
        report(meta, args, results)
        if problems:
            print("\nVALUES DIFFER (the figures above do not count):", *problems[:20], sep="\n  ")
            raise SystemExit(1)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def report(meta: dict, args: argparse.Namespace, results: dict) -> None:
    for backend, (ours, theirs) in results.items():
        print(f"[{backend}] values checked against pandas: shipyard {ours['checked']:,}"
              + ("" if theirs is None else f", feast {theirs['checked']:,}")
              + f"; HTTP answer bytes (1 / 100 entities): shipyard {ours['http_bytes']['1']:,} / "
                f"{ours['http_bytes']['100']:,}"
              + ("" if theirs is None else f", feast {theirs['http_bytes']['1']:,} / {theirs['http_bytes']['100']:,} "
                 "(a status and an event time per value)"))
    print(f"\nOnline read of 10 features (5 float + 5 int from two views); {args.entities:,} entities; p50/p99 µs")
    print(f"{'backend':8} {'path':16} {'shipyard p50':>13} {'p99':>10} {'feast p50':>11} {'p99':>10} "
          f"{'p50 ratio':>10} {'p99 ratio':>10}")
    for backend, (ours, theirs) in results.items():
        for path in ("in_process_1", "in_process_100", "http_1", "http_100"):
            mine = ours[path]
            line = f"{backend:8} {path:16} {mine['p50_us']:11.1f}µs {mine['p99_us']:8.1f}µs"
            if theirs is not None:
                other = theirs[path]
                line += (f" {other['p50_us']:9.1f}µs {other['p99_us']:8.1f}µs {other['p50_us'] / mine['p50_us']:9.1f}x "
                         f"{other['p99_us'] / mine['p99_us']:9.1f}x")
            print(line)
        if "bare_mget_1" in ours:
            bare = ours["bare_mget_1"]
            print(f"{backend:8} {'bare redis-py 1':16} {bare['p50_us']:11.1f}µs {bare['p99_us']:8.1f}µs   (one MGET of "
                  f"the same two rows; Shipyard's own share of a one-entity read: "
                  f"{ours['in_process_1']['p50_us'] - bare['p50_us']:.1f} µs p50)")
    print(f"\nMaterialization of {meta['rows']:,} offline rows (input rows per second; first run into a fresh "
          "store, then the median of the runs that overwrite it). Shipyard runs views in parallel by default "
          "(one per core, 2 here); Feast one view after the other; 'one view at a time' is Shipyard with "
          "parallel=1")
    print(f"{'backend':8} {'shipyard run':22} {'run':6} {'shipyard rows/s':>16} {'feast rows/s':>13} {'ratio':>8}")
    for backend, (ours, theirs) in results.items():
        for mode, key in (("parallel (default)", "materialize_s"), ("one view at a time", "materialize_serial_s")):
            for label, pick in (("first", lambda s: s[0]), ("later", lambda s: _median(s[1:]))):
                mine = pick(ours[key])
                if mine is None:
                    continue
                line = f"{backend:8} {mode:22} {label:6} {meta['rows'] / mine:16,.0f}"
                other = None if theirs is None else pick(theirs["materialize_s"])
                if other is not None:
                    line += f" {meta['rows'] / other:13,.0f} {other / mine:7.1f}x"
                print(line)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


if __name__ == "__main__":
    sys.exit(main())

