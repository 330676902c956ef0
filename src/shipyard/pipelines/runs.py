"""Pipeline runs, their nodes and the result cache, as stored in the metadata database.

A run row is written when the run starts and updated as it goes, with a heartbeat; a run whose
process died stops beating and is marked ``interrupted`` by the next reader that notices. Node rows
hold status, attempts, the cache key, the node's tracking run, its outputs (artifact path, sha256,
type) and metrics, so the API can show progress while the run is going.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from shipyard.errors import NotFound
from shipyard.store import MetadataStore, now_ms
from shipyard.store.schema import pipeline_cache, pipeline_run_nodes, pipeline_runs

# run statuses
RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
# node statuses
PENDING, CACHED, REUSED, SKIPPED, NOT_SELECTED = "pending", "cached", "reused", "skipped", "not_selected"
DONE = (SUCCEEDED, CACHED, REUSED)
FINAL = (SUCCEEDED, CACHED, REUSED, FAILED, SKIPPED, NOT_SELECTED)
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class NodeRecord:
    run_id: str
    node_id: str
    component: str
    status: str
    cache_key: str
    reused_from: str | None
    attempts: int
    tracking_run_id: str | None
    outputs: dict[str, Any]
    metrics: dict[str, Any]
    error: str
    log_path: str
    started_at: int | None
    finished_at: int | None
    updated_at: int

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at) / 1000

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = self.duration_s
        return out


@dataclass(frozen=True)
class PipelineRunRecord:
    id: str
    pipeline: str
    sha256: str
    params: dict[str, Any]
    selection: dict[str, Any]
    status: str
    tracking_run_id: str | None
    external_id: str | None
    error: str
    started_at: int
    finished_at: int | None
    heartbeat_at: int | None
    created_by: str
    nodes: list[NodeRecord] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict, repr=False)

    def node(self, node_id: str) -> NodeRecord:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise NotFound(f"run {self.id} has no node {node_id!r}", {"field": "node"})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.status] = out.get(n.status, 0) + 1
        return out

    def to_dict(self, with_document: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("nodes", "document")}
        out["nodes"] = [n.to_dict() for n in self.nodes]
        out["counts"] = self.counts()
        if with_document:
            out["document"] = self.document
        return out


def _node(row: Any) -> NodeRecord:
    data = dict(row._mapping)
    data["outputs"] = dict(data.get("outputs") or {})
    data["metrics"] = dict(data.get("metrics") or {})
    return NodeRecord(**data)


class RunStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- writes ----------------------------------------------------------------------------------
    def create(self, pipeline: str, sha256: str, document: dict[str, Any], params: dict[str, Any],
               selection: dict[str, Any], nodes: list[tuple[str, str, str]], actor: str,
               external_id: str | None = None) -> str:
        """Insert a running run and its nodes ``(node_id, component, status)``; returns the run id."""
        run_id = uuid.uuid4().hex
        ts = now_ms()
        with self.store.begin() as conn:
            conn.execute(pipeline_runs.insert().values(
                id=run_id, pipeline=pipeline, sha256=sha256, document=document, params=params, selection=selection,
                status=RUNNING, tracking_run_id=None, external_id=external_id, error="", started_at=ts,
                finished_at=None, heartbeat_at=ts, created_by=actor))
            conn.execute(pipeline_run_nodes.insert(), [
                {"run_id": run_id, "node_id": node_id, "component": component, "status": status, "cache_key": "",
                 "reused_from": None, "attempts": 0, "tracking_run_id": None, "outputs": {}, "metrics": {},
                 "error": "", "log_path": "", "started_at": None, "finished_at": None, "updated_at": ts}
                for node_id, component, status in nodes])
        return run_id

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.store.begin() as conn:
            conn.execute(pipeline_runs.update().where(pipeline_runs.c.id == run_id).values(**values))

    def update_node(self, run_id: str, node_id: str, **values: Any) -> None:
        values["updated_at"] = now_ms()
        with self.store.begin() as conn:
            conn.execute(pipeline_run_nodes.update().where(
                pipeline_run_nodes.c.run_id == run_id, pipeline_run_nodes.c.node_id == node_id).values(**values))

    def heartbeat(self, run_id: str) -> None:
        self.update_run(run_id, heartbeat_at=now_ms())

    def mark_stale(self, stale_after_s: float = STALE_AFTER_S) -> list[str]:
        """Runs still 'running' whose process stopped beating become 'interrupted' (their running nodes too)."""
        limit = now_ms() - int(stale_after_s * 1000)
        with self.store.begin() as conn:
            ids = conn.execute(sa.select(pipeline_runs.c.id).where(
                pipeline_runs.c.status == RUNNING, pipeline_runs.c.heartbeat_at < limit)).scalars().all()
            if ids:
                ts = now_ms()
                conn.execute(pipeline_runs.update().where(pipeline_runs.c.id.in_(ids)).values(
                    status=INTERRUPTED, finished_at=ts,
                    error="the process running this pipeline stopped (no heartbeat); re-run it or use --from"))
                conn.execute(pipeline_run_nodes.update().where(
                    pipeline_run_nodes.c.run_id.in_(ids),
                    pipeline_run_nodes.c.status.in_((RUNNING, PENDING))).values(
                    status=INTERRUPTED, finished_at=ts, updated_at=ts))
        return list(ids)

    # -- reads -----------------------------------------------------------------------------------
    def get(self, run_id: str) -> PipelineRunRecord:
        with self.store.read() as conn:
            row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
            if row is None:
                matches = conn.execute(sa.select(pipeline_runs.c.id).where(
                    pipeline_runs.c.id.like(f"{run_id}%")).limit(2)).scalars().all() if len(run_id) >= 6 else []
                if len(matches) == 1:
                    row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == matches[0])).first()
            if row is None:
                raise NotFound(f"pipeline run {run_id!r} does not exist; list runs with `shipyard pipelines runs`",
                               {"field": "run_id", "run_id": run_id})
            nodes = conn.execute(sa.select(pipeline_run_nodes).where(pipeline_run_nodes.c.run_id == row.id)).all()
        return self._record(row, nodes)

    @staticmethod
    def _record(row: Any, nodes: list[Any]) -> PipelineRunRecord:
        data = dict(row._mapping)
        order = [n["id"] for n in (data.get("document") or {}).get("nodes", [])]
        recs = sorted((_node(n) for n in nodes),
                      key=lambda r: order.index(r.node_id) if r.node_id in order else len(order))
        return PipelineRunRecord(**{**data, "params": dict(data.get("params") or {}),
                                    "selection": dict(data.get("selection") or {}), "nodes": recs})

    def list(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        query = sa.select(pipeline_runs).order_by(pipeline_runs.c.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(pipeline_runs.c.pipeline == pipeline)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
            ids = [r.id for r in rows]
            nodes = conn.execute(sa.select(pipeline_run_nodes).where(
                pipeline_run_nodes.c.run_id.in_(ids))).all() if ids else []
        by_run: dict[str, list[Any]] = {}
        for n in nodes:
            by_run.setdefault(n.run_id, []).append(n)
        return [self._record(r, by_run.get(r.id, [])) for r in rows]

    def find_external(self, pipeline: str, external_id: str) -> str | None:
        with self.store.read() as conn:
            return conn.execute(sa.select(pipeline_runs.c.id).where(
                pipeline_runs.c.pipeline == pipeline, pipeline_runs.c.external_id == external_id)).scalar()

    def latest_done(self, pipeline: str, node_id: str, exclude_run: str | None = None) -> NodeRecord | None:
        """The most recent successful (run, cached or reused) result of ``node_id`` in ``pipeline``."""
        query = (sa.select(pipeline_run_nodes).join(pipeline_runs, pipeline_runs.c.id == pipeline_run_nodes.c.run_id)
                 .where(pipeline_runs.c.pipeline == pipeline, pipeline_run_nodes.c.node_id == node_id,
                        pipeline_run_nodes.c.status.in_(DONE))
                 .order_by(pipeline_run_nodes.c.finished_at.desc()).limit(1))
        if exclude_run:
            query = query.where(pipeline_run_nodes.c.run_id != exclude_run)
        with self.store.read() as conn:
            row = conn.execute(query).first()
        return _node(row) if row is not None else None

    def changed_nodes(self, run_id: str, since_ms: int) -> list[NodeRecord]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(pipeline_run_nodes).where(
                pipeline_run_nodes.c.run_id == run_id, pipeline_run_nodes.c.updated_at > since_ms)
                .order_by(pipeline_run_nodes.c.updated_at)).all()
        return [_node(r) for r in rows]

    # -- cache -----------------------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(pipeline_cache).where(pipeline_cache.c.cache_key == key)).first()
        return dict(row._mapping) if row is not None else None

    def cache_put(self, key: str, component: str, outputs: dict[str, Any], metrics: dict[str, Any], run_id: str,
                  node_id: str) -> None:
        with self.store.begin() as conn:
            conn.execute(pipeline_cache.delete().where(pipeline_cache.c.cache_key == key))
            conn.execute(pipeline_cache.insert().values(cache_key=key, component=component, outputs=outputs,
                                                        metrics=metrics, run_id=run_id, node_id=node_id,
                                                        created_at=now_ms()))

    def cache_drop(self, key: str) -> None:
        with self.store.begin() as conn:
            conn.execute(pipeline_cache.delete().where(pipeline_cache.c.cache_key == key))
