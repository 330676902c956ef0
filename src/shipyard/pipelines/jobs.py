"""Job kinds the scheduler can run, and the registry other subsystems plug theirs into.

Built in:

``pipeline``         target: a pipeline file or stored pipeline name; args: ``params``, ``workers``
``retrain``          like ``pipeline``; with ``when_new_data: DATASET`` it runs only after that dataset
                     has a version the last successful retrain did not see
``dataset_refresh``  target: a dataset name; args: ``chunk_rows``, ``force``
``materialize``      incremental materialization of feature views; args: ``views``
``python``           target: ``module:function`` called with the job's args in a separate process
                     that never sees the secret key; honours the schedule's ``timeout_s``

Another subsystem adds its own (daily reports, alert evaluation) with::

    from shipyard.pipelines.jobs import register_job_kind

    def evaluate_alerts(job: JobContext) -> dict:
        ...                                     # job.ws, job.args, job.log, job.slot_at
        return {"fired": 2}                     # kept in the run's history

    register_job_kind("alert_evaluation", evaluate_alerts, description="evaluate alert rules")

or by an entry point in the ``shipyard.job_kinds`` group naming such a function's module (imported
when the registry is first read, so its ``register_job_kind`` calls run).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, ModelError

if TYPE_CHECKING:
    from shipyard.pipelines.pool import WorkerPool
    from shipyard.workspace import Workspace

ENTRY_POINT_GROUP = "shipyard.job_kinds"
_KINDS: dict[str, JobKind] = {}
_lock = threading.Lock()
_loaded_entry_points = False


@dataclass
class JobContext:
    ws: Workspace
    schedule: str
    run_id: str
    slot_at: int
    trigger: str
    target: str
    args: dict[str, Any]
    log: logging.Logger
    timeout_s: float | None = None
    pool: WorkerPool | None = None


JobFn = Callable[[JobContext], Mapping[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: JobFn
    validate: Callable[[str, dict[str, Any]], None] | None = None
    description: str = ""


def register_job_kind(name: str, run: JobFn, *, validate: Callable[[str, dict[str, Any]], None] | None = None,
                      description: str = "") -> None:
    """Make ``name`` usable as a schedule's kind. Registering a name again replaces it."""
    if not name or not name.replace("_", "").isalnum():
        raise InvalidInput(f"job kind name {name!r} must be letters, digits and '_'", {"field": "kind"})
    with _lock:
        _KINDS[name] = JobKind(name, run, validate, description)


def job_kinds() -> dict[str, JobKind]:
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception:  # noqa: BLE001 - a broken plugin must not stop the scheduler
                logging.getLogger(__name__).warning("job kind plugin %s failed to load", ep.name, exc_info=True)
    with _lock:
        return dict(_KINDS)


# -- built-in kinds ----------------------------------------------------------------------------------
def _need_target(what: str) -> Callable[[str, dict[str, Any]], None]:
    def validate(target: str, args: dict[str, Any]) -> None:
        if not target:
            raise InvalidInput(f"this job kind needs a target: {what}", {"field": "target"})

    return validate


def _run_pipeline(job: JobContext) -> dict[str, Any]:
    params = job.args.get("params") or {}
    record = job.ws.pipelines.run(job.target, params=params, workers=int(job.args.get("workers", 2)),
                                  actor=f"scheduler:{job.schedule}", pool=job.pool)
    job.log.info("pipeline run %s: %s %s", record.id, record.status, record.error)
    result = {"pipeline_run": record.id, "status": record.status, "counts": record.counts()}
    if record.status != "succeeded":
        raise ModelError(f"pipeline run {record.id} failed: {record.error}", result)
    return result


def _run_retrain(job: JobContext) -> dict[str, Any]:
    dataset = job.args.get("when_new_data")
    seen = None
    if dataset:
        seen = job.ws.data.version(dataset).version
        last = [r for r in job.ws.schedules.history(job.schedule, limit=200)
                if r.status == "succeeded" and r.result.get("dataset_version") is not None]
        if last and last[0].result["dataset_version"] >= seen:
            job.log.info("dataset %s has no version after %s: nothing to retrain", dataset, seen)
            return {"skipped": True, "dataset_version": last[0].result["dataset_version"]}
    result = _run_pipeline(job)
    if seen is not None:
        result["dataset_version"] = seen
    return result


