"""Run tracking's Python API as one typed interface, implemented in-process (``ws.tracking``) and
over HTTP (``sy.Client(url).runs``); checked by a type checker in tests/core/test_protocols.py.

Runs are recorded as the acting identity: the workspace's locally, the token's user remotely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.tracking.entities import Experiment, Metric, RunArtifact, RunInfo, RunRecord
    from shipyard.tracking.run import RunLogger


@runtime_checkable
class TrackingAPI(Protocol):
    # -- experiments -------------------------------------------------------------------------------
    def list_experiments(self) -> list[Experiment]: ...

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment: ...

    def get_experiment(self, name_or_id: str | int) -> Experiment: ...

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, experiment: str = "default", name: str | None = None,
                  parent: RunLogger | RunInfo | str | None = None,
                  tags: Mapping[str, Any] | None = None) -> RunLogger: ...

    def get_run(self, run_id: str) -> RunRecord: ...

    def end_run(self, run_id: str, status: str = "FINISHED") -> RunRecord: ...

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> None: ...

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def search_runs(self, experiment: str | int | list[str | int] | None = None, filter: str | None = None,
                    order_by: list[str] | str | None = None, max_results: int = 1000,
                    offset: int = 0) -> list[RunRecord]: ...

    def compare_runs(self, run_ids: list[str]) -> pd.DataFrame: ...

    # -- artifacts ---------------------------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> RunArtifact: ...

    def log_artifacts(self, run_id: str, local_dir: str | Path,
                      artifact_path: str | None = None) -> list[RunArtifact]: ...

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> RunArtifact: ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[RunArtifact]: ...

    def read_artifact(self, run_id: str, path: str) -> bytes: ...

    def download_artifacts(self, run_id: str, path: str, dst: str | Path) -> Path: ...
