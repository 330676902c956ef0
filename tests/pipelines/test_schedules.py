"""Schedules: cron/interval timing, validation, missed-run policies, concurrency, pause/resume, triggers,
history, the fenced lease, and job kinds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from shipyard.errors import AlreadyExists, InvalidInput, NotFound
from shipyard.pipelines.jobs import job_kinds, register_job_kind
from shipyard.pipelines.lease import LostLease
from shipyard.pipelines.scheduler import Scheduler, scheduler_status
from shipyard.pipelines.schedules import next_slot
from shipyard.store import now_ms
from shipyard.store.schema import schedule_runs, schedules
from shipyard.workspace import Workspace

CALLS: list[dict] = []


def _record_job(job):  # noqa: ANN001, ANN201 - a job kind for the tests
    CALLS.append({"schedule": job.schedule, "slot": job.slot_at, "trigger": job.trigger, "args": job.args})
    job.log.info("recorded slot %s", job.slot_at)
    if job.args.get("fail"):
        raise RuntimeError("job failed on purpose")
    return {"slot": job.slot_at}


register_job_kind("test_record", _record_job, description="tests")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_cron_slots_follow_the_time_zone_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 02:30 every day, Berlin time, around the spring change (2025-03-30: 02:00 -> 03:00)
    after = ms(datetime(2025, 3, 28, 12, 0, tzinfo=berlin))
    slot = next_slot("30 2 * * *", None, "Europe/Berlin", 0, after)
    assert datetime.fromtimestamp(slot / 1000, berlin) == datetime(2025, 3, 29, 2, 30, tzinfo=berlin)
    # the day of the change has no 02:30: its slot falls on that day, after the jump; the next is 02:30 again
    later = [next_slot("30 2 * * *", None, "Europe/Berlin", 0, slot)]
    later.append(next_slot("30 2 * * *", None, "Europe/Berlin", 0, later[0]))
    on_change_day = datetime.fromtimestamp(later[0] / 1000, berlin)
    assert on_change_day.date().isoformat() == "2025-03-30" and on_change_day.hour >= 3
    assert datetime.fromtimestamp(later[1] / 1000, berlin) == datetime(2025, 3, 31, 2, 30, tzinfo=berlin)
    # UTC offset differs by an hour between winter and summer slots
    utc_hours = {datetime.fromtimestamp(s / 1000, ZoneInfo("UTC")).hour for s in (slot, later[1])}
    assert utc_hours == {1, 0}


def test_second_level_cron_and_anchored_intervals() -> None:
    base = ms(datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC")))
    assert next_slot("* * * * * */5", None, "UTC", 0, base + 1) == base + 5000
    assert next_slot(None, 2.5, "UTC", base, base) == base + 2500
    assert next_slot(None, 2.5, "UTC", base, base + 2500) == base + 5000
    assert next_slot(None, 2.5, "UTC", base, base - 10) == base


@pytest.mark.parametrize(("options", "field"), [
    ({"cron": "61 * * * *"}, "cron"), ({}, "cron"), ({"cron": "* * * * *", "interval_s": 5}, "cron"),
    ({"interval_s": 0}, "interval_s"), ({"cron": "* * * * *", "timezone": "Mars/Base"}, "timezone"),
    ({"cron": "* * * * *", "missed": "sometimes"}, "missed"),
    ({"cron": "* * * * *", "max_concurrency": 0}, "max_concurrency"),
])
def test_bad_schedules_are_refused_naming_the_field(sqlite_workspace: Workspace, options: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sqlite_workspace.schedules.add("s", "test_record", actor="alice", **options)
    assert err.value.details["field"] == field
    assert sqlite_workspace.schedules.list() == []


def test_schedule_crud_and_unknown_kinds(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    with pytest.raises(InvalidInput, match="not registered"):
        ws.schedules.add("s", "no_such_kind", actor="alice", cron="* * * * *")
    with pytest.raises(InvalidInput, match="needs a target"):
        ws.schedules.add("s", "dataset_refresh", actor="alice", cron="* * * * *")
    s = ws.schedules.add("s", "test_record", actor="alice", interval_s=60, args={"a": 1})
    assert s.next_slot_at == s.created_at + 60_000 and not s.paused
    with pytest.raises(AlreadyExists):
        ws.schedules.add("s", "test_record", actor="alice", interval_s=60)
    assert ws.schedules.pause("s", actor="alice").paused
    assert not ws.schedules.resume("s", actor="alice").paused
    ws.schedules.delete("s", actor="alice")
    with pytest.raises(NotFound):
        ws.schedules.get("s")
    assert {"pipeline", "retrain", "dataset_refresh", "materialize", "python"} <= set(job_kinds())


def _due(ws: Workspace, name: str, slots_ago: int, interval_ms: int = 1000) -> int:
    """Move a schedule's next slot ``slots_ago`` intervals into the past (as if no scheduler ran)."""
    first = now_ms() - slots_ago * interval_ms + interval_ms // 2
    with ws.store.begin() as conn:
        conn.execute(schedules.update().where(schedules.c.name == name).values(next_slot_at=first, created_at=first))
    return first


