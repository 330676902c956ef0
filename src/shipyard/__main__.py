"""``python -m shipyard``: the ``shipyard`` command, for environments without its script on PATH."""

from shipyard.cli import main

main(prog_name="shipyard")
