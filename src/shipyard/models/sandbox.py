"""The validation process: a pre-imported template that runs each job in a fresh fork of itself.

``python -m shipyard.models.sandbox`` imports what model packages usually need (NumPy, pandas,
scikit-learn, skops, Shipyard's model code; XGBoost and LightGBM afterwards, while idle), then reads
``ValidationJob`` documents, one JSON line each, from stdin. For every job it forks: the child
runs ``validation.check_package`` — verify a private copy of the files against the recorded
sha256, then load and check it — writes the result to a pipe and exits, so no model ever runs in
the template or in a process another model ran in. The template answers one JSON line per job on
stdout: ``{"id": ..., "result": {...}}``, or ``{"id": ..., "error": ...}`` when the child died
(a crash, a signal, or ``JOB_TIMEOUT_S`` passing). It exits when stdin closes and its children
have finished.

The template starts with the environment ``validator.clean_environment`` builds (no settings,
no credentials) and in a scratch folder; each child writes its output to the job's log file.
Before it reads the model, each child confines itself with Landlock (``confine.py``): it can then
read only the Python installation, a few system files and the model's stored folder, and write
only its own working folder (``work`` of the job, made and removed by the template) — never the
project's ``.shipyard/`` folder with the admin token and the secret key. Where the kernel cannot
confine it, the child says so in its result and ``check_package`` refuses packages that run code
unless the job allows unconfined validation.

``python -m shipyard.models.sandbox --once`` runs a single job read from stdin in-process, for
platforms without ``fork``.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

JOB_TIMEOUT_S = 600.0
#: imported before the first job is read: what a scikit-learn package needs
FIRST = ("numpy", "pandas", "sklearn", "sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing",
         "skops.io", "shipyard.models.package", "shipyard.models.validation", "shipyard.models.flavors.sklearn")
#: imported one at a time while no job is waiting or running (a job arriving first imports what it needs)
LATER = ("sklearn.compose", "sklearn.tree", "sklearn.ensemble", "cloudpickle", "shipyard.models.flavors.python_model",
         "xgboost", "shipyard.models.flavors.xgboost", "lightgbm", "shipyard.models.flavors.lightgbm")


def preimport(names: tuple[str, ...] = FIRST) -> None:
    for name in names:
        _import(name)


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        pass


def run_job(doc: dict[str, Any], confinement: str = "") -> dict[str, Any]:
    """One job in this process: the result document (``ValidationResult.to_dict``). ``confinement``
    describes the restriction this process is under ("" when it is under none)."""
    from shipyard.models.validation import ValidationJob, check_package

    job = ValidationJob.from_dict(doc)
    result = check_package(job, confinement=confinement)
    print(f"{job.label}: {'validated' if result.ok else 'failed'} {result.reason}".rstrip(), flush=True)
    return result.to_dict()


def enter_confinement(doc: dict[str, Any]) -> str:
    """Make the job's working folder this process's home, temporary and current folder, then
    confine the process to what validating the job's model needs (see ``confine.py``). Returns
    the confinement's summary, or "" (the reason printed to the job's log) when there is none."""
    from shipyard.models.confine import confine, validation_rules

    work = str(doc.get("work") or "") or tempfile.mkdtemp(prefix="shipyard-job-")
    os.environ["HOME"] = os.environ["TMPDIR"] = work
    tempfile.tempdir = work
    os.chdir(work)
    read, write, left_out = validation_rules(str(doc.get("folder") or ""), work, list(doc.get("private") or ()))
    if left_out:
        print(f"left out of the validation's reach (they contain the project's private files): {left_out}",
              flush=True)
    try:
        applied = confine(read=read, write=write)
    except OSError as exc:
        print(f"the validation process is not confined: {exc.strerror or exc}", flush=True)
        return ""
    return applied.summary()


@dataclass
class _Child:
    job_id: str
    pid: int
    fd: int
    deadline: float
    work: str = ""
    chunks: list[bytes] = field(default_factory=list)


class Template:
    """The fork server's loop (see module doc). Single-threaded, so forking is safe."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, _Child] = {}
        self.pending = b""
        self.open = True
        self.later = list(LATER)

    def serve(self) -> None:
        self.selector.register(0, selectors.EVENT_READ, None)
        while self.open or self.children:
            timeout = None
            if self.children:
                timeout = max(0.0, min(c.deadline for c in self.children.values()) - time.monotonic())
            elif self.later:
                timeout = 0.0
            events = self.selector.select(timeout)
            if not events and self.later and not self.children:
                _import(self.later.pop(0))  # idle: warm the next optional library
            for key, _ in events:
                if key.data is None:
                    self._read_jobs()
                else:
                    self._read_child(key.data)
            now = time.monotonic()
            for child in [c for c in self.children.values() if c.deadline <= now]:
                _kill(child.pid)
                self._finish(child, f"the validation did not finish within {JOB_TIMEOUT_S:g} s and was stopped")

    def _read_jobs(self) -> None:
        data = os.read(0, 1 << 16)
        if not data:
            self.open = False
            self.selector.unregister(0)
            return
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if line.strip():
                self._start(json.loads(line))

    def _start(self, doc: dict[str, Any]) -> None:
        # the job's working folder: the confined child may write only there, so the template
        # (unconfined) makes it and removes it when the child is done
        doc = {**doc, "work": tempfile.mkdtemp(prefix="shipyard-job-")}
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            self._child(doc, write_fd)
        os.close(write_fd)
        child = _Child(str(doc.get("id", "")), pid, read_fd, time.monotonic() + JOB_TIMEOUT_S, doc["work"])
        self.children[read_fd] = child
        self.selector.register(read_fd, selectors.EVENT_READ, child)

    def _child(self, doc: dict[str, Any], write_fd: int) -> None:
        code = 0
        try:
            self.selector.close()
            for fd in list(self.children):
                os.close(fd)
            os.close(self.out.fileno())  # the answer channel belongs to the template
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _redirect_output(str(doc.get("log") or ""))
            confinement = enter_confinement(doc)
            payload = json.dumps(run_job(doc, confinement)).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave
            code = 1
            try:
                print(f"validation process error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            except Exception:  # noqa: BLE001
                pass
        finally:
            os._exit(code)

    def _read_child(self, child: _Child) -> None:
        chunk = os.read(child.fd, 1 << 16)
        if chunk:
            child.chunks.append(chunk)
            return
        self._finish(child, None)

    def _finish(self, child: _Child, error: str | None) -> None:
        self.selector.unregister(child.fd)
        os.close(child.fd)
        del self.children[child.fd]
        _, status = os.waitpid(child.pid, 0)
        shutil.rmtree(child.work, ignore_errors=True)
        message: dict[str, Any] = {"id": child.job_id}
        body = b"".join(child.chunks)
        if error is None and body:
            try:
                message["result"] = json.loads(body)
            except json.JSONDecodeError:
                error = "the validation process sent an unreadable result"
        if "result" not in message:
            code = os.waitstatus_to_exitcode(status)
            message["error"] = error or (f"the validation process exited with code {code} before reporting a "
                                         "result (it crashed or was killed); see the version's validation log")
            message["exit_code"] = code
        self.out.write(json.dumps(message).encode() + b"\n")
        self.out.flush()


def _redirect_output(log: str) -> None:
    """stdin from /dev/null; stdout and stderr to the job's log file (or nowhere)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    target = os.open(log, flags, 0o600) if log else os.open(os.devnull, os.O_WRONLY)
    os.dup2(target, 1)
    os.dup2(target, 2)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--once"]:
        doc = json.loads(sys.stdin.read())
        answer = os.fdopen(os.dup(1), "w")
        _redirect_output(str(doc.get("log") or ""))
        confinement = enter_confinement(doc)  # the caller made doc["work"] and removes it
        answer.write(json.dumps({"id": doc.get("id", ""), "result": run_job(doc, confinement)}) + "\n")
        answer.flush()
        return 0
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of imported libraries must not reach the answer channel
    preimport()
    Template(out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
