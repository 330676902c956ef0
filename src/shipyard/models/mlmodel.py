"""The ``MLmodel`` file and the environment files beside it.

Layout of a saved model directory (MLflow-compatible)::

    MLmodel                 YAML: flavors (python_function + the native flavor), signature, ...
    <model files>           written by the flavor (model.skops, model.ubj, model.txt, model.onnx, ...)
    input_example.json      MLflow's "split" orient, referenced by saved_input_example_info
    serving_input_example.json
    requirements.txt        pinned pip requirements of the flavor
    python_env.yaml         MLflow's virtualenv spec
    conda.yaml
    shipyard.json           Shipyard's own record: flavor, expected output for the input example,
                            sha256 of every file written at save time
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata as _md
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import IntegrityError, InvalidInput, NotFound

MLMODEL = "MLmodel"
SHIPYARD_FILE = "shipyard.json"
PYFUNC = "python_function"
LOADER_MODULE = "shipyard.models.pyfunc_loader"


def read_mlmodel(path: str | Path) -> dict[str, Any]:
    """Parse ``<path>/MLmodel`` (or ``path`` itself if it is the file) into a dict.

    Raises ``NotFound`` when the file is missing and ``InvalidInput`` when it is not a YAML mapping
    with a ``flavors`` mapping.
    """
    p = Path(path)
    file = p if p.name == MLMODEL and p.is_file() else p / MLMODEL
    if not file.parent.exists():
        raise NotFound(f"model directory {str(file.parent)!r} does not exist", {"path": str(file.parent)})
    if not file.is_file():
        raise NotFound(
            f"no MLmodel file in {str(file.parent)!r}; a model directory needs one — "
            "save the model with shipyard.models.save_model or mlflow",
            {"path": str(file)},
        )
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = f"line {mark.line + 1}: {getattr(exc, 'problem', exc)}" if mark else str(exc).splitlines()[0]
        raise InvalidInput(
            f"MLmodel file {str(file)!r} is not valid YAML ({reason}); "
            "the model directory is corrupt — re-save or re-download the model",
            {"path": str(file)},
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict) or not doc["flavors"]:
        raise InvalidInput(
            f"MLmodel file {str(file)!r} has no 'flavors' mapping; the model directory is corrupt — "
            "re-save or re-download the model",
            {"path": str(file)},
        )
    return doc


def write_yaml(path: Path, doc: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False), encoding="utf-8")


def python_version() -> str:
    return platform.python_version()


def pinned(packages: Iterable[str]) -> list[str]:
    """``name==version`` for each installed distribution (unpinned when not installed)."""
    out = []
    for name in dict.fromkeys(packages):
        try:
            out.append(f"{name}=={_md.version(name)}")
        except _md.PackageNotFoundError:
            out.append(name)
    return out


def write_environment(path: Path, requirements: list[str]) -> dict[str, str]:
    """Write requirements.txt, python_env.yaml and conda.yaml; return the pyfunc ``env`` entry."""
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    write_yaml(
        path / "python_env.yaml",
        {
            "python": python_version(),
            "build_dependencies": pinned(["pip", "setuptools", "wheel"]),
            "dependencies": ["-r requirements.txt"],
        },
    )
    write_yaml(
        path / "conda.yaml",
        {
            "name": "shipyard-model-env",
            "channels": ["conda-forge"],
            "dependencies": [f"python={python_version()}", "pip", {"pip": requirements}],
        },
    )
    return {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(root: Path, skip: Iterable[str] = (SHIPYARD_FILE,)) -> dict[str, str]:
    skip = set(skip)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skip and "__pycache__" not in p.parts
    }


def read_shipyard_file(path: Path) -> dict[str, Any]:
    file = path / SHIPYARD_FILE
    if not file.is_file():
        return {}
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{str(file)!r} is not valid JSON; re-save the model", {"path": str(file)}) from exc
    return doc if isinstance(doc, dict) else {}


def verify_digests(path: Path, recorded: Mapping[str, str]) -> None:
    """Raise ``IntegrityError``/``NotFound`` if a file recorded at save time changed or vanished."""
    for rel, digest in recorded.items():
        file = path / rel
        if not file.is_file():
            raise NotFound(
                f"model file {rel!r} is missing from {str(path)!r}; the directory is incomplete — "
                "re-download or re-save the model",
                {"path": str(file), "file": rel},
            )
        if sha256_file(file) != digest:
            raise IntegrityError(
                f"model file {rel!r} in {str(path)!r} does not match the sha256 recorded when it was saved; "
                "it was modified or corrupted — re-download or re-save the model",
                {"path": str(file), "file": rel, "expected": digest},
            )
