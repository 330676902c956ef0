"""Risk-toolkit commands; ``register(group)`` adds them to the top-level ``shipyard`` group."""

from __future__ import annotations

import click

from shipyard.errors import ShipyardError
from shipyard.risk.binning.binner import METHODS


def register(group: click.Group) -> None:
    group.add_command(bin_command)


@click.command("bin")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Binary target column (0/1, good/bad, or use --bad-value).")
@click.option("--method", default="optimal", show_default=True, type=click.Choice(sorted(METHODS)))
@click.option("--max-bins", default=10, show_default=True, type=int)
@click.option("--min-bin-share", default=0.05, show_default=True, type=float)
@click.option("--bad-value", default=None, help="Target value that means bad.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write the binning spec (JSON) here.")
def bin_command(data: str, target: str, method: str, max_bins: int, min_bin_share: float,
                bad_value: str | None, output: str | None) -> None:
    """Bin every column of DATA against --target and print the IV table."""
    from shipyard.risk.binning.io import bin_frame, read_table, write_json_atomic

    try:
        binner = bin_frame(read_table(data), target, method=method, max_bins=max_bins,
                           min_bin_share=min_bin_share, bad_value=bad_value)
    except ShipyardError as exc:
        raise click.ClickException(exc.message) from exc
    table = binner.iv_table()
    width = max(8, *(len(v) for v in table["variable"]))
    click.echo(f"{'variable':<{width}}  {'iv':>8}  {'bins':>4}  kind")
    for r in table.itertuples():
        click.echo(f"{r.variable:<{width}}  {r.iv:8.4f}  {r.n_bins:4d}  {r.kind}")
    click.echo(f"{'total':<{width}}  {table['iv'].sum():8.4f}")
    if output:
        write_json_atomic(binner.to_spec(), output)
        click.echo(f"spec written to {output}")
