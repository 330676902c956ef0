"""``EnvModel``: a ``LoadedModel`` whose model runs in a worker process in its own environment.

The serving engine uses it as any loaded model: the signature, input example, expected output and
MLmodel document are read here from the package's files (no model code runs in the server), and
``predict``, ``predict_array`` and ``predict_pyfunc`` send the batch to the worker
(``shipyard.models.env_worker``) over its stdin/stdout and return what the model returned there.

Calls to one worker go one at a time. A call that takes longer than ``timeout_s`` gets
``Overloaded`` (503) and the worker is restarted, so a stuck model never holds the next request;
a worker that died is started again by the next call. Errors the model raised in the worker come
back as the same classes (``SchemaMismatch`` 400, ``ModelError`` 500 naming the exception), so the
engine's error boundary treats them as it treats an in-process model's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from shipyard import errors
from shipyard.errors import ModelError, Overloaded, ShipyardError
from shipyard.models import mlmodel as mm
from shipyard.models.env_worker import HEADER, MAX_FRAME, decode_value, encode_value
from shipyard.models.environment import ModelEnvironment, clean_environment, link_runtime
from shipyard.models.loaded import LoadedModel
from shipyard.models.signature import Signature

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 300.0


class WorkerGone(Exception):
    """The worker exited or stopped answering; the message says which and carries its log's tail."""


