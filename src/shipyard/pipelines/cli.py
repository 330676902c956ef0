"""``shipyard pipelines validate|run|runs|show|logs|codegen|export|components``: each one call into
``ws.pipelines``."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

MARKS = {"succeeded": "✓", "cached": "↺", "reused": "⇢", "failed": "✗", "skipped": "–", "running": "…",
         "retrying": "↻"}


def register(group: click.Group) -> None:
    group.add_command(pipelines_group)


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        out[key] = yaml.safe_load(text) if text else ""  # 0.3 -> float, true -> bool, [a, b] -> list
    return out


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@click.group("pipelines")
def pipelines_group() -> None:
    """Modelling pipelines: validate, run (cached, from a breakpoint), inspect, compile, export."""


@pipelines_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
@click.pass_context
def validate_cmd(ctx: click.Context, file: str, params: tuple[str, ...]) -> None:
    """Check FILE: components, params, edge types and cycles (every problem names its node)."""
    from shipyard.errors import InvalidInput

    try:
        bound = _ws(ctx).pipelines.validate(file, _params(params))
    except InvalidInput as exc:
        for problem in exc.details.get("problems", [{"message": exc.message}]):
            click.secho(f"✗ {problem['message']}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"✓ {bound.pipeline.name}: {len(bound.nodes)} nodes, {len(bound.pipeline.edges)} edges, valid")
    for node_id in bound.order:
        node = bound.nodes[node_id]
        ins = ", ".join(f"{p}←{s}.{o}" for p, (s, o) in node.inputs.items())
        click.echo(f"  {node_id:20} {node.component.name:20} {ins}")


def _progress(event: Any) -> None:
    mark = MARKS.get(event.status, "·")
    if event.status == "running":
        click.echo(f"  {mark} {event.node} started" + (f" (attempt {event.attempt})" if event.attempt > 1 else ""),
                   err=True)
        return
    took = f" {event.duration_s:.2f}s" if event.duration_s else ""
    error = f": {event.error.splitlines()[0][:160]}" if event.error else ""
    click.echo(f"[{event.done}/{event.total}] {mark} {event.node} {event.status}{took}{error}", err=True)


@pipelines_group.command("run")
@click.argument("file")
@click.option("--from", "start", default=None, metavar="NODE", help="Re-run from NODE (upstream results reused).")
@click.option("--to", "stop", default=None, metavar="NODE", help="Run only up to NODE.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a pipeline parameter.")
@click.option("--workers", default=2, show_default=True, type=int, help="Worker processes (0: run in this process).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.pass_context
def run_cmd(ctx: click.Context, file: str, start: str | None, stop: str | None, params: tuple[str, ...],
            workers: int, as_json: bool) -> None:
    """Run FILE (or a stored pipeline's name): unchanged nodes come from the cache."""
    ws = _ws(ctx)
    began = time.perf_counter()
    record = ws.pipelines.run(file, params=_params(params), start=start, stop=stop, workers=workers,
                              on_event=None if as_json else _progress)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, default=str))
    else:
        counts = ", ".join(f"{v} {k}" for k, v in record.counts().items())
        click.echo(f"run {record.id[:12]} {record.status} in {time.perf_counter() - began:.2f}s ({counts}); "
                   f"tracking run {record.tracking_run_id}")
    if record.status != "succeeded":
        failed = [n for n in record.nodes if n.status == "failed"]
        if failed and not as_json:
            tail = ws.pipelines.logs(record.id, failed[0].node_id).text.strip().splitlines()[-15:]
            click.secho(f"node {failed[0].node_id!r} failed; last lines of its log:", fg="red", err=True)
            for line in tail:
                click.echo(f"  | {line}", err=True)
            click.echo(f"fix it and re-run from there: shipyard pipelines run {file} --from {failed[0].node_id}",
                       err=True)
        sys.exit(1)


