"""Serving a registered version from its own environment (see ``shipyard.models.environment``).

A version is served that way when it carries the tag ``serve_env: own`` (set when it is
registered, e.g. ``shipyard models register ... --tag serve_env=own``) or when its model's name is
listed in the ``own_env_models`` setting. Everything else loads in the server's process as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.config import Settings
from shipyard.errors import ModelError
from shipyard.models.environment import ModelEnvironment, build_environment, find_environment
from shipyard.models.registry.records import ModelVersion
from shipyard.models.trust import refuse_pickles

if TYPE_CHECKING:
    from shipyard.models.env_model import EnvModel

log = logging.getLogger(__name__)

OWN_ENV_TAG = "serve_env"
OWN_ENV_VALUE = "own"


def serves_in_own_environment(settings: Settings, mv: ModelVersion) -> bool:
    return str(mv.tags.get(OWN_ENV_TAG, "")).lower() == OWN_ENV_VALUE or mv.name in settings.own_env_models


def environment_root(settings: Settings) -> Path:
    return settings.state_dir / "envs"


def build_version_environment(settings: Settings, mv: ModelVersion, folder: Path, *, builder: str | None = None,
                              rebuild: bool = False) -> ModelEnvironment:
    """Build (or reuse) the environment of version ``mv`` whose verified files are in ``folder``."""
    return build_environment(folder, environment_root(settings), builder=builder, rebuild=rebuild)


def load_in_environment(settings: Settings, mv: ModelVersion, folder: Path) -> EnvModel:
    """Start the worker serving ``mv`` from its environment (built first when missing and the
    ``model_env_build_on_load`` setting allows it)."""
    from shipyard.models.env_model import EnvModel

    refuse_pickles(folder, settings.allow_pickle_models)
    command = f"shipyard models build-env {mv.name}@{mv.version}"
    env = find_environment(folder, environment_root(settings))
    if env is None:
        if not settings.model_env_build_on_load:
            raise ModelError(
                f"model {mv.name!r} version {mv.version} is served from its own environment, which is not built "
                f"here; run `{command}` (or set model_env_build_on_load: true)",
                {"model": mv.name, "version": mv.version, "command": command})
        log.info("building the environment of model %s version %s on first load", mv.name, mv.version)
        env = build_version_environment(settings, mv, folder)
    logs = settings.state_dir / "logs"
    return EnvModel(folder, env, log_path=logs / f"model-env-{mv.name}-{mv.version}.log",
                    label=f"model {mv.name!r} version {mv.version}", timeout_s=settings.model_env_timeout_s)
