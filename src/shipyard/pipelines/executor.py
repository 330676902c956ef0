"""Running a pipeline: one tracking run per pipeline run, a nested run per node, cached results,
breakpoint re-runs, parallel workers, timeouts and retries.

The loop, in the calling thread:

1. bind and validate the pipeline with the run's params; choose the nodes (``--from``/``--to``);
   resolve plan-time facts (which dataset version "latest" is);
2. record the run and its nodes; nodes before ``--from`` take the latest stored result of that node;
3. a node is ready when its inputs are; its cache key is the sha256 of the component's code hash, its
   params, its plan-time facts and the sha256 of each input. A ready node whose key is in the cache
   (and whose stored outputs still exist) is ``cached``; nodes from ``--from`` on always run;
4. other ready nodes go to idle workers (or run in this process with ``workers=0``); replies are
   awaited with a deadline per node; a failure is retried up to ``retries`` times, then the node is
   ``failed`` and everything after it ``skipped`` while independent branches go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, NotFound
from shipyard.pipelines.dag import BoundNode, BoundPipeline, Pipeline, bind, select
from shipyard.pipelines.pool import Worker, WorkerPool
from shipyard.pipelines.runs import (
    CACHED,
    DONE,
    FAILED,
    HEARTBEAT_S,
    NOT_SELECTED,
    PENDING,
    REUSED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    PipelineRunRecord,
    RunStore,
)
from shipyard.pipelines.worker import execute_node
from shipyard.store import now_ms

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore
    from shipyard.config import Settings
    from shipyard.data.catalog import DataCatalog
    from shipyard.tracking import Tracking
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)
UNKEYED_FACTS = ("local_path", "upstream_reads")


@dataclass(frozen=True)
class NodeEvent:
    run_id: str
    node: str
    status: str
    attempt: int = 0
    duration_s: float | None = None
    error: str = ""
    total: int = 0
    done: int = 0


@dataclass
class RunOptions:
    params: dict[str, Any] = field(default_factory=dict)
    start: str | None = None  # --from
    stop: str | None = None  # --to
    only: list[str] | None = None  # run exactly these nodes (an outside orchestrator runs one task per node)
    workers: int = 2  # 0 runs nodes in this process, one after another (no timeouts)
    external_id: str | None = None
    on_event: Callable[[NodeEvent], None] | None = None
    on_start: Callable[[str], None] | None = None  # called with the run id once the run is recorded


class ResolveServices:
    """What a component's plan-time resolver may look at."""

    def __init__(self, data: DataCatalog, artifacts: ArtifactStore, base_dir: Path) -> None:
        self.data = data
        self.artifacts = artifacts
        self.base_dir = base_dir

    def local_artifact(self, path: str) -> str:
        return str(self.artifacts.local_path(path)) if self.artifacts.is_local else self.artifacts.uri(path)


@dataclass
class _Job:
    node: BoundNode
    key: str
    attempt: int
    request: dict[str, Any]
    tracking_run_id: str
    started: float


