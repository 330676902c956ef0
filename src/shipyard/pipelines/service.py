"""``ws.pipelines``: validate, run and inspect pipelines; store the documents a visual editor edits.

    ws = sy.connect()
    result = ws.pipelines.run("pipelines/credit.yaml", params={"seed": 7})
    result.status, [(n.node_id, n.status) for n in result.nodes]
    ws.pipelines.run("pipelines/credit.yaml", start="evaluate")      # re-run from a breakpoint
    print(ws.pipelines.logs(result.id, "train").text)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.errors import InvalidInput, NotFound
from shipyard.pipelines.components import Component, builtins
from shipyard.pipelines.dag import BoundPipeline, Pipeline, bind, load_pipeline
from shipyard.pipelines.executor import NodeEvent, PipelineExecutor, RunOptions, finalize_external
from shipyard.pipelines.pool import WorkerPool
from shipyard.pipelines.runs import PipelineRunRecord, RunStore
from shipyard.store import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import pipelines as pipelines_table

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

Source = str | Path | Mapping[str, Any] | Pipeline
LOG_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogChunk:
    text: str
    offset: int  # where the next read starts
    complete: bool  # the node has finished: no more text will come
    note: str = ""  # why there is no text, e.g. the node's result was taken from an earlier run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredPipeline:
    name: str
    version: int
    document: dict[str, Any]
    sha256: str
    updated_at: int
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Pipelines:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.runs_store = RunStore(ws.store)

    def executor(self, pool: WorkerPool | None = None) -> PipelineExecutor:
        return PipelineExecutor(runs=self.runs_store, tracking=self.ws.tracking, data=self.ws.data,
                                artifacts=self.ws.artifacts, settings=self.ws.settings, pool=pool,
                                workspace=self.ws.acting_as)

    # -- documents -------------------------------------------------------------------------------
    def components(self) -> list[Component]:
        """The built-in components (the palette of a visual editor)."""
        return [builtins()[name] for name in sorted(builtins())]

    def load(self, source: Source, base_dir: str | Path | None = None) -> Pipeline:
        if isinstance(source, str) and not os.path.exists(source) and self._stored(source) is not None:
            stored = self._stored(source)
            assert stored is not None
            return Pipeline.from_document(stored.document, base_dir or self.ws.settings.project_dir)
        return load_pipeline(source, base_dir or (None if not isinstance(source, Mapping)
                                                  else self.ws.settings.project_dir))

    def validate(self, source: Source, params: Mapping[str, Any] | None = None) -> BoundPipeline:
        """Check a pipeline (components, params, edge types, cycles); raises naming the node."""
        return bind(self.load(source), params)

    def save(self, document: Mapping[str, Any], actor: str) -> StoredPipeline:
        """Store a validated document under its name (a new version when it changed)."""
        pipeline = Pipeline.from_document(document, self.ws.settings.project_dir)
        bind(pipeline)
        doc, sha = pipeline.to_document(), pipeline.sha256()
        ts = now_ms()
        with self.ws.store.begin() as conn:
            row = conn.execute(sa.select(pipelines_table).where(pipelines_table.c.name == pipeline.name)
                               .with_for_update()).first()
            if row is None:
                conn.execute(pipelines_table.insert().values(
                    name=pipeline.name, version=1, document=doc, sha256=sha, created_at=ts, created_by=actor,
                    updated_at=ts, updated_by=actor))
            elif row.sha256 != sha:
                conn.execute(pipelines_table.update().where(pipelines_table.c.name == pipeline.name).values(
                    version=row.version + 1, document=doc, sha256=sha, updated_at=ts, updated_by=actor))
            record_event(conn, actor, "pipeline.saved", f"pipeline:{pipeline.name}", {"sha256": sha})
        found = self._stored(pipeline.name)
        assert found is not None
        return found

    def _stored(self, name: str) -> StoredPipeline | None:
        with self.ws.store.read() as conn:
            row = conn.execute(sa.select(pipelines_table).where(pipelines_table.c.name == name)).first()
        if row is None:
            return None
        return StoredPipeline(row.name, row.version, dict(row.document), row.sha256, row.updated_at, row.updated_by)

    def get(self, name: str) -> StoredPipeline:
        found = self._stored(name)
        if found is None:
            raise NotFound(f"pipeline {name!r} is not stored; save it first", {"field": "name"})
        return found

    def list(self) -> list[StoredPipeline]:
        with self.ws.store.read() as conn:
            names = conn.execute(sa.select(pipelines_table.c.name).order_by(pipelines_table.c.name)).scalars().all()
        return [self.get(n) for n in names]

    # -- running ---------------------------------------------------------------------------------
    def run(self, source: Source, *, params: Mapping[str, Any] | None = None, start: str | None = None,
            stop: str | None = None, workers: int = 2, actor: str | None = None,
            on_event: Callable[[NodeEvent], None] | None = None, pool: WorkerPool | None = None,
            only: list[str] | None = None, external_id: str | None = None,
            on_start: Callable[[str], None] | None = None) -> PipelineRunRecord:
        """Run a pipeline and return its record (``status`` is succeeded or failed; nodes say why)."""
        if workers < 0:
            raise InvalidInput(f"workers must be 0 (in this process) or more, got {workers}", {"field": "workers"})
        options = RunOptions(dict(params or {}), start, stop, only, workers, external_id, on_event, on_start)
        return self.executor(pool).run(self.load(source), options, actor or self.ws.user)

    # -- compiling -------------------------------------------------------------------------------
    def codegen(self, source: Source, params: Mapping[str, Any] | None = None, *, portable: bool = False) -> str:
        """A standalone Python script that reproduces the pipeline (see ``shipyard.pipelines.codegen``).

        ``portable`` writes no server path into the script: data files are named relative to the
        project (or by their artifact path), to be passed with ``--data NODE=PATH``.
        """
        from shipyard.pipelines.codegen import generate_script

        bound, _, _, facts = self.executor().plan(self.load(source), RunOptions(dict(params or {})))
        if portable:
            facts = {node: self._portable(f) for node, f in facts.items()}
        return generate_script(bound, facts)

    def _portable(self, facts: dict[str, Any]) -> dict[str, Any]:
        out = dict(facts)
        if "local_path" in out:
            out["local_path"] = out.get("path", "")  # the artifact path, relative to the artifact root
        path = out.get("path")
        if isinstance(path, str) and Path(path).is_absolute():
            root = self.ws.settings.project_dir
            out["path"] = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else Path(path).name
        return out

    def export_airflow(self, source: str | Path, *, python: str | None = None, dag_id: str | None = None,
                       schedule: str | None = None) -> str:
        """An Airflow DAG file whose tasks run the pipeline's nodes in this project."""
        from shipyard.pipelines.airflow_export import export_airflow

        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"export needs the pipeline's file (the DAG's tasks read it), got {str(source)!r}",
                               {"field": "file"})
        bound = bind(self.load(path))
        return export_airflow(bound, document=path, project=self.ws.settings.project_dir, python=python,
                              dag_id=dag_id, schedule=schedule)

    def start(self, source: Source, *, actor: str, timeout_s: float = 120.0, **options: Any) -> str:
        """Start a run in a background thread; returns its id once recorded (plan errors are raised here)."""
        import threading

        started = threading.Event()
        box: dict[str, Any] = {}

        def recorded(run_id: str) -> None:
            box["id"] = run_id
            started.set()

        def work() -> None:
            try:
                self.run(source, actor=actor, on_start=recorded, **options)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below, or logged
                box.setdefault("error", exc)
                started.set()
                if "id" in box:
                    import logging

                    logging.getLogger(__name__).exception("pipeline run %s stopped", box["id"])

        threading.Thread(target=work, name="shipyard-pipeline-run", daemon=True).start()
        started.wait(timeout_s)
        if "id" not in box:
            error = box.get("error")
            if isinstance(error, Exception):
                raise error
            raise InvalidInput("the run did not start in time; look at the server log", {"field": "pipeline"})
        return str(box["id"])

    def finish_external(self, source: Source, external_id: str) -> PipelineRunRecord:
        return finalize_external(self.executor(), self.load(source).name, external_id)

    def runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        self.runs_store.mark_stale()
        return self.runs_store.list(pipeline, limit)

    def get_run(self, run_id: str) -> PipelineRunRecord:
        self.runs_store.mark_stale()
        return self.runs_store.get(run_id)

    def logs(self, run_id: str, node: str, offset: int = 0, limit: int = LOG_CHUNK) -> LogChunk:
        """Text of a node's log from byte ``offset``: live while the node runs, from its run afterwards."""
        record = self.runs_store.get(run_id)
        rec = record.node(node)
        complete = rec.status not in ("pending", "running")
        local = Path(rec.log_path) if rec.log_path else None
        if local is not None and local.exists():
            with open(local, "rb") as handle:
                handle.seek(max(offset, 0))
                data = handle.read(limit)
        elif rec.tracking_run_id and complete:
            try:
                whole = self.ws.tracking.read_artifact(rec.tracking_run_id, f"logs/{node}.log")
            except NotFound:
                whole = b""
            data = whole[max(offset, 0): max(offset, 0) + limit]
        else:
            data = b""
        more = len(data) == limit
        note = ""
        if not data and rec.reused_from and not rec.attempts:
            note = (f"node {node!r} did not run in {run_id}: its result was {rec.status} from run {rec.reused_from}; "
                    f"its log is that run's: shipyard pipelines logs {rec.reused_from} --node {node} "
                    f"(GET /api/v1/pipelines/runs/{rec.reused_from}/nodes/{node}/logs)")
        return LogChunk(data.decode("utf-8", errors="replace"), max(offset, 0) + len(data), complete and not more,
                        note)
