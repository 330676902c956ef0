"""Prometheus metrics for the prediction path, in a registry owned by one server instance.

With several worker processes (``shipyard server --workers N``) each worker counts only the
requests it answered, so a scrape would see whichever worker took it. The ``server`` command then
sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh per-server directory before the workers start;
prometheus_client keeps every worker's values in memory-mapped files there, and ``/metrics``
renders the sum over all of them, so any worker's scrape gives the same totals. Counts of a worker
that exited stay in the totals (counters never go down). Gauges, if one is ever added, need a
``multiprocess_mode`` ("livesum", "max", ...) to say how workers combine; ``close`` drops the
live-gauge files of the exiting worker. Without the variable (one process, in-process apps) the
values live in ordinary memory.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shipyard.config import DEFAULT_PROJECT
from shipyard.errors import ConfigError

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | Path) -> Path:
    """Create ``path`` and delete metric files left by an earlier server (they would add to the totals)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    return folder


def remove_multiprocess_dir(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class ServingMetrics:
    """Requests, errors and latency (total, features, model) per project, scene, version and arm.

    A server keeps one registry for every project it serves: ``for_project`` gives a project its
    own view of the same counters, with its own ``project`` label value and its own per-minute
    series recorder (written to that project's store)."""

    def __init__(self, project: str = DEFAULT_PROJECT) -> None:
        # the ``project`` label: "default" for the server's own project, a hosted project's name
        self.project = project
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None:
            _check_multiprocess_values()
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("project", "scene", "version", "arm")
        self.requests = Counter("shipyard_predictions", "Prediction requests served",
                                (*labels, "status"), registry=self.registry)
        self.errors = Counter("shipyard_prediction_errors", "Prediction requests that failed",
                              (*labels, "code"), registry=self.registry)
        self.fallbacks = Counter("shipyard_prediction_fallbacks", "Responses served from the fallback",
                                 labels, registry=self.registry)
        # the step whose failure made the answer a fallback or an error (a failure of its arm)
        self.step_failures = Counter("shipyard_step_failures", "Scene steps that failed (answered by the "
                                     "fallback or as an error)", (*labels, "step", "outcome"),
                                     registry=self.registry)
        self.latency = Histogram("shipyard_prediction_latency_seconds", "Prediction latency by stage",
                                 (*labels, "stage"), buckets=BUCKETS, registry=self.registry)
        self.log_dropped = Counter("shipyard_prediction_log_dropped", "Prediction-log records dropped (queue full)",
                                   registry=self.registry)
        # by the process's instance id (host-pid-start), the same id every record of the log carries
        self.log_spooled = Counter("shipyard_prediction_log_spooled", "Prediction-log records fsync'd to the "
                                   "local spool", ("instance",), registry=self.registry)
        # 1 while global limits (limits.scope: global) fall back to this server's share (Redis down)
        self.global_limits_degraded = Gauge("shipyard_global_limits_degraded", "1 while global scene limits "
                                            "fall back to each server's share because Redis is unavailable",
                                            registry=self.registry, multiprocess_mode="max")
        self._children: dict[tuple[str, str, str], tuple] = {}
        # monitoring's per-minute recorder (SeriesRecorder) of this project, fed by the same two calls when set
        self.series: Any = None
        # set by monitoring: makes the series recorder of another project the server serves
        # (``for_project``), which writes into that project's own store
        self.series_for: Callable[[Workspace], Any] | None = None

    def for_project(self, ws: Workspace) -> ServingMetrics:
        """The same registry and counters, labelled ``project=<ws.project>``, with the project's own
        series recorder when monitoring made this one's (``series_for``)."""
        view = copy.copy(self)
        view.project = ws.project
        view._children = {}
        view.series = self.series_for(ws) if self.series_for is not None else None
        return view

    def _for(self, scene: str, version: str, arm: str) -> tuple:
        key = (scene, version, arm)
        found = self._children.get(key)
        if found is None:
            found = (
                self.requests.labels(self.project, scene, version, arm, "ok"),
                self.latency.labels(self.project, scene, version, arm, "total"),
                self.latency.labels(self.project, scene, version, arm, "features"),
                self.latency.labels(self.project, scene, version, arm, "model"),
                self.latency.labels(self.project, scene, version, arm, "queue"),
            )
            self._children[key] = found
        return found

    def observe(self, scene: str, version: str, arm: str, total_s: float, features_s: float, model_s: float,
                fallback: bool = False, queue_s: float = 0.0) -> None:
        ok, total, feats, model, queue = self._for(scene, version, arm)
        ok.inc()
        total.observe(total_s)
        if features_s:
            feats.observe(features_s)
        model.observe(model_s)
        queue.observe(queue_s)
        if fallback:
            self.fallbacks.labels(self.project, scene, version, arm).inc()
        if self.series is not None:
            self.series.observe(scene, version, arm, total_s, features_s, model_s, fallback)

    def step_failure(self, scene: str, version: str, arm: str, step: str, outcome: str) -> None:
        """A step of ``arm`` failed; ``outcome``: "fallback" (the scene's fallback answered) or "error"."""
        self.step_failures.labels(self.project, scene, version, arm, step, outcome).inc()

    def error(self, scene: str, version: str, arm: str, code: str, status: int) -> None:
        self.requests.labels(self.project, scene, version, arm, str(status)).inc()
        self.errors.labels(self.project, scene, version, arm, code).inc()
        if self.series is not None:
            self.series.error(scene, version, arm, code, status)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or the sum over all workers' files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """At worker exit: drop this process's live-gauge files (its counters stay in the totals)."""
        if self.multiprocess_dir is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), self.multiprocess_dir)


def _check_multiprocess_values() -> None:
    # prometheus_client picks its value storage when first imported; a variable set later would
    # leave this process counting in private memory that no scrape reads
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:  # the in-memory storage, chosen without the variable
        raise ConfigError(f"{MULTIPROC_ENV} is set but prometheus_client was imported before it; set the "
                            "variable before the server process starts (shipyard server --workers N does this)",
                            {"field": MULTIPROC_ENV})
