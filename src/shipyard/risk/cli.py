"""Risk-toolkit commands; ``register(group)`` adds them to the top-level ``shipyard`` group."""

from __future__ import annotations

import click
import pandas as pd

from shipyard.errors import ShipyardError
from shipyard.risk.binning.binner import METHODS

BAD_HELP = ("Target value that means bad; needed unless the target is 0/1, good/bad, Y/N, yes/no or "
            "True/False.")


def register(group: click.Group) -> None:
    group.add_command(bin_command)


def bad_option(command: click.Command) -> click.Command:
    """``--bad`` (and the deprecated ``--bad-value``, kept hidden for one release) on a command."""
    command = click.option("--bad-value", "bad_value", default=None, hidden=True,
                           help="Deprecated: use --bad.")(command)
    return click.option("--bad", "bad", default=None, help=BAD_HELP)(command)


def bad_from_options(bad: str | None, bad_value: str | None) -> str | None:
    if bad_value is None:
        return bad
    if bad is not None and bad != bad_value:
        raise click.UsageError(f"--bad {bad!r} and --bad-value {bad_value!r} disagree; pass only --bad")
    click.echo("warning: --bad-value is deprecated and will be removed in the next release; use --bad", err=True)
    return bad_value


@click.command("bin")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Binary target column (1 = bad; see --bad).")
@click.option("--method", default="optimal", show_default=True, type=click.Choice(sorted(METHODS)))
@click.option("--max-bins", default=10, show_default=True, type=int)
@click.option("--min-bin-share", default=0.05, show_default=True, type=float)
@bad_option
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write the binning spec (JSON) here.")
def bin_command(data: str, target: str, method: str, max_bins: int, min_bin_share: float,
                bad: str | None, bad_value: str | None, output: str | None) -> None:
    """Bin every column of DATA against --target and print the IV table."""
    from shipyard.risk.binning.io import bin_frame, read_table, write_json_atomic

    try:
        binner = bin_frame(read_table(data), target, method=method, max_bins=max_bins,
                           min_bin_share=min_bin_share, bad=bad_from_options(bad, bad_value))
    except ShipyardError as exc:
        raise click.ClickException(exc.message) from exc
    table = binner.iv_table()
    width = max(8, *(len(v) for v in table["variable"]))
    click.echo(f"{'variable':<{width}}  {'iv':>8}  {'bins':>4}  kind")
    for r in table.itertuples():
        click.echo(f"{r.variable:<{width}}  {r.iv:8.4f}  {r.n_bins:4d}  {r.kind}")
    click.echo(f"{'total':<{width}}  {table['iv'].sum():8.4f}")
    _echo_merged(binner.merged_table(), min_bin_share, binner.rare_share)
    if output:
        write_json_atomic(binner.to_spec(), output)
        click.echo(f"spec written to {output}")


def _echo_merged(merged: pd.DataFrame, min_bin_share: float, rare_share: float) -> None:
    """One line per variable whose rare categories were merged into another bin, with the IV cost."""
    if merged.empty:
        return
    click.echo(f"\nmerged rare categories (a bin needs --min-bin-share {min_bin_share:g} of the rows; categories "
               f"below {rare_share:g} are pooled first):")
    for variable, rows in merged.groupby("variable", sort=False):
        cats = ", ".join(f"{r.category!r} ({r.share:.1%}) into [{r.bin}]" for r in rows.itertuples())
        first = rows.iloc[0]
        click.echo(f"  {variable}: {cats}; IV {first['iv_unmerged']:.4f} with a bin per category -> "
                   f"{first['iv']:.4f}")
