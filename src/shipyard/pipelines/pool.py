"""A small pool of worker processes that run nodes in parallel.

Workers are started on demand (``python -m shipyard.pipelines.worker_main``) with the secret key removed
from their environment, kept warm between nodes (and between runs when the pool is shared, as the
scheduler does), and killed when a node overruns its timeout. A worker that dies mid-node is noticed
by its closed pipe and reported as that node's failure.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.secrets import scrubbed_environ

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    job: Any = None  # what the executor is waiting on
    deadline: float | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request, default=str) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        """The reply to the request in flight (call after ``ready`` said this worker has output)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=5)
            return {"ok": False, "error": f"the worker process exited with code {code} while running the node "
                                          "(killed, out of memory or crashed)", "metrics": {}}
        return json.loads(line)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill always ends a process
            log.warning("worker %d did not exit after SIGKILL", self.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class _Reserved:
    """Holds a place in the busy list while a new worker starts (outside the lock)."""


class WorkerPool:
    """At most ``size`` workers; ``acquire`` gives an idle one (starting it when needed)."""

    def __init__(self, size: int = 2, *, stderr_path: Path | None = None) -> None:
        if size < 1:
            raise ShipyardError(f"a worker pool needs at least one worker, got {size}")
        self.size = size
        self.stderr_path = stderr_path
        self._idle: list[Worker] = []
        self._busy: list[Worker] = []
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def _spawn(self) -> subprocess.Popen[str]:
        stderr: Any = subprocess.DEVNULL
        if self.stderr_path is not None:
            self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "shipyard.pipelines.worker_main"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, env=scrubbed_environ(), text=True, bufsize=1)
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()

    @staticmethod
    def _await_ready(proc: subprocess.Popen[str]) -> Worker:
        worker = Worker(proc)
        ready = wait([proc.stdout], timeout=START_TIMEOUT_S)  # type: ignore[list-item]
        first = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not first or not json.loads(first).get("ready"):
            worker.kill()
            raise ShipyardError("a pipeline worker process did not start; run `python -m shipyard.pipelines.worker_main` "
                                "to see why")
        return worker

    def _start(self) -> Worker:
        return self._await_ready(self._spawn())

    @property
    def free(self) -> int:
        with self._lock:
            return self.size - len(self._busy)

    def acquire(self, timeout: float | None = None) -> Worker:
        """An idle worker, starting one when fewer than ``size`` exist; waits while all are busy (several
        runs may share one pool)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._freed:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy.append(worker)
                        return worker
                if len(self._busy) < self.size:
                    placeholder = _Reserved()
                    self._busy.append(placeholder)  # type: ignore[arg-type]
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ShipyardError(f"no pipeline worker became free within {timeout} s")
                self._freed.wait(left)
        try:
            worker = self._start()
        except BaseException:
            with self._freed:
                self._busy.remove(placeholder)  # type: ignore[arg-type]
                self._freed.notify()
            raise
        with self._freed:
            if placeholder in self._busy:
                self._busy[self._busy.index(placeholder)] = worker  # type: ignore[arg-type]
                return worker
        worker.kill()  # the pool was closed while this worker started
        raise ShipyardError("the worker pool was closed")

    def release(self, worker: Worker) -> None:
        worker.job, worker.deadline = None, None
        with self._freed:
            if worker in self._busy:
                self._busy.remove(worker)
            if worker.alive():
                self._idle.append(worker)
            self._freed.notify()

    def discard(self, worker: Worker) -> None:
        """Kill a worker (timeout, crash) and forget it; the next acquire starts a fresh one."""
        worker.kill()
        with self._freed:
            for group in (self._busy, self._idle):
                if worker in group:
                    group.remove(worker)
            self._freed.notify()

    def ready(self, workers: list[Worker], timeout: float) -> list[Worker]:
        """Workers among ``workers`` with a reply (or a closed pipe) within ``timeout`` seconds."""
        by_stream = {w.proc.stdout: w for w in workers if w.proc.stdout is not None}
        if not by_stream:
            time.sleep(max(timeout, 0))
            return []
        return [by_stream[s] for s in wait(list(by_stream), timeout=max(timeout, 0))]  # type: ignore[index]

    def warm(self, count: int | None = None) -> None:
        """Start up to ``count`` idle workers at once (their imports overlap), ahead of need."""
        with self._lock:
            missing = min(count or self.size, self.size) - len(self._idle) - len(self._busy)
            if missing <= 0:
                return
            reserved = [_Reserved() for _ in range(missing)]
            self._busy.extend(reserved)  # type: ignore[arg-type]
        procs = [self._spawn() for _ in reserved]
        workers: list[Worker] = []
        try:
            for proc in procs:
                workers.append(self._await_ready(proc))
        finally:
            with self._freed:
                for item in reserved:
                    if item in self._busy:
                        self._busy.remove(item)  # type: ignore[arg-type]
                for worker in workers:
                    self._idle.append(worker)
                self._freed.notify_all()

    def close(self) -> None:
        with self._lock:
            workers = [w for w in self._idle + self._busy if isinstance(w, Worker)]
            self._idle, self._busy = [], []
        for worker in workers:
            try:
                if worker.proc.stdin is not None:
                    worker.proc.stdin.close()  # an idle worker exits on end of input
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for worker in workers:
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
        for worker in workers:
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
