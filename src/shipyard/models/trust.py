"""What a model package runs when it is loaded, and which skops types Shipyard trusts.

Loading some packages executes code that came with them: a pickle or cloudpickle file (an
unpickled object can run anything), Python files in the package (put on ``sys.path`` and
imported), and a skops file whose types include something other than scikit-learn's own classes
(skops imports and builds every type its file names). ``code_parts(folder)`` lists those parts of
a package, following the same flavor choice ``load_model`` makes; ``package_runs_code(folder)``
says whether there is any. Formats that only hold data — skops with scikit-learn types, XGBoost
JSON/UBJ, LightGBM text, ONNX, scorecard and rule-set JSON — run none.

skops: ``save_model`` records the types skops does not trust by default in the ``sklearn``
section's ``skops_trusted_types`` (MLflow's key). Loading trusts those recorded types and no
other, and without ``trusted=True`` only when each of them is a scikit-learn class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import Forbidden

PICKLE_KINDS = ("pickle", "cloudpickle")
PYTHON = "python"
SKOPS = "skops"
SETTING = "allow_pickle_models"


@dataclass(frozen=True)
class CodePart:
    """One part of a package that runs code when loaded: its path in the package and its kind
    (``pickle``, ``cloudpickle``, ``python`` or ``skops``), with a short reason."""

    path: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


def package_runs_code(folder: str | Path) -> bool:
    """True when loading the package in ``folder`` would execute code that came with it."""
    return bool(code_parts(folder))


def code_parts(folder: str | Path) -> list[CodePart]:
    """The parts of the package in ``folder`` that execute code when it is loaded (see module doc)."""
    from shipyard.models.mlmodel import read_mlmodel, read_shipyard_file
    from shipyard.models.package import choose_flavor

    root = Path(folder)
    doc = read_mlmodel(root)
    name, section = choose_flavor(root, doc, read_shipyard_file(root))
    parts = _flavor_parts(root, name, section)
    pyfunc = doc["flavors"].get("python_function") or {}
    code = pyfunc.get("code")
    if code and (root / str(code)).exists():
        parts.append(CodePart(str(code), PYTHON, "a code folder put on sys.path when the model loads"))
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if not any(rel.startswith(f"{p.path}/") for p in parts if p.kind == PYTHON):
            parts.append(CodePart(rel, PYTHON, "a Python file in the package"))
    return parts


def _flavor_parts(root: Path, flavor: str, section: dict[str, Any]) -> list[CodePart]:
    if flavor == "sklearn" or (flavor == "lightgbm" and section.get("model_class", "lightgbm.basic.Booster")
                               != "lightgbm.basic.Booster"):
        default = "model.pkl" if flavor == "sklearn" else str(section.get("data") or "model.pkl")
        file = str(section.get("pickled_model") or section.get("data") or default)
        fmt = str(section.get("serialization_format")
                  or ("skops" if file.endswith(".skops") else "pickle" if flavor == "sklearn" else "cloudpickle"))
        if fmt == SKOPS:
            return _skops_parts(root / file, file)
        return [CodePart(file, fmt if fmt in PICKLE_KINDS else "pickle", f"a {fmt} file, unpickled when loaded")]
    if flavor == "python_model":
        if "class" in section:
            return []
        file = str(section.get("python_model") or "python_model.pkl")
        fmt = str(section.get("serialization_format") or "cloudpickle")
        return [CodePart(file, fmt if fmt in PICKLE_KINDS else "pickle", "a custom Python model, unpickled when loaded")]
    if flavor == "mlflow_pyfunc":
        loader = str(section.get("loader_module") or "mlflow.pyfunc.model")
        file = str(section.get("python_model") or ("python_model.pkl" if loader == "mlflow.pyfunc.model" else loader))
        return [CodePart(file, "cloudpickle", f"an MLflow pyfunc model loaded by {loader}, which unpickles it")]
    return []


def _skops_parts(target: Path, file: str) -> list[CodePart]:
    try:
        types = skops_types(target)
    except ImportError:
        return [CodePart(file, SKOPS, "a skops file, and skops is not installed to list its types")]
    unsafe = [t for t in types if not sklearn_class(t)]
    if unsafe:
        return [CodePart(file, SKOPS, f"a skops file naming types beyond scikit-learn's: {unsafe}")]
    return []


def skops_types(target: Path) -> list[str]:
    """The types in a skops file that skops does not trust by default."""
    import skops.io as sio

    return list(sio.get_untrusted_types(file=target))


def sklearn_class(name: str) -> bool:
    """True when ``name`` is a class defined by scikit-learn (skops builds it from data only)."""
    module, _, attr = name.rpartition(".")
    if not module.startswith("sklearn.") or not attr:
        return False
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and str(getattr(found, "__module__", "")).startswith("sklearn.")


def refuse_pickles(folder: str | Path, allowed: bool) -> None:
    """``Forbidden`` naming the setting when the package unpickles something and pickles are refused."""
    if allowed:
        return
    pickled = [p for p in code_parts(folder) if p.kind in PICKLE_KINDS]
    if pickled:
        first = pickled[0]
        raise Forbidden(
            f"the model holds {first.path!r}, {first.reason}, and this registry refuses such models "
            f"({SETTING}: false); re-save it in a format that runs no code when loaded (skops for "
            "scikit-learn, XGBoost's or LightGBM's own files, ONNX), or set allow_pickle_models: true",
            {"field": SETTING, "file": first.path, "kind": first.kind},
        )
