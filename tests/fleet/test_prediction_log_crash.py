"""The prediction log survives SIGKILL: a server killed under load ten times (sampling 1.0) loses
no record the client got a 200 for, and logs a retried request id once.

One `shipyard server` on loopback (its own single-server fixture), an expression-only public scene
so the load is the log's, eight client threads each sending requests with their own X-Request-Id.
Once 20 requests were answered, after a random 0.1-0.9 s more, the server is SIGKILLed and
started again on the same project; the restarted server recovers the dead instance's spool. Requests that failed with the kill are sent
again to the restarted server with the same id (what a proxy's retry does); a tenth of the
requests are also sent twice in a row (a client's own retry). At the end the server stops cleanly
and the log is read back: every id answered 200 is there exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from shipyard.artifacts import ArtifactStore
from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.prediction_log import read_prediction_log

KILLS = 10
THREADS = 8
SCENE = "crash"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_project(root: Path, **settings: str) -> Path:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(root, user="t", **settings))
    ws.auth.set_public("default", "scene", SCENE, True, actor="t")
    apply_scene(ws, {"name": SCENE, "inputs": {"x": "double", "name": "string"}, "outputs": ["y"],
                     "flow": [F.expr("y", "x * 2 + 1")],
                     "log": {"sample_rate": 1.0}})
    ws.close()
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


class Server:
    def __init__(self, project: Path, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.project = project
        self.extra_env = env or {}
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
        env.update(self.extra_env)
        log = (self.project.parent / f"{self.name}-{self.starts}.log").open("wb")
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(self.project), "server",
                                      "--port", str(self.port)], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.name}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Load:
    """Client threads: every id answered 200, every id sent, the ids whose request failed."""

    def __init__(self, url: str, prefix: str, rng: random.Random) -> None:
        self.url = url
        self.prefix = prefix
        self.rng = rng
        self.ok: set[str] = set()
        self.sent: set[str] = set()
        self.failed: list[tuple[str, float]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def send(self, client: httpx.Client, rid: str, x: float) -> bool:
        with self.lock:
            self.sent.add(rid)
        try:
            r = client.post(f"{self.url}/v1/scenes/{SCENE}/predict", json={"x": x, "name": rid},
                            headers={"X-Request-Id": rid})
        except httpx.HTTPError:
            return False
        if r.status_code == 200:
            assert r.json()["request_id"] == rid
            with self.lock:
                self.ok.add(rid)
            return True
        return False

    def worker(self, k: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self.stop.is_set():
                rid, x = f"{self.prefix}-{k}-{i}", (k * 1000 + i) % 97 / 97
                i += 1
                if not self.send(client, rid, x):
                    with self.lock:
                        self.failed.append((rid, x))
                    return  # the server is gone
                if i % 10 == 0:
                    self.send(client, rid, x)  # the client's own retry: same id, logged once

    def run_until_killed(self, server: Server) -> None:
        threads = [threading.Thread(target=self.worker, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(self.ok) < 20 and time.monotonic() < deadline:  # the load is on (a loaded machine is slow)
            time.sleep(0.01)
        time.sleep(self.rng.uniform(0.1, 0.9))
        server.kill()
        self.stop.set()
        for t in threads:
            t.join(30)


def test_no_answered_record_is_lost_when_the_server_is_killed(project: Path) -> None:
    server = Server(project)
    rng = random.Random(15)
    ok: set[str] = set()
    sent: set[str] = set()
    retry: list[tuple[str, float]] = []
    try:
        server.start()
        for round_ in range(KILLS):
            load = Load(server.url, f"k{round_}", rng)
            load.run_until_killed(server)
            assert load.ok, f"round {round_}: no request was answered before the kill"
            ok |= load.ok
            sent |= load.sent
            server.start()  # recovers the dead instance's spool before it serves
            with httpx.Client(timeout=5) as client:
                for rid, x in retry + load.failed:  # a proxy's retry of what failed with the kill
                    assert load.send(client, rid, x), rid
            ok |= load.ok
            retry = []
        server.stop()
    finally:
        server.stop()
    frame = read_prediction_log(ArtifactStore(str(project / ".shipyard" / "artifacts")), SCENE)
    live = frame[frame["kind"] == "live"]
    logged = list(live["request_id"])
    assert set(logged) >= ok, f"{len(ok - set(logged))} answered records lost"
    assert len(logged) == len(set(logged)), "a request id was logged more than once"
    assert set(logged) <= sent
    assert live["instance"].nunique() >= KILLS  # every record names the process that answered it
    row = live.set_index("request_id").loc[next(iter(ok))]
    assert row["outputs"][0]["y"] == pytest.approx(row["inputs"][0]["x"] * 2 + 1)
    # spools of the dead instances were all recovered and removed
    spool = project / ".shipyard" / "spool" / "prediction-log"
    assert not list(spool.glob("*.jsonl")) and not list(spool.glob("*.lock"))


@pytest.mark.postgres
def test_another_server_of_the_project_recovers_a_dead_servers_spool(tmp_path: Path, postgres_url: str) -> None:
    """Two servers on one project (PostgreSQL metadata, one spool folder): A is killed under load
    and never restarted; B, still serving, finds A's spool on its next recovery pass."""
    env = {"SHIPYARD_METADATA_URL": postgres_url, "SHIPYARD_RECOVERY_INTERVAL_S": "1"}
    project = make_project(tmp_path / "project", metadata_url=postgres_url)
    a, b = Server(project, env, "a"), Server(project, env, "b")
    rng = random.Random(12)
    try:
        a.start()
        b.start()
        on_b = Load(b.url, "b", rng)
        threads = [threading.Thread(target=on_b.worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        on_a = Load(a.url, "a", rng)
        on_a.run_until_killed(a)
        on_b.stop.set()
        for t in threads:
            t.join(30)
        spool = project / ".shipyard" / "spool" / "prediction-log"
        deadline = time.monotonic() + 60
        while len(list(spool.glob("*.lock"))) > 1:  # A's lock goes once its spool is written
            assert time.monotonic() < deadline, "B did not recover A's spool"
            time.sleep(0.2)
        with httpx.Client(timeout=5) as client:
            for rid, x in on_a.failed:  # the proxy's retry of what failed with the kill, on B
                assert on_b.send(client, rid, x), rid
        b.stop()
    finally:
        a.stop()
        b.stop()
    frame = read_prediction_log(ArtifactStore(str(project / ".shipyard" / "artifacts")), SCENE)
    live = frame[frame["kind"] == "live"]
    logged = list(live["request_id"])
    ok = on_a.ok | on_b.ok
    assert on_a.ok and set(logged) >= ok, f"{len(ok - set(logged))} answered records lost"
    assert len(logged) == len(set(logged)), "a request id was logged more than once"
    assert live["instance"].nunique() == 2
