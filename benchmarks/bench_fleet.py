"""Scale-out through nginx: throughput and p99 with 1, 2 and 4 `shipyard server` processes, and the
cost of a global (Redis) limit check against a server-scope one.

Every server is one process (``--workers 1``) on one project: PostgreSQL metadata (a fresh
database, dropped at the end), Redis for global limits (keys under a fresh prefix, deleted at the
end), artifacts in a temp folder. Debian's nginx balances them (keep-alive upstreams); `wrk`
(closed loop, ``--threads 2 --connections C``) posts single-record requests to an expression-only
scene, so the figures are the serving stack's, not a model's. Scaling efficiency is
``throughput(N) / (N x throughput(1))``; the machine's cores are shared by the servers, nginx and
wrk, so on 2 cores it cannot approach 1.

The limit check is measured twice: end to end (the same scene with ``rate_per_s`` far above the
load, ``scope: server`` vs ``scope: global``, through one server) and alone (``Guard.admit`` +
``release`` in a loop, per-call p50/p99, local buckets vs the Redis script).

    python benchmarks/bench_fleet.py [--seconds 10] [--connections 32] [--servers 1,2,4] \
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] \
        [--redis-url redis://127.0.0.1:6379/0]

The URLs default to SHIPYARD_TEST_POSTGRES_URL / SHIPYARD_TEST_REDIS_URL; nginx and wrk must be on
PATH (or /usr/sbin/nginx). Without wrk, a Python closed-loop generator is used (and says so).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

BIG_RATE = 1e9  # a limit the load never reaches: the check runs, nothing is refused


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ok(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"port {port} not ready")


def nginx_conf(folder: Path, port: int, upstreams: list[int]) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in upstreams)
    conf = folder / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy; fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
  upstream shipyard {{
{servers}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://shipyard; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_next_upstream error timeout non_idempotent;
    }}
  }}
}}
""")
    return conf


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_wrk(port: int, path: str, token: str, seconds: float, connections: int, folder: Path) -> dict[str, float]:
    script = folder / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.body = \'{"x": 1.0}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


