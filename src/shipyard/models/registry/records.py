"""The records the registry hands back (locally and through ``RemoteRegistry``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: version status values, in the order a release moves through them; ``abandoned``: the processes
#: validating it kept dying (crash recovery gave up; ``validate()`` tries again)
PENDING, VALIDATING, VALIDATED, FAILED, REJECTED = "pending", "validating", "validated", "failed", "rejected"
ABANDONED = "abandoned"
STATUSES = (PENDING, VALIDATING, VALIDATED, FAILED, REJECTED, ABANDONED)
FINISHED = (VALIDATED, FAILED, REJECTED, ABANDONED)
IN_PROGRESS = (PENDING, VALIDATING)


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    requires_approval: bool
    tags: dict[str, Any]
    created_at: int
    updated_at: int
    created_by: str
    latest_version: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegisteredModel:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    status: str
    status_reason: str
    flavor: str
    sha256: str
    size: int
    artifact_path: str
    artifact_uri: str
    source_run_id: str | None
    signature: dict[str, Any] | None
    metrics: dict[str, Any]
    tags: dict[str, Any]
    lineage: dict[str, Any]
    validation: dict[str, Any]
    approved_by: str | None
    approved_at: int | None
    created_by: str
    created_at: int
    aliases: list[str] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.approved_by is not None

    @property
    def latency_ms(self) -> dict[str, float]:
        """p50/p99/mean of the single-row fast-path timing recorded by validation."""
        return dict(self.validation.get("latency_ms") or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class AliasMove:
    """One row of an alias's history: where it pointed, who moved it, how."""

    name: str
    alias: str
    version: int
    action: str
    forced: bool
    moved_at: int
    moved_by: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AliasMove:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