def _leader(ws: Workspace) -> Scheduler:
    sched = Scheduler(ws, lease_s=30, tick_s=0.05, warm_workers=False)
    assert sched.lease.acquire_or_renew(sched._take_over) is not None
    return sched


@pytest.mark.parametrize(("missed", "queued", "skipped"), [("catchup", 5, 0), ("latest", 1, 1), ("skip", 0, 1)])
def test_missed_slot_policies(workspace: Workspace, missed: str, queued: int, skipped: int) -> None:
    ws = workspace
    ws.schedules.add("s", "test_record", actor="alice", interval_s=10, missed=missed)
    _due(ws, "s", 5, 10_000)  # slots 45, 35, ... 5 seconds ago: all late
    sched = _leader(ws)
    sched._fire_due()
    runs = ws.schedules.history("s")
    assert sum(r.status == "queued" for r in runs) == queued
    assert sum(r.status == "skipped" for r in runs) == skipped
    assert len({r.slot_key for r in runs}) == len(runs)
    assert ws.schedules.get("s").next_slot_at > now_ms()
    sched._fire_due()  # nothing due any more: nothing added
    assert len(ws.schedules.history("s")) == len(runs)
    sched.pool.close()


def test_queued_runs_start_within_concurrency_limits_and_record_history(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    CALLS.clear()
    ws.schedules.add("s", "test_record", actor="alice", interval_s=1, missed="catchup", max_concurrency=1,
                     args={"x": 1})
    _due(ws, "s", 3)
    sched = _leader(ws)
    sched._fire_due()
    sched._start_queued()  # one at a time for this schedule
    assert sum(r.status == "running" for r in ws.schedules.history("s")) <= 1
    deadline = time.time() + 30
    while time.time() < deadline and any(r.status in ("queued", "running") for r in ws.schedules.history("s")):
        sched._start_queued()
        time.sleep(0.05)
    runs = ws.schedules.history("s")
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert sorted(c["slot"] for c in CALLS) == sorted(r.slot_at for r in runs)
    assert all("recorded slot" in r.log and r.result == {"slot": r.slot_at} for r in runs)
    assert all(r.token == sched.lease.token and r.holder == sched.holder for r in runs)
    sched.pool.close()


def test_failed_job_and_manual_trigger(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.schedules.add("s", "test_record", actor="alice", cron="0 0 1 1 *", args={"fail": True})
    ws.schedules.pause("s", actor="alice")
    queued = ws.schedules.trigger("s", actor="bob")
    assert queued.status == "queued" and queued.trigger == "manual" and queued.actor == "bob"
    sched = _leader(ws)
    sched._start_queued()
    for thread in list(sched._jobs.values()):
        thread.join(30)
    run = ws.schedules.get_run(queued.id)
    assert run.status == "failed" and "job failed on purpose" in run.error and "Traceback" in run.log
    sched.pool.close()


def test_paused_schedules_do_not_fire(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.schedules.add("s", "test_record", actor="alice", interval_s=1, missed="catchup")
    ws.schedules.pause("s", actor="alice")
    _due(ws, "s", 3)
    sched = _leader(ws)
    sched._fire_due()
    assert ws.schedules.history("s") == []
    ws.schedules.resume("s", actor="alice")
    sched._fire_due()
    assert len(ws.schedules.history("s")) == 3
    sched.pool.close()


def test_lease_fencing_and_takeover_marks_interrupted_runs(workspace: Workspace) -> None:
    ws = workspace
    ws.schedules.add("s", "test_record", actor="alice", interval_s=1, missed="catchup")
    _due(ws, "s", 1)
    a = Scheduler(ws, holder="a", lease_s=0.5, warm_workers=False)
    b = Scheduler(ws, holder="b", lease_s=30, warm_workers=False)
    assert a.lease.acquire_or_renew(a._take_over) == 1
    assert b.lease.acquire_or_renew(b._take_over) is None  # held and not expired
    a._fire_due()
    queued = ws.schedules.history("s")[0]
    assert a._claim(queued)  # a starts it ... and then stops renewing
    time.sleep(0.6)
    with pytest.raises(LostLease):  # a stale holder can start nothing
        a._claim(queued)
    assert b.lease.acquire_or_renew(b._take_over) == 2
    run = ws.schedules.get_run(queued.id)
    assert run.status == "interrupted" and "token 2" in run.error
    state = b.lease.state()
    assert state is not None and state.holder == "b" and state.token == 2
    status = scheduler_status(ws)
    assert status["holder"] == "b" and status["active"] and status["runs"]["interrupted"] == 1
    b.lease.release()
    assert not scheduler_status(ws)["active"]
    a.pool.close()
    b.pool.close()


def test_slots_are_unique_even_without_the_fence(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.schedules.add("s", "test_record", actor="alice", interval_s=60)
    row = {"id": "x1", "schedule": "s", "slot_key": "slot:1", "slot_at": 1, "trigger": "schedule",
           "status": "queued", "queued_at": 1, "log": "", "error": "", "result": {}, "actor": "t"}
    with ws.store.begin() as conn:
        conn.execute(schedule_runs.insert().values(row))
    with pytest.raises(sa.exc.IntegrityError), ws.store.begin() as conn:
        conn.execute(schedule_runs.insert().values({**row, "id": "x2"}))


def test_scheduler_thread_runs_a_dataset_refresh_schedule(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    """A dataset refreshed on a schedule shows its versions and their profiles."""
    import pandas as pd

    ws = sqlite_workspace
    landing = tmp_path / "landing"
    landing.mkdir()
    pd.DataFrame({"x": range(50), "bad": [0, 1] * 25}).to_csv(landing / "d.csv", index=False)
    ws.data.add_source("files", "file", {"root": str(landing)}, actor="alice")
    ws.data.create_dataset("d", "files", {"path": "d.csv", "profile": {"target": "bad"}}, actor="alice")
    ws.schedules.add("refresh", "dataset_refresh", "d", actor="alice", interval_s=0.5, args={"force": True})
    sched = Scheduler(ws, lease_s=5, tick_s=0.05, warm_workers=False)
    sched.start()
    deadline = time.time() + 60
    while time.time() < deadline and len(ws.data.list_versions("d")) < 2:
        time.sleep(0.1)
    sched.stop()
    versions = ws.data.list_versions("d")
    assert len(versions) >= 2 and all(v.profile["overview"]["rows"] == 50 for v in versions)
    done = [r for r in ws.schedules.history("refresh") if r.status == "succeeded"]
    assert {r.result["version"] for r in done} == {v.version for v in versions}
    assert all(r.start_latency_ms is not None and r.start_latency_ms >= 0 for r in done)


def test_schedules_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shipyard.cli import main

    runner = CliRunner()
    project = str(tmp_path / "p")

    def run(*args: str) -> str:
        result = runner.invoke(main, ["-p", project, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("schedules", "add", "nightly", "--kind", "test_record", "--cron", "0 2 * * *", "--timezone",
              "Europe/Berlin", "--arg", "depth=3", "--missed", "catchup")
    assert "next slot" in out
    assert "nightly" in run("schedules", "list")
    run("schedules", "pause", "nightly")
    assert "paused" in run("schedules", "list")
    run("schedules", "resume", "nightly")
    assert "queued run" in run("schedules", "trigger", "nightly")
    assert "manual" in run("schedules", "history", "nightly")
    assert '"holder": null' in run("scheduler", "--status")
    from shipyard.config import load_settings

    ws = Workspace(load_settings(project))
    assert ws.schedules.get("nightly").args == {"depth": 3}
    ws.close()
    bad = runner.invoke(main, ["-p", project, "schedules", "add", "x", "--kind", "test_record", "--cron", "nope"])
    assert bad.exit_code == 1 and "cron" in bad.output


def test_retrain_waits_for_new_data(sqlite_workspace: Workspace, tmp_path: Path, components_dir: Path) -> None:
    import json

    import pandas as pd

    from shipyard.pipelines.jobs import JobContext, _run_retrain

    ws = sqlite_workspace
    landing = tmp_path / "landing"
    landing.mkdir()
    pd.DataFrame({"x": [1.0, 2.0], "g": ["a", "b"]}).to_parquet(landing / "d.parquet")
    ws.data.add_source("files", "file", {"root": str(landing)}, actor="alice")
    ws.data.create_dataset("d", "files", {"path": "d.parquet", "profile": False}, actor="alice")
    ws.data.refresh("d", actor="alice")
    pipe = components_dir / "train.json"
    pipe.write_text(json.dumps({"name": "train", "nodes": [
        {"id": "data", "component": "load_dataset", "params": {"dataset": "d"}},
        {"id": "total", "component": "comps.py:total", "inputs": {"data": "data"}}]}))
    ws.schedules.add("retrain", "retrain", str(pipe), actor="alice", cron="0 0 1 1 *",
                     args={"when_new_data": "d", "workers": 0})
    import logging

    def job() -> JobContext:
        return JobContext(ws, "retrain", "r", now_ms(), "manual", str(pipe), {"when_new_data": "d", "workers": 0},
                          logging.getLogger("t"))

    first = _run_retrain(job())
    assert first["status"] == "succeeded" and first["dataset_version"] == 1
    with ws.store.begin() as conn:  # as the scheduler would record it
        conn.execute(schedule_runs.insert().values(
            id="r1", schedule="retrain", slot_key="manual:r1", slot_at=1, trigger="manual", status="succeeded",
            queued_at=now_ms(), log="", error="", result=first, actor="t"))
    assert _run_retrain(job()) == {"skipped": True, "dataset_version": 1}
    pd.DataFrame({"x": [5.0], "g": ["c"]}).to_parquet(landing / "d.parquet")
    ws.data.refresh("d", actor="alice")
    assert _run_retrain(job())["dataset_version"] == 2


def test_interval_helper_matches_datetime_arithmetic() -> None:
    anchor = ms(datetime(2025, 6, 1, 12, tzinfo=ZoneInfo("UTC")))
    after = anchor + 3_600_000 * 5 + 1
    expected = datetime(2025, 6, 1, 12, tzinfo=ZoneInfo("UTC")) + timedelta(hours=6)
    assert next_slot(None, 3600, "UTC", anchor, after) == ms(expected)


def test_a_running_server_runs_its_projects_schedules(sqlite_workspace: Workspace) -> None:
    """``shipyard server`` (``background=True``) starts a scheduler per project; a test app does not."""
    from fastapi.testclient import TestClient

    from shipyard.server import create_app

    sqlite_workspace.schedules.add("tick", "test_record", actor="alice", interval_s=1)
    with TestClient(create_app(sqlite_workspace, follow_interval=0)):
        time.sleep(2.5)
    assert sqlite_workspace.schedules.history("tick") == []
    with TestClient(create_app(sqlite_workspace, follow_interval=0, background=True)):
        deadline = time.monotonic() + 30
        while not sqlite_workspace.schedules.history("tick", status="succeeded"):
            assert time.monotonic() < deadline, "the server's scheduler never ran the schedule"
            time.sleep(0.2)
    assert sqlite_workspace.schedules.history("tick")[0].status == "succeeded"
