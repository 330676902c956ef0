"""A real ``shipyard server --workers 2``: /metrics sums every worker, scene limits hold for the server."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from tests.serving.conftest import free_port

RATE, BURST = 20.0, 10.0


class Server:
    def __init__(self, project: Path, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.project, self.port, self.proc, self.log = project, port, proc, log

    @property
    def metrics_dir(self) -> Path:
        return self.project / ".shipyard" / "run" / f"metrics-{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """The first admin's token, which the server wrote to the project's credentials at start."""
        token = json.loads((self.project / ".shipyard" / "credentials").read_text())["token"]
        return {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        # one connection per request, so the kernel spreads them over the workers
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **self.auth})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=self.auth if path != "/healthz" else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    project = tmp_path_factory.mktemp("workers") / "project"
    ws = Workspace(load_settings(project, user="t", validation_subprocess=False))
    apply_scene(ws, {"name": "double", "inputs": {"x": "double"}, "flow": [F.expr("y", "x * 2")],
                     "outputs": ["y"], "log": {"sample_rate": 0.0}})
    apply_scene(ws, {"name": "limited", "inputs": {"x": "double"}, "flow": [F.expr("y", "x * 2")],
                     "outputs": ["y"], "log": {"sample_rate": 0.0},
                     "limits": {"rate_per_s": RATE, "burst": BURST}})
    ws.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    log = project.parent / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project), "server",
                                 "--port", str(port), "--workers", "2"], env=env, stdout=out, stderr=out)
    srv = Server(project, port, proc, log)
    try:
        deadline = time.time() + 90
        while True:  # both workers up: each made its metrics file, and one answers
            try:
                if len(list(srv.metrics_dir.glob("counter_*.db"))) == 2 and srv.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield srv
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert not srv.metrics_dir.exists(), "the server removes its metrics directory at exit"


def scrape(srv: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = srv.get("/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items() if n == name and all((k, w) in lab for k, w in labels.items()))


def per_worker_counts(folder: Path, scene: str, status: str | None = None) -> list[float]:
    """``shipyard_predictions_total`` of ``scene`` (of one ``status`` when given) read from each
    worker's own file (not via /metrics)."""
    counts = []
    for path in sorted(folder.glob("counter_*.db")):
        count = 0.0
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "shipyard_predictions_total" and labels.get("scene") == scene \
                    and status in (None, labels.get("status")):
                count += value
        counts.append(count)
    return counts


def fire(srv: Server, path: str, threads: int, *, count: int | None = None,
         seconds: float | None = None) -> tuple[list[tuple[int, dict[str, str], bytes]], float]:
    """Requests from ``threads`` threads: ``count`` each, or as many as fit in ``seconds``."""
    results: list[tuple[int, dict[str, str], bytes]] = []
    lock = threading.Lock()
    start = time.monotonic()

    def run(k: int) -> None:
        i = 0
        while (count is not None and i < count) or (seconds is not None and time.monotonic() - start < seconds):
            reply = srv.post(path, {"x": float(k * 1000 + i)})
            with lock:
                results.append(reply)
            i += 1

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return results, time.monotonic() - start


def test_metrics_sum_requests_of_every_worker(server: Server) -> None:
    sent = 0
    for _ in range(10):  # until both workers answered some (each counts in its own file)
        replies, _ = fire(server, "/v1/scenes/double/predict", threads=6, count=40)
        assert len(replies) == 240 and all(r[0] == 200 for r in replies)
        assert sorted(json.loads(r[2])["outputs"]["y"] for r in replies) == \
            sorted(2.0 * (k * 1000 + i) for k in range(6) for i in range(40))
        sent += len(replies)
        counts = per_worker_counts(server.metrics_dir, "double")
        if sum(1 for c in counts if c > 0) == 2:
            break
    assert sum(counts) == sent and sum(1 for c in counts if c > 0) == 2, counts
    # any worker's scrape gives the totals of all
    for _ in range(12):
        samples = scrape(server)
        assert total(samples, "shipyard_predictions_total", scene="double", status="ok") == sent
        assert total(samples, "shipyard_prediction_latency_seconds_count", scene="double", stage="total") == sent
        assert total(samples, "shipyard_prediction_latency_seconds_bucket", scene="double", stage="total",
                     le="+Inf") == sent


def test_scene_rate_limit_holds_for_the_whole_server(server: Server) -> None:
    replies, elapsed = fire(server, "/v1/scenes/limited/predict", threads=6, seconds=4.0)
    admitted = sum(1 for r in replies if r[0] == 200)
    refused = [r for r in replies if r[0] != 200]
    # each worker refilled RATE/2 per second from its first request on, with BURST/2 to start:
    # the server cannot have admitted more than RATE * elapsed + BURST (2 for rounding) ...
    expected = RATE * elapsed + BURST
    print(f"admitted {admitted} of {len(replies)} in {elapsed:.2f} s; rate * seconds + burst = {expected:.1f}")
    assert admitted <= expected + 2, (admitted, expected)
    # ... and each worker no more than its half: the limit is divided, not one whole limit per worker
    ok_per_worker = per_worker_counts(server.metrics_dir, "limited", status="ok")
    assert sum(ok_per_worker) == admitted, ok_per_worker
    assert all(ok <= expected / 2 + 2 for ok in ok_per_worker), (ok_per_worker, expected)
    # the limiter is not stricter than its rate: at least half is admitted even when the kernel hands
    # nearly every connection to one worker (it does on a busy machine, and that one admits its half)
    assert admitted >= 0.5 * expected - 2, (admitted, expected)
    assert len(refused) > admitted  # the load really was over the limit
    for status, headers, body in refused:
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert json.loads(body)["error"]["code"] == "rate_limited"
    counts = per_worker_counts(server.metrics_dir, "limited")
    assert sum(1 for c in counts if c > 0) == 2, counts
    samples = scrape(server)
    assert total(samples, "shipyard_predictions_total", scene="limited", status="ok") == admitted
