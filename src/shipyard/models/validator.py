"""The registry's side of out-of-process validation: a warm template process, one fork per job.

A registry process keeps one ``shipyard.models.sandbox`` template (started on first use, shared
by every workspace of the process). The template has already imported NumPy, pandas,
scikit-learn and Shipyard's model code, so a job costs a ``fork`` and the checks themselves, not a
fresh interpreter's imports. ``submit(job)`` returns a ``Future`` of the ``ValidationResult``.

What the validation process gets: the ``ValidationJob`` (a local folder, the recorded sha256, the
checks' settings) and ``clean_environment()`` — the locale, ``PATH``, thread-count variables and
the ``PYTHONPATH`` that finds this Shipyard, nothing else: no ``SHIPYARD_*`` setting, no database
URL, no token or cloud credential. It starts in an empty scratch folder, and each job confines
its process with Landlock before reading the model (``sandbox.enter_confinement``).

On platforms without ``fork`` each job runs in its own clean interpreter
(``python -m shipyard.models.sandbox --once``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from shipyard.models.validation import ValidationJob, ValidationResult

log = logging.getLogger(__name__)

#: variables the validation process keeps: locale, search path, thread counts — never secrets
KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT", "PYTHONHASHSEED",
                  "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CLOSE_WAIT_S = 120.0


def clean_environment(home: str | Path) -> dict[str, str]:
    """The validation process's whole environment (see module doc)."""
    env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    import shipyard

    source = str(Path(shipyard.__file__).resolve().parents[1])
    search = [source] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != source]
    env["PYTHONPATH"] = os.pathsep.join(search)
    env["HOME"] = str(home)
    env["TMPDIR"] = tempfile.gettempdir()
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _forking() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


Then = Callable[[ValidationResult], None]


class ValidationWorker:
    """One template process and the jobs waiting for it (see module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: dict[str, tuple[Future[ValidationResult], Then | None]] = {}
        self.pid = os.getpid()
        self._scratch = Path(tempfile.mkdtemp(prefix="shipyard-validator-"))
        os.chmod(self._scratch, 0o700)

    def start(self) -> None:
        """Start the template now (its imports then overlap the caller's own work)."""
        if _forking():
            with self._lock:
                self._ensure()

    def submit(self, job: ValidationJob, then: Then | None = None) -> Future[ValidationResult]:
        """Run ``job``; ``then(result)`` runs before the returned future completes (so waiting on
        the future, as ``close`` does at exit, also waits for what the caller does with it)."""
        job_id = uuid.uuid4().hex
        future: Future[ValidationResult] = Future()
        line = json.dumps({**job.to_dict(), "id": job_id}).encode() + b"\n"
        if not _forking():
            with self._lock:
                self._pending[job_id] = (future, then)
            threading.Thread(target=self._run_once, args=(job_id, line), daemon=True).start()
            return future
        with self._lock:
            proc = self._ensure()
            self._pending[job_id] = (future, then)
            try:
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
            except OSError as exc:  # the template died just now: the reader fails every pending job
                log.warning("validation template is gone: %s", exc)
        return future

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.models.sandbox"], env=clean_environment(self._scratch),
            cwd=self._scratch, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._proc = proc
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc, proc.stdout), name="shipyard-validator",
                         daemon=True).start()
        return proc

    def _read(self, proc: subprocess.Popen[bytes], out: IO[bytes]) -> None:
        for line in out:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                entry = self._pending.get(str(message.get("id")))
            if entry is not None:
                _complete(entry, _result(message))
                with self._lock:
                    self._pending.pop(str(message.get("id")), None)
        code = proc.wait()
        with self._lock:
            if self._proc is proc:
                self._proc = None
                lost, self._pending = self._pending, {}
            else:
                lost = {}
        for entry in lost.values():
            _complete(entry, ValidationResult(False, f"the validation process exited with code {code} before "
                                              "reporting a result; run validate() again", {"exit_code": code}))

    def _run_once(self, job_id: str, line: bytes) -> None:
        # the job's working folder, the only one the (confined) validation process may write to
        work = tempfile.mkdtemp(prefix="shipyard-job-", dir=self._scratch)
        doc = {**json.loads(line), "work": work}
        try:
            done = subprocess.run([sys.executable, "-m", "shipyard.models.sandbox", "--once"],
                                  input=json.dumps(doc).encode(), capture_output=True,
                                  env=clean_environment(self._scratch), cwd=self._scratch, check=False)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        answer = done.stdout.strip().splitlines()[-1:] if done.stdout else []
        message = json.loads(answer[0]) if answer else {
            "error": f"the validation process exited with code {done.returncode} before reporting a result",
            "exit_code": done.returncode}
        with self._lock:
            entry = self._pending[job_id]
        _complete(entry, _result(message))
        with self._lock:
            self._pending.pop(job_id, None)

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Let running jobs finish (up to ``timeout`` s), then stop the template."""
        if self.pid != os.getpid():
            return  # inherited through a fork: the template belongs to the parent
        with self._lock:
            pending = [future for future, _ in self._pending.values()]
        for future in pending:
            try:
                future.result(timeout)
            except Exception:  # noqa: BLE001 - a job that fails to finish is reported by its waiter
                pass
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()  # no job left: it may only be warming optional imports
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _complete(entry: tuple[Future[ValidationResult], Then | None], result: ValidationResult) -> None:
    future, then = entry
    if then is not None:
        try:
            then(result)
        except Exception:  # noqa: BLE001 - the waiter sees the version still unfinished and says so
            log.warning("recording a validation result failed", exc_info=True)
    future.set_result(result)


def _result(message: dict[str, object]) -> ValidationResult:
    doc = message.get("result")
    if isinstance(doc, dict):
        return ValidationResult.from_dict(doc)
    return ValidationResult(False, str(message.get("error") or "the validation process failed"),
                            {"exit_code": message.get("exit_code")})


_worker: ValidationWorker | None = None
_worker_lock = threading.Lock()


def shared_worker() -> ValidationWorker:
    """The process's validation worker (created on first use, stopped at exit; a forked child of
    the process gets its own, never its parent's template)."""
    global _worker
    with _worker_lock:
        if _worker is None or _worker.pid != os.getpid():
            _worker = ValidationWorker()
            atexit.register(_worker.close)
        return _worker
