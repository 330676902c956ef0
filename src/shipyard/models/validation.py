"""Automatic validation of a registered model version.

The checks, in order: the stored files match the sha256 the registry recorded when they were
uploaded (checked on a private copy, before anything is loaded); the package unpickles nothing if
the registry refuses pickles; the model loads; it predicts on its input example — or, when it has
none, on a frame generated from its signature; the prediction matches the output recorded at save
time within ``validation_tolerance``; the fast path (``predict_array``) agrees with ``predict``;
and N single-row fast-path predictions are timed (p50/p99/mean, in milliseconds). The outcome —
``validated`` or ``failed`` with the reason — is written to the version by the registry.

A check is one ``ValidationJob``: the local folder holding the stored files, the recorded
sha256 and the settings the checks use — no database, no credentials. By default the registry
hands it to a separate, clean process (``shipyard.models.sandbox``, see ``validator.py``) so a
model that crashes, hangs or misbehaves never touches the caller or its secrets; that process
confines itself with Landlock (``confine.py``) before it reads the model, so the model's code
cannot read the project's ``.shipyard/`` folder either. Where it cannot be confined, packages that
run code when loaded are refused unless ``allow_unconfined_validation: true``.
``validation_subprocess: false`` runs the checks in-process, unconfined, by the caller's choice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    from shipyard.models.loaded import LoadedModel

log = logging.getLogger(__name__)

WARMUP_CALLS = 3
EXAMPLE_ROWS = 5


@dataclass
class ValidationResult:
    ok: bool
    reason: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ValidationResult:
        return cls(bool(doc.get("ok")), str(doc.get("reason") or ""), dict(doc.get("report") or {}))


@dataclass(frozen=True)
class ValidationJob:
    """Everything a validation needs, and nothing more: where the stored files are, the sha256
    the registry recorded for them at upload, and the settings of the checks."""

    folder: str
    sha256: str
    tolerance: float
    timing_calls: int
    allow_pickle: bool = True
    label: str = ""
    log: str = ""
    # packages that run code when loaded may be validated by a process that could not be confined
    # (allow_unconfined_validation, or validation in-process by choice)
    unconfined_code: bool = False
    # paths the validation process must never be able to read (the project's .shipyard/ folder...):
    # a read root that contains one is left out of its confinement
    private: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ValidationJob:
        values = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        if "private" in values:
            values["private"] = tuple(str(p) for p in values["private"])
        return cls(**values)


# -- the checks --------------------------------------------------------------------------------
def _as_array(value: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.to_numpy()
    return np.asarray(value)


def _head(value: Any, rows: int = 5) -> Any:
    """The first rows of an output, JSON-ready (for the report)."""
    from shipyard.models.package import plain_output

    if isinstance(value, Mapping):
        return {str(k): _head(v, rows) for k, v in value.items()}
    arr = _as_array(value)
    return plain_output(arr.item() if arr.ndim == 0 else arr[:rows])


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, separator=", ")
    return repr(value.item() if isinstance(value, np.generic) else value)


def compare_outputs(actual: Any, expected: Any, tolerance: float, what: str) -> str | None:
    """None when ``actual`` matches ``expected`` (|a-e| <= tol * (1 + |e|)); else the first difference."""
    if isinstance(actual, Mapping) or isinstance(expected, Mapping):
        if not (isinstance(actual, Mapping) and isinstance(expected, Mapping)) or \
                [str(k) for k in actual] != [str(k) for k in expected]:
            keys = list(actual) if isinstance(actual, Mapping) else type(actual).__name__
            return f"{what}: output keys {keys} differ from the recorded {list(expected) if isinstance(expected, Mapping) else type(expected).__name__}"
        for (key, value), recorded in zip(actual.items(), expected.values(), strict=True):
            problem = compare_outputs(value, recorded, tolerance, f"{what} [{key!r}]")
            if problem:
                return problem
        return None
    a, e = _as_array(actual), _as_array(expected)
    if a.ndim == 0 or e.ndim == 0:
        a, e = a.reshape(-1), e.reshape(-1)
    if a.shape != e.shape:
        if a.size == e.size and a.size > 0:
            a = a.reshape(e.shape)
        else:
            return f"{what}: output shape {a.shape} differs from the recorded shape {e.shape}"
    if a.size == 0:
        return None
    numeric = np.issubdtype(a.dtype, np.number) and np.issubdtype(e.dtype, np.number)
    if numeric:
        af, ef = a.astype(np.float64), e.astype(np.float64)
        bad = ~((np.abs(af - ef) <= tolerance * (1.0 + np.abs(ef))) | (np.isnan(af) & np.isnan(ef)))
    else:
        bad = a != e
    if not bad.any():
        return None
    flat_row = int(np.argwhere(bad)[0][0])
    row_a, row_e = a[flat_row], e[flat_row]
    if numeric and bad.ndim > 1:
        col = int(np.argwhere(bad[flat_row])[0][0])
        return f"{what} at row {flat_row}, column {col}: {_fmt(a[flat_row, col])} vs {_fmt(e[flat_row, col])}"
    return f"{what} at row {flat_row}: {_fmt(row_a)} vs {_fmt(row_e)}"


def example_array(model: LoadedModel, example: Any) -> np.ndarray:
    """The input example as the fast path's float array, in signature order."""
    import pandas as pd

    if model.signature is not None:
        X = model.signature.validate(example)
    else:
        frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
        names = model.input_names
        X = (frame[names] if names else frame).to_numpy()
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError):
            pass
    return X.reshape(1, -1) if X.ndim == 1 else X


