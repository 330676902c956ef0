"""The handle a script logs through, and the stack of active runs.

``RunLogger`` holds every convenience method (``log_param``, ``log_metrics``, ...) written once
on top of two primitives, ``log_batch`` and ``end``; the local ``Run`` and the HTTP client's
``RemoteRun`` implement just those. A run used as a context manager ends FINISHED, or FAILED
when the block raises. While a run is active (started and not ended) in a thread, a run started
in the same thread without an explicit parent becomes its child.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from shipyard.tracking.entities import FAILED, FINISHED, KILLED, RunArtifact, RunInfo, RunRecord

if TYPE_CHECKING:
    from shipyard.tracking.core import Tracking

_local = threading.local()


def _stack() -> list[RunLogger]:
    if not hasattr(_local, "runs"):
        _local.runs = []
    return _local.runs


def active_run() -> RunLogger | None:
    """The innermost run started in this thread and not yet ended, if any."""
    stack = _stack()
    return stack[-1] if stack else None


def push_active(run: RunLogger) -> None:
    _stack().append(run)


def pop_active(run: RunLogger) -> None:
    stack = _stack()
    if run in stack:
        stack.remove(run)


class RunLogger:
    """Convenience methods shared by local and remote runs."""

    id: str
    _ended: bool = False

    # -- primitives each implementation provides --------------------------------------------------
    def log_batch(
        self,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        raise NotImplementedError

    def _set_terminated(self, status: str) -> None:
        raise NotImplementedError

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> RunArtifact:
        raise NotImplementedError

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> list[RunArtifact]:
        raise NotImplementedError

    def log_bytes(self, data: bytes, artifact_file: str) -> RunArtifact:
        raise NotImplementedError

    def list_artifacts(self, path: str | None = None) -> list[RunArtifact]:
        raise NotImplementedError

    # -- conveniences ---------------------------------------------------------------------------
    def log_text(self, text: str, artifact_file: str) -> RunArtifact:
        return self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, data: Any, artifact_file: str) -> RunArtifact:
        """Write ``data`` as YAML when the file ends in .yaml/.yml, otherwise as JSON."""
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            payload = yaml.safe_dump(data, sort_keys=False)
        else:
            payload = json.dumps(data, indent=2, default=str)
        return self.log_bytes(payload.encode("utf-8"), artifact_file)

    def log_param(self, key: str, value: Any) -> None:
        self.log_batch(params={key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.log_batch(params=params)

    def set_tag(self, key: str, value: Any) -> None:
        self.log_batch(tags={key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.log_batch(tags=tags)

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        self.log_batch(metrics=[(key, value, step, timestamp)])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
        self.log_batch(metrics=[(key, value, step, timestamp) for key, value in metrics.items()])

    def end(self, status: str = FINISHED) -> None:
        """End the run (FINISHED, FAILED or KILLED); ending twice is a no-op."""
        if self._ended:
            return
        self._set_terminated(status)
        self._ended = True
        pop_active(self)

    def kill(self) -> None:
        self.end(KILLED)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end(FINISHED if exc_type is None else FAILED)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"


class Run(RunLogger):
    """A run in this process's workspace."""

    def __init__(self, tracking: Tracking, info: RunInfo) -> None:
        self._tracking = tracking
        self.id = info.id
        self.info = info

    @property
    def experiment_id(self) -> int:
        return self.info.experiment_id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def artifact_uri(self) -> str:
        return self.info.artifact_uri

    def log_batch(
        self,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self._tracking.log_batch(self.id, metrics=metrics, params=params, tags=tags)

    def _set_terminated(self, status: str) -> None:
        self.info = self._tracking.end_run(self.id, status).info

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> RunArtifact:
        return self._tracking.log_artifact(self.id, local_path, artifact_path)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> list[RunArtifact]:
        return self._tracking.log_artifacts(self.id, local_dir, artifact_path)

    def log_bytes(self, data: bytes, artifact_file: str) -> RunArtifact:
        return self._tracking.log_bytes(self.id, data, artifact_file)

    def list_artifacts(self, path: str | None = None) -> list[RunArtifact]:
        return self._tracking.list_artifacts(self.id, path)

    def refresh(self) -> RunRecord:
        record = self._tracking.get_run(self.id)
        self.info = record.info
        return record
