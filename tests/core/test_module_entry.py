"""`python -m shipyard` runs the same command line as the `shipyard` script."""

from __future__ import annotations

import subprocess
import sys

from shipyard import __version__


def test_python_dash_m_shipyard_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "shipyard", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout
