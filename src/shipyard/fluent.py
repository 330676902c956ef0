"""The entry points acting on the current workspace, or on the server ``sy.connect(url)`` opened
(``shipyard.workspace.current``): ``sy.start_run``.

They sit above the workspace, which builds every subsystem: no subsystem imports the workspace, so
this is where a function reaching "the current one" lives. ``sy.active_run`` needs none (it is the
thread's innermost run, ``shipyard.tracking.active_run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.tracking.core import DEFAULT_EXPERIMENT
from shipyard.tracking.entities import RunInfo
from shipyard.tracking.run import RunLogger
from shipyard.workspace import current


def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    parent: RunLogger | RunInfo | str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunLogger:
    """Start a run in the current workspace, or on the server ``sy.connect(url)`` opened; use it as a
    context manager."""
    return current().tracking.start_run(experiment=experiment, name=name, parent=parent, tags=tags)
