"""``shipyard models ...``: thin commands over ``ws.registry``. The acting user is the token the
workspace is opened with (SHIPYARD_TOKEN or the project's credentials); a reviewer approves with
their own token, e.g. ``SHIPYARD_TOKEN=<reviewer's token> shipyard models approve NAME 3``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click


def _ws(ctx: click.Context) -> Any:
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _describe(mv: Any) -> str:
    line = f"{mv.name} version {mv.version}: {mv.status}"
    if mv.status_reason:
        line += f" ({mv.status_reason})"
    latency = mv.latency_ms
    if latency:
        line += f"; single-row latency p50 {latency['p50']:.3f} ms, p99 {latency['p99']:.3f} ms"
    if mv.approved_by:
        line += f"; approved by {mv.approved_by}"
    if mv.aliases:
        line += f"; aliases: {', '.join(mv.aliases)}"
    return line


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@click.group("models")
def models() -> None:
    """Model registry: register, validate, approve, alias, roll back, download."""


@models.command("register")
@click.argument("path")
@click.option("--name", required=True, help="Registered model name.")
@click.option("--run", "run_id", default=None, help="Source run id (lineage).")
@click.option("--wait", is_flag=True, help="Wait for validation to finish and show its result.")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE tag (repeatable).")
@click.pass_context
def register_version(ctx: click.Context, path: str, name: str, run_id: str | None, wait: bool, tags: tuple[str, ...]) -> None:
    """Register the model folder PATH (or runs:/RUN/PATH) as the next version of NAME."""
    tag_map = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--tag")
        tag_map[key] = value
    ws = _ws(ctx)
    mv = ws.registry.register(path, name, run_id=run_id, tags=tag_map)
    click.echo(f"registered {mv.name} version {mv.version} (sha256 {mv.sha256[:12]}, {mv.size} bytes, {mv.flavor})")
    if wait:
        with click.progressbar(length=1, label="validating") as bar:
            mv = ws.registry.wait_for_validation(name, mv.version)
            bar.update(1)
        click.echo(_describe(mv))
        if mv.status != "validated":
            ctx.exit(1)


@models.command("list")
@click.pass_context
def list_models(ctx: click.Context) -> None:
    """Registered models with their latest version and aliases."""
    rows = [[m.name, str(m.latest_version or "-"), ", ".join(f"{a}->{v}" for a, v in m.aliases.items()) or "-",
             "yes" if m.requires_approval else "no", _when(m.updated_at)]
            for m in _ws(ctx).registry.list_models()]
    _table(rows, ["NAME", "LATEST", "ALIASES", "APPROVAL", "UPDATED"])


@models.command("versions")
@click.argument("name")
@click.pass_context
def versions(ctx: click.Context, name: str) -> None:
    """Versions of NAME with status, approval, aliases and p99 latency."""
    rows = []
    for mv in _ws(ctx).registry.list_versions(name):
        p99 = mv.latency_ms.get("p99")
        rows.append([str(mv.version), mv.status, mv.approved_by or "-", ", ".join(mv.aliases) or "-",
                     f"{p99:.3f}" if p99 is not None else "-", mv.created_by, _when(mv.created_at)])
    _table(rows, ["VERSION", "STATUS", "APPROVED BY", "ALIASES", "P99 MS", "BY", "CREATED"])


@models.command("validate")
@click.argument("name")
@click.argument("version")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for the result.")
@click.pass_context
def validate(ctx: click.Context, name: str, version: str, timeout: float) -> None:
    """Run validation of NAME VERSION again and wait for the result."""
    mv = _ws(ctx).registry.validate(name, version, wait=True, timeout=timeout)
    click.echo(_describe(mv))
    if mv.status != "validated":
        ctx.exit(1)


@models.command("approve")
@click.argument("name")
@click.argument("version")
@click.option("--comment", default="", help="Review comment.")
@click.pass_context
def approve(ctx: click.Context, name: str, version: str, comment: str) -> None:
    """Approve a validated version as the signed-in reviewer (not its registrant)."""
    ws = _ws(ctx)
    mv = ws.registry.approve(name, version, comment=comment)
    click.echo(f"approved {mv.name} version {mv.version} as {mv.approved_by}")


@models.command("reject")
@click.argument("name")
@click.argument("version")
@click.option("--comment", default="", help="Why the version is rejected.")
@click.pass_context
def reject(ctx: click.Context, name: str, version: str, comment: str) -> None:
    """Reject a version (as the signed-in reviewer) so it can never take an alias unless forced."""
    ws = _ws(ctx)
    mv = ws.registry.reject(name, version, comment=comment)
    click.echo(_describe(mv))


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@click.option("--force", is_flag=True, help="Skip the validated/approved checks (recorded as forced).")
@click.pass_context
def alias(ctx: click.Context, name: str, alias: str, version: str, force: bool) -> None:
    """Point ALIAS of NAME at VERSION."""
    mv = _ws(ctx).registry.set_alias(name, alias, version, force=force)
    click.echo(f"{name}@{alias} -> version {mv.version}" + (" (forced)" if force else ""))


@models.command("rollback")
@click.argument("name")
@click.argument("alias")
@click.pass_context
def rollback(ctx: click.Context, name: str, alias: str) -> None:
    """Move ALIAS back to the version it pointed at before."""
    mv = _ws(ctx).registry.rollback(name, alias)
    click.echo(f"{name}@{alias} rolled back to version {mv.version}")


@models.command("stress-test")
@click.argument("name")
@click.argument("version")
@click.option("--rate", default=200.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Calls per second (open loop).")
@click.option("--count", default=1000, show_default=True, type=click.IntRange(min=1), help="Number of calls.")
@click.pass_context
def stress_test(ctx: click.Context, name: str, version: str, rate: float, count: int) -> None:
    """Load VERSION (or alias) of NAME on its input example and record the latency percentiles."""
    from shipyard.serving.release import stress_test_model

    result = stress_test_model(_ws(ctx), name, version, rate=rate, count=count)
    click.echo(f"{result['name']} version {result['version']}: {result['count']} calls at "
               f"{result['achieved_rate']:.1f}/s (target {result['target_rate']:g}/s), {result['errors']} errors")
    if result["p50_ms"] is not None:
        click.echo("latency ms: " + ", ".join(f"{k[:-3]} {result[k]:.3f}"
                                              for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")))
    click.echo("recorded on the version (validation.stress_test)")


@models.command("download")
@click.argument("name")
@click.argument("version")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_context
def download(ctx: click.Context, name: str, version: str, directory: str) -> None:
    """Copy version (or alias) VERSION of NAME into DIRECTORY, checking its sha256."""
    path = _ws(ctx).registry.download(name, version, directory)
    click.echo(f"downloaded {name} {version} to {path}")


@models.command("history")
@click.argument("name")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@click.pass_context
def history(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Audit events of NAME, newest first."""
    events = _ws(ctx).registry.history(name, limit=limit)
    if as_json:
        click.echo(json.dumps(events, indent=2, default=str))
        return
    rows = [[_when(e["ts"]), e["actor"], e["kind"], e["subject"].split("/", 2)[-1] or "-",
             json.dumps(e["details"], default=str)[:80]] for e in events]
    _table(rows, ["WHEN", "ACTOR", "EVENT", "ON", "DETAILS"])


