"""A fleet on loopback: ``shipyard server`` processes on one project behind nginx.

The ``fleet`` fixture (module scope) makes a project whose metadata is a fresh PostgreSQL database,
whose global limits live in Redis under a key prefix of its own, and whose artifacts are in S3
(a moto bucket, with SHIPYARD_TEST_S3=1) or a shared folder; starts ``FLEET_SIZE`` servers on free
loopback ports and Debian's nginx in front of them (config, pid, logs and temp folders in a tmp
dir, run as the current user). Skipped, with the reason, without SHIPYARD_TEST_POSTGRES_URL and
SHIPYARD_TEST_REDIS_URL or without nginx. Tests add their scenes with ``fleet.apply``, talk to the
proxy (``fleet.url``) or to one server (``fleet.servers[i].url``); ``fleet.kill(i)`` SIGKILLs
one, ``fleet.terminate(i)`` shuts one down with SIGTERM and ``fleet.start(i)`` starts it again;
``fleet.project_ws(name)`` creates a hosted project (every server hosts it). A test module's
``FLEET_SETTINGS`` dict overrides the project's settings. Everything is torn down (database
dropped, Redis keys deleted) at the end of the module.

nginx retries a request on the other server when one does not answer (``proxy_next_upstream
error timeout non_idempotent``): predictions are safe to retry (they change nothing but the log).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

POSTGRES_URL = os.environ.get("SHIPYARD_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "")
S3_ENABLED = os.environ.get("SHIPYARD_TEST_S3") == "1"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
FLEET_SIZE = 2
START_S = 120.0  # importing the stack on a busy 2-core machine takes a while


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; (status, decoded JSON body or raw text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


@dataclass
class FleetServer:
    index: int
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Fleet:
    project: Path
    ws: Any  # a Workspace on the fleet's project (scenes, reading the store)
    headers: dict[str, str]
    proxy_port: int
    servers: list[FleetServer] = field(default_factory=list)
    redis_prefix: str = ""
    _projects: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def apply(self, scene: dict[str, Any]) -> None:
        from shipyard.serving import apply_scene

        apply_scene(self.ws, scene)

    def call(self, method: str, path: str, body: Any = None, server: int | None = None) -> tuple[int, Any]:
        """Through the proxy, or to one server with ``server=i``."""
        port = self.proxy_port if server is None else self.servers[server].port
        return request(port, method, path, body, self.headers)

    def kill(self, index: int) -> None:
        """SIGKILL one server: no shutdown, no flush, no lease released."""
        srv = self.servers[index]
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)

    def terminate(self, index: int) -> int:
        """SIGTERM one server and wait for its graceful shutdown; its exit status (uvicorn ends by
        raising the signal again, so -15)."""
        srv = self.servers[index]
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        return srv.proc.wait(60)

    def start(self, index: int) -> None:
        """Start a stopped server again, on its port (nginx sends it requests again)."""
        srv = self.servers[index]
        assert not srv.alive()
        _start_server(self.project, srv)

    def project_ws(self, name: str) -> Any:
        """The workspace of hosted project ``name``, created on first use (the servers read the
        project list from the database, so they host it without a restart)."""
        from shipyard.auth.projects import ProjectWorkspaces

        if self._projects is None:
            self._projects = ProjectWorkspaces(self.ws)
        if name not in self._projects.names():
            self._projects.create(name, "", actor="fleet-test")
        return self._projects.get(name)

    def close(self) -> None:
        if self._projects is not None:
            self._projects.close()


def _write_nginx(folder: Path, port: int, upstreams: list[int]) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  upstream shipyard {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://shipyard;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      # predictions change nothing but the log: safe to retry on the other server
      proxy_next_upstream error timeout non_idempotent;
      proxy_next_upstream_tries 2;
    }}
  }}
}}
""")
    return conf


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str, path: str | None = None) -> None:
    deadline = time.time() + START_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log.read_text()[-3000:] if log.exists() else ''}")
        try:
            if path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            elif request(port, "GET", path, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start in {START_S:g} s:\n{log.read_text()[-3000:] if log.exists() else ''}")


def _start_server(project: Path, srv: FleetServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    with srv.log.open("ab") as out:
        srv.proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project), "server",
                                     "--port", str(srv.port), "--workers", "1"], env=env, stdout=out, stderr=out)
    _wait_port(srv.port, srv.proc, srv.log, f"server {srv.index}", "/healthz")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("the fleet tests need SHIPYARD_TEST_POSTGRES_URL and SHIPYARD_TEST_REDIS_URL")
    if NGINX is None:
        pytest.skip("the fleet tests need nginx (Debian: apt-get install nginx-light); none on PATH or /usr/sbin")
    import redis
    import sqlalchemy as sa

    from shipyard.auth.bootstrap import ensure_first_admin
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace
    from tests.conftest import user_token

    root = tmp_path_factory.mktemp("fleet")
    project = root / "project"
    project.mkdir()
    db = f"sy_fleet_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
    metadata_url = sa.make_url(POSTGRES_URL).set(database=db).render_as_string(hide_password=False)
    prefix = f"sy-fleet-{uuid.uuid4().hex[:8]}:"
    config: dict[str, Any] = {
        "metadata_url": metadata_url,
        "limits_store": f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}prefix={prefix}",
        "series_flush_s": 1.0,
        "lease_ttl_s": 10.0,
        "validation_subprocess": False,
        "prediction_log_sample_rate": 0.0,
        **getattr(request.module, "FLEET_SETTINGS", {}),
    }
    bucket = None
    if S3_ENABLED:
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"sy-fleet-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        config["artifact_root"] = f"s3://{bucket}/artifacts"
        config["artifact_options"] = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    else:
        config["artifact_root"] = str(root / "artifacts")
    (project / "shipyard.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace(load_settings(project, user="fleet-test"))  # creates the schema before any server starts
    ensure_first_admin(ws.auth, project)
    headers = {"Authorization": f"Bearer {user_token(ws)}"}
    servers = [FleetServer(i, free_port(), root / f"server-{i}.log") for i in range(FLEET_SIZE)]
    nginx_dir = root / "nginx"
    proxy_port = free_port()
    conf = _write_nginx(nginx_dir, proxy_port, [s.port for s in servers])
    fleet = Fleet(project, ws, headers, proxy_port, servers, prefix)
    nginx = None
    try:
        for srv in servers:
            _start_server(project, srv)
        nginx_log = nginx_dir / "stderr.log"
        with nginx_log.open("wb") as out:
            nginx = subprocess.Popen([NGINX, "-p", str(nginx_dir), "-c", str(conf), "-e", str(nginx_dir / "error.log")],
                                     stdout=out, stderr=out)
        _wait_port(proxy_port, nginx, nginx_log, "nginx")
        yield fleet
    finally:
        _stop(nginx, signal.SIGQUIT)
        for srv in servers:
            _stop(srv.proc)
        fleet.close()
        ws.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}"')
        admin.dispose()
        if bucket is not None:
            import boto3

            s3 = boto3.client("s3", endpoint_url=request.getfixturevalue("s3_endpoint"), region_name="us-east-1")
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)


class Load:
    """Requests from ``threads`` threads, each on its own keep-alive connection, until stopped:
    ``results`` holds (status, body) of each answer. ``body`` is a JSON body, or a function of the
    request number that makes one. ``pause_s`` between a thread's requests bounds the rate."""

    def __init__(self, port: int, path: str, body: Any, headers: dict[str, str], threads: int = 6,
                 pause_s: float = 0.0) -> None:
        import itertools
        import threading

        self.port, self.path, self.headers = port, path, headers
        self.body = body if callable(body) else (lambda _i, fixed=json.dumps(body): fixed)
        self._numbers = itertools.count()
        self.pause_s = pause_s
        self.results: list[tuple[int, Any]] = []
        self.started = self.ended = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", **self.headers}
        while not self._stop.is_set():
            try:
                body = self.body(next(self._numbers))
                conn.request("POST", self.path, body if isinstance(body, str) else json.dumps(body), headers)
                resp = conn.getresponse()
                raw = resp.read()
                self.results.append((resp.status, json.loads(raw) if resp.status == 200 else None))
                if self.pause_s:
                    time.sleep(self.pause_s)
            except (OSError, http.client.HTTPException, ValueError):
                self.results.append((0, None))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.ended = time.monotonic()
