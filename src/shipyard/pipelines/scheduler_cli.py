"""``shipyard schedules add|list|pause|resume|trigger|history|delete`` and ``shipyard scheduler``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
import yaml


def register(group: click.Group) -> None:
    group.add_command(schedules_group)
    group.add_command(scheduler_cmd)


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@click.group("schedules")
def schedules_group() -> None:
    """Cron and interval schedules of pipelines, dataset refreshes, materialization and other jobs."""


@schedules_group.command("add")
@click.argument("name")
@click.option("--kind", required=True, help="pipeline, retrain, dataset_refresh, materialize, python, ...")
@click.option("--target", default="", help="Pipeline file, dataset name or module:function, by kind.")
@click.option("--cron", default=None, help="Cron expression (5 fields, or 6 with seconds last).")
@click.option("--every", "interval_s", default=None, type=float, help="Interval in seconds instead of cron.")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--missed", type=click.Choice(["skip", "latest", "catchup"]), default="skip", show_default=True,
              help="What to do with slots missed while no scheduler ran.")
@click.option("--max-concurrency", default=1, show_default=True, type=int)
@click.option("--timeout", "timeout_s", default=None, type=float, help="Seconds (python jobs).")
@click.option("--arg", "args", multiple=True, metavar="KEY=VALUE", help="Job argument (YAML value; repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter (repeatable).")
@click.option("--description", default="")
@click.option("--replace", is_flag=True)
@click.pass_context
def add_cmd(ctx: click.Context, name: str, kind: str, target: str, cron: str | None, interval_s: float | None,
            timezone: str, missed: str, max_concurrency: int, timeout_s: float | None, args: tuple[str, ...],
            params: tuple[str, ...], description: str, replace: bool) -> None:
    """Add schedule NAME."""
    values = {}
    for item in args:
        key, _, text = item.partition("=")
        values[key] = yaml.safe_load(text) if text else ""
    if params:
        values["params"] = {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in params)}
    ws = _ws(ctx)
    s = ws.schedules.add(name, kind, target, actor=ws.user, cron=cron, interval_s=interval_s, timezone=timezone,
                         args=values, missed=missed, max_concurrency=max_concurrency, timeout_s=timeout_s,
                         description=description, replace=replace)
    click.echo(f"schedule {s.name} ({s.kind}) saved; next slot {_when(s.next_slot_at)} UTC")


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    items = _ws(ctx).schedules.list()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in items], indent=2))
        return
    for s in items:
        when = s.cron or f"every {s.interval_s:g}s"
        state = "paused" if s.paused else f"next {_when(s.next_slot_at)}"
        click.echo(f"{s.name:24} {s.kind:16} {when:20} {s.timezone:14} {state:28} {s.target}")


@schedules_group.command("pause")
@click.argument("name")
@click.pass_context
def pause_cmd(ctx: click.Context, name: str) -> None:
    ws = _ws(ctx)
    ws.schedules.pause(name, actor=ws.user)
    click.echo(f"schedule {name} paused")


@schedules_group.command("resume")
@click.argument("name")
@click.pass_context
def resume_cmd(ctx: click.Context, name: str) -> None:
    ws = _ws(ctx)
    s = ws.schedules.resume(name, actor=ws.user)
    click.echo(f"schedule {name} resumed (missed slots: {s.missed})")


@schedules_group.command("trigger")
@click.argument("name")
@click.pass_context
def trigger_cmd(ctx: click.Context, name: str) -> None:
    """Queue a run of NAME now; the active scheduler starts it."""
    ws = _ws(ctx)
    run = ws.schedules.trigger(name, actor=ws.user)
    click.echo(f"queued run {run.id[:12]} of {name}")


@schedules_group.command("history")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--logs", is_flag=True, help="Print each run's log.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_cmd(ctx: click.Context, name: str | None, limit: int, logs: bool, as_json: bool) -> None:
    """Recent runs (all schedules, or NAME) with status, timing and errors."""
    items = _ws(ctx).schedules.history(name, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in items], indent=2, default=str))
        return
    for r in items:
        took = f"{(r.finished_at - r.started_at) / 1000:.1f}s" if r.finished_at and r.started_at else ""
        late = f"+{r.start_latency_ms}ms" if r.start_latency_ms is not None else ""
        click.echo(f"{r.id[:12]} {r.schedule:20} {r.trigger:8} {_when(r.slot_at)} {r.status:11} {late:>8} {took:>7} "
                   f"{r.error[:80]}")
        if logs and r.log:
            for line in r.log.rstrip().splitlines():
                click.echo(f"    | {line}")


@schedules_group.command("delete")
@click.argument("name")
@click.pass_context
def delete_cmd(ctx: click.Context, name: str) -> None:
    ws = _ws(ctx)
    ws.schedules.delete(name, actor=ws.user)
    click.echo(f"schedule {name} deleted")


@click.command("scheduler")
@click.option("--lease", "lease_s", default=10.0, show_default=True, type=float,
              help="Seconds another scheduler waits before taking over from a silent one.")
@click.option("--tick", "tick_s", default=0.25, show_default=True, type=float)
@click.option("--max-workers", default=4, show_default=True, type=int, help="Jobs at once.")
@click.option("--pipeline-workers", default=2, show_default=True, type=int, help="Warm pipeline worker processes.")
@click.option("--status", "show_status", is_flag=True, help="Print which scheduler is active and exit.")
@click.pass_context
def scheduler_cmd(ctx: click.Context, lease_s: float, tick_s: float, max_workers: int, pipeline_workers: int,
                  show_status: bool) -> None:
    """Run the scheduler in the foreground (one of several may run; one is active)."""
    from shipyard.pipelines.scheduler import Scheduler, scheduler_status

    ws = _ws(ctx)
    if show_status:
        click.echo(json.dumps(scheduler_status(ws), indent=2, default=str))
        return
    sched = Scheduler(ws, lease_s=lease_s, tick_s=tick_s, max_workers=max_workers, pipeline_workers=pipeline_workers)
    click.echo(f"scheduler {sched.holder} running (lease {lease_s:g}s); Ctrl-C to stop", err=True)
    sched.run_forever()