def _run_refresh(job: JobContext) -> dict[str, Any]:
    result = job.ws.data.refresh(job.target, actor=f"scheduler:{job.schedule}",
                                 chunk_rows=int(job.args.get("chunk_rows", 100_000)),
                                 force=bool(job.args.get("force", False)))
    v = result.version
    job.log.info("dataset %s: %s version %d (%d rows)", job.target, "new" if result.created else "unchanged",
                 v.version, v.rows)
    return {"dataset": job.target, "version": v.version, "created": result.created, "rows": v.rows}


def _run_materialize(job: JobContext) -> dict[str, Any]:
    results = job.ws.features.materialize_incremental(views=job.args.get("views"))
    rows = {str(getattr(r, "view", i)): int(getattr(r, "rows_written", 0)) for i, r in enumerate(results or [])}
    job.log.info("materialized %s", rows)
    return {"rows_written": rows}


def _validate_python(target: str, args: dict[str, Any]) -> None:
    if ":" not in target:
        raise InvalidInput(f"target {target!r} must be 'module:function'", {"field": "target"})
    json.dumps(args)


def _run_python(job: JobContext) -> dict[str, Any]:
    """The callable runs in a child process without the secret key; it ends when this process does."""
    from shipyard.secrets import scrubbed_environ

    payload = json.dumps({"target": job.target, "args": job.args, "schedule": job.schedule, "run_id": job.run_id,
                          "slot_at": job.slot_at, "project": str(job.ws.settings.project_dir)})
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.pipelines.jobs"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=scrubbed_environ(), text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(payload + "\n")
    proc.stdin.flush()  # stdin stays open while the child runs: it exits when this process goes away
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        proc.wait(timeout=job.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(5)
        job.log.info("".join(chunks).strip())
        raise ModelError(f"job {job.target} ran past its timeout of {job.timeout_s} s and was stopped",
                         {"field": "timeout_s"}) from None
    finally:
        proc.stdin.close()
    reader.join(5)
    out = "".join(chunks)
    lines = out.strip().splitlines()
    for line in lines[:-1]:
        job.log.info(line)
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        reply = {"ok": False, "error": lines[-1]}
    if proc.returncode != 0 or not reply.get("ok"):
        raise ModelError(f"job {job.target} failed: {reply.get('error') or f'exit code {proc.returncode}'}",
                         {"target": job.target})
    return dict(reply.get("result") or {})


def _child() -> None:
    """Child side of the ``python`` kind: read the payload, call the function, print a JSON reply."""
    payload = json.loads(sys.stdin.readline())

    def watch_parent() -> None:
        sys.stdin.read()  # returns when the scheduler's end of the pipe closes
        os._exit(3)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        module_name, _, attr = payload["target"].rpartition(":")
        func = importlib.import_module(module_name)
        for part in attr.split("."):
            func = getattr(func, part)
        result = func(payload["args"], {k: payload[k] for k in ("schedule", "run_id", "slot_at", "project")})
        sys.stdout.flush()
        print(json.dumps({"ok": True, "result": result if isinstance(result, dict) else {}}, default=str), flush=True)
    except BaseException as exc:  # noqa: BLE001 - reported to the scheduler
        message = getattr(exc, "message", None) or str(exc)
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {message}"}), flush=True)
        sys.exit(1)


register_job_kind("pipeline", _run_pipeline, validate=_need_target("a pipeline file or stored pipeline name"),
                  description="run a pipeline")
register_job_kind("retrain", _run_retrain, validate=_need_target("a pipeline file or stored pipeline name"),
                  description="run a training pipeline (optionally only when a dataset has a new version)")
register_job_kind("dataset_refresh", _run_refresh, validate=_need_target("a dataset name"),
                  description="refresh a dataset from its source into a new version")
register_job_kind("materialize", _run_materialize, description="incremental materialization of feature views")
register_job_kind("python", _run_python, validate=_validate_python,
                  description="call module:function(args, info) in a separate process")

__all__ = ["JobContext", "JobKind", "job_kinds", "register_job_kind"]

if __name__ == "__main__":
    _child()
