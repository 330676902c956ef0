"""``shipyard scenes apply|list|show|rollout...`` and ``shipyard score``: thin commands over the serving API.

The rollout commands talk to a running server (``--server``): a rollout judges the traffic of the
process it runs in, so it has to run in the server.
"""

from __future__ import annotations

import json

import click


def register(main: click.Group) -> None:
    main.add_command(scenes)
    main.add_command(score)


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


@click.group()
def scenes() -> None:
    """Decision scenes: apply a scene file, list scenes, show a version, roll out an arm."""


@scenes.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--comment", "-m", default="", help="Why this version (kept with it).")
@click.pass_context
def apply_cmd(ctx: click.Context, file: str, comment: str) -> None:
    """Validate FILE (YAML or JSON) and store it as the scene's next version."""
    from shipyard.serving.scene import apply_scene, load_scene_file

    found = apply_scene(_ws(ctx), load_scene_file(file), comment=comment)
    click.echo(f"scene {found.name} version {found.version} (sha256 {found.sha256[:12]})")


@scenes.command("list")
@click.pass_context
def list_cmd(ctx: click.Context) -> None:
    """Every scene with its latest version."""
    from shipyard.serving.scene import list_scenes

    rows = list_scenes(_ws(ctx))
    if not rows:
        click.echo("no scenes yet; apply one with 'shipyard scenes apply FILE'")
    for row in rows:
        click.echo(f"{row['name']}\tv{row['latest_version']}\t{row['description']}")


@scenes.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="A version number (default: latest).")
@click.pass_context
def show_cmd(ctx: click.Context, name: str, version: int | None) -> None:
    """Print a scene version as JSON."""
    from shipyard.serving.scene import get_scene

    click.echo(json.dumps(get_scene(_ws(ctx), name, version).to_dict(), indent=2))


def _server_option(func):  # noqa: ANN001, ANN202 - a click decorator
    return click.option("--server", "server", required=True, metavar="URL",
                        help="The running server, e.g. http://127.0.0.1:8000.")(func)


def _steps(_ctx: click.Context, _param: click.Parameter, value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of percents, e.g. 5,25,50,100") from None


def _describe_release(state: dict) -> str:
    line = f"release {state['release']} of {state['scene']}: arm {state['arm']} {state['status']} at {state['percent']:g} %"
    if state["checks"]:
        last = state["checks"][-1]
        p99 = "-" if last.get("p99_ms") is None else f"{last['p99_ms']:.2f} ms"
        line += (f" (step {last['percent']:g} %: {last['count']} requests, error rate "
                 f"{last['error_rate']:.3f}, p99 {p99}" + (f", PSI {last['psi']:.3f}" if "psi" in last else "") + ")")
    if state["reason"]:
        line += f"; {state['reason']}"
    return line


@scenes.command("rollout")
@click.argument("name")
@click.option("--arm", required=True, help="The arm to roll out.")
@click.option("--steps", default="5,25,50,100", show_default=True, callback=_steps,
              help="Canary shares in percent, increasing, each in (0, 100].")
@click.option("--min-requests", type=click.IntRange(min=1), default=None,
              help="Arm requests judged per step (default: the scene's limits.min_requests or 50).")
@click.option("--interval", "interval_s", type=float, default=None, help="Seconds between step checks (default 5).")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds before the server stops the rollout at 0 % (default 3600).")
@_server_option
@click.option("--wait", is_flag=True, help="Follow the rollout to its end; exit 1 unless it is promoted.")
@click.pass_context
def rollout_cmd(ctx: click.Context, name: str, arm: str, steps: list[float], min_requests: int | None,
                interval_s: float | None, timeout_s: float | None, server: str, wait: bool) -> None:
    """Start a canary rollout of ARM on scene NAME in the running server."""
    from shipyard.client import Client

    with Client(server) as client:
        started = client.scenes.rollout(name, arm, steps, min_requests=min_requests, interval_s=interval_s,
                                        timeout_s=timeout_s)
        click.echo(f"started release {started['release']}: arm {arm} of {name} at {started['percent']:g} % "
                   f"(steps {', '.join(f'{s:g}' for s in started['steps'])})")
        if not wait:
            return
        final = started
        for state in client.scenes.watch_rollout(name):
            if state["release"] != started["release"]:
                raise click.ClickException(f"release {state['release']} replaced release {started['release']}")
            click.echo(_describe_release(state))
            final = state
    if final["status"] != "promoted":
        ctx.exit(1)


@scenes.command("rollout-status")
@click.argument("name")
@_server_option
@click.option("--json", "as_json", is_flag=True, help="Print the release as JSON.")
def rollout_status_cmd(name: str, server: str, as_json: bool) -> None:
    """The newest release of scene NAME: status, percent, checks, reason."""
    from shipyard.client import Client

    with Client(server) as client:
        state = client.scenes.rollout_status(name)
    click.echo(json.dumps(state, indent=2) if as_json else _describe_release(state))


@scenes.command("rollout-abort")
@click.argument("name")
@_server_option
def rollout_abort_cmd(name: str, server: str) -> None:
    """Abort the running rollout of scene NAME: its arm goes back to 0 % on every worker."""
    from shipyard.client import Client

    with Client(server) as client:
        click.echo(_describe_release(client.scenes.abort_rollout(name)))


@click.command()
@click.option("--model", "model", default=None, help="NAME@REF (alias or version; NAME alone means NAME@champion).")
@click.option("--scene", "scene", default=None, help="Scene name (its control flow).")
@click.option("--arm", default="control", show_default=True, help="Scene arm to score with.")
@click.option("--chunk-size", default=10_000, show_default=True, type=int, help="Rows read and scored at a time.")
@click.argument("input_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("output_path", type=click.Path(dir_okay=False))
@click.pass_context
def score(ctx: click.Context, model: str | None, scene: str | None, arm: str, chunk_size: int,
          input_path: str, output_path: str) -> None:
    """Score INPUT (Parquet/CSV) into OUTPUT with a model or a scene, in chunks."""
    from shipyard.serving.batch import score_file
    from shipyard.serving.engine import ServingEngine

    engine = ServingEngine(_ws(ctx))
    with click.progressbar(length=_count_rows(input_path), label="scoring") as bar:
        total = score_file(engine, input_path, output_path, model=model, scene=scene, arm=arm,
                           chunk_size=chunk_size, progress=bar.update)
    click.echo(f"scored {total} rows into {output_path}")


def _count_rows(path: str) -> int:
    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)
