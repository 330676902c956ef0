"""Crash recovery of model versions: a process killed after registering leaves a ``pending``
version, one killed while validating leaves a ``validating`` one; recovery (at server start and
periodically) finds them by their lease and validates them again, or marks them ``abandoned`` when
validation keeps killing its process. Then 20 SIGKILLs at random points of `shipyard models
register` leave nothing stuck."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.store import leases
from shipyard.store.events import list_events
from shipyard.store.schema import job_leases
from tests.crash_support import kill_at_random, timed_run

DIE = "SHIPYARD_TEST_DIE_IN_PREDICT"


class DiesInPredict(PythonModel):
    """x + y, unless the environment says to die: then the process validating it is killed."""

    def predict(self, df: Any) -> Any:
        if os.environ.get(DIE):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return (df["x"] + df["y"]).to_numpy()


def settings(project: Path, **extra: Any) -> Any:
    from shipyard.config import load_settings

    return load_settings(project, user="alice", validation_timing_calls=5, **extra)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "shipyard.yaml").write_text("validation_timing_calls: 5\n")
    return root


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=80), "y": rng.normal(size=80)})
    model = LogisticRegression().fit(X, (X.x > X.y).astype(int))
    return save_model(model, tmp_path_factory.mktemp("m") / "lr", input_example=X.head(3))


@pytest.fixture(scope="module")
def dying_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # loaded by processes that cannot import tests
    try:
        return save_model(DiesInPredict(), tmp_path_factory.mktemp("d") / "dies",
                          input_example=pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 0.0]}))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def run_script(code: str, *args: str, env: dict[str, str] | None = None) -> int:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=full, timeout=300).returncode


DIE_AFTER_COMMIT = """
import os, sys
from shipyard.config import load_settings
from shipyard.workspace import Workspace
ws = Workspace(load_settings(sys.argv[1]))
ws.registry.start_validation = lambda *a, **k: os._exit(9)  # dies right after the version's commit
ws.registry.register(sys.argv[2], "m")
"""

REGISTER = """
import sys
from shipyard.config import load_settings
from shipyard.workspace import Workspace
ws = Workspace(load_settings(sys.argv[1]))
ws.registry.register(sys.argv[2], "m", await_validation=True)
"""


def statuses(ws: Any) -> dict[int, str]:
    return {mv.version: mv.status for mv in ws.registry.list_versions("m")}


def count_versions(ws: Any) -> int:
    with ws.store.read() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar())


def lease_rows(ws: Any) -> list[leases.Lease]:
    with ws.store.read() as conn:
        return leases.list_leases(conn)


def test_a_version_left_pending_by_a_dead_process_is_validated_again(project, small_model) -> None:
    from shipyard.recovery import recover
    from shipyard.workspace import Workspace

    assert run_script(DIE_AFTER_COMMIT, project, small_model) == 9
    ws = Workspace(settings(project, validation_subprocess=False))
    assert statuses(ws) == {1: "pending"}
    (lease,) = lease_rows(ws)
    assert lease.key == "m/1" and lease.dead() and leases.owner_alive(lease.owner) is False
    done = recover(ws)
    assert [(d.key, d.outcome) for d in done] == [("m/1", "resumed")] and "is gone" in done[0].reason
    assert statuses(ws) == {1: "validated"} and lease_rows(ws) == []
    started = [e for e in list_events(ws.store, "models/m/1") if e["kind"] == "model.validation_started"]
    assert "pending version: its process" in started[0]["details"]["recovered"]
    assert recover(ws) == []
    ws.close()


def test_a_version_left_validating_by_a_dead_process_is_validated_again(project, dying_model) -> None:
    from shipyard.recovery import recover
    from shipyard.workspace import Workspace

    code = run_script(REGISTER, project, dying_model, env={DIE: "1", "SHIPYARD_VALIDATION_SUBPROCESS": "0"})
    assert code == -9
    ws = Workspace(settings(project, validation_subprocess=False))
    assert statuses(ws) == {1: "validating"}
    assert [(d.key, d.outcome) for d in recover(ws)] == [("m/1", "resumed")]  # without DIE here: it passes
    assert statuses(ws) == {1: "validated"} and lease_rows(ws) == []
    ws.close()


RECOVER = """
import sys
from shipyard.config import load_settings
from shipyard.recovery import recover
from shipyard.workspace import Workspace
ws = Workspace(load_settings(sys.argv[1], validation_timing_calls=5))
print(",".join(d.outcome for d in recover(ws)))
"""


def test_validation_that_keeps_killing_its_process_is_abandoned(project, dying_model) -> None:
    from shipyard.workspace import Workspace

    # every process that validates it in-process dies: the registering one, then each resuming one
    die = {DIE: "1", "SHIPYARD_VALIDATION_SUBPROCESS": "0"}
    assert run_script(REGISTER, project, dying_model, env=die) == -9
    ws = Workspace(settings(project, validation_subprocess=False))
    codes = []
    deadline = time.monotonic() + 240
    while statuses(ws)[1] != "abandoned":
        assert time.monotonic() < deadline, (statuses(ws), codes)
        codes.append(run_script(RECOVER, project, env=die))
    assert codes == [-9, -9, 0]  # resumed twice (and died), then given up
    mv = ws.registry.get_version("m", 1)
    assert "started 3 times and its process died each time" in mv.status_reason and lease_rows(ws) == []
    kinds = [e["kind"] for e in list_events(ws.store, "models/m/1")]
    assert kinds.count("model.validation_started") == 3 and "model.validation_abandoned" in kinds
    # abandoned is final for waiting, and validate() may try again once the cause is fixed
    assert ws.registry.wait_for_validation("m", 1, timeout=1).status == "abandoned"
    assert ws.registry.validate("m", 1, timeout=120).status == "validated"
    ws.close()


def test_a_live_validation_is_left_alone(project, small_model) -> None:
    from shipyard.recovery import recover
    from shipyard.workspace import Workspace

    ws = Workspace(settings(project, validation_subprocess=False))
    ws.registry.register(small_model, "m", await_validation=True)
    # a validation in progress somewhere else: a fresh heartbeat from another host
    with ws.store.begin() as conn:
        conn.execute(sa.text("UPDATE model_versions SET status = 'validating'"))
        leases.acquire(conn, "model_version", "m/1", owner="other-host/1/1/1", token="t")
    assert recover(ws) == []
    # ... until it goes silent for longer than its ttl
    with ws.store.begin() as conn:
        conn.execute(job_leases.update().values(heartbeat_at=0))
    (done,) = recover(ws)
    assert done.outcome == "resumed" and "no heartbeat from other-host/1/1/1" in done.reason
    assert statuses(ws) == {1: "validated"}
    ws.close()


@pytest.mark.slow
def test_random_sigkills_of_register_leave_nothing_stuck(project, small_model, tmp_path) -> None:
    """20 SIGKILLs at random points of `shipyard models register --wait` (half with validation in a
    subprocess, which is killed too half of the time); a server started afterwards recovers every
    version left in progress."""
    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    cmd = [sys.executable, "-m", "shipyard.cli", "--project", str(project), "models", "register", str(small_model),
           "--name", "m", "--wait"]
    log = tmp_path / "register.log"
    ws = Workspace(settings(project, validation_subprocess=False))

    def stored_after(count: int):  # noqa: ANN202 - a predicate: the command stored a new version
        return lambda: count_versions(ws) > count

    ready, full = timed_run(cmd, env, stored_after(0))  # one uninterrupted run, timed
    rng = random.Random(17)
    for i in range(20):
        in_subprocess = i % 2 == 0
        # every other kill anywhere in the command, the others once it has stored its version
        after = stored_after(count_versions(ws)) if i % 4 < 2 else None
        kill_at_random(cmd, {**env, "SHIPYARD_VALIDATION_SUBPROCESS": "1" if in_subprocess else "0"},
                       within=full * 1.1 if after is None else (full - ready) * 1.2, rng=rng,
                       kill_children=in_subprocess and rng.random() < 0.5, log=log, after=after)
    left = {v: s for v, s in statuses(ws).items() if s in ("pending", "validating")}
    held = {lease.key: lease for lease in lease_rows(ws)}
    # in progress with a dead owner (validation processes that were not killed finish by themselves)
    stuck = {f"m/{v}" for v in left if f"m/{v}" not in held or held[f"m/{v}"].dead()}
    print(f"one register: {full:.2f} s ({full - ready:.2f} s after storing its version); left in progress "
          f"by the kills: {left}; owner dead: {sorted(stuck)}")
    with TestClient(create_app(ws, follow_interval=0, recovery_interval=0.2)) as client:
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 240
        while any(s in ("pending", "validating") for s in statuses(ws).values()) or lease_rows(ws):
            # validation processes that were not killed finish on their own
            assert time.monotonic() < deadline, (statuses(ws), lease_rows(ws))
            time.sleep(0.2)
        recovered = client.app.state.recovery.recovered
    final = statuses(ws)
    assert sorted(final) == list(range(1, len(final) + 1))  # numbers without gaps
    assert set(final.values()) <= {"validated"}, final
    for version in final:
        ws.registry.verify("m", version)  # every stored version's files match its sha256
    assert stuck <= {r.key for r in recovered} <= {f"m/{v}" for v in left}
    assert {r.outcome for r in recovered} <= {"resumed"}
    ws.close()