@models.command("build-env")
@click.argument("ref", metavar="NAME@REF")
@click.option("--builder", type=click.Choice(["auto", "uv", "venv"]), default="auto", show_default=True,
              help="uv when installed, else python -m venv and pip.")
@click.option("--rebuild", is_flag=True, help="Build again even when the environment exists.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def build_env(ctx: click.Context, ref: str, builder: str, rebuild: bool, as_json: bool) -> None:
    """Build the Python environment of version REF of NAME from its recorded requirements, for
    serving it from its own worker process (tag serve_env=own, or the own_env_models setting)."""
    name, sep, version = ref.partition("@")
    if not sep or not name or not version:
        raise click.BadParameter(f"{ref!r} is not NAME@REF (e.g. credit@champion or credit@3)", param_hint="NAME@REF")
    env = _ws(ctx).registry.build_environment(name, version, builder=builder, rebuild=rebuild)
    if as_json:
        click.echo(json.dumps(env.to_dict(), indent=2))
        return
    took = "existing, reused" if env.reused else f"built with {env.builder} in {env.build_seconds:.1f} s"
    click.echo(f"environment {env.key} for {name}@{version} ({took}; Python {env.python_version})")
    for line in env.requirements:
        click.echo(f"  {line}")
    for warning in env.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def register(main: click.Group) -> None:
    main.add_command(models)
