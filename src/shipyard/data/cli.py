"""Data commands: ``shipyard profile``, ``shipyard data sources ...`` and ``shipyard datasets ...``.

Each command is one call into ``shipyard.data.profile`` or ``ws.data``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from shipyard.risk.cli import bad_from_options, bad_option


def register(group: click.Group) -> None:
    group.add_command(profile_command)
    group.add_command(data_group)
    group.add_command(datasets_group)


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key] = value
    return out


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _label(value: str | None) -> object:
    """``--bad-value 1`` should match a numeric 1 as well as the string."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


@click.command("profile")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", default=None, help="Binary target column (1 = bad; see --bad).")
@bad_option
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default="profile.html",
              show_default=True, help="HTML report path.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON twin here.")
@click.option("--sheet", default=None, help="Excel sheet name (default: the first).")
@click.option("--target-bins", default=10, show_default=True, type=int, help="Quantile bins for IV.")
@click.option("--corr-threshold", default=0.9, show_default=True, type=float,
              help="List column pairs with |r| at or above this.")
def profile_command(data: str, target: str | None, bad: str | None, bad_value: str | None, output: str,
                    json_path: str | None,
                    sheet: str | None, target_bins: int, corr_threshold: float) -> None:
    """Data-quality report for every column of DATA (CSV, Parquet or Excel)."""
    from shipyard.data.profile import profile
    from shipyard.risk.report import atomic_write_text

    click.echo(f"profiling {data} ...", err=True)
    prof = profile(data, target=target, bad=bad_from_options(bad, bad_value), sheet=sheet, target_bins=target_bins,
                   corr_threshold=corr_threshold)
    atomic_write_text(Path(output), prof.to_html())
    if json_path:
        atomic_write_text(Path(json_path), prof.to_json())
    ov = prof.overview()
    click.echo(f"{ov['rows']:,} rows × {ov['columns']} columns in {prof.elapsed_s:.1f}s; "
               f"{ov['flagged_columns']} flagged columns; missing cells {ov['missing_cell_rate']:.2%}")
    if target:
        for r in prof.iv_table().head(10).itertuples():
            click.echo(f"  IV {r.iv:8.4f}  {r.column}")
    click.echo(f"wrote {output}" + (f" and {json_path}" if json_path else ""))


# -- sources -------------------------------------------------------------------------------------
@click.group("data")
def data_group() -> None:
    """Data sources (files, SQL databases, Spark tables)."""


@data_group.group("sources")
def sources_group() -> None:
    """Add, list, test and preview data sources."""


@sources_group.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["file", "sql", "spark"]), required=True)
@click.option("--url", default=None, help="sql: SQLAlchemy URL without the password.")
@click.option("--root", default=None, help="file: a folder or s3://bucket/prefix.")
@click.option("--secret", "secrets", multiple=True, metavar="OPTION=SECRET",
              help="A connection option taken from a secret, e.g. password=warehouse_pw (repeatable).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="file: fsspec storage option; sql: driver connect arg; spark: Spark conf (repeatable).")
@click.option("--master", default=None, help="spark: master URL (default local[2]).")
@click.option("--hive", is_flag=True, help="spark: enable Hive support.")
@click.option("--description", default="")
@click.option("--replace", is_flag=True, help="Replace an existing source of that name.")
@click.pass_context
def sources_add(ctx: click.Context, name: str, kind: str, url: str | None, root: str | None, secrets: tuple[str, ...],
                options: tuple[str, ...], master: str | None, hive: bool, description: str, replace: bool) -> None:
    """Add source NAME. Credentials are given by secret name, never by value."""
    spec: dict[str, Any] = {"secrets": _pairs(secrets, "--secret")}
    extra = _pairs(options, "--option")
    if kind == "sql":
        spec.update(url=url or "", connect_args=extra)
    elif kind == "file":
        spec.update(root=root or "", storage_options=extra)
    else:
        spec.update(master=master or "local[2]", conf=extra, hive=hive)
    ws = _ws(ctx)
    record = ws.data.add_source(name, kind, spec, actor=ws.user, description=description, replace=replace)
    click.echo(f"source {record.name} ({record.kind}) saved")


@sources_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """List sources (their specs name secrets, never values)."""
    items = _ws(ctx).data.list_sources()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in items], indent=2))
        return
    for s in items:
        where = s.spec.get("url") or s.spec.get("root") or s.spec.get("master") or ""
        secrets = ",".join(f"{k}<-{v}" for k, v in s.spec.get("secrets", {}).items())
        click.echo(f"{s.name:24} {s.kind:6} {where}" + (f"  secrets: {secrets}" if secrets else ""))


@sources_group.command("test")
@click.argument("name")
@click.pass_context
def sources_test(ctx: click.Context, name: str) -> None:
    """Connect to source NAME and report the latency (exit 1 when it fails)."""
    result = _ws(ctx).data.test_source(name)
    mark = "ok" if result.ok else "FAILED"
    details = " ".join(f"{k}={v}" for k, v in result.details.items())
    click.echo(f"{mark}: {result.message} in {result.latency_ms:.0f} ms {details}".rstrip())
    if not result.ok:
        sys.exit(1)


@sources_group.command("preview")
@click.argument("name")
@click.option("--query", default=None)
@click.option("--table", default=None)
@click.option("--path", default=None)
@click.option("--limit", default=20, show_default=True, type=int)
@click.pass_context
def sources_preview(ctx: click.Context, name: str, query: str | None, table: str | None, path: str | None,
                    limit: int) -> None:
    """Show the first rows of a query, table or file on source NAME."""
    what = {k: v for k, v in (("query", query), ("table", table), ("path", path)) if v}
    frame = _ws(ctx).data.preview(name, what, limit).to_pandas()
    click.echo(frame.to_string(max_cols=12, max_colwidth=24))


