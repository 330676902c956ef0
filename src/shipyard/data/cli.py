"""Data commands; ``register(group)`` adds ``shipyard profile`` to the top-level group."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.risk.cli import bad_from_options, bad_option


def register(group: click.Group) -> None:
    group.add_command(profile_command)


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

