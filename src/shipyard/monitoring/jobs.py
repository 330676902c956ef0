"""Scheduled monitoring work, as job kinds of the scheduler (found through the ``shipyard.job_kinds``
entry point, so a server's scheduler runs them without importing monitoring first):

``daily_report``      target: a scene; args: ``date`` (YYYY-MM-DD; default: the day before the slot, UTC)
``alert_evaluation``  evaluates every alert rule of the project once
``series_retention``  args: ``keep_days`` (default 30): drops older per-minute series rows
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.pipelines.jobs import JobContext, register_job_kind


def _need_scene(target: str, _args: dict[str, Any]) -> None:
    if not target:
        raise InvalidInput("a daily_report schedule needs its scene as the target", {"field": "target"})


def run_daily_report(job: JobContext) -> dict[str, Any]:
    day = job.args.get("date") or (dt.datetime.fromtimestamp(job.slot_at / 1000, dt.UTC).date()
                                   - dt.timedelta(days=1)).isoformat()
    report = job.ws.monitoring.daily_report(job.target, day, actor=f"schedule:{job.schedule}")
    job.log.info("daily report of %s for %s written", job.target, day)
    summary = report.to_dict()
    return {"scene": job.target, "date": day, "requests": summary.get("volume", {}).get("requests")}


def run_alert_evaluation(job: JobContext) -> dict[str, Any]:
    events = job.ws.monitoring.evaluator().evaluate_once(now=job.slot_at / 1000)
    fired = [e.rule for e in events if e.status == "firing"]
    job.log.info("%d alert rule(s) evaluated, %d firing", len(events), len(fired))
    return {"evaluated": len(events), "firing": fired}


def run_series_retention(job: JobContext) -> dict[str, Any]:
    dropped = job.ws.monitoring.prune(float(job.args.get("keep_days", 30)))
    return {"dropped_rows": dropped}


register_job_kind("daily_report", run_daily_report, validate=_need_scene,
                  description="a scene's daily model report (yesterday's by default)")
register_job_kind("alert_evaluation", run_alert_evaluation, description="evaluate the project's alert rules once")
register_job_kind("series_retention", run_series_retention, description="drop old per-minute series rows")
