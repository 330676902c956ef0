"""Run tracking against a remote server: ``sy.Client(url).runs`` speaks the same method names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.artifacts import safe_relpath
from shipyard.errors import NotFound
from shipyard.tracking.core import DEFAULT_EXPERIMENT
from shipyard.tracking.entities import FINISHED, Experiment, Metric, RunArtifact, RunInfo, RunRecord
from shipyard.tracking.run import RunLogger, active_run, push_active
from shipyard.tracking.source import git_commit, source_name
from shipyard.tracking.validation import check_metrics, check_params, check_tags

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.connection import Connection

# Points per request; larger batches are split so each request stays well under the body limit.
REQUEST_POINTS = 10_000


# Files per upload request (each is an open file while it is sent).
UPLOAD_FILES = 64


class RemoteRun(RunLogger):
    def __init__(self, tracking: RemoteTracking, info: RunInfo) -> None:
        self._tracking = tracking
        self.id = info.id
        self.info = info

    def log_batch(
        self, metrics: Iterable[Any] = (), params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None
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

    @property
    def connection(self) -> Connection:
        """The server connection the run logs through."""
        return self._tracking.client


class RemoteTracking:
    """Run tracking of a server (``TrackingAPI``), acting as the connection's token's user."""

    def __init__(self, client: Connection) -> None:
        self.client = client

    # -- experiments ----------------------------------------------------------------------------
    def list_experiments(self) -> list[Experiment]:
        return [Experiment.from_dict(e) for e in self.client.get("/api/v1/experiments")["experiments"]]

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment:
        return Experiment.from_dict(self.client.post("/api/v1/experiments", {"name": name, "tags": dict(tags or {})}))

    def get_experiment(self, name_or_id: str | int) -> Experiment:
        return Experiment.from_dict(self.client.get(f"/api/v1/experiments/{name_or_id}"))

    # -- runs -----------------------------------------------------------------------------------
    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        name: str | None = None,
        parent: RunLogger | RunInfo | str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> RemoteRun:
        if parent is None:
            outer = active_run()
            if isinstance(outer, RemoteRun) and outer._tracking.client.url == self.client.url:
                parent = outer.id
        body = {
            "experiment": experiment, "name": name, "parent_run_id": getattr(parent, "id", parent),
            "tags": check_tags(tags), "source_name": source_name(), "source_git_commit": git_commit(),
        }
        record = RunRecord.from_dict(self.client.post("/api/v1/runs", body))
        run = RemoteRun(self, record.info)
        push_active(run)
        return run

    def get_run(self, run_id: str) -> RunRecord:
        return RunRecord.from_dict(self.client.get(f"/api/v1/runs/{run_id}"))

    def end_run(self, run_id: str, status: str = FINISHED) -> RunRecord:
        return RunRecord.from_dict(self.client.post(f"/api/v1/runs/{run_id}/end", {"status": status}))

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        points = [{"key": k, "value": v, "step": s, "timestamp": t} for k, v, s, t in check_metrics(metrics)]
        first = {"params": check_params(params), "tags": check_tags(tags), "metrics": points[:REQUEST_POINTS]}
        self.client.post(f"/api/v1/runs/{run_id}/log-batch", first)
        for start in range(REQUEST_POINTS, len(points), REQUEST_POINTS):
            self.client.post(f"/api/v1/runs/{run_id}/log-batch", {"metrics": points[start : start + REQUEST_POINTS]})

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=params)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.log_batch(run_id, metrics=[(k, v, step) for k, v in metrics.items()])

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        found = self.client.get(f"/api/v1/runs/{run_id}/metrics/history", params={"key": key})["metrics"]
        return [Metric(**m) for m in found]

    def search_runs(
        self,
        experiment: str | int | list[str | int] | None = None,
        filter: str | None = None,  # noqa: A002 - same name as Tracking.search_runs
        order_by: list[str] | str | None = None,
        max_results: int = 1000,
        offset: int = 0,
    ) -> list[RunRecord]:
        body = {
            "experiment": experiment, "filter": filter,
            "order_by": [order_by] if isinstance(order_by, str) else order_by,
            "max_results": max_results, "offset": offset,
        }
        return [RunRecord.from_dict(r) for r in self.client.post("/api/v1/runs/search", body)["runs"]]

    def compare_runs(self, run_ids: list[str]) -> pd.DataFrame:
        import pandas as pd

        table = self.client.post("/api/v1/runs/compare", {"run_ids": list(run_ids)})
        return pd.DataFrame(table["data"], index=table["index"], columns=table["columns"], dtype=object)

    # -- artifacts ------------------------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> RunArtifact:
        """Upload one file as ``<artifact_path>/<file name>`` (streamed: it is never read whole into memory)."""
        source = Path(local_path)
        if not source.is_file():
            raise NotFound(f"local file {source} does not exist; pass the path of a file", {"field": "local_path"})
        return self._upload(run_id, [(source, source.name)], artifact_path)[0]

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> list[RunArtifact]:
        """Upload every file under ``local_dir`` below ``artifact_path``, keeping relative paths."""
        folder = Path(local_dir)
        if not folder.is_dir():
            raise NotFound(f"local folder {folder} does not exist; pass the path of a folder", {"field": "local_dir"})
        files = [(p, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*")) if p.is_file()]
        out: list[RunArtifact] = []
        for start in range(0, len(files), UPLOAD_FILES):
            out.extend(self._upload(run_id, files[start : start + UPLOAD_FILES], artifact_path))
        return out

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> RunArtifact:
        """Store ``data`` as the artifact at ``artifact_file``."""
        rel = safe_relpath(artifact_file)
        folder, _, name = rel.rpartition("/")
        params = {"path": folder} if folder else None
        found = self.client.request("POST", f"/api/v1/runs/{run_id}/artifacts", params=params,
                                    files=[("file", (name, data, "application/octet-stream"))])
        return RunArtifact(**found["artifacts"][0])

    def _upload(self, run_id: str, files: list[tuple[Path, str]], artifact_path: str | None) -> list[RunArtifact]:
        for _source, rel in files:
            safe_relpath("/".join(p for p in (artifact_path, rel) if p))  # refused here as on the server
        params = {"path": artifact_path} if artifact_path else None
        with ExitStack() as stack:
            # httpx reads each open file in chunks while sending: streamed multipart
            parts = [("file", (rel, stack.enter_context(source.open("rb")), "application/octet-stream"))
                     for source, rel in files]
            found = self.client.request("POST", f"/api/v1/runs/{run_id}/artifacts", params=params, files=parts,
                                        timeout=None)
        return [RunArtifact(**a) for a in found["artifacts"]]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[RunArtifact]:
        params = {"path": path} if path else None
        return [RunArtifact(**a) for a in self.client.get(f"/api/v1/runs/{run_id}/artifacts", params=params)["artifacts"]]

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return self.client.get(f"/api/v1/runs/{run_id}/artifacts/download", params={"path": path})

    def download_artifacts(self, run_id: str, path: str, dst: str | Path) -> Path:
        rel = safe_relpath(path)
        found = self.list_artifacts(run_id, rel)
        if not found:
            raise NotFound(f"run {run_id!r} has no artifact {rel!r}", {"path": rel})
        root = Path(dst)
        single = len(found) == 1 and found[0].path == rel
        for artifact in found:
            target = root / (Path(rel).name if single else artifact.path[len(rel) + 1 :])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_artifact(run_id, artifact.path))
        return root / Path(rel).name if single else root
