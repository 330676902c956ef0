"""``shipyard runs list|show|compare`` and ``shipyard experiments list``: thin over ``Tracking``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import click

MAX_METRIC_COLUMNS = 6


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_fmt(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
               for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def register(group: click.Group) -> None:
    @group.group("runs")
    def runs_group() -> None:
        """Search, inspect and compare tracked runs."""

    @runs_group.command("list")
    @click.option("--experiment", "-e", multiple=True, help="Experiment name (repeatable; default: all).")
    @click.option("--filter", "filter_text", default=None, help="e.g. \"metrics.auc > 0.7 and params.model = 'lgbm'\"")
    @click.option("--order-by", "order_by", multiple=True, help="e.g. 'metrics.auc DESC' (repeatable).")
    @click.option("--max-results", default=100, show_default=True, type=int)
    @click.pass_context
    def list_runs(ctx: click.Context, experiment: tuple[str, ...], filter_text: str | None,
                  order_by: tuple[str, ...], max_results: int) -> None:
        """List runs, newest first unless --order-by says otherwise."""
        from shipyard.cli import workspace_from

        ws = workspace_from(ctx)
        found = ws.tracking.search_runs(
            list(experiment) or None, filter=filter_text, order_by=list(order_by), max_results=max_results
        )
        keys = sorted({k for r in found for k in r.metrics})[:MAX_METRIC_COLUMNS]
        headers = ["run_id", "name", "status", "started"] + keys
        rows = [[r.id, r.info.name, r.info.status, _time(r.info.start_time)] + [r.metrics.get(k) for k in keys]
                for r in found]
        click.echo(format_table(headers, rows))
        click.echo(f"{len(found)} run(s)")

    @runs_group.command("show")
    @click.argument("run_id")
    @click.pass_context
    def show_run(ctx: click.Context, run_id: str) -> None:
        """Info, params, metrics, tags and artifacts of one run (RUN_ID or its unique first characters)."""
        from shipyard.cli import workspace_from

        tracking = workspace_from(ctx).tracking
        run_id = tracking.resolve_run_id(run_id)
        record = tracking.get_run(run_id)
        info = record.info
        fields = [
            ("run_id", info.id), ("name", info.name), ("experiment_id", info.experiment_id),
            ("status", info.status), ("user", info.user), ("started", _time(info.start_time)),
            ("ended", _time(info.end_time)), ("parent_run_id", info.parent_run_id),
            ("source", info.source_name), ("git_commit", info.source_git_commit), ("artifact_uri", info.artifact_uri),
        ]
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            click.echo(f"{name.ljust(width)}  {_fmt(value)}")
        for title, mapping in (("params", record.params), ("metrics", record.metrics), ("tags", record.tags)):
            if mapping:
                click.echo(f"\n{title}:")
                click.echo(format_table(["key", "value"], sorted(mapping.items())))
        artifacts = tracking.list_artifacts(run_id)
        if artifacts:
            click.echo("\nartifacts:")
            click.echo(format_table(["path", "size", "sha256"], [[a.path, a.size, a.sha256[:12]] for a in artifacts]))

    @runs_group.command("compare")
    @click.argument("run_ids", nargs=-1, required=True)
    @click.pass_context
    def compare(ctx: click.Context, run_ids: tuple[str, ...]) -> None:
        """Params and metrics of several runs side by side (ids or their unique first characters)."""
        from shipyard.cli import workspace_from

        tracking = workspace_from(ctx).tracking
        frame = tracking.compare_runs([tracking.resolve_run_id(r) for r in run_ids])
        headers = ["field"] + [str(c)[:12] for c in frame.columns]
        rows = [[index] + list(values) for index, values in zip(frame.index, frame.values.tolist(), strict=True)]
        click.echo(format_table(headers, rows))

    @group.group("experiments")
    def experiments_group() -> None:
        """Experiments group runs."""

    @experiments_group.command("list")
    @click.pass_context
    def list_experiments(ctx: click.Context) -> None:
        """All experiments with their run counts."""
        from shipyard.cli import workspace_from

        tracking = workspace_from(ctx).tracking
        rows = []
        for exp in tracking.list_experiments():
            rows.append([exp.id, exp.name, exp.lifecycle, _time(exp.created_at), tracking.count_runs(exp.id)])
        click.echo(format_table(["id", "name", "lifecycle", "created", "runs"], rows))