@sources_group.command("delete")
@click.argument("name")
@click.pass_context
def sources_delete(ctx: click.Context, name: str) -> None:
    """Delete source NAME (refused while a dataset uses it)."""
    ws = _ws(ctx)
    ws.data.delete_source(name, actor=ws.user)
    click.echo(f"source {name} deleted")


# -- datasets ------------------------------------------------------------------------------------
@click.group("datasets")
def datasets_group() -> None:
    """Versioned datasets: create, refresh, list, versions, diff."""


@datasets_group.command("create")
@click.argument("name")
@click.option("--source", required=True)
@click.option("--query", default=None)
@click.option("--table", default=None)
@click.option("--path", default=None, help="File sources: path under the root (a glob reads every match).")
@click.option("--format", "fmt", default=None, type=click.Choice(["csv", "parquet", "excel"]))
@click.option("--target", default=None, help="Binary target for the profile's IV.")
@click.option("--bad-value", default=None)
@click.option("--no-profile", is_flag=True, help="Do not profile new versions.")
@click.option("--description", default="")
@click.option("--replace", is_flag=True)
@click.pass_context
def datasets_create(ctx: click.Context, name: str, source: str, query: str | None, table: str | None,
                    path: str | None, fmt: str | None, target: str | None, bad_value: str | None,
                    no_profile: bool, description: str, replace: bool) -> None:
    """Create dataset NAME: a query, table or path on a source."""
    spec: dict[str, Any] = {k: v for k, v in (("query", query), ("table", table), ("path", path),
                                              ("format", fmt)) if v}
    if no_profile:
        spec["profile"] = False
    elif target:
        spec["profile"] = {"target": target, "bad_value": _label(bad_value)}
    ws = _ws(ctx)
    record = ws.data.create_dataset(name, source, spec, actor=ws.user, description=description, replace=replace)
    click.echo(f"dataset {record.name} on {record.source} saved; refresh it with `shipyard datasets refresh {name}`")


@datasets_group.command("refresh")
@click.argument("name")
@click.option("--chunk-rows", default=100_000, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Add a version even when the content did not change.")
@click.pass_context
def datasets_refresh(ctx: click.Context, name: str, chunk_rows: int, force: bool) -> None:
    """Read dataset NAME from its source into a new version, with a progress bar."""
    ws = _ws(ctx)
    state: dict[str, Any] = {"bar": None, "shown": 0}

    def progress(done: int, total: int | None) -> None:
        if total:
            if state["bar"] is None:
                state["bar"] = click.progressbar(length=total, label=f"reading {name}", file=sys.stderr)
                state["bar"].__enter__()
            state["bar"].update(done - state["shown"])
            state["shown"] = done
        else:
            click.echo(f"\rreading {name}: {done:,} rows", nl=False, err=True)

    try:
        result = ws.data.refresh(name, actor=ws.user, chunk_rows=chunk_rows, progress=progress, force=force)
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
    click.echo("", err=True)
    v = result.version
    if result.created:
        click.echo(f"dataset {name} version {v.version}: {v.rows:,} rows, {len(v.schema)} columns, "
                   f"sha256 {v.sha256[:12]} ({result.elapsed_s:.1f}s)")
    else:
        click.echo(f"dataset {name} unchanged: version {v.version} already holds this content")


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    items = _ws(ctx).data.list_datasets()
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in items], indent=2))
        return
    for d in items:
        what = d.spec.get("query") or d.spec.get("table") or d.spec.get("path")
        click.echo(f"{d.name:24} v{d.latest_version:<4} {d.source:16} {what}")


@datasets_group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def datasets_versions(ctx: click.Context, name: str, as_json: bool) -> None:
    """Versions of dataset NAME with rows, hash and profile flags."""
    items = _ws(ctx).data.list_versions(name)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in items], indent=2))
        return
    for v in items:
        flags = len(v.profile.get("flags", {}))
        click.echo(f"v{v.version:<4} {_when(v.created_at)}  {v.rows:>12,} rows  {len(v.schema):>3} cols  "
                   f"sha256 {v.sha256[:12]}  {flags} flagged column(s)  by {v.created_by}")


@datasets_group.command("diff")
@click.argument("name")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def datasets_diff(ctx: click.Context, name: str, a: str | None, b: str | None, as_json: bool) -> None:
    """Compare versions A and B (default: previous and latest): schema, rows, PSI per column."""
    diff = _ws(ctx).data.diff(name, a, b)
    if as_json:
        click.echo(json.dumps(diff.to_dict(), indent=2))
        return
    click.echo(f"{name}: v{diff.a} → v{diff.b}: rows {diff.rows_a:,} → {diff.rows_b:,} ({diff.row_delta:+,})")
    for c in diff.added:
        click.echo(f"  + {c['name']} ({c['type']})")
    for c in diff.removed:
        click.echo(f"  - {c['name']} ({c['type']})")
    for c in diff.type_changed:
        click.echo(f"  ~ {c['name']}: {c['from']} → {c['to']}")
    for c in diff.precision_changed:
        click.echo(f"  = {c['name']}: {c['from']} → {c['to']} (precision {c['change']}, not a type change)")
    for d in diff.drift:
        value = "n/a" if d["psi"] is None else f"{d['psi']:.4f}"
        click.echo(f"  PSI {value:>8}  {d['level']:11} {d['column']}")


@datasets_group.command("lineage")
@click.argument("name")
@click.pass_context
def datasets_lineage(ctx: click.Context, name: str) -> None:
    """Runs, pipeline runs, models and feature views that read dataset NAME."""
    click.echo(json.dumps(_ws(ctx).data.lineage(name), indent=2))
