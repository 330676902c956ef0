"""``shipyard secrets set|list|delete|rotate-key``; values come from a hidden prompt or stdin, never a flag."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click


def register(group: click.Group) -> None:
    group.add_command(secrets_group)


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("secrets")
def secrets_group() -> None:
    """Encrypted secrets (database passwords, access keys) referenced by name."""


@secrets_group.command("set")
@click.argument("name")
@click.pass_context
def set_cmd(ctx: click.Context, name: str) -> None:
    """Create or replace secret NAME. The value is read from a hidden prompt, or from stdin when piped."""
    from shipyard.secrets import check_secret_name

    check_secret_name(name)
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        # a trailing newline comes from `echo` or a file, not from the secret
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    ws = _ws(ctx)
    info = ws.secrets.put(name, value, actor=ws.user)
    click.echo(f"secret {info.name} stored (revision {info.revision})")


@secrets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Names and metadata of the secrets (never their values)."""
    items = _ws(ctx).secrets.list()
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in items], indent=2))
        return
    if not items:
        click.echo("no secrets")
        return
    click.echo(f"{'NAME':32} {'REV':>4}  {'UPDATED (UTC)':19}  BY")
    for i in items:
        click.echo(f"{i.name:32} {i.revision:>4}  {_when(i.updated_at)}  {i.updated_by}")


@secrets_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete_cmd(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete secret NAME."""
    if not yes:
        click.confirm(f"delete secret {name}?", abort=True)
    ws = _ws(ctx)
    ws.secrets.delete(name, actor=ws.user)
    click.echo(f"secret {name} deleted")


@secrets_group.command("rotate-key")
@click.pass_context
def rotate_cmd(ctx: click.Context) -> None:
    """Re-encrypt every secret with a new key (see docs/data.md for SHIPYARD_SECRET_KEY)."""
    ws = _ws(ctx)
    report = ws.secrets.rotate_key(actor=ws.user)
    click.echo(f"re-encrypted {report.secrets} secret(s) with a new key from {report.origin}; "
               f"{report.retired_keys} old key(s) retired")
