"""Leases on records left in progress, and their recovery when the process working on them dies.

A job — validating a model version, a materialization run, later pipeline and scheduled runs — puts
its record in progress and takes a lease on it in the same transaction (``acquire``): the lease
names the owner, this process (host, pid namespace, pid and the process's start time), and holds
a heartbeat time. While the job runs, ``keep`` has one background thread per metadata store
refresh the heartbeats of every lease the process holds, every ``ttl / 4``. The transaction that
finishes the record ``release``s the lease. A job handed to another process (a validation
subprocess) is ``hand_over``-ed to that process's id. A process that stops working on a record it
has not finished (it is shutting down) ``free``s the lease: dead at once, so the next ``recover``
anywhere takes it over without waiting for the ttl.

A lease is dead when its owner process is known to be gone — same host and pid namespace, and the
pid no longer runs the process that took it (Linux ``/proc``) — or when its heartbeat is older than
its ttl (another host, or a process that hangs). Never by the age of the record alone.

``recover(store, kinds)`` is what a server runs at start and periodically: for each ``RecoverableKind`` it
finds records in progress whose lease is dead or missing, takes the lease over with one
compare-and-set (two servers never recover the same record; ``recoveries`` counts the takeovers),
heartbeats it, and asks the kind to resume the job or to mark the record abandoned. Heartbeats are
wall-clock milliseconds, so hosts sharing a metadata store need clocks within a fraction of the ttl.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import ShipyardError
from shipyard.store.database import MetadataStore, now_ms
from shipyard.store.schema import job_leases

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 30.0

FREE = ""
"""The owner of a freed lease (``free``): no process holds it, and it is dead until one takes it over."""


# -- who owns a lease ------------------------------------------------------------------------------
def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot) from /proc; None if no such process runs
    (an exited process its parent has not reaped yet included); "" when /proc cannot tell.
    Together with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else ""
    except OSError:
        return ""
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields and fields[0] in (b"Z", b"X"):  # a zombie: it has exited
        return None
    return fields[19].decode() if len(fields) > 19 else ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


_HOST = socket.gethostname()[:150]
_NAMESPACE = _pid_namespace()
_owner: tuple[int, str] | None = None


def owner_of(pid: int) -> str:
    """The owner id of process ``pid`` on this host (``host/pidns/pid/start``)."""
    return f"{_HOST}/{_NAMESPACE}/{pid}/{_start_ticks(pid) or ''}"


def this_process() -> str:
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:  # a forked child is another owner
        _owner = (pid, owner_of(pid))
    return _owner[1]


def owner_alive(owner: str) -> bool | None:
    """True/False when ``owner`` ran on this host (and pid namespace), None when that cannot be told."""
    parts = owner.split("/")
    if len(parts) != 4 or parts[0] != _HOST or parts[1] != _NAMESPACE or not parts[2].isdigit():
        return None
    pid, started = int(parts[2]), parts[3]
    now_started = _start_ticks(pid)
    if now_started is None:
        return False  # no such process
    if started and now_started:
        return started == now_started  # another process reusing the pid is not the owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the lease record ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    kind: str
    key: str
    owner: str
    token: str
    acquired_at: int
    heartbeat_at: int
    ttl_ms: int
    recoveries: int
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> Lease:
        m = row._mapping
        return cls(m["kind"], m["key"], m["owner"], m["token"] or "", int(m["acquired_at"]),
                   int(m["heartbeat_at"]), int(m["ttl_ms"]), int(m["recoveries"] or 0), dict(m["details"] or {}))

    def dead(self, now: int | None = None) -> str | None:
        """Why the owner is taken for gone (its process exited, or no heartbeat within the ttl); None while alive."""
        now = now_ms() if now is None else now
        if self.owner == FREE:
            return f"{self.details.get('freed_by') or 'its owner'} gave it up"
        alive = owner_alive(self.owner)
        if alive is False:
            return f"its process ({self.owner}) is gone"
        silent = now - self.heartbeat_at
        if silent > self.ttl_ms:
            return f"no heartbeat from {self.owner} for {silent / 1000:.1f} s (limit {self.ttl_ms / 1000:g} s)"
        return None


def acquire(conn: Connection, kind: str, key: str, *, ttl_s: float = DEFAULT_TTL_S, token: str = "",
            owner: str | None = None, details: dict[str, Any] | None = None) -> None:
    """Take (or renew) the lease on ``kind/key`` in ``conn``'s transaction, the one that puts the
    record in progress. A lease taken over before keeps its count of recoveries."""
    now = now_ms()
    values = {"owner": owner or this_process(), "token": token, "heartbeat_at": now,
              "ttl_ms": int(ttl_s * 1000), "details": details or {}}
    where = (job_leases.c.kind == kind, job_leases.c.key == key)
    if conn.execute(job_leases.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(job_leases.insert().values(kind=kind, key=key, acquired_at=now, recoveries=0, **values))


def release(conn: Connection, kind: str, key: str, *, token: str | None = None) -> bool:
    """Drop the lease in the transaction that finishes the record; with ``token``, only that
    attempt's lease (a superseded attempt must not drop its successor's)."""
    query = job_leases.delete().where(job_leases.c.kind == kind, job_leases.c.key == key)
    if token is not None:
        query = query.where(job_leases.c.token == token)
    return conn.execute(query).rowcount > 0


def hand_over(store: MetadataStore, kind: str, key: str, *, token: str, owner: str) -> bool:
    """Give the lease of attempt ``token`` to another process (which heartbeats it from then on)."""
    with store.begin() as conn:
        result = conn.execute(job_leases.update().where(
            job_leases.c.kind == kind, job_leases.c.key == key, job_leases.c.token == token).values(
                owner=owner, heartbeat_at=now_ms()))
    return result.rowcount > 0


def free(conn: Connection, kind: str, key: str) -> bool:
    """Give up this process's lease on ``kind/key`` without finishing the record, in ``conn``'s
    transaction: the lease is dead at once (see ``FREE``) and remembers who freed it. False when
    this process does not hold it (finished, or taken over meanwhile)."""
    me = this_process()
    found = get(conn, kind, key)
    if found is None or found.owner != me:
        return False
    conn.execute(job_leases.update().where(
        job_leases.c.kind == kind, job_leases.c.key == key, job_leases.c.owner == me).values(
            owner=FREE, heartbeat_at=now_ms(), details={**found.details, "freed_by": me}))
    return True


def get(conn: Connection, kind: str, key: str) -> Lease | None:
    row = conn.execute(sa.select(job_leases).where(job_leases.c.kind == kind, job_leases.c.key == key)).first()
    return Lease.from_row(row) if row is not None else None


def list_leases(conn: Connection, kind: str | None = None) -> list[Lease]:
    query = sa.select(job_leases)
    if kind is not None:
        query = query.where(job_leases.c.kind == kind)
    return [Lease.from_row(r) for r in conn.execute(query.order_by(job_leases.c.kind, job_leases.c.key))]


# -- heartbeats ----------------------------------------------------------------------------------
class _Keeper:
    """Refreshes the heartbeats of the leases this process holds in one metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = weakref.ref(store)
        self.pid = os.getpid()
        self.held: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, kind: str, key: str, ttl_s: float) -> None:
        with self._lock:
            self.held[(kind, key)] = ttl_s
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="shipyard-leases", daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, kind: str, key: str) -> None:
        with self._lock:
            self.held.pop((kind, key), None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self.held:
                    self._thread = None
                    return
                every = max(0.05, min(self.held.values()) / 4)
            self._wake.wait(every)
            self._wake.clear()
            store = self.store()
            if store is None:
                return
            try:
                self.beat(store)
            except ShipyardError as exc:  # a locked or unreachable store: the next beat may get through
                log.warning("lease heartbeat failed: %s", exc)
            except Exception:  # noqa: BLE001 - the keeper must outlive one bad beat
                log.exception("lease heartbeat failed")

    def beat(self, store: MetadataStore) -> None:
        with self._lock:
            held = list(self.held)
        if not held:
            return
        me, now, lost = this_process(), now_ms(), []
        with store.begin() as conn:
            for kind, key in held:
                done = conn.execute(job_leases.update().where(
                    job_leases.c.kind == kind, job_leases.c.key == key, job_leases.c.owner == me).values(
                        heartbeat_at=now))
                if done.rowcount == 0:
                    lost.append((kind, key))
        for kind, key in lost:  # finished, handed over, or taken over by a recovery: not ours any more
            self.forget(kind, key)


_keepers: weakref.WeakKeyDictionary[MetadataStore, _Keeper] = weakref.WeakKeyDictionary()
_keepers_lock = threading.Lock()


def _keeper(store: MetadataStore) -> _Keeper:
    with _keepers_lock:
        found = _keepers.get(store)
        if found is None or found.pid != os.getpid():
            found = _keepers[store] = _Keeper(store)
        return found


def keep(store: MetadataStore, kind: str, key: str, ttl_s: float = DEFAULT_TTL_S) -> None:
    """Heartbeat the lease on ``kind/key`` from this process until ``forget`` (or until it is not
    this process's any more)."""
    _keeper(store).keep(kind, key, ttl_s)


def forget(store: MetadataStore, kind: str, key: str) -> None:
    _keeper(store).forget(kind, key)


def held(store: MetadataStore) -> list[tuple[str, str]]:
    """The leases this process heartbeats in ``store``."""
    return sorted(_keeper(store).held)


# -- recovery ------------------------------------------------------------------------------------
class RecoverableKind(Protocol):
    """One kind of job record that can be left in progress (model versions, materialization runs)."""

    kind: str

    def open_keys(self, conn: Connection) -> list[str]:
        """Keys of the records now in progress (with a live lease or not)."""

    def recover(self, key: str, lease: Lease, reason: str) -> str:
        """Resume the job or finish its record (releasing the lease); returns what was done:
        ``resumed``, ``abandoned``, or ``finished`` when the record needed nothing any more."""


@dataclass(frozen=True)
class Recovery:
    kind: str
    key: str
    outcome: str
    reason: str
    recoveries: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "outcome": self.outcome, "reason": self.reason,
                "recoveries": self.recoveries}


