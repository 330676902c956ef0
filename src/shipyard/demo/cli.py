"""``shipyard demo``."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    @group.command()
    @click.option("--path", "--dir", "directory", default=None, type=click.Path(file_okay=False),
                  help="Project folder to create or reuse (default: shipyard/demo in the user data folder, "
                       "e.g. ~/.local/share/shipyard/demo).")
    def demo(directory: str | None) -> None:
        """Run the lifecycle on the German credit data and serve one prediction."""
        from shipyard.demo.run import default_demo_path, run_demo

        out = run_demo(directory or default_demo_path(), say=click.echo)
        click.echo(f"The demo's project is {out['project']} (runs, models, features, scenes, reports); "
                   "`shipyard demo` reuses it, delete the folder to start over.")
