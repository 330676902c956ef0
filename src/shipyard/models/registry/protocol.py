"""The registry's Python API as one typed interface, implemented in-process (``ws.registry``) and
over HTTP (``sy.Client(url).models``). Code typed against ``RegistryAPI`` runs against either; a
type checker run in the tests (tests/core/test_protocols.py) keeps both implementations in step.

The acting user is never an argument: locally it is the workspace's identity, remotely the token's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shipyard.models.loaded import LoadedModel
    from shipyard.models.registry.records import AliasMove, ModelVersion, RegisteredModel


@runtime_checkable
class RegistryAPI(Protocol):
    # -- models ------------------------------------------------------------------------------------
    def create_model(self, name: str, description: str = "", requires_approval: bool = True,
                     tags: Mapping[str, Any] | None = None) -> RegisteredModel: ...

    def get_model(self, name: str) -> RegisteredModel: ...

    def get(self, name: str) -> RegisteredModel:
        """The same as ``get_model``."""
        ...

    def list_models(self) -> list[RegisteredModel]: ...

    # -- versions ----------------------------------------------------------------------------------
    def register(self, path_or_run_artifact: str | Path, name: str, run_id: str | None = None,
                 lineage: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, await_validation: bool = False) -> ModelVersion: ...

    def get_version(self, name: str, version_or_alias: int | str) -> ModelVersion: ...

    def list_versions(self, name: str, status: str | None = None) -> list[ModelVersion]: ...

    def delete_version(self, name: str, version: int | str) -> None: ...

    def validate(self, name: str, version: int | str, *, wait: bool | None = None,
                 timeout: float = 300.0) -> ModelVersion: ...

    def wait_for_validation(self, name: str, version: int | str, timeout: float = 300.0) -> ModelVersion: ...

    def approve(self, name: str, version: int | str, comment: str = "") -> ModelVersion: ...

    def reject(self, name: str, version: int | str, comment: str = "") -> ModelVersion: ...

    def download(self, name: str, version_or_alias: int | str, dst: str | Path) -> Path: ...

    def load(self, name: str, version_or_alias: int | str = "latest") -> LoadedModel: ...

    # -- aliases -----------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int | str, force: bool = False) -> ModelVersion: ...

    def get_alias(self, name: str, alias: str) -> ModelVersion: ...

    def list_aliases(self, name: str) -> dict[str, int]: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def rollback(self, name: str, alias: str) -> ModelVersion: ...

    def alias_history(self, name: str, alias: str) -> list[AliasMove]: ...
