"""``sy.log_model``: save a model into the active run and, optionally, register it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.models.registry.protocol import RegistryAPI
    from shipyard.tracking.run import RunLogger


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    artifact_path: str
    model_uri: str  # runs:/<run_id>/<artifact_path>, accepted by registry.register
    registered_version: Any = None  # ModelVersion when registered_model_name was given


def _registry_of(run: Any) -> RegistryAPI:
    """The registry beside the run's tracking: the workspace's, or the server's for a remote run."""
    from shipyard.tracking.remote import RemoteRun

    if isinstance(run, RemoteRun):
        from shipyard.models.remote import RemoteRegistry

        return RemoteRegistry(run.connection)
    tracking = getattr(run, "_tracking", None)
    if tracking is None:
        raise InvalidInput("registered_model_name needs a run started with sy.start_run (or a workspace's or "
                           "client's tracking)", {"field": "registered_model_name"})
    return tracking.ws.registry


def log_model(
    model: object,
    artifact_path: str = "model",
    *,
    registered_model_name: str | None = None,
    run: RunLogger | None = None,
    await_validation: bool = False,
    lineage: dict[str, Any] | None = None,
    **save_options: Any,
) -> LoggedModel:
    """Save ``model`` (any supported flavor) as artifacts of ``run`` (default: the active run).

    ``save_options`` go to ``save_model`` (``input_example``, ``signature``, ``flavor``...). With
    ``registered_model_name`` the logged folder becomes the next version of that registered model.
    """
    from shipyard.models.package import save_model
    from shipyard.tracking import active_run

    target = run or active_run()
    if target is None:
        raise InvalidInput(
            "log_model needs a run: call it inside 'with sy.start_run(...)' or pass run=",
            {"field": "run"},
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-model-") as tmp:
        folder = Path(tmp) / "model"
        save_model(model, folder, **save_options)
        target.log_artifacts(folder, artifact_path)
    uri = f"runs:/{target.id}/{artifact_path}"
    version = None
    if registered_model_name:
        version = _registry_of(target).register(uri, registered_model_name, run_id=target.id, lineage=lineage,
                                    await_validation=await_validation)
    return LoggedModel(target.id, artifact_path, uri, version)
