"""Graceful shutdown of `shipyard server` on SIGTERM: the request in flight is answered, the
prediction log is flushed, and the server's own shutdown log shows the phases in order.

No wall-clock assertion: the figures the log prints (ms since the signal) are recorded in
docs/benchmarks.md (benchmarks/bench_shutdown.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pandas as pd
import pytest

from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from tests.serving.conftest import free_port


class Sleepy(PythonModel):
    """Doubles x; sleeps ``delay`` seconds first, after touching the file named by SLEEPY_MARKER."""

    def predict(self, df: Any) -> Any:
        delay = float(df["delay"].max())
        if delay > 0:
            Path(os.environ["SLEEPY_MARKER"]).touch()
            time.sleep(delay)
        return df["x"].to_numpy() * 2.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    root = tmp_path / "project"
    ws = Workspace(load_settings(root, user="t", validation_subprocess=False, validation_timing_calls=5))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server process cannot import tests
    try:
        folder = save_model(Sleepy(), tmp_path / "sleepy", input_example=pd.DataFrame({"x": [1.0], "delay": [0.0]}))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    mv = ws.registry.register(folder, "sleepy", await_validation=True)
    ws.auth.set_public("default", "scene", "slow", True, actor="t")  # shutdown, not access, is under test
    ws.registry.set_alias("sleepy", "champion", mv.version, force=True)
    apply_scene(ws, {"name": "slow", "inputs": {"x": "double", "delay": "double"}, "outputs": ["y"],
                     "flow": [F.model("sleepy", output="y")]})
    ws.close()
    return root


def start(project: Path, marker: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = project.parent / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_"))}
    env["SLEEPY_MARKER"] = str(marker)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project), "server",
                                 "--port", str(port)], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_sigterm_answers_the_request_in_flight_flushes_the_log_and_logs_each_phase(project: Path) -> None:
    from shipyard.artifacts import ArtifactStore
    from shipyard.serving.prediction_log import read_prediction_log

    marker = project.parent / "in-flight"
    proc, url, log = start(project, marker)
    try:
        warm = httpx.post(f"{url}/v1/scenes/slow/predict", json={"x": 1.0, "delay": 0.0}, timeout=60)
        assert warm.status_code == 200, warm.text
        answer: dict[str, Any] = {}

        def in_flight() -> None:
            r = httpx.post(f"{url}/v1/scenes/slow/predict", json={"x": 7.0, "delay": 1.0},
                           headers={"X-Request-Id": "in-flight-1"}, timeout=60)
            answer.update(status=r.status_code, body=r.json())

        thread = threading.Thread(target=in_flight)
        thread.start()
        deadline = time.monotonic() + 60
        while not marker.exists():  # the model is running: the request is in flight
            assert time.monotonic() < deadline, "the request never reached the model"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is SIGTERM's
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert answer == {"status": 200, "body": answer["body"]} and answer["body"]["outputs"] == {"y": 14.0}
    lines = [line for line in log.read_text().splitlines() if "shutdown +" in line]
    print("\n".join(lines))
    phases = [re.sub(r".*shutdown \+\d+ ms: ", "", line) for line in lines]
    assert phases[0] == "SIGTERM received; no new connections, 1 prediction request(s) in flight"
    assert phases[1:3] == ["requests finished, rollout leases freed", "hot swap stopped"]
    assert re.fullmatch(r"prediction log flushed \((\d+) records written, 0 dropped\)", phases[3])
    assert phases[4:] == ["complete"]
    elapsed = [int(re.search(r"shutdown \+(\d+) ms", line).group(1)) for line in lines]
    assert elapsed == sorted(elapsed)
    # the answer to the request in flight was written to the prediction log before the exit
    frame = read_prediction_log(ArtifactStore(str(project / ".shipyard" / "artifacts")), "slow")
    assert "in-flight-1" in frame["request_id"].tolist() and len(frame) == 2
    written = int(re.search(r"\((\d+) records written", phases[3]).group(1))
    assert written == 2