@pipelines_group.command("runs")
@click.option("--pipeline", default=None)
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_cmd(ctx: click.Context, pipeline: str | None, limit: int, as_json: bool) -> None:
    """Recent pipeline runs."""
    items = _ws(ctx).pipelines.runs(pipeline, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in items], indent=2, default=str))
        return
    for r in items:
        counts = " ".join(f"{k}={v}" for k, v in r.counts().items())
        took = f"{(r.finished_at - r.started_at) / 1000:.1f}s" if r.finished_at else "running"
        click.echo(f"{r.id[:12]}  {_when(r.started_at)}  {r.pipeline:20} {r.status:11} {took:>8}  {counts}")


@pipelines_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Status of each node of a run."""
    r = _ws(ctx).pipelines.get_run(run_id)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2, default=str))
        return
    click.echo(f"{r.pipeline} run {r.id}: {r.status} {r.error}".rstrip())
    for n in r.nodes:
        took = f"{n.duration_s:.2f}s" if n.duration_s is not None else ""
        metrics = " ".join(f"{k}={v:.4g}" for k, v in list(n.metrics.items())[:4])
        click.echo(f"  {MARKS.get(n.status, '·')} {n.node_id:20} {n.status:12} {took:>8}  {metrics}")


@pipelines_group.command("logs")
@click.argument("run_id")
@click.option("--node", default=None, help="One node (default: every node that ran).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the node runs.")
@click.pass_context
def logs_cmd(ctx: click.Context, run_id: str, node: str | None, follow: bool) -> None:
    """Print the log of a run's nodes."""
    ws = _ws(ctx)
    record = ws.pipelines.get_run(run_id)
    nodes = [node] if node else [n.node_id for n in record.nodes if n.attempts or n.status == "running"]
    for name in nodes:
        if len(nodes) > 1:
            click.secho(f"== {name}", bold=True)
        offset = 0
        while True:
            chunk = ws.pipelines.logs(record.id, name, offset)
            click.echo(chunk.text, nl=False)
            if chunk.note:
                click.echo(chunk.note, err=True)
            offset = chunk.offset
            if chunk.complete or (not follow and not chunk.text):
                break
            if not chunk.text:
                time.sleep(0.5)


@pipelines_group.command("codegen")
@click.argument("file")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Script to write.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
@click.pass_context
def codegen_cmd(ctx: click.Context, file: str, output: str, params: tuple[str, ...]) -> None:
    """Write FILE as a standalone Python script that reproduces its model and metrics."""
    text = _ws(ctx).pipelines.codegen(file, _params(params))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    click.echo(f"wrote {output} ({len(text.splitlines())} lines); run it with: python {output}")


@pipelines_group.command("export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "target", type=click.Choice(["airflow"]), required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="DAG file to write.")
@click.option("--dag-id", default=None)
@click.option("--schedule", default=None, help="Airflow schedule (cron or preset); default none (manual).")
@click.option("--python", "python", default=None, help="Python with Shipyard installed (default: this one).")
@click.pass_context
def export_cmd(ctx: click.Context, file: str, target: str, output: str, dag_id: str | None, schedule: str | None,
               python: str | None) -> None:
    """Write an Airflow DAG whose tasks run FILE's nodes in this project."""
    text = _ws(ctx).pipelines.export_airflow(file, python=python, dag_id=dag_id, schedule=schedule)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    click.echo(f"wrote {output}; copy it to Airflow's dags folder")


@pipelines_group.command("components")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def components_cmd(ctx: click.Context, as_json: bool) -> None:
    """The built-in components with their inputs, outputs and params."""
    items = _ws(ctx).pipelines.components()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in items], indent=2, default=str))
        return
    for c in items:
        ins = ", ".join(f"{p.name}:{p.type}{'?' if p.optional else ''}" for p in c.inputs)
        outs = ", ".join(f"{p.name}:{p.type}" for p in c.outputs)
        click.echo(f"{c.name:20} ({ins}) -> ({outs})  {c.description}")
