"""Run tracking: experiments, runs, params, metrics and artifacts.

    import shipyard as sy

    with sy.start_run(experiment="credit") as run:
        run.log_params({"model": "lgbm", "depth": 6})
        run.log_metrics({"auc": 0.78, "ks": 0.41}, step=10)
        run.log_artifact("report.html")

``sy.start_run`` starts a run in the current workspace (``shipyard.fluent``, above the workspace,
which this package never imports); ``ws.tracking.start_run`` is the same bound to an explicit one.
``active_run`` is the thread's innermost run.
"""

from __future__ import annotations

from shipyard.tracking.core import Tracking
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
]
