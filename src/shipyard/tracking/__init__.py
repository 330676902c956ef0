"""Run tracking: experiments, runs, params, metrics and artifacts.

    import shipyard as sy

    with sy.start_run(experiment="credit") as run:
        run.log_params({"model": "lgbm", "depth": 6})
        run.log_metrics({"auc": 0.78, "ks": 0.41}, step=10)
        run.log_artifact("report.html")

``start_run`` and ``active_run`` here use the current workspace (``shipyard.workspace.current()``);
``ws.tracking`` is the same API bound to an explicit workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.tracking.core import DEFAULT_EXPERIMENT, Tracking
from shipyard.tracking.entities import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    Experiment,
    Metric,
    RunArtifact,
    RunInfo,
    RunRecord,
)
from shipyard.tracking.run import Run, RunLogger, active_run


def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    parent: RunLogger | RunInfo | str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunLogger:
    """Start a run in the current workspace, or on the server ``sy.connect(url)`` opened; use it as a
    context manager."""
    from shipyard.workspace import current

    return current().tracking.start_run(experiment=experiment, name=name, parent=parent, tags=tags)


__all__ = [
    "FAILED",
    "FINISHED",
    "KILLED",
    "RUNNING",
    "Experiment",
    "Metric",
    "Run",
    "RunArtifact",
    "RunInfo",
    "RunLogger",
    "RunRecord",
    "Tracking",
    "active_run",
    "start_run",
]