def run_python(port: int, path: str, token: str, seconds: float, connections: int) -> dict[str, float]:
    """Closed loop from threads (only when wrk is missing: it measures the generator too)."""
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            conn.request("POST", path, '{"x": 1.0}', {"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t)
            if resp.status != 200:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arr = np.asarray(latencies) * 1000
    return {"rps": len(arr) / seconds, "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)), "errors": errors[0]}


def check_alone(redis_url: str, n: int = 20_000) -> dict[str, dict[str, float]]:
    """Per-call cost of Guard.admit + release: local token bucket vs the Redis script."""
    import redis

    from shipyard.serving.global_limits import FleetLimits
    from shipyard.serving.resilience import Guard

    prefix = f"sy-bench-{uuid.uuid4().hex[:8]}:"
    fleet = FleetLimits(lambda: redis.Redis.from_url(redis_url), prefix=prefix, instance="bench")
    out = {}
    try:
        for scope in ("server", "global"):
            limits = {"rate_per_s": BIG_RATE, "max_concurrency": 1000, "scope": scope}
            guard = Guard("scene 'bench'", limits, 1, lambda lim, w, local: fleet.limiter("bench", "s", lim, w, local))
            times = np.empty(n)
            for i in range(n):
                t = time.perf_counter_ns()
                guard.release(guard.admit("client-1"))
                times[i] = time.perf_counter_ns() - t
            times /= 1000
            out[scope] = {"p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99))}
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--servers", default="1,2,4")
    parser.add_argument("--postgres-url", default=os.environ.get("SHIPYARD_TEST_POSTGRES_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("SHIPYARD_TEST_REDIS_URL", ""))
    args = parser.parse_args()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not (args.postgres_url and args.redis_url and nginx):
        sys.exit("bench_fleet needs --postgres-url, --redis-url (or SHIPYARD_TEST_* variables) and nginx")
    have_wrk = shutil.which("wrk") is not None
    counts = [int(c) for c in args.servers.split(",")]

    import redis
    import sqlalchemy as sa
    import yaml

    from shipyard.auth.bootstrap import ensure_first_admin
    from shipyard.config import load_settings
    from shipyard.serving import apply_scene
    from shipyard.serving import flow as F
    from shipyard.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="sy-bench-fleet-"))
    db = f"sy_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
    prefix = f"sy-bench-{uuid.uuid4().hex[:8]}:"
    project = tmp / "project"
    project.mkdir()
    sep = "&" if "?" in args.redis_url else "?"
    (project / "shipyard.yaml").write_text(yaml.safe_dump({
        "metadata_url": sa.make_url(args.postgres_url).set(database=db).render_as_string(hide_password=False),
        "artifact_root": str(tmp / "artifacts"), "limits_store": f"{args.redis_url}{sep}prefix={prefix}",
        "prediction_log_sample_rate": 0.0, "validation_subprocess": False}))
    ws = Workspace(load_settings(project, user="bench"))
    ensure_first_admin(ws.auth, project)
    ws.auth.create_user("bench", kind="service", actor="bench")
    ws.auth.grant("bench", "*", "admin", actor="bench")
    token = ws.auth.create_token("bench", expires_in_days=None, actor="bench").token
    base = {"inputs": {"x": "double"}, "flow": [F.expr("y", "x * 2")], "outputs": ["y"], "log": {"sample_rate": 0.0}}
    apply_scene(ws, {"name": "plain", **base})
    apply_scene(ws, {"name": "limit_server", **base, "limits": {"rate_per_s": BIG_RATE, "scope": "server"}})
    apply_scene(ws, {"name": "limit_global", **base, "limits": {"rate_per_s": BIG_RATE, "scope": "global"}})
    ws.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    nginx_proc = None
    load = (lambda port, path: run_wrk(port, path, token, args.seconds, args.connections, tmp)) if have_wrk else \
        (lambda port, path: run_python(port, path, token, args.seconds, args.connections))
    rows = []
    try:
        for n in counts:
            while len(procs) < n:
                port = free_port()
                log = (tmp / f"server-{port}.log").open("wb")
                procs.append(subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project),
                                               "server", "--port", str(port), "--workers", "1"],
                                              env=env, stdout=log, stderr=log))
                ports.append(port)
                wait_ok(port, "/healthz", procs[-1])
            stop(nginx_proc, signal.SIGQUIT)
            proxy = free_port()
            folder = tmp / f"nginx-{n}"
            conf = nginx_conf(folder, proxy, ports[:n])
            nginx_proc = subprocess.Popen([nginx, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            for p in ports[:n]:  # every server has the scene loaded
                for scene in ("plain", "limit_server", "limit_global"):
                    conn = http.client.HTTPConnection("127.0.0.1", p, timeout=30)
                    conn.request("POST", f"/v1/scenes/{scene}/predict", '{"x": 1.0}',
                                 {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
                    conn.getresponse().read()
            run_wrk_short = load(proxy, "/v1/scenes/plain/predict")  # warm-up
            del run_wrk_short
            result = load(proxy, "/v1/scenes/plain/predict")
            rows.append((n, result))
            print(f"{n} server(s) through nginx: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                  f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}", flush=True)
        one = rows[0][1]["rps"]
        print("\n| servers | req/s | p50 ms | p99 ms | scaling efficiency |\n| ---: | ---: | ---: | ---: | ---: |")
        for n, r in rows:
            print(f"| {n} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps'] / (n * one):.2f} |")
        # the limit check end to end: one server, direct (no proxy), same load
        direct = {}
        for scene in ("plain", "limit_server", "limit_global"):
            direct[scene] = load(ports[0], f"/v1/scenes/{scene}/predict")
        print("\n| one server, direct | req/s | p50 ms | p99 ms | errors |\n| --- | ---: | ---: | ---: | ---: |")
        for scene, r in direct.items():
            print(f"| {scene} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
        print(f"\np99 global / server scope: {direct['limit_global']['p99_ms'] / direct['limit_server']['p99_ms']:.2f}")
        alone = check_alone(args.redis_url)
        print("\n| check alone (admit + release) | p50 µs | p99 µs |\n| --- | ---: | ---: |")
        for scope, r in alone.items():
            print(f"| scope: {scope} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |")
        print(f"\ngenerator: {'wrk -t2 -c' + str(args.connections) if have_wrk else 'Python threads (no wrk)'}, "
              f"{args.seconds:g} s per row; cores: {os.cpu_count()}")
    finally:
        stop(nginx_proc, signal.SIGQUIT)
        for proc in procs:
            stop(proc)
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}"')
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