def cache_key(node: BoundNode, facts: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> str:
    payload = {
        "code": node.component.code_hash,
        "params": node.params,
        "facts": {k: v for k, v in facts.items() if k not in UNKEYED_FACTS},
        "inputs": {port: ref["sha256"] for port, ref in sorted(inputs.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class PipelineExecutor:
    def __init__(self, *, runs: RunStore, tracking: Tracking, data: DataCatalog, artifacts: ArtifactStore,
                 settings: Settings, pool: WorkerPool | None = None,
                 workspace: Callable[[str], Workspace] | None = None) -> None:
        self.runs = runs
        self.tracking = tracking
        self.data = data
        self.artifacts = artifacts
        self.settings = settings
        self.pool = pool
        # the project's workspace acting as a given user, for ``ctx.workspace`` of nodes run in this
        # process (a worker process opens its own)
        self.workspace = workspace

    # -- planning --------------------------------------------------------------------------------
    def plan(self, pipeline: Pipeline, options: RunOptions) -> tuple[BoundPipeline, set[str], set[str], dict]:
        bound = bind(pipeline, options.params)
        if options.only is not None:
            unknown = [n for n in options.only if n not in bound.nodes]
            if unknown:
                raise InvalidInput(f"node {unknown[0]!r} is not in pipeline {pipeline.name!r}", {"field": "node"})
            chosen = set(options.only)
        else:
            chosen = select(pipeline, options.start, options.stop)
        forced = chosen if options.start is not None else set()
        services = ResolveServices(self.data, self.artifacts, pipeline.base_dir)
        facts: dict[str, dict[str, Any]] = {}
        for node_id in bound.order:
            node = bound.nodes[node_id]
            if node.component.resolver is None:
                facts[node_id] = {}
                continue
            try:
                facts[node_id] = node.component.resolver(node.params, services)
            except (InvalidInput, NotFound) as exc:
                raise type(exc)(f"node {node_id!r}: {exc.message}", {**exc.details, "node": node_id}) from None
        return bound, chosen, forced, facts

    # -- running ---------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline, options: RunOptions, actor: str) -> PipelineRunRecord:
        bound, chosen, forced, facts = self.plan(pipeline, options)
        needed = {src for n in chosen for src, _ in bound.nodes[n].inputs.values()} - chosen
        run_id = self._start_run(pipeline, bound, options, chosen, needed, actor)
        if options.on_start is not None:
            options.on_start(run_id)
        state = _RunState(self, bound, run_id, chosen, forced, facts, options, actor)
        try:
            state.execute()
        except BaseException as exc:
            state.abort(f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeyboardInterrupt)
                        else "interrupted by the user")
            raise
        return self.runs.get(run_id)

    def _start_run(self, pipeline: Pipeline, bound: BoundPipeline, options: RunOptions, chosen: set[str],
                   needed: set[str], actor: str) -> str:
        if options.external_id:
            existing = self.runs.find_external(pipeline.name, options.external_id)
            if existing:
                return existing
        # an outside orchestrator runs every node, one task each
        wanted = set(bound.order) if options.external_id else chosen | needed
        statuses = [(n, bound.nodes[n].component.name, PENDING if n in wanted else NOT_SELECTED)
                    for n in bound.order]
        selection = {"from": options.start, "to": options.stop, "only": options.only}
        try:
            run_id = self.runs.create(pipeline.name, pipeline.sha256(), pipeline.to_document(), bound.params,
                                      selection, statuses, actor, options.external_id)
        except Exception:
            if options.external_id and (existing := self.runs.find_external(pipeline.name, options.external_id)):
                return existing  # another task of the same outside run created it first
            raise
        parent = self.tracking.create_run(
            pipeline.experiment or f"pipeline-{pipeline.name}", name=f"{pipeline.name}",
            tags={"shipyard.pipeline": pipeline.name, "shipyard.pipeline_run": run_id}, user=actor)
        if bound.params:
            self.tracking.log_batch(parent.id, params=bound.params)
        self.runs.update_run(run_id, tracking_run_id=parent.id)
        return run_id


class _RunState:
    """The mutable state of one run's loop (kept apart so the executor holds no per-run fields)."""

    def __init__(self, ex: PipelineExecutor, bound: BoundPipeline, run_id: str, chosen: set[str],
                 forced: set[str], facts: dict[str, dict[str, Any]], options: RunOptions, actor: str) -> None:
        self.ex = ex
        self.bound = bound
        self.run_id = run_id
        self.chosen = chosen
        self.forced = forced
        self.facts = facts
        self.options = options
        self.actor = actor
        record = ex.runs.get(run_id)
        self.parent_run = record.tracking_run_id
        self.external = bool(options.external_id)
        self.outputs: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        for n in record.nodes:
            self.status[n.node_id] = n.status
            if n.status in DONE:
                self.outputs[n.node_id] = n.outputs
        self.attempts: dict[str, int] = {}
        self.running: dict[int, tuple[Worker | None, _Job]] = {}
        self.pool = ex.pool
        self.own_pool = False
        self.warmed = False
        self.last_beat = time.monotonic()
        self.base = ex.settings.state_dir / "pipelines"
        self.experiment = bound.pipeline.experiment or f"pipeline-{bound.pipeline.name}"

    # -- helpers ---------------------------------------------------------------------------------
    def emit(self, node: str, status: str, **extra: Any) -> None:
        if self.options.on_event is not None:
            done = sum(1 for n in self.chosen if self.status.get(n) in (*DONE, FAILED, SKIPPED))
            self.options.on_event(NodeEvent(self.run_id, node, status, total=len(self.chosen), done=done, **extra))

    def set_node(self, node: str, status: str, **values: Any) -> None:
        self.status[node] = status
        self.ex.runs.update_node(self.run_id, node, status=status, **values)

    def beat(self) -> None:
        if time.monotonic() - self.last_beat >= HEARTBEAT_S:
            self.ex.runs.heartbeat(self.run_id)
            self.last_beat = time.monotonic()

    def log_path(self, node: str) -> Path:
        return self.base / "logs" / self.run_id / f"{node}.log"

    def upstream_reads(self, node: str) -> list[dict[str, Any]]:
        reads = []
        for other in self.bound.pipeline.ancestors(node) | {node}:
            facts = self.facts.get(other, {})
            if "dataset" in facts and "version" in facts:
                reads.append({"dataset": facts["dataset"], "version": facts["version"]})
        return sorted(reads, key=lambda r: (r["dataset"], r["version"]))

    def inputs_of(self, node: BoundNode) -> dict[str, dict[str, Any]]:
        return {port: self.outputs[src][out] for port, (src, out) in node.inputs.items()}

    # -- the loop --------------------------------------------------------------------------------
    def execute(self) -> None:
        self._reuse_upstream()
        queue = [n for n in self.bound.order if n in self.chosen and self.status.get(n) not in DONE]
        workers = self.options.workers
        if workers > 0 and self.pool is None:
            self.pool = WorkerPool(workers, stderr_path=self.base / "workers.log")
            self.own_pool = True
        try:
            while queue or self.running:
                progressed = self._dispatch(queue)
                if self.running:
                    self._collect()
                elif not progressed:
                    break
                self.beat()
        finally:
            if self.own_pool and self.pool is not None:
                self.pool.close()
            self._remove_scratch()
        self._finish()

    def _remove_scratch(self) -> None:
        """The run's scratch folder (its nodes' files went to their tracking runs). Tasks of one run
        run apart when an orchestrator drives it (``external``): each leaves the folder to the
        others until it is empty."""
        scratch = self.base / "tmp" / self.run_id
        if not self.external:
            shutil.rmtree(scratch, ignore_errors=True)
            return
        try:
            scratch.rmdir()
        except OSError:
            pass  # absent, or another task's node is still writing there

    def _reuse_upstream(self) -> None:
        needed = {src for n in self.chosen for src, _ in self.bound.nodes[n].inputs.values()} - self.chosen
        for node in sorted(needed, key=self.bound.order.index):
            if node in self.outputs:
                continue
            if self.external:
                message = f"node {node!r} has not finished in this run; run its task first"
                raise InvalidInput(message, {"field": "node", "node": node})
            found = self.ex.runs.latest_done(self.bound.pipeline.name, node, exclude_run=self.run_id)
            if found is None or not all(self.ex.artifacts.exists(o["path"]) for o in found.outputs.values()):
                message = (f"node {node!r} has no stored result to start from; run the pipeline without --from "
                           "(or include that node) first")
                self.set_node(node, FAILED, error=message)
                self.ex.runs.update_run(self.run_id, status=FAILED, error=message, finished_at=now_ms())
                raise InvalidInput(message, {"field": "from", "node": node})
            self.outputs[node] = found.outputs
            self.set_node(node, REUSED, outputs=found.outputs, metrics=found.metrics, reused_from=found.run_id,
                          cache_key=found.cache_key, finished_at=now_ms())
            self.emit(node, REUSED)

    def _ready(self, node_id: str) -> str | None:
        """'run' when every input is available, 'skip' when an input can never come, None to wait."""
        node = self.bound.nodes[node_id]
        for src, _ in node.inputs.values():
            state = self.status.get(src)
            if state in (FAILED, SKIPPED):
                return "skip"
            if src not in self.outputs:
                return None
        return "run"

    def _dispatch(self, queue: list[str]) -> bool:
        progressed = False
        for node_id in list(queue):
            verdict = self._ready(node_id)
            if verdict is None:
                continue
            if verdict == "skip":
                queue.remove(node_id)
                failed = [s for s, _ in self.bound.nodes[node_id].inputs.values()
                          if self.status.get(s) in (FAILED, SKIPPED)]
                self.set_node(node_id, SKIPPED, error=f"skipped: upstream node {failed[0]!r} did not succeed",
                              finished_at=now_ms())
                self.emit(node_id, SKIPPED)
                progressed = True
                continue
            node = self.bound.nodes[node_id]
            inputs = self.inputs_of(node)
            key = cache_key(node, self.facts[node_id], inputs)
            if self._try_cache(node, key):
                queue.remove(node_id)
                progressed = True
                continue
            if self.options.workers > 0 and self.pool is not None and len(self.running) >= self.pool.size:
                continue  # wait for one of ours (a shared pool's other users are waited for in acquire)
            queue.remove(node_id)
            self._launch(node, key, inputs)
            progressed = True
            if self.options.workers <= 0:
                return True  # in-process: one node at a time, then look again
        return progressed

    def _try_cache(self, node: BoundNode, key: str) -> bool:
        node_id = node.node.id
        if node_id in self.forced or not node.node.cache or not node.component.cacheable:
            return False
        hit = self.ex.runs.cache_get(key)
        if hit is None:
            return False
        if not all(self.ex.artifacts.exists(o["path"]) for o in hit["outputs"].values()):
            self.ex.runs.cache_drop(key)
            return False
        tracking_run = self.ex.tracking.create_run(
            self.experiment, name=node_id, parent_run_id=self.parent_run, user=self.actor,
            tags={"shipyard.node": node_id, "shipyard.cached_from": hit["run_id"], "shipyard.pipeline_run": self.run_id})
        if hit["metrics"]:
            self.ex.tracking.log_batch(tracking_run.id, metrics=[(k, v, 0, None) for k, v in hit["metrics"].items()])
        self.ex.tracking.end_run(tracking_run.id, "FINISHED")
        ts = now_ms()
        self.outputs[node_id] = hit["outputs"]
        self.set_node(node_id, CACHED, cache_key=key, outputs=hit["outputs"], metrics=hit["metrics"],
                      reused_from=hit["run_id"], tracking_run_id=tracking_run.id, started_at=ts, finished_at=ts)
        self._record_reads(node_id, tracking_run.id, [])
        self.emit(node_id, CACHED, duration_s=0.0)
        return True

    def _launch(self, node: BoundNode, key: str, inputs: dict[str, dict[str, Any]]) -> None:
        node_id = node.node.id
        attempt = self.attempts.get(node_id, 0) + 1
        self.attempts[node_id] = attempt
        tracking_run = self.ex.tracking.create_run(
            self.experiment, name=node_id, parent_run_id=self.parent_run, user=self.actor,
            tags={"shipyard.node": node_id, "shipyard.component": node.component.name,
                  "shipyard.pipeline_run": self.run_id})
        out_dir = self.base / "tmp" / self.run_id / node_id
        shutil.rmtree(out_dir, ignore_errors=True)
        facts = dict(self.facts[node_id])
        facts["upstream_reads"] = self.upstream_reads(node_id)
        request = {
            "node": node_id, "component": node.component.name, "base_dir": str(self.bound.pipeline.base_dir),
            "params": node.params, "inputs": inputs, "resolved": facts, "run_id": self.run_id,
            "tracking_run_id": tracking_run.id, "log_path": str(self.log_path(node_id)), "out_dir": str(out_dir),
            "settings": self.ex.settings.to_dict(redact=False), "actor": self.actor,
        }
        self.set_node(node_id, RUNNING, cache_key=key, attempts=attempt, tracking_run_id=tracking_run.id,
                      log_path=str(self.log_path(node_id)), started_at=now_ms(), error="")
        self.emit(node_id, RUNNING, attempt=attempt)
        job = _Job(node, key, attempt, request, tracking_run.id, time.monotonic())
        if self.options.workers <= 0:
            if node.timeout_s:
                log.warning("node %s: timeout_s is not enforced when nodes run in-process (workers=0)", node_id)
            opener = self.ex.workspace
            actor = self.actor
            self._complete(job, execute_node(request, capture="python",
                                             workspace=None if opener is None else lambda: opener(actor)))
            return
        assert self.pool is not None
        if self.own_pool and not self.warmed:
            self.warmed = True  # start the workers this run can use together: their start-up overlaps
            self.pool.warm(min(self.pool.size, 1 + sum(1 for n in self.chosen if self.status.get(n) == PENDING)))
        worker = self.pool.acquire()
        worker.job = job
        worker.deadline = time.monotonic() + node.timeout_s if node.timeout_s else None
        worker.send(request)
        self.running[worker.pid] = (worker, job)

    def _collect(self) -> None:
        assert self.pool is not None
        workers = [w for w, _ in self.running.values() if w is not None]
        now = time.monotonic()
        deadlines = [w.deadline - now for w in workers if w.deadline is not None]
        wait_s = min([HEARTBEAT_S, *deadlines])
        for worker in self.pool.ready(workers, max(wait_s, 0.0)):
            _, job = self.running.pop(worker.pid)
            reply = worker.read()
            if worker.alive():
                self.pool.release(worker)
            else:
                self.pool.discard(worker)
            self._complete(job, reply)
        now = time.monotonic()
        for pid, (worker, job) in list(self.running.items()):
            if worker is not None and worker.deadline is not None and now >= worker.deadline:
                del self.running[pid]
                self.pool.discard(worker)
                with open(job.request["log_path"], "a", encoding="utf-8") as handle:
                    handle.write(f"\n[shipyard] node stopped: it ran past its timeout of {job.node.timeout_s} s\n")
                self._complete(job, {"ok": False, "metrics": {},
                                     "error": f"TimeoutError: node ran past its timeout of {job.node.timeout_s} s"})

    def _complete(self, job: _Job, reply: dict[str, Any]) -> None:
        node_id = job.node.node.id
        duration = time.monotonic() - job.started
        tracking = self.ex.tracking
        metrics = {k: float(v) for k, v in (reply.get("metrics") or {}).items()}
        params = {k: str(v) for k, v in (reply.get("params") or {}).items()}
        try:
            tracking.log_batch(job.tracking_run_id, metrics=[(k, v, 0, None) for k, v in metrics.items()],
                               params=params)
        except Exception:  # noqa: BLE001 - a param clash on retry must not lose the node's result
            log.warning("node %s: could not log metrics/params", node_id, exc_info=True)
        self._log_files(job)
        if reply.get("ok"):
            outputs = reply["outputs"]
            self.outputs[node_id] = outputs
            tracking.set_tags(job.tracking_run_id, {"shipyard.outputs": json.dumps(
                {k: v["sha256"][:16] for k, v in outputs.items()})})
            tracking.end_run(job.tracking_run_id, "FINISHED")
            if job.node.node.cache and job.node.component.cacheable:
                self.ex.runs.cache_put(job.key, job.node.component.name, outputs, metrics, self.run_id, node_id)
            self.set_node(node_id, SUCCEEDED, outputs=outputs, metrics=metrics, finished_at=now_ms())
            self._record_reads(node_id, job.tracking_run_id, reply.get("reads") or [])
            self.emit(node_id, SUCCEEDED, attempt=job.attempt, duration_s=duration)
            return
        error = str(reply.get("error") or "failed")
        tracking.end_run(job.tracking_run_id, "FAILED")
        if job.attempt <= job.node.retries:
            log.info("node %s failed (attempt %d of %d): %s; retrying", node_id, job.attempt,
                     job.node.retries + 1, error)
            self.emit(node_id, "retrying", attempt=job.attempt, error=error)
            self._launch(job.node, job.key, self.inputs_of(job.node))
            return
        self.set_node(node_id, FAILED, error=error, metrics=metrics, finished_at=now_ms())
        self.emit(node_id, FAILED, attempt=job.attempt, duration_s=duration, error=error)

    def _log_files(self, job: _Job) -> None:
        """The node's log and the files it wrote become artifacts of its tracking run."""
        log_file = Path(job.request["log_path"])
        try:
            if log_file.exists():
                self.ex.tracking.log_artifact(job.tracking_run_id, log_file, "logs")
            out_dir = Path(job.request["out_dir"])
            if out_dir.is_dir() and any(out_dir.iterdir()):
                self.ex.tracking.log_artifacts(job.tracking_run_id, out_dir, "outputs")
            shutil.rmtree(out_dir, ignore_errors=True)
        except Exception:  # noqa: BLE001 - the node's result matters more than its files
            log.warning("node %s: could not store its log or files", job.node.node.id, exc_info=True)

    def _record_reads(self, node_id: str, tracking_run_id: str, reads: list[dict[str, Any]]) -> None:
        facts = self.facts.get(node_id, {})
        found = list(reads)
        if "dataset" in facts and "version" in facts:
            found.append({"dataset": facts["dataset"], "version": facts["version"]})
        seen = set()
        for read in found:
            key = (read["dataset"], int(read["version"]))
            if key in seen:
                continue
            seen.add(key)
            try:
                self.ex.data.record_read(key[0], key[1], "run", tracking_run_id, self.actor)
                self.ex.data.record_read(key[0], key[1], "pipeline_run", self.run_id, self.actor)
            except (InvalidInput, NotFound):
                log.warning("node %s: could not record that it read %s@%s", node_id, *key)

    def _finish(self) -> None:
        failed = [n for n in self.bound.order if self.status.get(n) == FAILED]
        waiting = [n for n in self.chosen if self.status.get(n) == PENDING]
        for node in waiting:  # only in one-node (outside orchestrator) mode: inputs not ready yet
            self.set_node(node, SKIPPED, error="skipped: its inputs were not available", finished_at=now_ms())
        if self.external:
            record = self.ex.runs.get(self.run_id)
            if any(n.status in (PENDING, RUNNING) for n in record.nodes) and not failed:
                return  # other tasks of the outside run are still to come
        status = FAILED if failed or waiting else SUCCEEDED
        error = ""
        if failed:
            first = self.ex.runs.get(self.run_id).node(failed[0])
            error = f"node {failed[0]!r} failed: {first.error}"
        self.ex.runs.update_run(self.run_id, status=status, error=error, finished_at=now_ms(), heartbeat_at=now_ms())
        if self.parent_run:
            try:
                self.ex.tracking.end_run(self.parent_run, "FINISHED" if status == SUCCEEDED else "FAILED")
            except Exception:  # noqa: BLE001 - ended already by an earlier task of an outside run
                log.debug("parent run already ended", exc_info=True)

    def abort(self, reason: str) -> None:
        for _pid, (worker, job) in list(self.running.items()):
            if worker is not None and self.pool is not None:
                self.pool.discard(worker)
            self.set_node(job.node.node.id, FAILED, error=f"stopped: {reason}", finished_at=now_ms())
        self.running.clear()
        try:
            self.ex.runs.update_run(self.run_id, status=FAILED, error=reason, finished_at=now_ms())
            if self.parent_run:
                self.ex.tracking.end_run(self.parent_run, "KILLED")
        except Exception:  # noqa: BLE001 - keep the original error
            log.warning("could not record the end of run %s", self.run_id, exc_info=True)


def finalize_external(ex: PipelineExecutor, pipeline: str, external_id: str) -> PipelineRunRecord:
    """Close the run an outside orchestrator drove: nodes it never ran are skipped, then the status is set."""
    run_id = ex.runs.find_external(pipeline, external_id)
    if run_id is None:
        raise NotFound(f"no run of {pipeline!r} for outside run {external_id!r}", {"field": "external_id"})
    record = ex.runs.get(run_id)
    ts = now_ms()
    for node in record.nodes:
        if node.status in (PENDING, RUNNING):
            ex.runs.update_node(run_id, node.node_id, status=SKIPPED, finished_at=ts,
                                error="skipped: the outside orchestrator did not run it")
    record = ex.runs.get(run_id)
    failed = [n for n in record.nodes if n.status in (FAILED, SKIPPED)]
    status = FAILED if failed else SUCCEEDED
    error = f"node {failed[0].node_id!r}: {failed[0].error}" if failed else ""
    ex.runs.update_run(run_id, status=status, error=error, finished_at=ts)
    if record.tracking_run_id:
        try:
            ex.tracking.end_run(record.tracking_run_id, "FINISHED" if status == SUCCEEDED else "FAILED")
        except Exception:  # noqa: BLE001 - already ended
            log.debug("parent run already ended", exc_info=True)
    return ex.runs.get(run_id)
