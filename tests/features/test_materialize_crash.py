"""Crash recovery of materialization runs: 20 SIGKILLs at random points of `shipyard features
materialize` leave runs ``running``; recovery (a server's, at start) marks exactly those
``abandoned`` by their dead owner, leaves none in progress and no lease behind, and the next run
writes the online store the pandas reference expects."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shipyard.features.online import online_store_of
from shipyard.store import leases
from shipyard.store.schema import feature_materializations as runs
from tests.crash_support import kill_at_random, timed_run
from tests.features import online_support

embedded_feature_store = online_support.embedded_feature_store
TTL = dt.timedelta(days=2)


def run_rows(ws) -> list[dict]:
    with ws.store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(runs).order_by(runs.c.id))]


def test_a_live_run_is_left_alone_and_a_dead_ones_is_abandoned(embedded_feature_store) -> None:
    from shipyard.recovery import recover

    store = embedded_feature_store
    ws = store.ws
    with ws.store.begin() as conn:
        for owner in ("other-host/1/5/5", leases.owner_of(os.getpid())):
            run_id = conn.execute(runs.insert().values(view="cust_stats", view_version=1, end_ts=0, rows=0,
                                                       status="running", details={}, started_at=0,
                                                       actor="t")).inserted_primary_key[0]
            leases.acquire(conn, "feature_materialization", str(run_id), owner=owner)
    assert recover(ws) == []  # both alive: a fresh heartbeat elsewhere, this very process here
    with ws.store.begin() as conn:
        conn.execute(sa.text("UPDATE job_leases SET heartbeat_at = 0 WHERE owner LIKE 'other-host/%'"))
    (done,) = recover(ws)
    assert (done.key, done.outcome) == ("1", "abandoned")
    first, second = run_rows(ws)
    assert first["status"] == "abandoned" and "no heartbeat from other-host/1/5/5" in first["details"]["error"]
    assert second["status"] == "running"


@pytest.mark.slow
def test_random_sigkills_of_materialize_leave_nothing_running(embedded_feature_store, tmp_path) -> None:
    from shipyard.server import create_app

    store = embedded_feature_store
    ws = store.ws
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rng = np.random.default_rng(5)
    n = 60_000
    frame = pd.DataFrame({
        "customer_id": rng.integers(0, 5_000, n),
        "event_timestamp": [now - dt.timedelta(seconds=int(s)) for s in rng.integers(1, 3 * 24 * 3600, n)],
        "amount": rng.gamma(2.0, 50.0, n), "n": rng.integers(0, 9, n), "city": rng.choice(["a", "b"], n),
        "vip": rng.random(n) < 0.3, "seen": [now] * n,
    })
    store.offline_append("cust_stats", frame)
    pairs = pd.DataFrame({"customer_id": rng.integers(0, 500, n // 4), "merchant": rng.choice(["m1", "m2", "m3"], n // 4),
                          "event_timestamp": [now - dt.timedelta(seconds=int(s)) for s in rng.integers(1, 3600, n // 4)],
                          "amount": rng.normal(10, 2, n // 4), "visits": rng.integers(0, 5, n // 4)})
    store.offline_append("pair_stats", pairs)
    start, end = (now - dt.timedelta(days=5)).isoformat(), (now + dt.timedelta(seconds=1)).isoformat()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    cmd = [sys.executable, "-m", "shipyard.cli", "--project", str(ws.settings.project_dir), "features",
           "materialize", start, end]
    def started_after(newest: int):  # noqa: ANN202 - a predicate: the command recorded a new run
        return lambda: max((r["id"] for r in run_rows(ws)), default=0) > newest

    ready, full = timed_run(cmd, env, started_after(0))  # one uninterrupted run, timed
    kills = random.Random(23)
    for i in range(20):
        # half anywhere in the command, half while it materializes (after it recorded its first run)
        newest = max(r["id"] for r in run_rows(ws))
        after = started_after(newest) if i % 2 == 0 else None
        kill_at_random(cmd, env, within=full * 1.1 if after is None else (full - ready) * 1.2, rng=kills,
                       kill_children=False, log=tmp_path / "m.log", after=after)
    left = [r["id"] for r in run_rows(ws) if r["status"] == "running"]
    print(f"one materialize: {full:.2f} s ({full - ready:.2f} s after its first run record); runs left "
          f"running by the kills: {left}")
    with TestClient(create_app(ws, follow_interval=0, recovery_interval=0.2)) as client:
        deadline = time.monotonic() + 60
        while client.app.state.recovery.passes < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        recovered = client.app.state.recovery.recovered
    final = run_rows(ws)
    assert not [r for r in final if r["status"] == "running"]
    assert sorted(int(r.key) for r in recovered) == left
    assert {r.outcome for r in recovered} <= {"abandoned"}
    assert {r["id"] for r in final if r["status"] == "abandoned"} == set(left)
    assert all("its process" in r["details"]["error"] for r in final if r["status"] == "abandoned")
    with ws.store.read() as conn:
        assert leases.list_leases(conn) == []
    # the next run (or a finished one) wrote exactly the reference: the newest row per entity in its TTL
    store.materialize(start, end, ["cust_stats"])
    latest = frame.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")
    keys = sorted(latest.index)
    got = online_store_of(store).read("cust_stats", ["amount", "n"], [(int(k),) for k in keys])
    assert got["amount"] == pytest.approx(latest.loc[keys, "amount"].tolist())
    assert got["n"] == latest.loc[keys, "n"].tolist()
