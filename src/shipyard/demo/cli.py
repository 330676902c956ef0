"""``shipyard demo``."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    @group.command()
    @click.option("--dir", "directory", default="shipyard-demo", show_default=True,
                  type=click.Path(file_okay=False), help="Project folder to create or reuse.")
    def demo(directory: str) -> None:
        """Run the lifecycle on the German credit data and serve one prediction."""
        from shipyard.demo.run import run_demo

        run_demo(directory, say=click.echo)
