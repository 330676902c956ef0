"""``shipyard evaluate``: model report for a scored data set; ``register(group)`` adds it."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.risk.cli import bad_from_options, bad_option


def register(group: click.Group) -> None:
    group.add_command(evaluate_command)


@click.command("evaluate")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Binary target column (1 = bad, or good/bad labels).")
@click.option("--score", required=True, help="Score column (higher = riskier unless --higher-is-good).")
@click.option("--test", "test_path", type=click.Path(dir_okay=False), default=None, help="Test data set.")
@click.option("--oot", "oot_path", type=click.Path(dir_okay=False), default=None, help="Out-of-time data set.")
@bad_option
@click.option("--higher-is-good", is_flag=True, help="Score grows with creditworthiness (scorecard points).")
@click.option("--bins", default=10, show_default=True, type=int, help="Deciles / bands / PSI bins.")
@click.option("--cutoff", default=None, type=float, help="Cut-off for confusion metrics (default: KS score).")
@click.option("--features", default=None, help="Comma-separated columns for feature PSI.")
@click.option("--model", "model_name", default="", help="Name of the model that produced the score (shown in the report).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default="report.html",
              show_default=True, help="HTML report path.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON twin here.")
def evaluate_command(data: str, target: str, score: str, test_path: str | None, oot_path: str | None,
                     bad: str | None, bad_value: str | None, higher_is_good: bool, bins: int, cutoff: float | None,
                     features: str | None, model_name: str, output: str, json_path: str | None) -> None:
    """KS, AUC, Gini, lift/gain, approval trade-off and PSI report for DATA (+ --test/--oot)."""
    from shipyard.data.profile import load_table
    from shipyard.risk.report import ModelReport, atomic_write_text

    def read(path: str | None):  # noqa: ANN202 - DataFrame | None
        return load_table(path).to_pandas() if path else None

    rep = ModelReport.from_frames(
        read(data), target=target, score=score, test=read(test_path), oot=read(oot_path),
        bad=bad_from_options(bad, bad_value), feature_columns=[f.strip() for f in features.split(",")] if features else None,
        higher_is_bad=not higher_is_good, bins=bins, cutoff=cutoff, title=f"Model report: {score}", model_name=model_name,
    )
    atomic_write_text(Path(output), rep.to_html())
    if json_path:
        atomic_write_text(Path(json_path), rep.to_json())
    click.echo(f"{'data set':<10}{'n':>9}{'bad rate':>10}{'AUC':>8}{'Gini':>8}{'KS':>8}{'KS at':>12}{'PSI':>8}")
    for name, s in rep.summary.items():
        psi = s.get(f"psi_vs_{rep.reference}")
        click.echo(f"{name:<10}{s['n']:>9,}{s['bad_rate']:>10.4f}{s['auc']:>8.4f}{s['gini']:>8.4f}{s['ks']:>8.4f}"
                   f"{s['ks_score']:>12.6g}{'' if psi is None else f'{psi:8.4f}':>8}")
    click.echo(f"wrote {output}" + (f" and {json_path}" if json_path else ""))
