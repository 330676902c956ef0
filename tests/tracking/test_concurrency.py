"""Several processes logging into one SQLite file at once never lose a write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from shipyard.config import load_settings
from shipyard.store.schema import run_latest_metrics, run_metrics, run_params, run_tags
from shipyard.workspace import Workspace

PROCESSES = 4
BATCHES = 15
POINTS = 200

# Each writer is a separate interpreter: its own engine, its own connections.
WRITER = """
import json, sys
from shipyard.config import load_settings
from shipyard.workspace import Workspace

project, shared_run, worker, batches, points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ws = Workspace(load_settings(project, user=f"w{worker}"))
tracking = ws.tracking
own = tracking.start_run(experiment="parallel", name=f"worker-{worker}")
for batch in range(batches):
    own.log_batch(metrics=[(f"m{i % 5}", float(batch * points + i), batch, None) for i in range(points)],
                  params={f"p{batch}": batch}, tags={"batch": batch})
    tracking.log_batch(
        shared_run,
        metrics=[(f"w{worker}", float(batch), batch, None), ("shared", float(worker * 1000 + batch), batch, None)],
        params={f"w{worker}.b{batch}": batch},
    )
own.end()
ws.close()
print(json.dumps({"run_id": own.id}))
"""


def test_parallel_writers_lose_nothing(tmp_path: Path) -> None:
    project = str(tmp_path / "project")
    ws = Workspace(load_settings(project, user="alice"))
    shared = ws.tracking.start_run(experiment="parallel", name="shared")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, project, shared.id, str(w), str(BATCHES), str(POINTS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(PROCESSES)
    ]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.append(json.loads(out.strip().splitlines()[-1])["run_id"])
    shared.end()

    def count(table: sa.Table, run_id: str) -> int:
        with ws.store.read() as conn:
            query = sa.select(sa.func.count()).select_from(table).where(table.c.run_id == run_id)
            return conn.execute(query).scalar_one()

    assert len(set(ids)) == PROCESSES
    for run_id in ids:
        assert count(run_metrics, run_id) == BATCHES * POINTS
        assert count(run_params, run_id) == BATCHES
        assert count(run_tags, run_id) == 1
        record = ws.tracking.get_run(run_id)
        assert record.info.status == "FINISHED"
        assert record.metrics["m4"] == float((BATCHES - 1) * POINTS + POINTS - 1)
    assert count(run_metrics, shared.id) == PROCESSES * BATCHES * 2
    assert count(run_params, shared.id) == PROCESSES * BATCHES
    assert count(run_latest_metrics, shared.id) == PROCESSES + 1
    latest = ws.tracking.get_run(shared.id).metrics
    assert all(latest[f"w{w}"] == float(BATCHES - 1) for w in range(PROCESSES))
    assert latest["shared"] in {float(w * 1000 + BATCHES - 1) for w in range(PROCESSES)}
    assert len(ws.tracking.metric_history(shared.id, "shared")) == PROCESSES * BATCHES
    ws.close()
