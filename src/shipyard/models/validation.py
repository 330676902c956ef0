"""Automatic validation of a registered model version.

The checks, in order: the stored files match the recorded sha256; the model loads; it predicts on
its input example; the prediction matches the output recorded at save time within
``validation_tolerance``; the fast path (``predict_array``) agrees with ``predict``; and N
single-row fast-path predictions are timed (p50/p99/mean, in milliseconds). The outcome —
``validated`` or ``failed`` with the reason — is written to the version.

By default the registry runs this in a separate process (``python -m shipyard.models.validation
NAME VERSION ATTEMPT``, settings passed in the environment) so a model that crashes or hangs never
takes the caller down; ``validation_subprocess: false`` runs it in-process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.models.loaded import LoadedModel
    from shipyard.models.registry import Registry

log = logging.getLogger(__name__)

SETTINGS_ENV = "SHIPYARD_VALIDATION_SETTINGS_JSON"
WARMUP_CALLS = 3


@dataclass
class ValidationResult:
    ok: bool
    reason: str = ""
    report: dict[str, Any] = field(default_factory=dict)


# -- the checks --------------------------------------------------------------------------------
def _as_array(value: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.to_numpy()
    return np.asarray(value)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, separator=", ")
    return repr(value.item() if isinstance(value, np.generic) else value)


def compare_outputs(actual: Any, expected: Any, tolerance: float, what: str) -> str | None:
    """None when ``actual`` matches ``expected`` (|a-e| <= tol * (1 + |e|)); else the first difference."""
    a, e = _as_array(actual), _as_array(expected)
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
    if example is None:
        return ValidationResult(
            False,
            "the model has no input example, so its predictions cannot be checked; save it with "
            "input_example=<a few training rows> and register it again",
            report,
        )
    output = model.predict(example)
    report["checks"].append("predict")
    report["example_rows"] = int(len(example))
    if model.expected_output is not None:
        problem = compare_outputs(output, model.expected_output, tolerance,
                                  "prediction on input example differs from recorded output")
        if problem:
            return ValidationResult(False, problem + f" (tolerance {tolerance:g})", report)
        report["checks"].append("expected_output")
    else:
        report["expected_output"] = "not recorded (model saved without Shipyard); prediction recorded as baseline"
        report["baseline_output"] = _as_array(output)[:5].tolist()
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


def run_validation(registry: Registry, name: str, version: int, attempt: str) -> ValidationResult:
    """Validate one version and record the outcome on it (superseded attempts record nothing)."""
    settings = registry.ws.settings
    started = time.perf_counter()
    try:
        mv = registry.get_version(name, version)
        folder = registry.local_model_dir(mv)  # checks the sha256 before anything is loaded
        result = check_model_dir(folder, tolerance=settings.validation_tolerance,
                                 timing_calls=settings.validation_timing_calls)
    except ShipyardError as exc:
        result = ValidationResult(False, exc.message, {"error": exc.code})
    except Exception as exc:  # noqa: BLE001 - a model's own code may raise anything
        log.debug("validation of %s/%d raised", name, version, exc_info=True)
        result = ValidationResult(False, f"{type(exc).__name__}: {exc}", {"error": type(exc).__name__})
    result.report["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    result.report["pid"] = os.getpid()
    registry._record_validation(name, version, attempt, ok=result.ok, reason=result.reason, report=result.report)
    return result


# -- the separate process ----------------------------------------------------------------------
def launch(settings: Settings, name: str, version: int, attempt: str) -> subprocess.Popen[bytes]:
    """Start ``python -m shipyard.models.validation`` for one version; its output goes to a log file."""
    env = dict(os.environ)
    env[SETTINGS_ENV] = json.dumps(settings.to_dict())
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"validation-{name}-{version}.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "shipyard.models.validation", name, str(version), attempt],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main(argv: list[str] | None = None) -> int:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m shipyard.models.validation NAME VERSION ATTEMPT", file=sys.stderr)
        return 2
    name, version, attempt = args[0], int(args[1]), args[2]
    raw = os.environ.get(SETTINGS_ENV)
    if raw:
        values = json.loads(raw)
        settings = load_settings(values.pop("project_dir"), **values)
    else:
        settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ws = Workspace(settings)
    from shipyard.models.registry.recovery import VERSION_JOB, lease_key
    from shipyard.store import leases

    # the registering process handed this attempt's lease to this process: heartbeat it until the
    # outcome is recorded (which drops it), so a crash here is found by the pid, a hang by the ttl
    leases.keep(ws.store, VERSION_JOB, lease_key(name, version), settings.lease_ttl_s)
    try:
        result = run_validation(ws.registry, name, version, attempt)
    finally:
        leases.forget(ws.store, VERSION_JOB, lease_key(name, version))
        ws.close()
    log.info("model %s version %d: %s %s", name, version, "validated" if result.ok else "failed", result.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
