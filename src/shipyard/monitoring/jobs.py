"""Scheduled monitoring work, as job kinds of the scheduler (found through the ``shipyard.job_kinds``
entry point, so a server's scheduler runs them without importing monitoring first):

``daily_report``      target: a scene; args: ``date`` (YYYY-MM-DD; default: the day before the slot, UTC)
``alert_evaluation``  evaluates every alert rule of the project once
``series_retention``  args: ``keep_days`` (default 30): drops older per-minute series rows

Their arguments are checked when the schedule is added (an unknown argument, a date that is not one,
``keep_days: forever``), not when it first runs.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.pipelines.jobs import JobContext, register_job_kind


def _known_args(kind: str, args: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(args) - set(known))
    if unknown:
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        raise InvalidInput(f"a {kind} schedule has no argument {unknown[0]!r}; {takes}",
                           {"field": f"args.{unknown[0]}"})


def _validate_daily_report(target: str, args: dict[str, Any]) -> None:
    if not target:
        raise InvalidInput("a daily_report schedule needs its scene as the target", {"field": "target"})
    _known_args("daily_report", args, ("date",))
    day = args.get("date")
    if isinstance(day, dt.datetime):
        day = day.date()
    if day is not None:
        try:
            # stored as text: `--arg date=2026-03-02` arrives as a YAML date
            args["date"] = day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)).isoformat()
        except ValueError:
            raise InvalidInput(f"args.date {args['date']!r} is not a date; use YYYY-MM-DD, or leave it out for the "
                               "day before each run", {"field": "args.date"}) from None


def _validate_alert_evaluation(_target: str, args: dict[str, Any]) -> None:
    _known_args("alert_evaluation", args, ())


def _validate_series_retention(_target: str, args: dict[str, Any]) -> None:
    _known_args("series_retention", args, ("keep_days",))
    keep = args.get("keep_days", 30)
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not math.isfinite(keep) or keep <= 0:
        raise InvalidInput(f"args.keep_days must be a positive number of days, got {keep!r}; e.g. 30 (leave it out "
                           "for 30)", {"field": "args.keep_days"})


def run_daily_report(job: JobContext) -> dict[str, Any]:
    day = job.args.get("date") or (dt.datetime.fromtimestamp(job.slot_at / 1000, dt.UTC).date()
                                   - dt.timedelta(days=1)).isoformat()
    report = job.ws.monitoring.daily_report(job.target, day, actor=f"schedule:{job.schedule}")
    job.log.info("daily report of %s for %s written", job.target, day)
    summary = report.to_dict()
    return {"scene": job.target, "date": day, "requests": summary.get("volume", {}).get("requests")}


def run_alert_evaluation(job: JobContext) -> dict[str, Any]:
    evaluator = job.ws.monitoring.evaluator()
    events = evaluator.evaluate_once(now=job.slot_at / 1000)
    fired = [e.rule for e in events if e.status == "firing"]
    job.log.info("%d alert rule(s) evaluated, %d firing", len(events), len(fired))
    for error in evaluator.invalid_rules.values():
        job.log.warning("%s", error)
    return {"evaluated": len(events), "firing": fired, "invalid_rules": sorted(evaluator.invalid_rules)}


def run_series_retention(job: JobContext) -> dict[str, Any]:
    dropped = job.ws.monitoring.prune(float(job.args.get("keep_days", 30)))
    return {"dropped_rows": dropped}


register_job_kind("daily_report", run_daily_report, validate=_validate_daily_report,
                  description="a scene's daily model report (yesterday's by default)")
register_job_kind("alert_evaluation", run_alert_evaluation, validate=_validate_alert_evaluation,
                  description="evaluate the project's alert rules once")
register_job_kind("series_retention", run_series_retention, validate=_validate_series_retention,
                  description="drop old per-minute series rows")
