"""``shipyard features``: plan, apply, list and training-set, each one call into ``ws.features``.

Other feature commands (materialize, consume, serve, ...) add themselves to ``features_group``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _ws(ctx: click.Context):  # noqa: ANN202 - Workspace, imported lazily
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


@click.group("features")
def features_group() -> None:
    """Feature definitions, point-in-time training sets and online features."""


@features_group.command("plan")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--skip-source-checks", is_flag=True, help="Do not read sources to check columns and SQL.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan_cmd(ctx: click.Context, path: str | None, skip_source_checks: bool, as_json: bool) -> None:
    """Show what apply would change in the registry (breaking changes flagged)."""
    plan = _ws(ctx).features.plan(path, check_sources=not skip_source_checks)
    click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else plan.render())


@features_group.command("apply")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--allow-breaking", is_flag=True, help="Apply even when types or keys change.")
@click.option("--skip-source-checks", is_flag=True, help="Do not read sources to check columns and SQL.")
@click.pass_context
def apply_cmd(ctx: click.Context, path: str | None, allow_breaking: bool, skip_source_checks: bool) -> None:
    """Register the definitions as new immutable versions (all or nothing)."""
    plan = _ws(ctx).features.apply(path, allow_breaking=allow_breaking, check_sources=not skip_source_checks)
    click.echo(plan.render())
    if plan.has_changes:
        click.echo(f"Applied ({plan.apply_id}).")


@features_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List registered entities, feature views and services."""
    store = _ws(ctx).features
    items = [*store.list_entities(), *store.list_views(), *store.list_services()]
    if as_json:
        click.echo(json.dumps([{"kind": o.kind, "name": o.name, "version": o.version} for o in items], indent=2))
        return
    for obj in items:
        extra = ""
        if obj.kind in ("feature_view", "on_demand_feature_view"):
            extra = ", ".join(f"{f.name}:{f.dtype}" for f in obj.fields)
        elif obj.kind == "feature_service":
            extra = ", ".join(obj.features)
        click.echo(f"{obj.kind:<24} {obj.name:<28} v{obj.version:<4} {extra}")


@features_group.command("training-set")
@click.option("--entities", "entities", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV or Parquet file of entity rows (join keys and a timestamp).")
@click.option("--features", "features", default=None, help="Comma-separated 'view:feature' references.")
@click.option("--service", default=None, help="A feature service instead of --features.")
@click.option("--timestamp-column", default=None,
              help="Timestamp column of the entity rows (default: event_timestamp).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default=None,
              help="Offline engine (default: the offline_engine setting).")
@click.option("--full-feature-names", is_flag=True, help="Name feature columns view__feature.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Write .parquet or .csv here.")
@click.option("--dataset", default=None, help="Write into the artifact store as this dataset.")
@click.pass_context
def training_set_cmd(ctx: click.Context, entities: str, features: str | None, service: str | None,
                     timestamp_column: str | None, engine: str | None, full_feature_names: bool,
                     out: str | None, dataset: str | None) -> None:
    """Build a point-in-time correct training set."""
    import pandas as pd

    source = Path(entities)
    frame = pd.read_parquet(source) if source.suffix in (".parquet", ".pq") else pd.read_csv(source)
    if timestamp_column or "event_timestamp" in frame.columns:
        col = timestamp_column or "event_timestamp"
        if col in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = pd.to_datetime(frame[col], format="ISO8601")
    refs = [f.strip() for f in features.split(",") if f.strip()] if features else None
    result = _ws(ctx).features.get_training_set(frame, features=refs, service=service, engine=engine,
                                                timestamp_column=timestamp_column,
                                                full_feature_names=full_feature_names, dataset=dataset)
    if dataset is not None:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if out:
        if out.endswith(".csv"):
            result.to_csv(out, index=False)
        else:
            import pyarrow.parquet as pq

            from shipyard.arrow_util import table_from_pandas

            pq.write_table(table_from_pandas(result), out)
        click.echo(f"wrote {len(result)} rows to {out}")
    else:
        click.echo(result.to_string(max_rows=20))


@features_group.command("compact")
@click.argument("view", required=False)
@click.option("--target-rows", type=click.IntRange(min=2), default=None,
              help="Rows per merged file (default 1,000,000).")
@click.option("--grace", "grace_seconds", type=click.FloatRange(min=0), default=None,
              help="Seconds replaced files are kept for readers that listed them (default 600).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def compact_cmd(ctx: click.Context, view: str | None, target_rows: int | None, grace_seconds: float | None,
                as_json: bool) -> None:
    """Merge the small files pushes left in a view's offline log (every view if none is given)."""
    results = _ws(ctx).features.compact(view, target_rows=target_rows, grace_seconds=grace_seconds)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        click.echo(f"{r.view:<28} files {r.files_before} -> {r.files_after}, {r.rows_merged} rows merged, "
                   f"{len(r.deleted)} replaced files deleted")


def register(group: click.Group) -> None:
    group.add_command(features_group)
    from shipyard.features.online_cli import register_online_commands

    register_online_commands(features_group)
