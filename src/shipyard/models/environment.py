"""A model's own Python environment, for a model whose requirements conflict with the server's.

``save_model`` records what a model needs (``requirements.txt``, with ``python_env.yaml`` and
``conda.yaml`` beside it, as MLflow writes them). ``build_environment`` turns that into a virtual
environment under the project's state folder, ``.shipyard/envs/<key>/``, where the key is a hash of
the requirements and the Python version: models with the same requirements share one, and an
environment that exists is reused (``rebuild=True`` builds it again).

The environment holds the model's requirements plus what Shipyard's model code needs to load a
package (NumPy, pandas, PyYAML), and never Shipyard itself with its server dependencies (whose
pins are what the model conflicts with): the worker that serves the model from it
(``shipyard.models.env_worker``) finds this Shipyard's ``shipyard`` package through a link in
``<env>/runtime/``, and nothing else of the server's installation.

It is built with uv when ``uv`` is on the PATH (or installed as the ``uv`` Python package), else
with ``python -m venv`` and pip, on the server's own interpreter. A build runs under a file lock
(two processes building the same environment wait for each other) and writes
``environment.json`` last: a folder without it is a build that did not finish and is built again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import ConfigError, InvalidInput, ModelError, NotFound

log = logging.getLogger(__name__)

FORMAT = 1
MARKER = "environment.json"
#: distributions the worker needs to load a package with Shipyard's model code
RUNTIME_REQUIREMENTS = ("numpy", "pandas", "pyyaml")
#: requirement names that are Shipyard itself: the worker uses this Shipyard's code instead
SELF_NAMES = ("shipyard-ml", "shipyard")
BUILDERS = ("uv", "venv")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: variables a build and a worker keep (never secrets: no SHIPYARD_*, no cloud credentials)
KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT", "TMPDIR",
                  "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: what pip and uv read to find packages (an internal index, a proxy, certificates)
INSTALLER_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "PIP_CERT",
                       "PIP_TRUSTED_HOST", "PIP_NO_INDEX", "PIP_CONSTRAINT", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL",
                       "UV_FIND_LINKS", "UV_CACHE_DIR", "UV_NATIVE_TLS", "UV_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY",
                       "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                       "HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "PIP_CACHE_DIR")


@dataclass(frozen=True)
class ModelEnvironment:
    """A built environment: where it is, what it holds, how it was made."""

    key: str
    path: str
    python: str  # the environment's interpreter
    python_version: str
    requirements: list[str]
    builder: str
    built_at: float
    build_seconds: float
    # the Python version the model was saved with, when it differs from the environment's
    saved_python: str | None = None
    warnings: list[str] = field(default_factory=list)
    reused: bool = False  # True when an existing build was returned

    @property
    def runtime_dir(self) -> Path:
        return Path(self.path) / "runtime"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _name_of(requirement: str) -> str:
    match = _NAME.match(requirement)
    return match.group(1).lower().replace("_", "-") if match else ""


def model_requirements(model_dir: str | Path) -> list[str]:
    """What the model needs, from ``requirements.txt`` (else ``conda.yaml``'s pip section)."""
    folder = Path(model_dir)
    req = folder / "requirements.txt"
    lines: list[str] = []
    if req.is_file():
        for raw in req.read_text(encoding="utf-8").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-"):
                raise InvalidInput(
                    f"requirements.txt of the model in {str(folder)!r} has the option line {line!r}; a model "
                    "environment takes requirement specifiers only (name==version)",
                    {"field": "requirements.txt", "value": line})
            lines.append(line)
        return lines
    conda = folder / "conda.yaml"
    if conda.is_file():
        doc = yaml.safe_load(conda.read_text(encoding="utf-8")) or {}
        for dep in doc.get("dependencies") or []:
            if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
                lines += [str(x) for x in dep["pip"]]
        return lines
    raise NotFound(
        f"the model in {str(folder)!r} records no requirements (requirements.txt or conda.yaml); save it with "
        "shipyard.models.save_model (pip_requirements=[...]) so its environment can be built",
        {"field": "requirements.txt"})


def environment_requirements(model_dir: str | Path) -> list[str]:
    """The model's requirements without Shipyard itself, plus what the worker needs, sorted."""
    reqs = [r for r in model_requirements(model_dir) if _name_of(r) not in SELF_NAMES]
    named = {_name_of(r) for r in reqs}
    reqs += [r for r in RUNTIME_REQUIREMENTS if r not in named]
    return sorted(dict.fromkeys(reqs), key=lambda r: (_name_of(r), r))


def _saved_python(model_dir: Path) -> str | None:
    env = model_dir / "python_env.yaml"
    if env.is_file():
        doc = yaml.safe_load(env.read_text(encoding="utf-8")) or {}
        if doc.get("python"):
            return str(doc["python"])
    return None


def environment_key(requirements: list[str], python_version: str) -> str:
    """The folder name of the environment for these requirements on this Python (major.minor)."""
    minor = ".".join(python_version.split(".")[:2])
    text = json.dumps({"format": FORMAT, "python": minor, "requirements": requirements})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # the uv package on PyPI ships the binary
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def choose_builder(builder: str | None = None) -> str:
    if builder is None or builder == "auto":
        return "uv" if _uv() else "venv"
    if builder not in BUILDERS:
        raise ConfigError(f"builder {builder!r} is not known; use one of {', '.join(BUILDERS)} (or auto)",
                          {"field": "builder", "value": builder})
    if builder == "uv" and not _uv():
        raise ConfigError("builder 'uv' was asked for but uv is not installed; pip install uv, or use the "
                          "venv builder", {"field": "builder"})
    return builder


def clean_environment(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The variables a build or a worker gets: locale, search path, thread counts, and ``extra``."""
    keep = KEPT_VARIABLES + extra
    return {k: os.environ[k] for k in keep if k in os.environ}


def _python_in(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_environment(path: Path) -> ModelEnvironment | None:
    marker = path / MARKER
    if not marker.is_file():
        return None
    doc = json.loads(marker.read_text(encoding="utf-8"))
    doc.pop("reused", None)
    env = ModelEnvironment(**doc)
    return env if Path(env.python).is_file() else None


def find_environment(model_dir: str | Path, root: str | Path) -> ModelEnvironment | None:
    """The built environment for the model in ``model_dir`` under ``root``, or None."""
    key = environment_key(environment_requirements(model_dir), sys.version.split()[0])
    return read_environment(Path(root) / key)


def build_environment(model_dir: str | Path, root: str | Path, *, builder: str | None = None,
                      rebuild: bool = False, timeout_s: float = 1800.0) -> ModelEnvironment:
    """Build (or reuse) the environment the model in ``model_dir`` needs, under ``root``."""
    folder = Path(model_dir)
    requirements = environment_requirements(folder)
    version = sys.version.split()[0]
    key = environment_key(requirements, version)
    target = Path(root) / key
    with _locked(Path(root) / f"{key}.lock"):
        existing = read_environment(target)
        if existing is not None and not rebuild:
            link_runtime(existing)
            return dataclasses.replace(existing, reused=True)
        if target.exists():
            shutil.rmtree(target)  # an unfinished build, or rebuild=True
        kind = choose_builder(builder)
        start = time.monotonic()
        logs = target.parent / f"{key}.build.log"
        try:
            _build(kind, target, requirements, logs, timeout_s)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        saved = _saved_python(folder)
        warnings = []
        if saved and saved.split(".")[:2] != version.split(".")[:2]:
            warnings.append(f"the model was saved on Python {saved}; its environment runs Python {version}, the "
                            "server's interpreter")
        env = ModelEnvironment(key=key, path=str(target), python=str(_python_in(target)), python_version=version,
                               requirements=requirements, builder=kind, built_at=time.time(),
                               build_seconds=round(time.monotonic() - start, 3), saved_python=saved,
                               warnings=warnings)
        link_runtime(env)
        (target / MARKER).write_text(json.dumps(env.to_dict(), indent=1), encoding="utf-8")
        return env


def _build(kind: str, target: Path, requirements: list[str], logs: Path, timeout_s: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    reqs = target.parent / f"{target.name}.requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    env = clean_environment(INSTALLER_VARIABLES)
    python = str(_python_in(target))
    if kind == "uv":
        uv = _uv()
        assert uv is not None
        steps = [[uv, "venv", "--quiet", "--python", sys.executable, str(target)],
                 [uv, "pip", "install", "--python", python, "-r", str(reqs)]]
    else:
        steps = [[sys.executable, "-m", "venv", str(target)],
                 [python, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(reqs)]]
    with open(logs, "w", encoding="utf-8") as out:
        for step in steps:
            out.write("$ " + " ".join(step) + "\n")
            out.flush()
            try:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout_s,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise ModelError(f"building the model environment took longer than {timeout_s:g} s; see {logs}",
                                 {"log": str(logs)}) from None
            if done.returncode != 0:
                tail = logs.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
                raise ModelError(
                    f"building the model environment failed ({step[0]} exited with {done.returncode}); the "
                    f"requirements may not exist for Python {sys.version.split()[0]} or the index is unreachable. "
                    "Last lines:\n" + "\n".join(tail),
                    {"log": str(logs), "requirements": requirements})


def link_runtime(env: ModelEnvironment) -> Path:
    """``<env>/runtime/shipyard``: a link to this Shipyard's package, the only thing of the server's
    installation the worker sees. Refreshed each time, so it follows the server's code."""
    import shipyard

    runtime = env.runtime_dir
    runtime.mkdir(parents=True, exist_ok=True)
    link = runtime / "shipyard"
    source = Path(shipyard.__file__).resolve().parent
    if link.is_symlink() and link.resolve() == source:
        return runtime
    temp = runtime / f".shipyard-{os.getpid()}"
    if temp.is_symlink() or temp.exists():
        temp.unlink()
    temp.symlink_to(source, target_is_directory=True)
    os.replace(temp, link)  # atomic: a worker starting now sees the old link or the new one
    return runtime