def time_single_rows(model: LoadedModel, X: np.ndarray, calls: int) -> dict[str, float]:
    """p50/p99/mean/max latency in ms of ``calls`` one-row ``predict_array`` calls."""
    rows = [X[i : i + 1] for i in range(len(X))]
    for i in range(WARMUP_CALLS):
        model.predict_array(rows[i % len(rows)])
    samples = np.empty(calls, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(calls):
        row = rows[i % len(rows)]
        start = clock()
        model.predict_array(row)
        samples[i] = clock() - start
    ms = samples / 1e6
    return {
        "p50": round(float(np.percentile(ms, 50)), 4),
        "p99": round(float(np.percentile(ms, 99)), 4),
        "mean": round(float(ms.mean()), 4),
        "max": round(float(ms.max()), 4),
        "calls": calls,
    }


def check_model_dir(folder: Path, *, tolerance: float, timing_calls: int) -> ValidationResult:
    """Load a (sha-verified) model folder and run the prediction checks on it."""
    from shipyard.models.package import load_model

    report: dict[str, Any] = {"tolerance": tolerance, "checks": ["sha256"]}
    started = time.perf_counter()
    model = load_model(folder, trusted=True)
    report["load_ms"] = round((time.perf_counter() - started) * 1000, 3)
    report["checks"].append("load")
    example = model.input_example
    generated = example is None and model.signature is not None
    if generated:
        example = model.signature.example(EXAMPLE_ROWS)  # type: ignore[union-attr]
        report["example"] = "generated from the signature"
    if example is None:
        return ValidationResult(
            False,
            "the model has neither an input example nor a signature, so its predictions cannot be checked; "
            "save it with input_example=<a few training rows> and register it again",
            report,
        )
    try:
        output = model.predict(example)
    except ShipyardError as exc:
        if not generated:
            raise
        return ValidationResult(
            False,
            f"the model has no input example, and on {EXAMPLE_ROWS} rows generated from its signature it "
            f"failed: {exc.message}; save it with input_example=<a few training rows> and register it again",
            report,
        )
    report["checks"].append("predict")
    report["example_rows"] = int(len(example))
    if model.expected_output is not None and not generated:
        problem = compare_outputs(output, model.expected_output, tolerance,
                                  "prediction on input example differs from recorded output")
        if problem:
            return ValidationResult(False, problem + f" (tolerance {tolerance:g})", report)
        report["checks"].append("expected_output")
    else:
        report["expected_output"] = "not recorded (model saved without Shipyard); prediction recorded as baseline"
        report["baseline_output"] = _head(output)
    X = example_array(model, example)
    fast = model.predict_array(X)
    problem = compare_outputs(fast, output, tolerance, "fast path (predict_array) differs from predict")
    if problem:
        return ValidationResult(False, problem, report)
    report["checks"].append("fast_path")
    report["fast_path"] = model.has_fast_path
    if timing_calls > 0:
        report["latency_ms"] = time_single_rows(model, X, timing_calls)
        report["checks"].append("timing")
    return ValidationResult(True, "", report)


def verified_copy(source: Path, dest: Path, expected_sha256: str) -> Path:
    """Copy ``source`` to ``dest`` hashing the bytes copied; ``IntegrityError`` (and nothing left
    in ``dest``) unless they hash to ``expected_sha256``.

    The fingerprint is the artifact store's: sha256 over the sorted ``relpath<TAB>file sha256``
    lines. Loading the copy afterwards means the files loaded are the files checked, whatever
    happens to ``source`` meanwhile."""
    from shipyard.errors import IntegrityError, NotFound

    if not source.is_dir():
        raise NotFound("the stored model files are missing from the artifact store; restore them from backup "
                       "or register the model again", {"field": "artifact_path"})
    lines = []
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with file.open("rb") as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        lines.append(f"{rel.as_posix()}\t{digest.hexdigest()}\n")
    actual = hashlib.sha256("".join(lines).encode()).hexdigest()
    if actual != expected_sha256:
        shutil.rmtree(dest, ignore_errors=True)
        raise IntegrityError(
            "the stored model files do not match the sha256 the registry recorded when they were uploaded "
            "(files were changed, added or removed); nothing was loaded — restore them from backup or "
            "register the model again",
            {"expected_sha256": expected_sha256, "actual_sha256": actual},
        )
    return dest


UNCONFINED_SETTING = "allow_unconfined_validation"


def refuse_unconfined_code(folder: Path) -> None:
    """``Forbidden`` naming the fix when the package in ``folder`` runs code when loaded (this
    process could not be confined, so that code could read the project's secrets)."""
    from shipyard.errors import Forbidden
    from shipyard.models.trust import code_parts

    parts = code_parts(folder)
    if parts:
        first = parts[0]
        raise Forbidden(
            f"this system cannot confine the validation process (the kernel has no Landlock), and the model "
            f"holds {first.path!r}, {first.reason}: its code could read the project's credentials and secret "
            "key, so it was not loaded. Re-save the model in a format that runs no code when loaded (skops for "
            "scikit-learn, XGBoost's or LightGBM's own files, ONNX), run the server on Linux 5.13 or later with "
            f"Landlock enabled, or set {UNCONFINED_SETTING}: true to validate such models unconfined",
            {"field": UNCONFINED_SETTING, "file": first.path, "kind": first.kind},
        )


def check_package(job: ValidationJob, *, confinement: str = "") -> ValidationResult:
    """Run one job: verify a private copy of the files, then load and check that copy.

    ``confinement`` says how this process is confined ("" when it is not): an unconfined process
    loads a package that runs code only when the job allows it (``unconfined_code``)."""
    from shipyard.models.trust import refuse_pickles

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="shipyard-validate-"))
    try:
        folder = verified_copy(Path(job.folder), scratch / "model", job.sha256)
        refuse_pickles(folder, job.allow_pickle)
        if not confinement and not job.unconfined_code:
            refuse_unconfined_code(folder)
        result = check_model_dir(folder, tolerance=job.tolerance, timing_calls=job.timing_calls)
    except ShipyardError as exc:
        result = ValidationResult(False, exc.message, {"error": exc.code})
    except Exception as exc:  # noqa: BLE001 - a model's own code may raise anything
        log.debug("validation of %s raised", job.label, exc_info=True)
        result = ValidationResult(False, f"{type(exc).__name__}: {exc}", {"error": type(exc).__name__})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.report["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    result.report["pid"] = os.getpid()
    result.report["confinement"] = confinement or "none"
    return result
