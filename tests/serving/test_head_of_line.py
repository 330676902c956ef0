"""No head-of-line blocking: a challenger sleeping 50 ms raises only its own latency.

A server process serves one scene with two arms and no features step; the challenger sleeps for
the request's ``delay`` field, control ignores it. One open-loop load runs through alternating
one-second blocks: in "steady" blocks the challenger's requests carry no delay, in "slow" blocks
50 ms. Control's client-side p99 in the slow blocks is compared with its own p99 in the steady
blocks of the same run, so the machine's speed and load cancel out. Requests sent in the first
100 ms of a block are left out of both, so a slow call that began in one block is never counted
in the next. The challenger's share keeps a blocked event loop busy 60 % of a slow block, which
without pools would put half of control's requests behind a sleeping call. (Absolute figures:
benchmarks/bench_head_of_line.py, recorded in docs/benchmarks.md.)
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
BLOCK_S = 1.0
BLOCKS = 8             # alternating steady / slow
GUARD_S = 0.1          # left out at the start of each block
CONTROL_RATE = 100.0   # requests per second, open loop
CHALLENGER_RATE = 12.0
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


def drive(url: str) -> list[tuple[str, str, float, dict[str, Any]]]:
    """(phase, arm, client-side seconds, body) of every request, sent on schedule from a pool."""
    local = threading.local()
    results: list[tuple[str, str, float, dict[str, Any]]] = []
    lock = threading.Lock()

    def post(arm: str, delay: float, x: float) -> tuple[float, httpx.Response]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30)
        start = time.perf_counter()
        r = client.post("/v1/scenes/hol/predict", json={"x": x, "delay": delay}, headers={"X-Shipyard-Arm": arm})
        return time.perf_counter() - start, r

    def one(phase: str, arm: str, x: float) -> None:
        elapsed, r = post(arm, SLOW_S if phase == "slow" and arm == "chal" else 0.0, x)
        assert r.status_code == 200, r.text
        with lock:
            results.append((phase, arm, elapsed, r.json()))

    schedule = []
    for block in range(BLOCKS):
        phase = "steady" if block % 2 == 0 else "slow"
        for arm, rate in (("control", CONTROL_RATE), ("chal", CHALLENGER_RATE)):
            n = int(BLOCK_S * rate)
            schedule.extend((block * BLOCK_S + k / rate, phase if k / rate >= GUARD_S else "guard", arm)
                            for k in range(n))
    schedule.sort()
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        barrier = threading.Barrier(CLIENT_THREADS)

        def warm(_: int) -> None:  # every client thread connects (and both arms run) before timing starts
            barrier.wait()
            for arm in ("control", "chal"):
                post(arm, 0.0, 1.0)

        list(pool.map(warm, range(CLIENT_THREADS)))
        began = time.perf_counter()
        for i, (at, phase, arm) in enumerate(schedule):
            delay = began + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, phase, arm, float(i))
    return results


def test_a_slow_arm_raises_only_its_own_latency(server: str) -> None:
    results = drive(server)
    lat = {(phase, arm): [r[2] for r in results if r[0] == phase and r[1] == arm]
           for phase in ("steady", "slow") for arm in ("control", "chal")}
    steady = float(np.percentile(lat[("steady", "control")], 99))
    slow = float(np.percentile(lat[("slow", "control")], 99))
    chal_slow = float(np.median(lat[("slow", "chal")]))
    print(f"control p99 steady {steady * 1000:.2f} ms, beside the slow challenger {slow * 1000:.2f} ms; "
          f"challenger p50 {chal_slow * 1000:.1f} ms ({len(lat[('slow', 'control')])} control requests a phase)")
    assert len(results) == sum(int(BLOCK_S * r) for r in (CONTROL_RATE, CHALLENGER_RATE)) * BLOCKS
    assert chal_slow >= SLOW_S  # the challenger itself is slow ...
    assert slow <= 2 * steady, (steady, slow)  # ... and control does not wait behind it
    # the wait for a thread of the arm's pool is measured and returned
    assert all("queue" in r[3]["latency_ms"] for r in results)
    assert all(r[3]["arm"] == r[1] for r in results)
