"""The records tracking hands back: experiments, runs, metrics and run artifacts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
SCHEDULED = "SCHEDULED"
STATUSES = (SCHEDULED, RUNNING, FINISHED, FAILED, KILLED)
TERMINAL_STATUSES = (FINISHED, FAILED, KILLED)


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    artifact_location: str
    lifecycle: str
    created_at: int
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunInfo:
    id: str
    experiment_id: int
    name: str
    status: str
    start_time: int
    end_time: int | None
    parent_run_id: str | None
    user: str
    source_name: str | None
    source_git_commit: str | None
    artifact_uri: str
    lifecycle: str = "active"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One run as stored: its info, params, tags and the latest value of each metric."""

    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.info.id

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "params": self.params, "tags": self.tags, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            info=RunInfo(**data["info"]),
            params=dict(data.get("params", {})),
            tags=dict(data.get("tags", {})),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
        )


@dataclass(frozen=True)
class RunArtifact:
    path: str
    size: int
    sha256: str
    uri: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunReport:
    """An HTML file logged to a run (a model or data-quality report), with the run it belongs to."""

    run_id: str
    run_name: str
    experiment_id: int
    path: str
    size: int
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
