"""MLflow's ``python_function`` entry point for Shipyard models.

``MLmodel`` files written by Shipyard name this module as ``loader_module``; MLflow calls
``_load_pyfunc(path)`` and then ``.predict(model_input, params=None)``. Nothing here imports
mlflow. MLflow loads pickles without asking, so this loader passes ``trusted=True``: loading a
model with ``mlflow.pyfunc.load_model`` is the caller trusting its source.
"""

from __future__ import annotations

from typing import Any

from shipyard.models.loaded import LoadedModel
from shipyard.models.package import load_model


class PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: ``LoadedModel.predict`` on a DataFrame. MLflow passes
    ``params`` only when the package's signature declares them; ``{"labels": True}`` then asks for
    class labels."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> object:
        return self.loaded.predict(model_input, labels=bool((params or {}).get("labels", False)))

    def get_raw_model(self) -> object:
        return self.loaded.native


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> PyfuncModel:
    return PyfuncModel(load_model(path, trusted=True))
