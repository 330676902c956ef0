"""Shipyard: a self-hosted, one-stop machine-learning platform.

    import shipyard as sy
    ws = sy.connect()
    with sy.start_run(experiment="credit") as run:
        ...
        sy.log_model(model, "model", input_example=X.head(5), registered_model_name="credit")

Names are imported on first use so that ``import shipyard`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from shipyard.errors import ShipyardError as ShipyardError

__version__ = "0.1.0"

_LAZY = {
    "connect": "shipyard.workspace",
    "current": "shipyard.workspace",
    "Workspace": "shipyard.workspace",
    "Settings": "shipyard.config",
    "load_settings": "shipyard.config",
    "init_project": "shipyard.config",
    "Client": "shipyard.client",
    "start_run": "shipyard.fluent",
    "run_pipeline": "shipyard.fluent",
    "active_run": "shipyard.tracking",
    "log_model": "shipyard.models.log_model",
    "save_model": "shipyard.models",
    "load_model": "shipyard.models",
    "PythonModel": "shipyard.models.python_model",
    "FeatureStore": "shipyard.features",
    "errors": "shipyard.errors",
    "risk": "shipyard.risk",
    "pipelines": "shipyard.pipelines",
    "monitoring": "shipyard.monitoring",
}

_MODULES = {"errors", "risk", "pipelines", "monitoring"}

__all__ = sorted([*_LAZY, "ShipyardError", "__version__"])


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
