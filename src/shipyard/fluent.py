"""The entry points acting on the current workspace, or on the server ``sy.connect(url)`` opened
(``shipyard.workspace.current``): ``sy.start_run`` and ``sy.run_pipeline``.

They sit above the workspace, which builds every subsystem: no subsystem imports the workspace, so
this is where a function reaching "the current one" lives. ``sy.active_run`` needs none (it is the
thread's innermost run, ``shipyard.tracking.active_run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.tracking.core import DEFAULT_EXPERIMENT
from shipyard.tracking.entities import RunInfo
from shipyard.tracking.run import RunLogger
from shipyard.workspace import Workspace, current

if TYPE_CHECKING:
    from shipyard.pipelines.dag import Pipeline
    from shipyard.pipelines.runs import PipelineRunRecord


def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    parent: RunLogger | RunInfo | str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunLogger:
    """Start a run in the current workspace, or on the server ``sy.connect(url)`` opened; use it as a
    context manager."""
    return current().tracking.start_run(experiment=experiment, name=name, parent=parent, tags=tags)


def run_pipeline(source: str | Path | Mapping[str, Any] | Pipeline, **options: Any) -> PipelineRunRecord:
    """Run a pipeline in the current workspace (``ws.pipelines.run``; see ``Pipelines.run`` for the
    options)."""
    session = current()
    if not isinstance(session, Workspace):
        raise InvalidInput("sy.run_pipeline runs in a project folder; the current session is a server "
                           "(sy.connect(url)): run it there with `shipyard pipelines run`, or "
                           "sy.connect(project_dir) first")
    return session.pipelines.run(source, **options)
