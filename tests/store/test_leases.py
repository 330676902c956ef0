"""Leases on records in progress: owner liveness, heartbeats, and recovery that takes each dead
lease over exactly once — against a naive model of the records and on every metadata backend."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from shipyard.store import leases
from shipyard.store.database import now_ms
from shipyard.store.schema import job_leases


class Jobs:
    """A naive job kind: records in memory, ``open`` while in progress."""

    kind = "test_job"

    def __init__(self, store: Any, keys: list[str], slow: float = 0.0) -> None:
        self.store = store
        self.open = set(keys)
        self.slow = slow
        self.calls: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()

    def open_keys(self, conn: Any) -> list[str]:
        return sorted(self.open)

    def recover(self, key: str, lease: leases.Lease, reason: str) -> str:
        with self._lock:
            self.calls.append((key, lease.recoveries, reason))
        time.sleep(self.slow)
        with self.store.begin() as conn:
            leases.release(conn, self.kind, key)
        self.open.discard(key)
        return "abandoned"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def put(store: Any, key: str, owner: str, heartbeat_at: int, ttl_s: float = 30.0) -> None:
    with store.begin() as conn:
        leases.acquire(conn, Jobs.kind, key, ttl_s=ttl_s, owner=owner)
        conn.execute(job_leases.update().where(job_leases.c.key == key).values(heartbeat_at=heartbeat_at))


def rows(store: Any) -> dict[str, Any]:
    with store.read() as conn:
        return {lease.key: lease for lease in leases.list_leases(conn, Jobs.kind)}


def test_an_owner_is_alive_while_its_process_runs() -> None:
    assert leases.owner_alive(leases.this_process()) is True
    assert leases.owner_alive(leases.owner_of(dead_pid())) is False
    # the same pid started again later is another process: its recorded start time differs
    me = leases.this_process().split("/")
    assert leases.owner_alive("/".join([*me[:3], "1"])) is False
    assert leases.owner_alive("another-host/1/1/1") is None  # cannot tell: only the heartbeat can


def test_a_lease_is_dead_by_its_owner_or_by_its_ttl_never_by_age(workspace) -> None:
    store, now = workspace.store, now_ms()
    put(store, "mine-old", leases.this_process(), now - 3_600_000)          # an hour of silence
    put(store, "gone", leases.owner_of(dead_pid()), now)                   # fresh heartbeat, dead process
    put(store, "remote-fresh", "other-host/1/123/456", now - 5_000)
    put(store, "remote-silent", "other-host/1/123/456", now - 31_000)
    found = rows(store)
    assert found["gone"].dead(now).startswith("its process")
    assert found["remote-fresh"].dead(now) is None
    assert "no heartbeat from other-host/1/123/456 for 31.0 s (limit 30 s)" in found["remote-silent"].dead(now)
    # this process is alive, but a lease silent past its ttl is taken for hung
    assert "no heartbeat" in found["mine-old"].dead(now)


def test_recovery_takes_over_dead_and_missing_leases_and_leaves_live_ones(workspace) -> None:
    store, now = workspace.store, now_ms()
    put(store, "live", leases.this_process(), now)
    put(store, "gone", leases.owner_of(dead_pid()), now)
    put(store, "silent", "other-host/1/123/456", now - 60_000)
    put(store, "leftover", leases.owner_of(dead_pid()), now)  # its record is no longer in progress
    jobs = Jobs(store, ["live", "gone", "silent", "no-lease"])
    done = leases.recover(store, [jobs])
    assert sorted((d.key, d.outcome, d.recoveries) for d in done) == [
        ("gone", "abandoned", 1), ("no-lease", "abandoned", 1), ("silent", "abandoned", 1)]
    assert sorted(c[0] for c in jobs.calls) == ["gone", "no-lease", "silent"]
    assert set(rows(store)) == {"live"}  # recovered ones released, the leftover dropped
    assert leases.recover(store, [jobs]) == []  # nothing left to do


def test_two_recoverers_never_recover_the_same_record(workspace) -> None:
    store, now = workspace.store, now_ms()
    keys = [f"k{i}" for i in range(12)]
    for key in keys:
        put(store, key, leases.owner_of(dead_pid()) if key < "k6" else "other-host/1/9/9", now - 60_000)
    jobs = Jobs(store, keys, slow=0.01)
    results: list[list[leases.Recovery]] = []
    threads = [threading.Thread(target=lambda: results.append(leases.recover(store, [jobs]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recovered = sorted(d.key for batch in results for d in batch)
    assert recovered == sorted(keys) and sorted(c[0] for c in jobs.calls) == sorted(keys)


def test_a_freed_lease_is_dead_at_once_and_taken_over_by_the_next_recovery(workspace) -> None:
    store, me = workspace.store, leases.this_process()
    put(store, "mine", me, now_ms(), ttl_s=3600)
    put(store, "theirs", "other-host/1/123/456", now_ms())
    with store.begin() as conn:
        assert leases.free(conn, Jobs.kind, "mine")
        assert not leases.free(conn, Jobs.kind, "theirs")  # only the holder frees a lease
        assert not leases.free(conn, Jobs.kind, "missing")
    freed = rows(store)["mine"]
    assert (freed.owner, freed.details) == (leases.FREE, {"freed_by": me})
    assert freed.dead(freed.heartbeat_at) == f"{me} gave it up"  # no ttl to wait for
    assert rows(store)["theirs"].owner == "other-host/1/123/456"

    class Resumes(Jobs):
        def recover(self, key: str, lease: leases.Lease, reason: str) -> str:
            self.calls.append((key, lease.recoveries, reason))
            return "resumed"

    jobs = Resumes(store, ["mine", "theirs"])
    done = leases.recover(store, [jobs])
    assert [(d.key, d.outcome, d.recoveries) for d in done] == [("mine", "resumed", 1)]
    taken = rows(store)["mine"]
    assert taken.owner == me and taken.details == {}  # held again: no longer marked freed


def test_a_kept_lease_is_heartbeated_and_a_lost_one_is_let_go(workspace) -> None:
    store = workspace.store
    with store.begin() as conn:
        leases.acquire(conn, Jobs.kind, "beating", ttl_s=0.2)
    first = rows(store)["beating"].heartbeat_at
    leases.keep(store, Jobs.kind, "beating", 0.2)
    deadline = time.monotonic() + 10
    while rows(store)["beating"].heartbeat_at == first:
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.02)
    assert rows(store)["beating"].dead() is None
    # another process took it over: this one stops heartbeating it
    with store.begin() as conn:
        conn.execute(job_leases.update().where(job_leases.c.key == "beating").values(owner="other-host/1/1/1"))
    while ("test_job", "beating") in leases.held(store):
        assert time.monotonic() < deadline, "the lost lease is still kept"
        time.sleep(0.02)
    leases.forget(store, Jobs.kind, "beating")


def test_acquire_renews_and_keeps_the_count_of_recoveries_and_release_respects_the_token(workspace) -> None:
    store = workspace.store
    put(store, "job", leases.owner_of(dead_pid()), now_ms() - 1)
    jobs = Jobs(store, ["job"])
    jobs.recover = lambda key, lease, reason: "resumed"  # type: ignore[method-assign] # keeps its lease
    (done,) = leases.recover(store, [jobs])
    assert done.recoveries == 1
    with store.begin() as conn:
        leases.acquire(conn, Jobs.kind, "job", token="attempt-2")
    assert (rows(store)["job"].recoveries, rows(store)["job"].token) == (1, "attempt-2")
    with store.begin() as conn:
        assert not leases.release(conn, Jobs.kind, "job", token="attempt-1")  # a superseded attempt
        assert leases.release(conn, Jobs.kind, "job", token="attempt-2")
    assert rows(store) == {}


@pytest.fixture
def workspace(metadata_url: str, tmp_path):
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(tmp_path / "project", metadata_url=metadata_url, user="t"))
    yield ws
    with ws.store.begin() as conn:
        conn.execute(sa.delete(job_leases))
    ws.close()


def test_the_migration_creates_the_table(workspace) -> None:
    with workspace.store.read() as conn:
        assert "job_leases" in sa.inspect(conn).get_table_names()
    assert workspace.store.current_revision() == "0007"