def _take_over(store: MetadataStore, lease: Lease) -> Lease | None:
    """Compare-and-set the lease to this process; None when someone else moved it first."""
    me, now = this_process(), now_ms()
    details = {k: v for k, v in lease.details.items() if k != "freed_by"}  # held again
    with store.begin() as conn:
        result = conn.execute(job_leases.update().where(
            job_leases.c.kind == lease.kind, job_leases.c.key == lease.key, job_leases.c.owner == lease.owner,
            job_leases.c.heartbeat_at == lease.heartbeat_at).values(
                owner=me, heartbeat_at=now, recoveries=lease.recoveries + 1, details=details))
    if result.rowcount == 0:
        return None
    return replace(lease, owner=me, heartbeat_at=now, recoveries=lease.recoveries + 1, details=details)


def _claim_orphan(store: MetadataStore, kind: str, key: str, ttl_s: float) -> Lease | None:
    """A record in progress without any lease (left by a version without leases): take a new one."""
    me, now = this_process(), now_ms()
    try:
        with store.begin() as conn:
            if get(conn, kind, key) is not None:
                return None
            conn.execute(job_leases.insert().values(kind=kind, key=key, owner=me, token="", acquired_at=now,
                                                    heartbeat_at=now, ttl_ms=int(ttl_s * 1000), recoveries=1,
                                                    details={}))
    except sa.exc.IntegrityError:
        return None
    return Lease(kind, key, me, "", now, now, int(ttl_s * 1000), 1)


