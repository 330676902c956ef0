"""Monitoring as scheduled work: the scheduler finds the job kinds through their entry point and
runs a scene's daily report and the alert evaluation."""

from __future__ import annotations

import time

import pytest

from shipyard.pipelines.jobs import job_kinds
from shipyard.pipelines.scheduler import Scheduler
from shipyard.store.schema import monitoring_alert_rules as RULES
from tests.monitoring.support import frame, write_day

DAY = "2026-03-02"


def test_the_scheduler_runs_daily_reports_and_alert_evaluation(workspace) -> None:
    assert {"daily_report", "alert_evaluation", "series_retention"} <= set(job_kinds())
    m = workspace.monitoring
    m.create_baseline("train", frame(2000, 1), "alice", scene="s")
    m.configure("s", "alice", baseline="train", score="pd", decision="decision")
    write_day(workspace, "s", DAY, frame(300, 3))
    with workspace.store.begin() as conn:  # a rule as an older release stored it: skipped, named
        conn.execute(RULES.insert().values(name="legacy", spec={"name": "legacy", "metric": "volume"},
                                           enabled=True, created_at=0, updated_at=0, updated_by="old"))
    schedules = workspace.schedules
    schedules.add("daily", "daily_report", "s", actor="alice", cron="0 6 * * *", args={"date": DAY})
    schedules.add("alerts", "alert_evaluation", actor="alice", interval_s=3600)
    for name in ("daily", "alerts"):
        schedules.trigger(name, actor="alice")
    scheduler = Scheduler(workspace, warm_workers=False, pipeline_workers=1, lease_s=2)
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while not all(schedules.history(n, status="succeeded") for n in ("daily", "alerts")):
            failed = schedules.history(status="failed")
            assert not failed, [(r.schedule, r.error) for r in failed]
            assert time.monotonic() < deadline, [(r.schedule, r.status) for r in schedules.history()]
            time.sleep(0.2)
    finally:
        scheduler.stop(timeout=5)
    [run] = schedules.history("alerts", status="succeeded")
    assert run.result["invalid_rules"] == ["legacy"] and "alert rule 'legacy'" in run.log
    [report] = m.reports("s")
    assert report["day"] == DAY
    # the scheduled report has the numbers a report built by hand has
    by_hand = m.daily_report("s", DAY, "alice", save=False)
    assert by_hand.rows == 300


def test_schedule_arguments_are_checked_when_the_schedule_is_added(sqlite_workspace, tmp_path) -> None:
    from click.testing import CliRunner

    from shipyard.cli import main
    from shipyard.errors import InvalidInput

    schedules = sqlite_workspace.schedules
    cases = [("series_retention", "", {"keep_days": "forever"}, "args.keep_days"),
             ("series_retention", "", {"keep_days": -1}, "args.keep_days"),
             ("series_retention", "", {"keep_days": True}, "args.keep_days"),
             ("series_retention", "", {"keep_dayz": 7}, "args.keep_dayz"),
             ("daily_report", "s", {"date": "2026-99-01"}, "args.date"),
             ("daily_report", "", {}, "target"),
             ("alert_evaluation", "", {"scene": "s"}, "args.scene")]
    for kind, target, args, field in cases:
        with pytest.raises(InvalidInput) as err:
            schedules.add("x", kind, target, actor="alice", interval_s=3600, args=args)
        assert err.value.details["field"] == field, (kind, args)
    assert schedules.list() == []
    assert schedules.add("keep", "series_retention", actor="alice", interval_s=3600,
                         args={"keep_days": 7.5}).args == {"keep_days": 7.5}
    # over the CLI: YAML values, so a date is a date (stored as its text) and "forever" a string
    project = str(sqlite_workspace.settings.project_dir)
    run = CliRunner().invoke
    out = run(main, ["-p", project, "schedules", "add", "r", "--kind", "series_retention", "--every", "3600",
                     "--arg", "keep_days=forever"])
    assert out.exit_code == 1 and "args.keep_days must be a positive number of days, got 'forever'" in out.output
    out = run(main, ["-p", project, "schedules", "add", "d", "--kind", "daily_report", "--target", "s",
                     "--every", "3600", "--arg", "date=2026-03-02"])
    assert out.exit_code == 0, out.output
    assert schedules.get("d").args == {"date": "2026-03-02"}
