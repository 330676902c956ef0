"""``shipyard features`` online commands: materialize, materialize-incremental, consume, skew, monitor.

Each command is one call into the online feature modules; ``register_online_commands`` adds them
to the ``features`` group.
"""

from __future__ import annotations

import json
from typing import Any

import click


def _store(ctx: click.Context) -> Any:
    from shipyard.cli import workspace_from

    return workspace_from(ctx).features


def _views(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


class _Bars:
    """One progress bar per view for materialization."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.view = ""
        self.done = 0

    def __call__(self, view: str, done: int, total: int) -> None:
        if view != self.view:
            self.close()
            self.view, self.done = view, 0
            self.bar = click.progressbar(length=max(total, 1), label=f"{view:<24}", show_pos=True, file=None)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class _Lines:
    """One line per view as it finishes, when several views are materialized at once."""

    def __call__(self, view: str, done: int, total: int) -> None:
        if done == total:
            click.echo(f"{view:<24} {total:>12,} rows written")

    def close(self) -> None:
        """Nothing to close: each line is printed when its view finishes."""


def _progress(parallel: int | None) -> Any:
    return _Bars() if parallel == 1 else _Lines()


def _print_results(results: list[Any]) -> None:
    click.echo(f"{'view':<24} {'rows read':>12} {'written':>10} {'seconds':>9}  window")
    for r in results:
        window = f"{r.start.isoformat() if r.start else '-'} .. {r.end.isoformat()}"
        click.echo(f"{r.view:<24} {r.rows_read:>12,} {r.rows_written:>10,} {r.seconds:>9.2f}  {window}")


@click.command("materialize")
@click.argument("start")
@click.argument("end")
@click.option("--views", default=None, help="Comma-separated feature views (default: every online view).")
@click.option("--batch-size", default=20_000, show_default=True, type=int)
@click.option("--parallel", default=None, type=click.IntRange(min=1),
              help="Views materialized at once (default: one per core, at most four).")
@click.pass_context
def materialize_cmd(ctx: click.Context, start: str, end: str, views: str | None, batch_size: int,
                    parallel: int | None) -> None:
    """Write the latest offline values in [START, END) into the online store."""
    bars = _progress(parallel)
    try:
        results = _store(ctx).materialize(start, end, _views(views), batch_size=batch_size, progress=bars,
                                          parallel=parallel)
    finally:
        bars.close()
    _print_results(results)


@click.command("materialize-incremental")
@click.option("--end", default=None, help="Up to this time (default: now).")
@click.option("--views", default=None, help="Comma-separated feature views (default: every online view).")
@click.option("--parallel", default=None, type=click.IntRange(min=1),
              help="Views materialized at once (default: one per core, at most four).")
@click.pass_context
def materialize_incremental_cmd(ctx: click.Context, end: str | None, views: str | None,
                                parallel: int | None) -> None:
    """Materialize each view from its watermark up to END."""
    bars = _progress(parallel)
    try:
        results = _store(ctx).materialize_incremental(end, _views(views), progress=bars, parallel=parallel)
    finally:
        bars.close()
    _print_results(results)


@click.command("consume")
@click.option("--source", required=True, help="redis://host:6379/0/<stream> or nats://host:4222/<subject>")
@click.option("--view", required=True, help="Feature view the messages belong to.")
@click.option("--group", default="shipyard", show_default=True, help="Consumer group (Redis) or durable (NATS).")
@click.option("--consumer", default=None,
              help="Redis: this consumer's name in the group, the same after a restart (default: the host name).")
@click.option("--claim-idle", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="Redis: take over entries other consumers left pending this many seconds.")
@click.option("--ack-wait", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="NATS: seconds after which a message delivered but not acknowledged is delivered again.")
@click.option("--stream", default=None, help="NATS: name of the stream --setup creates (default: from the subject).")
@click.option("--setup", is_flag=True, help="Create the stream(s), group or durable consumer, then exit.")
@click.option("--batch-size", default=1000, show_default=True, type=int)
@click.option("--max-messages", default=None, type=int, help="Stop after this many messages.")
@click.option("--timeout", default=None, type=float, help="Stop after this many seconds.")
@click.option("--idle-timeout", default=None, type=float, help="Stop after this many seconds without messages.")
@click.option("--no-offline", is_flag=True, help="Write the online store only, not the offline log.")
@click.pass_context
def consume_cmd(ctx: click.Context, source: str, view: str, group: str, consumer: str | None, claim_idle: float,
                ack_wait: float, stream: str | None, setup: bool, batch_size: int, max_messages: int | None,
                timeout: float | None, idle_timeout: float | None, no_offline: bool) -> None:
    """Ingest a Redis stream or NATS subject into a feature view (at least once, idempotent).

    Ctrl-C or SIGTERM stops after the batch in hand and prints the run's counters; messages not
    acknowledged yet are delivered again to the next run."""
    import signal
    import threading

    from shipyard.features.streams import consumer_for, parse_source

    kind = parse_source(source)[0]
    options: dict[str, Any] = {"batch_size": batch_size, "to_offline": not no_offline}
    if kind == "redis":
        options.update(group=group, consumer=consumer, claim_idle_s=claim_idle)
    else:
        options.update(durable=group, ack_wait=ack_wait, stream=stream)
    reader = consumer_for(_store(ctx), source, view, **options)
    if setup:
        _echo_json(reader.setup())
        return
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    click.echo(f"consuming {source} into {view} (Ctrl-C stops; unacknowledged messages are redelivered)", err=True)
    try:
        stats = reader.run(max_messages=max_messages, timeout=timeout, idle_timeout=idle_timeout, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped_by:
        click.echo(f"stopped by {stopped_by[0]}", err=True)
    _echo_json(stats.to_dict())


@click.command("skew")
@click.argument("target")
@click.option("--start", default=None, help="Logged vectors from this time (ISO 8601).")
@click.option("--end", default=None, help="Logged vectors before this time (ISO 8601).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.pass_context
def skew_cmd(ctx: click.Context, target: str, start: str | None, end: str | None, as_json: bool) -> None:
    """Compare served (logged) features of a view or service with the offline recomputation."""
    from shipyard.features.skew import skew

    report = skew(_store(ctx), target, start, end)
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(f"{target}: {report.rows} logged rows, {report.rows_with_mismatch} with a mismatch "
               f"({report.mismatch_rate:.2%})")
    click.echo(f"{'feature':<32} {'compared':>9} {'mismatch':>9} {'rate':>8} {'max |diff|':>12}")
    for f in report.features:
        largest = "-" if f.max_abs_diff is None else f"{f.max_abs_diff:.6g}"
        click.echo(f"{f.feature:<32} {f.compared:>9} {f.mismatches:>9} {f.mismatch_rate:>8.2%} {largest:>12}")
    if report.not_logged:
        click.echo(f"not logged: {', '.join(report.not_logged)}")


@click.command("monitor")
@click.option("--views", default=None, help="Comma-separated feature views (default: every online view).")
@click.option("--sample", default=100_000, show_default=True, type=int, help="Entities scanned per view.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.pass_context
def monitor_cmd(ctx: click.Context, views: str | None, sample: int, as_json: bool) -> None:
    """Freshness, rows written, missing rates and distributions per feature view."""
    from shipyard.features.monitoring import monitor

    report = monitor(_store(ctx), _views(views), sample=sample)
    if as_json:
        _echo_json(report)
        return
    from shipyard.features.timeutil import format_duration

    for view in report["views"]:
        online, mat = view["online"], view["materialization"]
        ttl = "" if view.get("ttl_seconds") is None else f" (ttl {format_duration(view['ttl_seconds'])})"
        click.echo(f"{view['view']} v{view['version']}: {online['entities']} entities, freshness "
                   f"{format_duration(online['freshness_seconds'])}{ttl}, "
                   f"{mat['runs']} materializations ({mat['rows_written_total']:,} rows written)")
        for name, stats in online["features"].items():
            mean = stats.get("mean")
            extra = f" mean {mean:.6g} std {stats.get('std') or 0:.6g}" if mean is not None else ""
            rate = stats["missing_rate"]
            click.echo(f"  {name:<28} missing {('-' if rate is None else f'{rate:.2%}'):>8}{extra}")


def register_online_commands(group: click.Group) -> None:
    for command in (materialize_cmd, materialize_incremental_cmd, consume_cmd, skew_cmd, monitor_cmd):
        group.add_command(command)
