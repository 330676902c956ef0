"""The scheduler: starts due slots and manual triggers, with exactly one active scheduler at a time.

    sched = Scheduler(ws)          # inside `shipyard server`, or `shipyard scheduler` on its own
    sched.start()                  # a background thread
    ...
    sched.stop()

Any number of schedulers may run against one metadata database; the one holding the lease
(:mod:`shipyard.pipelines.lease`) is active, the others wait and take over when it stops renewing.
Each pass of the active scheduler:

1. for every unpaused schedule whose ``next_slot_at`` has come, works out the slots that are due,
   applies the missed-run policy and, in one fenced transaction that also advances ``next_slot_at``
   (compare-and-set), records them as queued runs — a slot is a row with a unique key, so it exists
   once whatever happens;
2. starts queued runs (slots and manual triggers) within each schedule's ``max_concurrency`` and the
   scheduler's ``max_workers``: the queued → running change is another fenced, conditional update, so
   a run starts at most once;
3. sleeps until the next slot is due, the lease needs renewing, or ``tick_s`` passed.

When a scheduler takes the lease over, runs still marked running under an older token are marked
``interrupted`` in the same transaction: their scheduler died with them. Jobs run in threads of the
scheduler's process; pipeline jobs share a warm pool of worker processes, so a slot's first node
starts within milliseconds of its time.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.pipelines.jobs import JobContext, job_kinds
from shipyard.pipelines.lease import LostLease, SchedulerLease
from shipyard.pipelines.pool import WorkerPool
from shipyard.pipelines.schedules import (
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Schedule,
    ScheduleRun,
    Schedules,
    _run,
    _schedule,
)
from shipyard.store import now_ms
from shipyard.store.schema import schedule_runs, schedules

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)
MAX_LOG_BYTES = 64 * 1024


class Scheduler:
    def __init__(self, ws: Workspace, *, holder: str | None = None, lease_s: float = 10.0, tick_s: float = 0.25,
                 max_workers: int = 4, pipeline_workers: int = 2, warm_workers: bool = True) -> None:
        self.ws = ws
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = SchedulerLease(ws.store, self.holder, lease_s)
        self.lease_s = lease_s
        self.tick_s = tick_s
        self.max_workers = max_workers
        self.schedules = Schedules(ws.store)
        self.pool = WorkerPool(pipeline_workers, stderr_path=ws.settings.state_dir / "pipelines" / "workers.log")
        self.warm_workers = warm_workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[str, threading.Thread] = {}
        self._jobs_lock = threading.Lock()
        self._next_renew = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.lease.token is not None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="shipyard-scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler %s started", self.holder)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop starting runs, wait up to ``timeout`` for running ones, give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in list(self._jobs.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._jobs.values()):
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.warning("could not release the scheduler lease", exc_info=True)
        self.pool.close()
        log.info("scheduler %s stopped", self.holder)

    def run_forever(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM (``shipyard scheduler``)."""
        import signal

        def _quit(*_: object) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, _quit)
        signal.signal(signal.SIGINT, _quit)
        self.start()
        while not self._stop.wait(0.5):
            pass
        self.stop()

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._renew()
                if self.is_leader:
                    self._fire_due()
                    self._start_queued()
            except LostLease:
                log.warning("scheduler %s lost the lease; it starts nothing until it holds it again", self.holder)
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("scheduler pass failed; retrying")
                self._stop.wait(1.0)
            self._stop.wait(self._sleep_s())

    def _renew(self) -> None:
        now = time.monotonic()
        if now < self._next_renew:
            return
        was = self.is_leader
        token = self.lease.acquire_or_renew(self._take_over)
        if token is not None:
            self._next_renew = now + self.lease_s / 3
            if not was:
                log.info("scheduler %s is active (token %d)", self.holder, token)
                if self.warm_workers:
                    threading.Thread(target=self._warm, daemon=True).start()
        else:
            if was:
                log.warning("scheduler %s is no longer active", self.holder)
            self._next_renew = now + min(self.lease_s / 4, 1.0)

    def _warm(self) -> None:
        try:
            self.pool.warm()
        except Exception:  # noqa: BLE001 - workers start on demand anyway
            log.warning("could not start pipeline workers ahead of time", exc_info=True)

    def _take_over(self, conn: Connection, token: int) -> None:
        """In the lease transaction: runs left running by an older holder are interrupted."""
        ts = now_ms()
        conn.execute(schedule_runs.update().where(
            schedule_runs.c.status == RUNNING, sa.or_(schedule_runs.c.token < token, schedule_runs.c.token.is_(None))
        ).values(status=INTERRUPTED, finished_at=ts,
                 error=f"the scheduler running it stopped; marked by {self.holder} on taking over (token {token})"))

    def _sleep_s(self) -> float:
        wait = self.tick_s
        if self.is_leader:
            with self.ws.store.read() as conn:
                due = conn.execute(sa.select(sa.func.min(schedules.c.next_slot_at)).where(
                    schedules.c.paused.is_(False))).scalar()
            if due is not None:
                wait = min(wait, max(0.0, (due - now_ms()) / 1000))
        return max(0.0, min(wait, self._next_renew - time.monotonic()))

    # -- slots -----------------------------------------------------------------------------------
    def _fire_due(self) -> None:
        ts = now_ms()
        with self.ws.store.read() as conn:
            rows = conn.execute(sa.select(schedules).where(
                schedules.c.paused.is_(False), schedules.c.next_slot_at <= ts)).all()
        for row in rows:
            self._fire(_schedule(row), ts)

    def _fire(self, sched: Schedule, ts: int) -> None:
        assert sched.next_slot_at is not None
        slots, nxt = [], sched.next_slot_at
        while nxt <= ts and len(slots) <= sched.max_catchup:
            slots.append(nxt)
            nxt = sched.next_after(nxt)
        if nxt <= ts:  # more missed slots than max_catchup: jump to the future
            nxt = sched.next_after(ts)
        grace_ms = int(max(2 * self.tick_s, 1.0) * 1000)
        if sched.missed == "catchup":
            run, skipped = slots[-sched.max_catchup:], slots[:-sched.max_catchup]
        elif sched.missed == "latest":
            run, skipped = slots[-1:], slots[:-1]
        else:
            on_time = [s for s in slots if ts - s <= grace_ms]
            run, skipped = on_time[-1:], [s for s in slots if s not in on_time[-1:]]
        with self.ws.store.begin() as conn:
            token = self.lease.fence(conn)
            if sched.missed == "skip" and run:
                busy = conn.execute(sa.select(sa.func.count()).select_from(schedule_runs).where(
                    schedule_runs.c.schedule == sched.name,
                    schedule_runs.c.status.in_((QUEUED, RUNNING)))).scalar_one()
                if busy >= sched.max_concurrency:
                    skipped, run = skipped + run, []
            moved = conn.execute(schedules.update().where(
                schedules.c.name == sched.name, schedules.c.next_slot_at == sched.next_slot_at
            ).values(next_slot_at=nxt)).rowcount
            if moved != 1:
                return  # changed under us (edited, or another pass): look again next time
            for slot in run:
                conn.execute(schedule_runs.insert().values(self._row(sched, slot, QUEUED, token, ts)))
            if skipped:
                values = self._row(sched, skipped[-1], SKIPPED, token, ts)
                values.update(finished_at=ts, error=f"{len(skipped)} slot(s) skipped (missed: {sched.missed}; "
                                                    "late, or the previous run was still going)")
                conn.execute(schedule_runs.insert().values(values))

    def _row(self, sched: Schedule, slot: int, status: str, token: int, ts: int) -> dict[str, object]:
        return {"id": uuid.uuid4().hex, "schedule": sched.name, "slot_key": f"slot:{slot}", "slot_at": slot,
                "trigger": "schedule", "status": status, "token": token, "holder": self.holder, "queued_at": ts,
                "started_at": None, "finished_at": None, "log": "", "error": "", "result": {},
                "actor": f"scheduler:{self.holder}"}

    # -- starting runs ---------------------------------------------------------------------------
    def _start_queued(self) -> None:
        with self.ws.store.read() as conn:
            queued = [_run(r) for r in conn.execute(sa.select(schedule_runs).where(
                schedule_runs.c.status == QUEUED).order_by(schedule_runs.c.slot_at, schedule_runs.c.queued_at))]
            if not queued:
                return
            running = dict(conn.execute(sa.select(schedule_runs.c.schedule, sa.func.count()).where(
                schedule_runs.c.status == RUNNING).group_by(schedule_runs.c.schedule)).all())
        cache: dict[str, Schedule] = {}
        for run in queued:
            with self._jobs_lock:
                self._jobs = {k: t for k, t in self._jobs.items() if t.is_alive()}
                if len(self._jobs) >= self.max_workers:
                    return
            sched = cache.get(run.schedule) or self.schedules.get(run.schedule)
            cache[run.schedule] = sched
            if running.get(run.schedule, 0) >= sched.max_concurrency:
                continue
            if self._claim(run):
                running[run.schedule] = running.get(run.schedule, 0) + 1
                thread = threading.Thread(target=self._execute, args=(sched, run.id), daemon=True,
                                          name=f"shipyard-job-{sched.name}")
                with self._jobs_lock:
                    self._jobs[run.id] = thread
                thread.start()

    def _claim(self, run: ScheduleRun) -> bool:
        with self.ws.store.begin() as conn:
            token = self.lease.fence(conn)
            return conn.execute(schedule_runs.update().where(
                schedule_runs.c.id == run.id, schedule_runs.c.status == QUEUED
            ).values(status=RUNNING, started_at=now_ms(), token=token, holder=self.holder)).rowcount == 1

    def _execute(self, sched: Schedule, run_id: str) -> None:
        run = self.schedules.get_run(run_id)
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger(f"shipyard.jobs.{sched.name}")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        status, error, result = SUCCEEDED, "", {}
        try:
            kind = job_kinds().get(sched.kind)
            if kind is None:
                raise LookupError(f"job kind {sched.kind!r} is not registered in this scheduler's process")
            context = JobContext(self.ws, sched.name, run.id, run.slot_at, run.trigger, sched.target,
                                 dict(sched.args), logger, sched.timeout_s, self.pool)
            result = dict(kind.run(context) or {})
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, the scheduler goes on
            status = FAILED
            error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            logger.error("%s\n%s", error, traceback.format_exc())
            result = dict(getattr(exc, "details", None) or {})
        finally:
            logger.removeHandler(handler)
        text = buffer.getvalue()
        if len(text.encode()) > MAX_LOG_BYTES:
            text = "[... earlier lines dropped ...]\n" + text.encode()[-MAX_LOG_BYTES:].decode(errors="replace")
        try:
            with self.ws.store.begin() as conn:
                conn.execute(schedule_runs.update().where(
                    schedule_runs.c.id == run.id, schedule_runs.c.status == RUNNING
                ).values(status=status, finished_at=now_ms(), log=text, error=error, result=_plain(result)))
        except Exception:  # noqa: BLE001
            log.exception("could not record the end of run %s of %s", run.id, sched.name)


def _plain(value: object) -> dict:
    import json

    return json.loads(json.dumps(value, default=str)) if isinstance(value, dict) else {}


def scheduler_status(ws: Workspace) -> dict[str, object]:
    """Who holds the lease, until when, and the run counts by status."""
    lease = SchedulerLease(ws.store, "", 0).state()
    with ws.store.read() as conn:
        counts = dict(conn.execute(sa.select(schedule_runs.c.status, sa.func.count())
                                   .group_by(schedule_runs.c.status)).all())
    return {"holder": lease.holder if lease else None, "token": lease.token if lease else None,
            "expires_at": lease.expires_at if lease else None, "active": bool(lease and lease.expires_at > now_ms()),
            "runs": counts}


__all__ = ["Scheduler", "Schedules", "scheduler_status"]
