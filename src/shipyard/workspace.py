"""A workspace ties one project's settings to its metadata and artifact stores.

``shipyard.connect()`` returns one; every subsystem's Python API hangs off it, e.g.
``ws.tracking``, ``ws.registry``, ``ws.features``. Subsystems are imported on first use so that the
core import stays light.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.artifacts import ArtifactStore
from shipyard.config import Settings, load_settings
from shipyard.store import MetadataStore

if TYPE_CHECKING:
    from shipyard.models.registry import Registry
    from shipyard.monitoring import Monitoring
    from shipyard.tracking import Tracking


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = MetadataStore(settings.metadata_url)
        self.artifacts = ArtifactStore(settings.artifact_root, settings.artifact_options)

    @property
    def user(self) -> str:
        return self.settings.user

    @cached_property
    def tracking(self) -> Tracking:
        from shipyard.tracking import Tracking

        return Tracking(self)

    @cached_property
    def registry(self) -> Registry:
        from shipyard.models.registry import Registry

        return Registry(self)

    @cached_property
    def features(self) -> Any:
        from shipyard.features import FeatureStore

        return FeatureStore(self)

    @cached_property
    def monitoring(self) -> Monitoring:
        from shipyard.monitoring import Monitoring

        return Monitoring(self.store, self.artifacts, feature_monitor=lambda views: self.features.monitor(views))

    def close(self) -> None:
        self.store.dispose()

    def __repr__(self) -> str:
        return f"Workspace(project_dir={str(self.settings.project_dir)!r}, metadata_url={self.settings.metadata_url!r})"


_current: Workspace | None = None
_current_lock = threading.Lock()


def connect(project_dir: str | Path | None = None, **overrides: Any) -> Workspace:
    """Open the project's workspace (and make it the default for ``sy.start_run`` and friends)."""
    global _current
    ws = Workspace(load_settings(project_dir, **overrides))
    with _current_lock:
        _current = ws
    return ws


def current() -> Workspace:
    """The workspace last opened by ``connect``, opening the default project on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Workspace(load_settings())
        return _current
