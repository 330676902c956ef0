"""The model registry with its release workflow: ``ws.registry`` or ``Registry(ws)``."""

from shipyard.models.registry.core import Registry
from shipyard.models.registry.records import AliasMove, ModelVersion, RegisteredModel

__all__ = ["AliasMove", "ModelVersion", "RegisteredModel", "Registry"]
