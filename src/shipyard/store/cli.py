"""``shipyard db upgrade|current``: thin commands over ``shipyard.store.upgrade``.

They open the databases directly, never through a workspace, since a workspace refuses a schema
that is behind when ``auto_migrate`` is off.
"""

from __future__ import annotations

import json

import click


def register(group: click.Group) -> None:
    group.add_command(db_group)


def _settings(ctx: click.Context):  # noqa: ANN202 - Settings, imported lazily
    from shipyard.config import load_settings

    root = ctx.find_root()
    return load_settings((root.obj or {}).get("project"))


@click.group("db")
def db_group() -> None:
    """The metadata database's schema: show its revision, upgrade it."""


@db_group.command("current")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def current_cmd(ctx: click.Context, as_json: bool) -> None:
    """Schema revision of the server's database and each hosted project's (changes nothing).
    Exits with 1 when one is not current."""
    from shipyard.store.upgrade import database_status

    items = database_status(_settings(ctx))
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in items], indent=2))
    else:
        for item in items:
            s = item.before
            click.echo(f"{item.project}: {s.current or '(empty)'} ({s.state}; this Shipyard's head is {s.head}) "
                       f"in {item.where}")
    if any(i.before.state != "current" for i in items):
        ctx.exit(1)


@db_group.command("upgrade")
@click.pass_context
def upgrade_cmd(ctx: click.Context) -> None:
    """Upgrade the server's database and every hosted project's to this Shipyard's revision.

    Run it once per release before starting (or restarting) servers: a Kubernetes Job, a one-shot
    Compose service, a step of the deployment script."""
    from shipyard.store.upgrade import upgrade_databases

    for item in upgrade_databases(_settings(ctx)):
        after = item.after.current if item.after else "?"
        what = "already at" if item.before.current == after else f"{item.before.current or '(empty)'} ->"
        click.echo(f"{item.project}: {what} {after} in {item.where}")
