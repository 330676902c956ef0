"""``shipyard monitor | reports | labels | alerts``: each command is one call into ``ws.monitoring``."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _print(data: Any) -> None:
    from shipyard.reports import dumps_json

    click.echo(dumps_json(data))


@contextmanager
def _bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback (done, total) drawn as a click progress bar on stderr."""
    state: dict[str, Any] = {"bar": None, "done": 0}

    def update(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)


def _split(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


# -- monitor ------------------------------------------------------------------------------------------
@click.group("monitor")
def monitor_group() -> None:
    """Drift, operational series, baselines and per-scene monitoring settings."""


def _table(ctx: click.Context, value: str, field: str) -> Any:
    """A Parquet/CSV path when such a file exists, else a versioned dataset: NAME (its latest version)
    or NAME@VERSION."""
    if Path(value).exists():
        return value
    from shipyard.errors import InvalidInput, NotFound

    name, _, version = value.partition("@")
    if not name or (version and not version.isdigit()):
        raise InvalidInput(f"{field} {value!r} is neither a file nor a dataset (NAME or NAME@VERSION)",
                           {"field": field})
    ws = _ws(ctx)
    try:
        return ws.data.read(name, int(version) if version else None)
    except NotFound as exc:
        raise NotFound(f"{field} {value!r} is neither a file nor a dataset version: {exc.message}",
                       {"field": field}) from None


@monitor_group.command("drift")
@click.argument("reference")
@click.argument("current")
@click.option("--columns", default=None, help="Comma-separated columns (default: all shared columns).")
@click.option("--bins", default=10, show_default=True, type=int, help="Quantile bins of the reference for PSI.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the JSON report here.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the HTML report here.")
@click.pass_context
def drift_cmd(ctx: click.Context, reference: str, current: str, columns: str | None, bins: int,
              json_out: str | None, output: str | None) -> None:
    """Drift of CURRENT against REFERENCE (each a Parquet or CSV file, or a dataset NAME[@VERSION]):
    PSI, JS, Wasserstein, KS, chi-square."""
    from shipyard.monitoring.drift import drift

    ref, cur = _table(ctx, reference, "reference"), _table(ctx, current, "current")
    with _bar("drift") as progress:
        report = drift(ref, cur, columns=_split(columns), bins=bins, progress=progress)
    if json_out:
        report.save_json(json_out)
    if output:
        report.save_html(output)
    s = report.summary()
    click.echo(f"{s['drifted']} of {s['columns']} column(s) drifted ({s['reference_rows']:,} reference rows, "
               f"{s['current_rows']:,} current rows)")
    for c in sorted(report.columns, key=lambda c: -(c.psi or 0)):
        click.echo(f"  {c.column:<30} {c.level:<8} psi={_f(c.psi)} js={_f(c.js)} wd={_f(c.wasserstein)} "
                   f"ks_p={_f(c.ks_pvalue if c.kind == 'numeric' else c.chi2_pvalue)}")


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


@monitor_group.command("series")
@click.option("--scene", required=True)
@click.option("--since", default="1h", show_default=True, help="A duration (15m, 6h, 7d) or an ISO time.")
@click.option("--step", default="1m", show_default=True, help="Downsampling step (1m, 5m, 1h, 1d).")
@click.option("--version", default=None)
@click.option("--arm", default=None)
@click.option("--by", default=None, help="Group by version, arm and/or instance (comma-separated).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def series_cmd(ctx: click.Context, scene: str, since: str, step: str, version: str | None, arm: str | None,
               by: str | None, as_json: bool) -> None:
    """Requests, errors, fallbacks and latency percentiles of SCENE over time (all servers combined)."""
    res = _ws(ctx).monitoring.series(scene, since, step=step, version=version, arm=arm, by=_split(by) or ())
    if as_json:
        _print(res.to_dict())
        return
    import time

    click.echo(f"{'time (UTC)':<17} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'fallbacks':>9}")
    for p in res.points:
        d = p.to_dict()
        label = time.strftime("%Y-%m-%d %H:%M", time.gmtime(d["t"] / 1000))
        click.echo(f"{label:<17} {d['requests']:>9} {d['errors']:>7} {_f(d['latency_p50_ms']):>8} "
                   f"{_f(d['latency_p99_ms']):>8} {d['fallbacks']:>9} {' '.join(map(str, p.group.values()))}")


@monitor_group.command("baseline")
@click.argument("name")
@click.option("--scene", default=None, help="Scene this baseline belongs to (also set as its baseline).")
@click.option("--data", "data", default=None, help="Reference data: a Parquet/CSV file or a dataset NAME[@VERSION].")
@click.option("--from-log", nargs=2, default=None, metavar="START END",
              help="Use the scene's own prediction log between two days (inclusive).")
@click.option("--model", "model", default=None, metavar="NAME@VERSION",
              help="Use a model version's training data (its lineage.dataset_version).")
@click.option("--columns", default=None, help="Comma-separated columns (default: all).")
@click.option("--bins", default=10, show_default=True, type=int)
@click.pass_context
def baseline_cmd(ctx: click.Context, name: str, scene: str | None, data: str | None,
                 from_log: tuple[str, str] | None, model: str | None, columns: str | None, bins: int) -> None:
    """Store baseline NAME (bins and counts per column) from data, a model's training data or a
    reference window of the log."""
    ws = _ws(ctx)
    if sum(map(bool, (data, from_log, model))) != 1:
        raise click.UsageError("give exactly one of --data FILE, --model NAME@VERSION or --from-log START END")
    if model:
        model_name, _, version = model.partition("@")
        base = ws.monitoring.baseline_from_model(name, model_name, version or "latest", ws.user, scene=scene,
                                                 columns=_split(columns), bins=bins)
    elif from_log:
        if not scene:
            raise click.UsageError("--from-log needs --scene")
        base = ws.monitoring.baseline_from_log(name, scene, from_log[0], from_log[1], ws.user,
                                               columns=_split(columns), bins=bins)
    else:
        base = ws.monitoring.create_baseline(name, _table(ctx, str(data), "data"), ws.user, scene=scene,
                                             columns=_split(columns), bins=bins)
    if scene:
        ws.monitoring.configure(scene, ws.user, baseline=name)
    click.echo(f"baseline {name}: {base.rows:,} rows, {len(base.columns)} column(s)"
               + (f"; set for scene {scene}" if scene else ""))


@monitor_group.command("configure")
@click.option("--scene", required=True)
@click.option("--baseline", default=None)
@click.option("--score", default=None, help="Numeric output used as the score.")
@click.option("--decision", default=None, help="Categorical output counted as decisions.")
@click.option("--approve", default=None, help="Comma-separated decision values that mean approved.")
@click.option("--entity", default=None, help="Input field identifying the entity (labels by entity and time).")
@click.option("--plugin", "plugins", multiple=True, metavar="PLUGIN",
              help="Repeatable. Replaces the scene's whole plugin list with these plugins (entry-point name, "
                   "module or .py path); to keep the others use --add-plugin.")
@click.option("--add-plugin", "add_plugins", multiple=True, metavar="PLUGIN",
              help="Repeatable. Adds a plugin to the scene's list (one of the same name is replaced).")
@click.option("--remove-plugin", "remove_plugins", multiple=True, metavar="NAME",
              help="Repeatable. Takes a plugin out of the scene's list by name.")
@click.pass_context
def configure_cmd(ctx: click.Context, scene: str, baseline: str | None, score: str | None, decision: str | None,
                  approve: str | None, entity: str | None, plugins: tuple[str, ...], add_plugins: tuple[str, ...],
                  remove_plugins: tuple[str, ...]) -> None:
    """Set what the daily report of SCENE uses; settings not given keep their values. Prints the
    scene's settings."""
    ws = _ws(ctx)
    settings = ws.monitoring.configure(scene, ws.user, baseline=baseline, score=score, decision=decision,
                                       approve=_split(approve), entity=entity, plugins=list(plugins) or None,
                                       add_plugins=add_plugins, remove_plugins=remove_plugins)
    _print(settings.to_dict())


@monitor_group.command("prune")
@click.option("--keep-days", default=30.0, show_default=True, type=float)
@click.pass_context
def prune_cmd(ctx: click.Context, keep_days: float) -> None:
    """Retention: delete per-minute series older than --keep-days."""
    click.echo(f"deleted {_ws(ctx).monitoring.prune(keep_days)} row(s)")


# -- reports ------------------------------------------------------------------------------------------
@click.group("reports")
def reports_group() -> None:
    """Daily model reports."""


@reports_group.command("daily")
@click.option("--scene", required=True)
@click.option("--date", "day", default=None, help="YYYY-MM-DD (default: yesterday, UTC).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Also write the HTML here.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.pass_context
def daily_cmd(ctx: click.Context, scene: str, day: str | None, output: str | None, json_out: str | None) -> None:
    """Build the daily report of SCENE (stored with its history in the artifact store)."""
    ws = _ws(ctx)
    with _bar("reading the prediction log") as progress:
        report = ws.monitoring.daily_report(scene, day, ws.user, progress=progress)
    if output:
        report.save_html(output)
    if json_out:
        report.save_json(json_out)
    click.echo(f"daily report {scene} {report.day}: {report.rows:,} record(s) → {report.html_path}")
    for w in report.warnings:
        click.secho(f"  warning: {w}", fg="yellow", err=True)
    for name, error in report.plugin_errors.items():
        click.secho(f"  plugin {name} failed: {error}", fg="yellow", err=True)


@reports_group.command("list")
@click.option("--scene", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx: click.Context, scene: str, as_json: bool) -> None:
    """Generated daily reports of SCENE, newest first."""
    rows = _ws(ctx).monitoring.reports(scene)
    if as_json:
        _print(rows)
        return
    for r in rows:
        click.echo(f"{r['day']}  {r['rows']:>10,} records  {r['html_path']}  by {r['created_by']}")


# -- labels -------------------------------------------------------------------------------------------
@click.group("labels")
def labels_group() -> None:
    """Delayed labels and performance by version and day."""


@labels_group.command("ingest")
@click.argument("file", type=click.Path(exists=True), required=False)
@click.option("--scene", required=True)
@click.option("--table", default=None, help="Read the labels from this database table instead of FILE.")
@click.option("--url", default=None, help="Database URL of --table (SQLAlchemy form).")
@click.option("--id-column", default="request_id", show_default=True)
@click.option("--label-column", default="bad", show_default=True)
@click.option("--row-column", default=None, help="Record index inside a batch request (default 0).")
@click.option("--entity-column", default=None, help="Match by entity and time instead of request id.")
@click.option("--time-column", default=None)
@click.option("--tolerance", default="30d", show_default=True, help="Latest prediction at most this old.")
@click.pass_context
def ingest_cmd(ctx: click.Context, file: str | None, scene: str, table: str | None, url: str | None, id_column: str,
               label_column: str, row_column: str | None, entity_column: str | None, time_column: str | None,
               tolerance: str) -> None:
    """Join labels in FILE (Parquet/CSV) or a database --table to SCENE's predictions."""
    ws = _ws(ctx)
    if bool(file) == bool(table) or (table and not url):
        raise click.UsageError("give FILE, or --table with --url")
    options = {"id_column": id_column, "label_column": label_column, "row_column": row_column,
               "entity_column": entity_column, "time_column": time_column, "tolerance": tolerance}
    with _bar("matching") as progress:
        if table:
            result = ws.monitoring.ingest_labels_from_table(scene, str(url), table, progress=progress, **options)
        else:
            result = ws.monitoring.ingest_labels(scene, file, progress=progress, **options)
    click.echo(f"{result.labels} label(s): {result.matched} matched, {result.unmatched} unmatched, "
               f"{result.duplicates} duplicate(s)")
    if result.unmatched_sample:
        click.echo(f"  unmatched (first {len(result.unmatched_sample)}): {', '.join(result.unmatched_sample)}")


@labels_group.command("metrics")
@click.option("--scene", required=True)
@click.option("--since", default=None, help="First day (YYYY-MM-DD).")
@click.option("--until", default=None, help="Last day (YYYY-MM-DD).")
@click.pass_context
def label_metrics_cmd(ctx: click.Context, scene: str, since: str | None, until: str | None) -> None:
    """AUC, KS, bad rate and approval rate by version and day."""
    _print(_ws(ctx).monitoring.label_metrics(scene, since, until).to_dict())


# -- alerts -------------------------------------------------------------------------------------------
@click.group("alerts")
def alerts_group() -> None:
    """Alert rules, notifiers, silences and history."""


@alerts_group.command("apply")
@click.argument("rules", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def apply_cmd(ctx: click.Context, rules: str) -> None:
    """Validate and store the rules and notifiers in RULES.yaml (all or nothing)."""
    ws = _ws(ctx)
    out = ws.monitoring.apply_rules(Path(rules).read_text(), ws.user)
    click.echo(f"applied {len(out['rules'])} rule(s), {len(out['notifiers'])} notifier(s)")


@alerts_group.command("list")
@click.pass_context
def rules_cmd(ctx: click.Context) -> None:
    """Stored rules and notifiers (without secrets); invalid ones with the reason and the fix."""
    alerts = _ws(ctx).monitoring.alerts
    _print({**alerts.overview(), "silences": alerts.silences()})


@alerts_group.command("delete")
@click.argument("rule")
@click.pass_context
def delete_cmd(ctx: click.Context, rule: str) -> None:
    """Delete RULE and close its open alerts."""
    ws = _ws(ctx)
    closed = ws.monitoring.delete_rule(rule, ws.user)
    click.echo(f"deleted rule {rule}; closed {len(closed)} open alert(s)")


@alerts_group.command("history")
@click.option("--rule", default=None)
@click.option("--status", type=click.Choice(["firing", "resolved", "closed"]), default=None)
@click.option("--limit", default=50, show_default=True, type=int)
@click.pass_context
def history_cmd(ctx: click.Context, rule: str | None, status: str | None, limit: int) -> None:
    """Alerts, newest first, with their notification attempts."""
    _print(_ws(ctx).monitoring.alerts.history(rule=rule, status=status, limit=limit))


@alerts_group.command("silence")
@click.argument("rule")
@click.option("--for", "duration", default="1h", show_default=True, help="How long (30m, 4h, 2d).")
@click.option("--scene", default=None, help="Only this scene's alerts of the rule.")
@click.option("--reason", default="")
@click.pass_context
def silence_cmd(ctx: click.Context, rule: str, duration: str, scene: str | None, reason: str) -> None:
    """Silence RULE ('*' for every rule): alerts are recorded, nothing is sent."""
    ws = _ws(ctx)
    s = ws.monitoring.alerts.silence(rule, duration, ws.user, scope={"scene": scene} if scene else None,
                                     reason=reason)
    until = dt.datetime.fromtimestamp(s["ends_at"] / 1000, dt.UTC).isoformat(timespec="seconds")
    click.echo(f"silence {s['id']} on {rule} until {until}")


@alerts_group.command("evaluate")
@click.pass_context
def evaluate_cmd(ctx: click.Context) -> None:
    """Evaluate every rule once (for cron or a scheduler) and print what fired or resolved."""
    _print([e.to_dict() for e in _ws(ctx).monitoring.evaluator().evaluate_once()])


def register(group: click.Group) -> None:
    for command in (monitor_group, reports_group, labels_group, alerts_group):
        group.add_command(command)
