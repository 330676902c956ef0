"""``ctx``: what a running component may use besides its inputs and params.

Metrics and params logged here go to the node's tracking run; files written with ``write_text`` /
``write_bytes`` (reports, charts) become artifacts of that run; ``record_read`` adds a lineage edge
from a dataset version to the run. ``workspace`` opens the project (for components that register
models or materialize features); it is opened on first use only, and without the secret key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore
    from shipyard.tracking.run import Run
    from shipyard.workspace import Workspace


class NodeContext:
    def __init__(self, node_id: str, *, run_id: str | None, pipeline_run_id: str, resolved: Mapping[str, Any],
                 out_dir: Path, artifacts: ArtifactStore | None = None,
                 workspace: Callable[[], Workspace] | None = None) -> None:
        self.node_id = node_id
        self.run_id = run_id
        self.pipeline_run_id = pipeline_run_id
        self.resolved = dict(resolved)
        self.out_dir = Path(out_dir)
        self.metrics: dict[str, float] = {}
        self.params: dict[str, str] = {}
        self.reads: list[dict[str, Any]] = []
        self.log = logging.getLogger(f"shipyard.pipelines.node.{node_id}")
        self._artifacts = artifacts
        self._workspace_factory = workspace
        self._workspace: Workspace | None = None

    # -- tracking --------------------------------------------------------------------------------
    def log_metric(self, key: str, value: float) -> None:
        self.metrics[str(key)] = float(value)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value)

    def log_param(self, key: str, value: Any) -> None:
        self.params[str(key)] = str(value)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.log_param(key, value)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidInput(f"artifact name {name!r} must be a plain file name such as 'report.html'",
                               {"field": "name"})
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def write_text(self, name: str, text: str) -> Path:
        path = self._path(name)
        path.write_text(text, encoding="utf-8")
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self._path(name)
        path.write_bytes(data)
        return path

    # -- lineage and the project ------------------------------------------------------------------
    def read_artifact(self, path: str, sha256: str) -> bytes:
        """Bytes of an artifact of this project, checked against their recorded sha256."""
        if self._artifacts is None:
            raise InvalidInput(f"node {self.node_id!r}: no artifact store here", {"field": "ctx.artifacts"})
        return self._artifacts.get_bytes(path, expected_sha256=sha256)

    def record_read(self, dataset: str, version: int) -> None:
        self.reads.append({"dataset": dataset, "version": int(version)})

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            if self._workspace_factory is None:
                raise InvalidInput(f"node {self.node_id!r}: this component needs the project's workspace, which is "
                                   "not available here", {"field": "ctx.workspace"})
            self._workspace = self._workspace_factory()
        return self._workspace

    @property
    def run(self) -> Run:
        """The node's tracking run (for ``log_model`` and other run APIs)."""
        from shipyard.tracking.run import Run

        if self.run_id is None:
            raise InvalidInput(f"node {self.node_id!r} has no tracking run here", {"field": "ctx.run"})
        tracking = self.workspace.tracking
        return Run(tracking, tracking.get_run(self.run_id).info)
