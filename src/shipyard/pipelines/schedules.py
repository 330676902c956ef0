"""``ws.schedules``: what runs when — cron or interval schedules of jobs, their history, manual triggers.

    ws.schedules.add("nightly_retrain", "pipeline", "pipelines/credit.yaml", cron="0 2 * * *",
                     timezone="Europe/Berlin", missed="skip", actor="alice")
    ws.schedules.add("refresh_loans", "dataset_refresh", "loans", interval_s=3600, actor="alice")
    ws.schedules.trigger("nightly_retrain", actor="alice")          # run now (the scheduler picks it up)
    ws.schedules.history("nightly_retrain")

Cron expressions have five fields, or six with seconds last (``* * * * * */5``: every five seconds),
and are read in the schedule's time zone (daylight-saving changes included). Interval schedules are
anchored at their creation time. ``missed`` says what happens to slots that passed while no scheduler
ran: ``catchup`` runs each of them (up to ``max_catchup``), ``latest`` runs only the most recent one,
``skip`` runs none and waits for the next slot. At most ``max_concurrency`` runs of a schedule run at
once; beyond that, a ``skip`` schedule's new slot is skipped and others wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from shipyard.errors import AlreadyExists, InvalidInput, NotFound
from shipyard.pipelines.jobs import job_kinds
from shipyard.store import MetadataStore, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import schedule_runs, schedules

MISSED = ("catchup", "skip", "latest")
QUEUED, RUNNING, SUCCEEDED, FAILED, INTERRUPTED, SKIPPED = (
    "queued", "running", "succeeded", "failed", "interrupted", "skipped")


@dataclass(frozen=True)
class Schedule:
    name: str
    kind: str
    target: str
    args: dict[str, Any]
    cron: str | None
    interval_s: float | None
    timezone: str
    missed: str
    max_concurrency: int
    max_catchup: int
    timeout_s: float | None
    paused: bool
    next_slot_at: int | None
    description: str
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str

    def next_after(self, after_ms: int) -> int:
        return next_slot(self.cron, self.interval_s, self.timezone, self.created_at, after_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScheduleRun:
    id: str
    schedule: str
    slot_key: str
    slot_at: int
    trigger: str
    status: str
    token: int | None
    holder: str | None
    queued_at: int
    started_at: int | None
    finished_at: int | None
    log: str
    error: str
    result: dict[str, Any]
    actor: str

    @property
    def start_latency_ms(self) -> int | None:
        """Scheduled time to start, for scheduled slots."""
        if self.started_at is None or self.trigger != "schedule":
            return None
        return self.started_at - self.slot_at

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start_latency_ms"] = self.start_latency_ms
        return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone {name!r} is not known; use an IANA name such as 'UTC' or 'Europe/Berlin'",
                           {"field": "timezone"}) from None


def next_slot(cron: str | None, interval_s: float | None, timezone: str, anchor_ms: int, after_ms: int) -> int:
    """The first slot strictly after ``after_ms`` (milliseconds since the epoch)."""
    if cron:
        from croniter import croniter

        start = datetime.fromtimestamp(after_ms / 1000, _zone(timezone))
        nxt = croniter(cron, start).get_next(datetime)
        return int(round(nxt.timestamp() * 1000))
    assert interval_s is not None
    if after_ms < anchor_ms:
        return anchor_ms
    step = max(int(round(interval_s * 1000)), 1)
    return anchor_ms + ((after_ms - anchor_ms) // step + 1) * step


def check_timing(cron: str | None, interval_s: float | None, timezone: str) -> None:
    if bool(cron) == (interval_s is not None):
        raise InvalidInput("give exactly one of cron (e.g. '0 2 * * *') or interval_s (seconds)", {"field": "cron"})
    _zone(timezone)
    if cron:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise InvalidInput(f"cron {cron!r} is not a valid cron expression; use five fields (minute hour day month "
                               "weekday) or six with seconds last", {"field": "cron"})
    elif not isinstance(interval_s, int | float) or isinstance(interval_s, bool) or interval_s < 0.1:
        raise InvalidInput(f"interval_s must be a number of seconds ≥ 0.1, got {interval_s!r}",
                           {"field": "interval_s"})


def _schedule(row: Any) -> Schedule:
    data = dict(row._mapping)
    data["args"] = dict(data.get("args") or {})
    data["paused"] = bool(data["paused"])
    return Schedule(**data)


def _run(row: Any) -> ScheduleRun:
    data = dict(row._mapping)
    data["result"] = dict(data.get("result") or {})
    return ScheduleRun(**data)


class Schedules:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def add(self, name: str, kind: str, target: str = "", *, actor: str, cron: str | None = None,
            interval_s: float | None = None, timezone: str = "UTC", args: Mapping[str, Any] | None = None,
            missed: str = "skip", max_concurrency: int = 1, max_catchup: int = 100, timeout_s: float | None = None,
            description: str = "", replace: bool = False) -> Schedule:
        from shipyard.data.sources import check_name

        check_name(name, "schedule")
        kinds = job_kinds()
        if kind not in kinds:
            raise InvalidInput(f"job kind {kind!r} is not registered; known kinds: {sorted(kinds)}", {"field": "kind"})
        check_timing(cron, interval_s, timezone)
        if missed not in MISSED:
            raise InvalidInput(f"missed {missed!r}: use one of {list(MISSED)}", {"field": "missed"})
        for field, value in (("max_concurrency", max_concurrency), ("max_catchup", max_catchup)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"{field} must be a whole number ≥ 1, got {value!r}", {"field": field})
        if timeout_s is not None and (not isinstance(timeout_s, int | float) or timeout_s <= 0):
            raise InvalidInput("timeout_s must be a positive number of seconds", {"field": "timeout_s"})
        clean_args = dict(args or {})
        if kinds[kind].validate is not None:
            kinds[kind].validate(target, clean_args)
        ts = now_ms()
        values = {"kind": kind, "target": target, "args": clean_args, "cron": cron or None,
                  "interval_s": float(interval_s) if interval_s is not None else None, "timezone": timezone,
                  "missed": missed, "max_concurrency": max_concurrency, "max_catchup": max_catchup,
                  "timeout_s": timeout_s, "description": description, "updated_at": ts, "updated_by": actor}
        with self.store.begin() as conn:
            exists = conn.execute(sa.select(schedules.c.name).where(schedules.c.name == name)).first()
            if exists and not replace:
                raise AlreadyExists(f"schedule {name!r} already exists; pass replace=True (--replace) to change it",
                                    {"field": "name"})
            first = next_slot(cron, interval_s, timezone, ts, ts)
            if exists:
                conn.execute(schedules.update().where(schedules.c.name == name).values(**values, next_slot_at=first))
            else:
                conn.execute(schedules.insert().values(name=name, paused=False, next_slot_at=first, created_at=ts,
                                                       created_by=actor, **values))
            record_event(conn, actor, "schedule.saved", f"schedule:{name}", {"kind": kind, "cron": cron,
                                                                            "interval_s": interval_s})
        return self.get(name)

    def get(self, name: str) -> Schedule:
        with self.store.read() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.name == name)).first()
        if row is None:
            raise NotFound(f"schedule {name!r} does not exist; list them with `shipyard schedules list`",
                           {"field": "schedule", "name": name})
        return _schedule(row)

    def list(self) -> list[Schedule]:
        with self.store.read() as conn:
            return [_schedule(r) for r in conn.execute(sa.select(schedules).order_by(schedules.c.name))]

    def delete(self, name: str, actor: str) -> None:
        with self.store.begin() as conn:
            conn.execute(schedule_runs.delete().where(schedule_runs.c.schedule == name))
            if conn.execute(schedules.delete().where(schedules.c.name == name)).rowcount == 0:
                raise NotFound(f"schedule {name!r} does not exist", {"field": "schedule"})
            record_event(conn, actor, "schedule.deleted", f"schedule:{name}")

    def _set_paused(self, name: str, paused: bool, actor: str) -> Schedule:
        self.get(name)
        with self.store.begin() as conn:
            conn.execute(schedules.update().where(schedules.c.name == name).values(
                paused=paused, updated_at=now_ms(), updated_by=actor))
            record_event(conn, actor, "schedule.paused" if paused else "schedule.resumed", f"schedule:{name}")
        return self.get(name)

    def pause(self, name: str, actor: str) -> Schedule:
        return self._set_paused(name, True, actor)

    def resume(self, name: str, actor: str) -> Schedule:
        """Resume; slots that passed while paused follow the schedule's ``missed`` policy."""
        return self._set_paused(name, False, actor)

    def trigger(self, name: str, actor: str) -> ScheduleRun:
        """Queue a run now; the active scheduler starts it (paused schedules can be triggered)."""
        self.get(name)
        run_id, ts = uuid.uuid4().hex, now_ms()
        with self.store.begin() as conn:
            conn.execute(schedule_runs.insert().values(
                id=run_id, schedule=name, slot_key=f"manual:{run_id}", slot_at=ts, trigger="manual", status=QUEUED,
                token=None, holder=None, queued_at=ts, started_at=None, finished_at=None, log="", error="", result={},
                actor=actor))
            record_event(conn, actor, "schedule.triggered", f"schedule:{name}", {"run": run_id})
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> ScheduleRun:
        with self.store.read() as conn:
            row = conn.execute(sa.select(schedule_runs).where(schedule_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"schedule run {run_id!r} does not exist", {"field": "run_id"})
        return _run(row)

    def history(self, name: str | None = None, limit: int = 50, status: str | None = None) -> list[ScheduleRun]:
        query = sa.select(schedule_runs).order_by(schedule_runs.c.queued_at.desc(), schedule_runs.c.slot_at.desc())
        if name:
            self.get(name)
            query = query.where(schedule_runs.c.schedule == name)
        if status:
            query = query.where(schedule_runs.c.status == status)
        with self.store.read() as conn:
            return [_run(r) for r in conn.execute(query.limit(limit))]
