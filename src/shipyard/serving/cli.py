"""``shipyard scenes apply|list|show`` and ``shipyard score``: thin commands over the serving API."""

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
    """Decision scenes: apply a scene file, list scenes, show a version."""


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
