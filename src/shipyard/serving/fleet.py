"""The fleet's numbers for a scene: every server's per-minute operational rows, merged.

Each server writes its own rows of the monitoring series (requests, errors, fallbacks and latency
histograms per minute, scene, version and arm; the current minute included, every
``series_flush_s`` seconds). ``FleetSeries`` adds them up, so a rollout, the scene status and the
shadow report judge the traffic of every server behind the balancer, not the share one process
answered. Percentiles come from the merged histograms (within one bucket, about 19 %, of the exact
value), never from an average of per-server percentiles.

A rollout step starts mid-minute, so it keeps a ``Counts`` baseline (the arm's rows since the
minute the step began, as they stood) and judges the difference: the requests of the step, give
or take what servers had not flushed yet at either end (at most ``series_flush_s`` seconds of it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.serving.engine import ServingEngine
    from shipyard.workspace import Workspace

MINUTE_MS = 60_000


@dataclass
class Counts:
    """Requests, errors, fallbacks and the total-latency histogram of an arm over a span."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    hist: dict[str, int] = field(default_factory=dict)
    instances: int = 0

    def minus(self, before: Counts) -> Counts:
        hist = {k: v - before.hist.get(k, 0) for k, v in self.hist.items()}
        return Counts(max(0, self.requests - before.requests), max(0, self.errors - before.errors),
                      max(0, self.fallbacks - before.fallbacks), {k: v for k, v in hist.items() if v > 0},
                      self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "fallbacks": self.fallbacks,
                "hist": dict(self.hist), "instances": self.instances}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Counts:
        data = data or {}
        return cls(int(data.get("requests", 0)), int(data.get("errors", 0)), int(data.get("fallbacks", 0)),
                   {str(k): int(v) for k, v in (data.get("hist") or {}).items()}, int(data.get("instances", 0)))

    def summary(self) -> dict[str, Any]:
        """The shape of ``arms.summarise`` (fallbacks count as failures of the arm), from the fleet."""
        from shipyard.monitoring.series import quantile

        failures = self.errors + self.fallbacks
        return {"count": self.requests, "errors": failures, "fallbacks": self.fallbacks,
                "error_rate": failures / self.requests if self.requests else 0.0,
                "p50_ms": quantile(self.hist, 0.5), "p99_ms": quantile(self.hist, 0.99),
                "failed_steps": {}, "instances": self.instances}


def minute_of(ts_s: float) -> int:
    return int(ts_s // 60) * MINUTE_MS


class FleetSeries:
    """Reads a scene's series summed over every server instance (``ws.monitoring.series_store``),
    plus the rows this process's ``recorder`` has not written yet (it sees its own latest requests
    at once; a flush running at that moment can leave them out of one reading)."""

    def __init__(self, series_store: Any, recorder: Any = None) -> None:
        self.store = series_store
        self.recorder = recorder

    def _merged(self, scene: str, since_s: float, arm: str | None = None) -> dict[str, Counts]:
        since = minute_of(since_s)
        result = self.store.query(scene, since, minute_of(time.time()) + MINUTE_MS, arm=arm, by=("arm",))
        merged: dict[str, Counts] = {}
        instances: dict[str, set[str]] = {}

        def add(arm_name: str, requests: int, errors: int, fallbacks: int, hist: dict[str, int],
                names: set[str]) -> None:
            c = merged.setdefault(arm_name, Counts())
            c.requests += int(requests)
            c.errors += int(errors)
            c.fallbacks += int(fallbacks)
            for k, v in hist.items():
                c.hist[str(k)] = c.hist.get(str(k), 0) + int(v)
            instances.setdefault(arm_name, set()).update(names)

        for point in result.points:
            add(str(point.group["arm"]), point.requests, point.errors, point.fallbacks, point.hists["total"],
                point.instances)
        if self.recorder is not None:
            for row in self.recorder.pending(scene):
                if row.minute >= since and (arm is None or row.arm == arm):
                    add(row.arm, row.requests, row.errors, row.fallbacks, row.latency_total, {self.recorder.instance})
        for name, c in merged.items():
            c.instances = len(instances[name])
        return merged

    def counts(self, scene: str, arm: str, since_s: float) -> Counts:
        """The arm's rows from the minute of ``since_s`` up to now, every instance added."""
        return self._merged(scene, since_s, arm).get(arm, Counts())

    def arms(self, scene: str, since_s: float) -> dict[str, dict[str, Any]]:
        """Per arm, the fleet's figures since the minute of ``since_s``."""
        return {arm: c.summary() for arm, c in sorted(self._merged(scene, since_s).items())}


def fleet_series(ws: Workspace, engine: ServingEngine) -> FleetSeries | None:
    """The fleet's series of ``ws``'s project when this server writes its own into that project's
    store (monitoring installed; each project the server serves, its own and every hosted one, has
    its own recorder), else None: an in-process engine judges what it served itself."""
    metrics = getattr(engine, "metrics", None)
    recorder = getattr(metrics, "series", None)
    if ws is None or recorder is None or getattr(recorder, "store", None) is not ws.monitoring.series_store:
        return None
    return FleetSeries(ws.monitoring.series_store, recorder)
