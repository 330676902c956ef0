"""The flavor interface and the registry of flavors.

A *flavor* knows how to write one kind of model into a model directory and how to load it back as
a :class:`~shipyard.models.loaded.LoadedModel`. Each flavor is one module in this package that
defines a module-level ``FLAVOR`` object implementing :class:`Flavor`:

``name``
    the key of the flavor's section in ``MLmodel`` (``"sklearn"``, ``"xgboost"``, ...).
``pip_requirements``
    distributions written (pinned) into ``requirements.txt``.
``matches(model) -> bool``
    whether ``save_model(model, path)`` without ``flavor=`` should pick this flavor. Must be cheap
    and must not import heavy libraries (compare ``type(model).__module__``).
``save(model, path, **options) -> dict``
    write the model's files under ``path`` (a fresh directory) and return the flavor's ``MLmodel``
    section (plain YAML-able values). Unknown ``options`` must be accepted and ignored.
``load(path, section, options) -> LoadedModel``
    read the files back. ``options`` is a :class:`LoadOptions`: ``trusted`` (see below) and
    ``input_names`` (signature order the fast path must accept; build any column mapping here,
    once, not per call).
``feature_names(model) -> list[str] | None``
    names the model was fitted with, used to infer a signature when no input example is given.

Adding a flavor (e.g. the risk toolkit's ``scorecard`` and ``ruleset``): write
``shipyard/models/flavors/scorecard.py`` with ``FLAVOR = ScorecardFlavor()`` and add one line to
:data:`FLAVORS` below::

    "scorecard": "shipyard.models.flavors.scorecard",

Modules are imported lazily, the first time a flavor is needed, so optional libraries are only
imported when a model of that kind is saved or loaded.

Trust: pickle-based files (``pickle``/``cloudpickle`` formats, custom Python models, MLflow's
generic pyfunc) run code when loaded. ``load`` must refuse them with ``Forbidden`` unless
``options.trusted`` is true. The registry passes ``trusted=True`` only after the artifact's
recorded sha256 matched; ``shipyard.models.load_model(path, trusted=True)`` is the caller saying the
directory comes from a store they trust. Formats that do not execute code (skops with its default
trusted types, XGBoost JSON/UBJ, LightGBM text, ONNX, JSON specs) load either way.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shipyard.errors import Forbidden, InvalidInput

if TYPE_CHECKING:
    from shipyard.models.loaded import LoadedModel

#: flavor name (its MLmodel section key) -> module defining ``FLAVOR``; the order is the order in
#: which ``save_model`` tries ``matches`` when no flavor is given.
FLAVORS: dict[str, str] = {
    "python_model": "shipyard.models.flavors.python_model",
    "xgboost": "shipyard.models.flavors.xgboost",
    "lightgbm": "shipyard.models.flavors.lightgbm",
    "onnx": "shipyard.models.flavors.onnx",
    "scorecard": "shipyard.models.flavors.scorecard",
    "ruleset": "shipyard.models.flavors.ruleset",
    "sklearn": "shipyard.models.flavors.sklearn",
}

#: flavors that only load (models written by other tools); never chosen by ``save_model``.
LOAD_ONLY: dict[str, str] = {
    "mlflow_pyfunc": "shipyard.models.flavors.mlflow_pyfunc",
}


@dataclass(frozen=True)
class LoadOptions:
    """What ``Flavor.load`` may need beyond the files."""

    trusted: bool = False
    input_names: tuple[str, ...] | None = None


@runtime_checkable
class Flavor(Protocol):
    name: str
    pip_requirements: tuple[str, ...]

    def matches(self, model: object) -> bool: ...

    def save(self, model: object, path: Path, **options: Any) -> dict[str, Any]: ...

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel: ...

    def feature_names(self, model: object) -> list[str] | None: ...


def get_flavor(name: str) -> Flavor:
    """The flavor registered under ``name``; ``InvalidInput`` naming the known ones otherwise."""
    module = FLAVORS.get(name) or LOAD_ONLY.get(name)
    if module is None:
        raise InvalidInput(
            f"unknown model flavor {name!r}; Shipyard knows {sorted(FLAVORS)}",
            {"flavor": name, "known": sorted(FLAVORS)},
        )
    return importlib.import_module(module).FLAVOR


def detect_flavor(model: object) -> Flavor:
    """The first registered flavor whose ``matches`` accepts ``model``."""
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.matches(model):
            return flavor
    raise InvalidInput(
        f"cannot tell which flavor saves a {type(model).__module__}.{type(model).__name__}; "
        f"pass flavor= one of {sorted(FLAVORS)}, or wrap it in shipyard.models.PythonModel",
        {"type": f"{type(model).__module__}.{type(model).__name__}"},
    )


def module_of(model: object) -> str:
    return type(model).__module__.split(".", 1)[0]


def refuse_untrusted(path: Path, file: str, options: LoadOptions) -> None:
    """Raise ``Forbidden`` for a code-executing file unless the caller vouched for the store."""
    if not options.trusted:
        raise Forbidden(
            f"{file!r} in {str(path)!r} is a pickle, which runs code when loaded; load it only from a "
            "store you trust: load_model(path, trusted=True) (the registry does so after the sha256 "
            "check), or re-save it in a non-pickle format",
            {"path": str(path / file), "file": file},
        )
