"""Monitoring as scheduled work: the scheduler finds the job kinds through their entry point and
runs a scene's daily report and the alert evaluation."""

from __future__ import annotations

import time

from shipyard.pipelines.jobs import job_kinds
from shipyard.pipelines.scheduler import Scheduler
from tests.monitoring.support import frame, write_day

DAY = "2026-03-02"


def test_the_scheduler_runs_daily_reports_and_alert_evaluation(workspace) -> None:
    assert {"daily_report", "alert_evaluation", "series_retention"} <= set(job_kinds())
    m = workspace.monitoring
    m.create_baseline("train", frame(2000, 1), "alice", scene="s")
    m.configure("s", "alice", baseline="train", score="pd", decision="decision")
    write_day(workspace, "s", DAY, frame(300, 3))
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
    [report] = m.reports("s")
    assert report["day"] == DAY
    # the scheduled report has the numbers a report built by hand has
    by_hand = m.daily_report("s", DAY, "alice", save=False)
    assert by_hand.rows == 300
