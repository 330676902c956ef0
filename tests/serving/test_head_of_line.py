"""No head-of-line blocking: a challenger sleeping 50 ms raises only its own latency.

A server process serves one scene with two arms and no features step; the challenger sleeps for
the request's ``delay`` field (50 ms), control ignores it. One open-loop load sends 100 requests/s
to control and 5/s to the challenger, so a slow challenger call is in flight a quarter of the time.
Control's requests are split by what happened when each was sent: beside a challenger call in
flight, or apart from any. Both sets come from the same seconds of the same run, so the machine's
speed and load touch both alike; control's p99 beside the slow calls must stay within 2x of its
p99 apart from them, its steady state. A stall of the whole machine can still land on a few
requests of one set, so the load runs in three rounds and the median round is judged. With flows
on the event loop the same test fails: control's p99 beside the slow calls is several times its p99
apart from them. (Absolute figures: benchmarks/bench_head_of_line.py, docs/benchmarks.md.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.conftest import free_port

SLOW_S = 0.05
ROUNDS = 3
ROUND_S = 4.0
SECONDS = ROUNDS * ROUND_S
CONTROL_RATE = 100.0   # requests per second, open loop
CHALLENGER_RATE = 5.0
MARGIN_S = 0.02        # a control request sent this close to a slow call counts as neither
CLIENT_THREADS = 24

SERVER = textwrap.dedent('''
    import sys, time
    import numpy as np
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

    class Sleepy:
        input_names = ["x", "delay"]
        signature = None
        has_fast_path = True
        def predict_array(self, X):
            if X[0, 1] > 0:
                time.sleep(float(X[0, 1]))
            return X[:, 0] * 2.0

    project, port = sys.argv[1], int(sys.argv[2])
    models = ModelCatalog()
    models.add("fast", Fast(), version=1, aliases=["champion"])
    models.add("sleepy", Sleepy(), version=1, aliases=["champion"])
    spec = {"name": "hol", "inputs": {"x": "double", "delay": "double"}, "outputs": ["y"],
            "flow": [F.model("fast", output="y")],
            "traffic": {"arms": {"chal": {"flow": [F.model("sleepy", output="y")]}}}, "log": {"sample_rate": 0.0}}
    engine = ServingEngine(models=models, scenes=lambda n, v: (1, spec))
    engine.install_scene(compile_scene(spec, 1, models=models))
    ws = Workspace(load_settings(project, user="t"))
    ws.auth.set_public("default", "scene", "hol", True, actor="t")  # latency, not access, is under test
    uvicorn.run(create_app(ws, engine=engine, follow_interval=0), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)
''')


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    script = tmp_path / "serve.py"
    script.write_text(SERVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "project"), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(30)


def drive(url: str) -> list[tuple[str, float, float, dict[str, Any]]]:
    """(arm, sent, answered, body) of every request, sent on schedule from a pool of clients."""
    local = threading.local()
    results: list[tuple[str, float, float, dict[str, Any]]] = []
    lock = threading.Lock()

    def post(arm: str, x: float) -> tuple[float, float, httpx.Response]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30)
        delay = SLOW_S if arm == "chal" else 0.0
        sent = time.perf_counter()
        r = client.post("/v1/scenes/hol/predict", json={"x": x, "delay": delay}, headers={"X-Shipyard-Arm": arm})
        return sent, time.perf_counter(), r

    def one(arm: str, x: float) -> None:
        sent, answered, r = post(arm, x)
        assert r.status_code == 200, r.text
        with lock:
            results.append((arm, sent, answered, r.json()))

    schedule = sorted([(k / CONTROL_RATE, "control") for k in range(int(SECONDS * CONTROL_RATE))]
                      + [(k / CHALLENGER_RATE, "chal") for k in range(int(SECONDS * CHALLENGER_RATE))])
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        barrier = threading.Barrier(CLIENT_THREADS)

        def warm(_: int) -> None:  # every client thread connects (and both arms run) before timing starts
            barrier.wait()
            for arm in ("control", "chal"):
                post(arm, 1.0)

        list(pool.map(warm, range(CLIENT_THREADS)))
        began = time.perf_counter()
        for i, (at, arm) in enumerate(schedule):
            delay = began + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, arm, float(i))
    return results


def test_a_slow_arm_raises_only_its_own_latency(server: str) -> None:
    results = drive(server)
    began = min(sent for _, sent, _, _ in results)
    slow_calls = [(sent, answered) for arm, sent, answered, _ in results if arm == "chal"]
    beside: list[list[float]] = [[] for _ in range(ROUNDS)]
    apart: list[list[float]] = [[] for _ in range(ROUNDS)]
    for arm, sent, answered, _ in results:
        if arm != "control":
            continue
        round_ = min(ROUNDS - 1, int((sent - began) / ROUND_S))
        if any(start <= sent <= end for start, end in slow_calls):
            beside[round_].append(answered - sent)
        elif not any(start - MARGIN_S <= sent <= end + MARGIN_S for start, end in slow_calls):
            apart[round_].append(answered - sent)  # (sent too close to a slow call to tell: neither)

    def p99(values: list[float]) -> float:
        return float(np.percentile(values, 99))

    ratios = [p99(b) / p99(a) for b, a in zip(beside, apart, strict=True)]
    chal = float(np.median([end - start for start, end in slow_calls]))
    print("control p99 beside slow calls / apart from them, by round: "
          + ", ".join(f"{p99(b) * 1000:.2f} / {p99(a) * 1000:.2f} ms" for b, a in zip(beside, apart, strict=True))
          + f"; challenger p50 {chal * 1000:.1f} ms")
    assert len(results) == int(SECONDS * CONTROL_RATE) + int(SECONDS * CHALLENGER_RATE)
    assert min(len(b) for b in beside) >= 0.1 * ROUND_S * CONTROL_RATE
    assert chal >= SLOW_S  # the challenger itself is slow ...
    assert sorted(ratios)[ROUNDS // 2] <= 2, ratios  # ... and control does not wait behind it
    # the wait for a thread of the arm's pool is measured and returned
    assert all("queue" in r[3]["latency_ms"] for r in results)
    assert all(r[3]["arm"] == r[0] for r in results)
