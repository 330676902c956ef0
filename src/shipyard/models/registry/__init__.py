"""The model registry with its release workflow: ``ws.registry`` or ``ModelRegistry(ws)``."""

from shipyard.models.registry.core import ModelRegistry
from shipyard.models.registry.records import AliasMove, ModelVersion, RegisteredModel

__all__ = ["AliasMove", "ModelRegistry", "ModelVersion", "RegisteredModel"]