class EnvWorker:
    """One long-lived worker process serving the package in ``model_dir`` from ``env``."""

    def __init__(self, model_dir: Path, env: ModelEnvironment, log_path: Path, label: str) -> None:
        self.model_dir = model_dir
        self.env = env
        self.log_path = log_path
        self.label = label
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.starts = 0

    # -- process ------------------------------------------------------------------------------------
    def start(self, timeout_s: float = LOAD_TIMEOUT_S) -> dict[str, Any]:
        """Start the worker and wait until it loaded the model; its ``info``."""
        runtime = link_runtime(self.env)
        variables = clean_environment()
        variables.update({"PYTHONPATH": str(runtime), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                          "HOME": str(Path(self.env.path))})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logfile:
            proc = subprocess.Popen([self.env.python, "-m", "shipyard.models.env_worker", str(self.model_dir)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logfile,
                                    env=variables, cwd=self.env.path, start_new_session=True)
        self._proc = proc
        self.starts += 1
        try:
            hello = self._receive(proc, timeout_s)
        except WorkerGone as exc:
            self.stop()
            raise ModelError(f"{self.label}: its worker did not start ({exc})", {"log": str(self.log_path)}) from None
        if not hello.get("ok"):
            self.stop()
            raise _raise_from(hello.get("error") or {}, f"{self.label} could not be loaded in its environment")
        self.info = dict(hello.get("info") or {})
        return self.info

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the worker ends at end of input
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- calls ----------------------------------------------------------------------------------------
    def call(self, request: dict[str, Any], timeout_s: float) -> object:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                self.stop()
                self.start()
                proc = self._proc
            assert proc is not None and proc.stdin is not None
            body = json.dumps(request, default=_default).encode("utf-8")
            try:
                proc.stdin.write(HEADER.pack(len(body)) + body)
                proc.stdin.flush()
                reply = self._receive(proc, timeout_s)
            except (OSError, WorkerGone) as exc:
                timed_out = isinstance(exc, WorkerGone) and "did not answer" in str(exc)
                self.stop()
                if timed_out:
                    raise Overloaded(f"{self.label}: its worker did not answer within {timeout_s:g} s and was "
                                     "restarted; retry", {"retry_after": 1, "timeout_s": timeout_s}) from None
                raise ModelError(f"{self.label}: its worker exited while scoring ({exc}); it starts again on the "
                                 "next request", {"log": str(self.log_path), "exception": "WorkerExited"}) from None
        if not reply.get("ok"):
            raise _raise_from(reply.get("error") or {})
        return decode_value(reply.get("out") or {})

    def _receive(self, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
        out = proc.stdout
        assert out is not None
        head = _read(out, HEADER.size, timeout_s, proc, self)
        (size,) = HEADER.unpack(head)
        if size > MAX_FRAME:
            raise WorkerGone(f"it sent a frame of {size} bytes")
        return json.loads(_read(out, size, timeout_s, proc, self))

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def _read(out: IO[bytes], size: int, timeout_s: float, proc: subprocess.Popen[bytes], worker: EnvWorker) -> bytes:
    deadline = time.monotonic() + timeout_s
    fd = out.fileno()
    chunks, left = [], size
    while left:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not ready:
            raise WorkerGone(f"it did not answer within {timeout_s:g} s")
        chunk = os.read(fd, left)
        if not chunk:
            code = proc.wait(5)
            tail = worker.log_tail()
            raise WorkerGone(f"it exited with code {code}" + (f"; its log ends: {tail}" if tail else ""))
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _default(value: Any) -> Any:
    from shipyard.models.env_worker import _json_default

    return _json_default(value)


def _raise_from(error: Mapping[str, Any], prefix: str = "") -> ShipyardError:
    """The ShipyardError the worker reported, as the same class (a ModelError when unknown)."""
    cls = getattr(errors, str(error.get("class") or ""), None)
    if not (isinstance(cls, type) and issubclass(cls, ShipyardError)):
        cls = ModelError
    message = str(error.get("message") or "the model failed in its environment")
    return cls(f"{prefix}: {message}" if prefix else message, dict(error.get("details") or {}))


class EnvModel(LoadedModel):
    """A model served by an ``EnvWorker`` (see the module docstring)."""

    def __init__(self, model_dir: Path, env: ModelEnvironment, *, log_path: Path, label: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.worker = EnvWorker(model_dir, env, log_path, label)
        self.timeout_s = timeout_s
        info = self.worker.start()
        doc = mm.read_mlmodel(model_dir)
        record = mm.read_shipyard_file(model_dir)
        classes = info.get("classes")
        super().__init__(str(info.get("flavor") or record.get("flavor") or "unknown"), None,
                         predict_frame=self._unused, classes=classes)
        from shipyard.models.package import decode_output, read_input_example

        self.signature = Signature.from_mlmodel(doc.get("signature"))
        self.mlmodel = doc
        self.path = model_dir
        self.input_example = read_input_example(model_dir, doc)
        if "expected_output" in record:
            self.expected_output = decode_output(record["expected_output"])
        self.metadata = {**(doc.get("metadata") or {}), "flavor": self.flavor, "environment": env.key,
                         "environment_python": info.get("python"),
                         "saved_by": "shipyard" if doc.get("shipyard_version") else "mlflow"}
        self.environment = env

    @staticmethod
    def _unused(_data: Any) -> Any:  # pragma: no cover - every call goes to the worker
        raise ModelError("the model runs in its worker process")

    @property
    def has_fast_path(self) -> bool:
        return bool(self.worker.info.get("has_fast_path"))

    @property
    def pyfunc_is_predict(self) -> bool:
        return bool(self.worker.info.get("pyfunc_is_predict", True))

    @property
    def packages(self) -> dict[str, str]:
        """Distributions installed in the model's environment (name: version)."""
        return dict(self.worker.info.get("packages") or {})

    def predict(self, data: Any, *, labels: bool = False) -> object:
        return self.worker.call({"op": "predict", "data": encode_value(data), "labels": labels}, self.timeout_s)

    def predict_array(self, X: np.ndarray, *, labels: bool = False) -> object:
        X = np.asarray(X, dtype=np.float64)
        return self.worker.call({"op": "predict_array", "data": encode_value(X), "labels": labels}, self.timeout_s)

    def predict_pyfunc(self, data: Any, params: Mapping[str, Any] | None = None) -> object:
        return self.worker.call({"op": "predict_pyfunc", "data": encode_value(data),
                                 "params": dict(params) if params else None}, self.timeout_s)

    def close(self) -> None:
        self.worker.stop()

    def __repr__(self) -> str:
        return (f"EnvModel(flavor={self.flavor!r}, environment={self.environment.key!r}, "
                f"pid={self.worker.pid}, path={str(self.path)!r})")