def recover(store: MetadataStore, kinds: Sequence[RecoverableKind], *, ttl_s: float = DEFAULT_TTL_S) -> list[Recovery]:
    """Resume or abandon every record in progress whose lease is dead or missing (see module doc)."""
    done: list[Recovery] = []
    for job in kinds:
        now = now_ms()
        with store.read() as conn:
            open_keys = set(job.open_keys(conn))
            current = {lease.key: lease for lease in list_leases(conn, job.kind)}
        for key, lease in current.items():
            if key not in open_keys and lease.dead(now) is not None:
                with store.begin() as conn:  # its record is finished or gone: a leftover
                    conn.execute(job_leases.delete().where(
                        job_leases.c.kind == job.kind, job_leases.c.key == key, job_leases.c.owner == lease.owner,
                        job_leases.c.heartbeat_at == lease.heartbeat_at))
        for key in sorted(open_keys):
            lease = current.get(key)
            if lease is None:
                reason = "it was left in progress without a lease"
                taken = _claim_orphan(store, job.kind, key, ttl_s)
            else:
                dead = lease.dead(now)
                if dead is None:
                    continue
                reason = dead
                taken = _take_over(store, lease)
            if taken is None:
                continue  # another process is recovering it
            keep(store, job.kind, key, ttl_s)
            try:
                outcome = job.recover(key, taken, reason)
            except Exception:  # noqa: BLE001 - one record must not stop the others; its lease goes stale again
                log.exception("recovery of %s %s failed", job.kind, key)
                continue
            finally:
                forget(store, job.kind, key)
            log.warning("recovered %s %s (%s): %s", job.kind, key, reason, outcome)
            done.append(Recovery(job.kind, key, outcome, reason, taken.recoveries))
    return done
