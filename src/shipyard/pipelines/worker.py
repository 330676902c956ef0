"""Running one node: load its inputs, call the component, store its outputs.

``execute_node`` does the work, in this process (``workers=0``) or in a worker process
(``worker_main.py``, which reads the requests). While a node runs, the process's stdout/stderr (file
descriptors 1 and 2, so C libraries too) and the logging records go to the node's log file. The
caller hands in how to open the workspace a component may ask for (``ctx.workspace``): this module
sits below the workspace and never opens one itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.artifacts import ArtifactStore
from shipyard.pipelines.components import resolve_component
from shipyard.pipelines.context import NodeContext
from shipyard.pipelines.types import decode, encode

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

OBJECTS_PREFIX = "pipelines/objects"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_stores: dict[str, ArtifactStore] = {}


def object_path(sha256: str, extension: str) -> str:
    return f"{OBJECTS_PREFIX}/{sha256[:2]}/{sha256}.{extension}"


def artifact_store(settings: dict[str, Any]) -> ArtifactStore:
    key = json.dumps([settings["artifact_root"], settings.get("artifact_options") or {}], sort_keys=True)
    if key not in _stores:
        _stores[key] = ArtifactStore(settings["artifact_root"], settings.get("artifact_options") or {})
    return _stores[key]


@contextlib.contextmanager
def _fd_capture(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (Python and C output alike) to the log file for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for item in (*saved, fd):
            os.close(item)


@contextlib.contextmanager
def _py_capture(log_path: Path) -> Iterator[None]:
    with open(log_path, "a", encoding="utf-8") as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        yield


@contextlib.contextmanager
def _log_records(log_path: Path) -> Iterator[None]:
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    if previous > logging.INFO or previous == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def _split_result(result: Any, names: list[str], node: str) -> dict[str, Any]:
    if len(names) == 1:
        return {names[0]: result}
    if isinstance(result, tuple) and len(result) == len(names):
        return dict(zip(names, result, strict=True))
    if isinstance(result, dict) and set(result) == set(names):
        return result
    raise TypeError(f"node {node!r} must return a dict with keys {names} (or a tuple in that order), "
                    f"got {type(result).__name__}")


def execute_node(request: dict[str, Any], *, capture: str = "fd",
                 workspace: Callable[[], Workspace] | None = None) -> dict[str, Any]:
    """Run the node a request describes; returns the reply (outputs and metrics, or the error).
    ``workspace`` opens the project for ``ctx.workspace``, on first use only."""
    node = request["node"]
    log_path = Path(request["log_path"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    settings = request["settings"]
    start = time.perf_counter()
    capturing = _fd_capture if capture == "fd" else _py_capture
    ctx = None
    try:
        with capturing(log_path), _log_records(log_path):
            artifacts = artifact_store(settings)
            comp = resolve_component(request["component"], Path(request["base_dir"]), node)
            ctx = NodeContext(node, run_id=request.get("tracking_run_id"), pipeline_run_id=request["run_id"],
                              resolved=request.get("resolved") or {}, out_dir=Path(request["out_dir"]),
                              artifacts=artifacts, workspace=workspace)
            kwargs = dict(request["params"])
            for port, ref in request["inputs"].items():
                kwargs[port] = decode(ref["type"], artifacts.get_bytes(ref["path"], expected_sha256=ref["sha256"]))
            if comp.takes_context:
                kwargs["ctx"] = ctx
            logging.getLogger("shipyard.pipelines").info("node %s: %s started", node, comp.name)
            result = comp.func(**kwargs)
            values = _split_result(result, [p.name for p in comp.outputs], node)
            outputs = {}
            for port in comp.outputs:
                encoded = encode(port.type, values[port.name], f"node {node!r} output {port.name!r}")
                path = object_path(encoded.sha256, encoded.extension)
                if not artifacts.exists(path):
                    artifacts.put_bytes(path, encoded.data)
                outputs[port.name] = {"path": path, "sha256": encoded.sha256, "size": len(encoded.data),
                                      "type": port.type, "summary": encoded.summary}
            logging.getLogger("shipyard.pipelines").info("node %s finished in %.3f s", node,
                                                         time.perf_counter() - start)
        return {"ok": True, "outputs": outputs, "metrics": ctx.metrics, "params": ctx.params, "reads": ctx.reads,
                "duration_s": time.perf_counter() - start}
    except BaseException as exc:  # noqa: BLE001 - every failure of user code becomes the node's error
        if isinstance(exc, KeyboardInterrupt | SystemExit) and capture != "fd":
            raise
        text = traceback.format_exc()
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(text)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return {"ok": False, "error": f"{type(exc).__name__}: {message}", "traceback": text,
                "metrics": ctx.metrics if ctx else {}, "duration_s": time.perf_counter() - start}
