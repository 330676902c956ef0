"""A workspace ties one project's settings to its metadata and artifact stores, and to who is acting.

``shipyard.connect()`` returns one; every subsystem's Python API hangs off it, e.g.
``ws.tracking``, ``ws.registry``, ``ws.features``. Subsystems are imported on first use so that the
core import stays light.

Who is acting (``ws.principal``) comes from a token: the ``token`` argument, else the
``SHIPYARD_TOKEN`` environment variable, else the project's ``.shipyard/credentials`` file that
``shipyard init`` writes for its first admin. Without any, changes are recorded under the
``user`` setting as an unauthenticated local user, who can do everything the embedded database
allows except approve a model version.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shipyard.artifacts import ArtifactStore
from shipyard.config import DEFAULT_PROJECT, TOKEN_ENV, Settings, load_settings, redact_url
from shipyard.errors import InvalidInput
from shipyard.store import MetadataStore

if TYPE_CHECKING:
    from shipyard.auth.audit import AuditLog
    from shipyard.auth.principal import Principal
    from shipyard.auth.store import AuthStore
    from shipyard.data.catalog import DataCatalog
    from shipyard.features import FeatureStore
    from shipyard.features.protocol import FeaturesAPI
    from shipyard.models.registry import ModelRegistry
    from shipyard.models.registry.protocol import RegistryAPI
    from shipyard.monitoring import Monitoring
    from shipyard.pipelines.schedules import Schedules
    from shipyard.pipelines.service import Pipelines
    from shipyard.secrets import SecretStore
    from shipyard.tracking import Tracking
    from shipyard.tracking.protocol import TrackingAPI


def open_metadata(settings: Settings) -> MetadataStore:
    """The project's metadata store, upgraded when ``auto_migrate`` allows it, else checked to be
    current (a schema that is behind is refused, naming ``shipyard db upgrade``)."""
    store = MetadataStore(settings.metadata_url, schema=settings.metadata_schema, migrate=settings.auto_migrate)
    if not settings.auto_migrate:
        try:
            store.require_current()
        except BaseException:
            store.dispose()
            raise
    return store


class Workspace:
    def __init__(self, settings: Settings, *, token: str | None = None, control: MetadataStore | None = None,
                 principal: Principal | None = None) -> None:
        self.settings = settings
        self.store = open_metadata(settings)
        self.artifacts = ArtifactStore(settings.artifact_root, settings.artifact_options)
        self._token = token
        # the server's own database (users, tokens, audit); the project's own for the default project
        self._control = control
        # resolved now, outside any transaction: a token is checked against the database, which
        # must not happen from inside a write that records who made it
        self.__dict__["principal"] = principal if principal is not None else self._resolve_principal()
        self._acting: dict[str, Workspace] = {}
        self._acting_lock = threading.Lock()

    @property
    def project(self) -> str:
        return self.settings.project

    @cached_property
    def control_store(self) -> MetadataStore:
        if self._control is not None:
            return self._control
        if self.settings.project == DEFAULT_PROJECT:
            return self.store
        return open_metadata(load_settings(self.settings.project_dir.parent.parent))

    @cached_property
    def auth(self) -> AuthStore:
        from shipyard.auth.store import AuthStore

        return AuthStore(self.control_store)

    @cached_property
    def audit(self) -> AuditLog:
        from shipyard.auth.audit import AuditLog

        return AuditLog(self.control_store)

    @cached_property
    def principal(self) -> Principal:
        """Who acts through this workspace (see the module docstring)."""
        return self._resolve_principal()

    def _resolve_principal(self) -> Principal:
        from shipyard.auth.credentials import project_token
        from shipyard.auth.principal import Principal
        from shipyard.errors import Unauthorized

        token, source = self._token, "the token argument"
        if not token and os.environ.get(TOKEN_ENV):
            token, source = os.environ[TOKEN_ENV], TOKEN_ENV
        if not token:
            token, source = project_token(self._server_dir()), ".shipyard/credentials"
        if not token:
            return Principal(name=self.settings.user, kind="local")
        try:
            return self.auth.authenticate(token)
        except Unauthorized as exc:
            raise Unauthorized(f"the token from {source} is not valid for this project ({exc.message})",
                               {"field": source}) from None

    @property
    def user(self) -> str:
        """The acting user's name: the caller of the request being served, else ``principal``."""
        from shipyard.auth.principal import ACTING

        acting = ACTING.get()
        return acting.name if acting is not None else self.principal.name

    def acting_as(self, actor: str) -> Workspace:
        """This project's workspace acting as ``actor``, named and not looked up from a token (a
        pipeline node's code uses it, and no token is in its reach); kept until this one closes."""
        from shipyard.auth.principal import Principal

        with self._acting_lock:
            if actor not in self._acting:
                self._acting[actor] = Workspace(dataclasses.replace(self.settings, user=actor),
                                                principal=Principal(name=actor, kind="local"))
            return self._acting[actor]

    def _server_dir(self) -> Path:
        if self.settings.project == DEFAULT_PROJECT:
            return self.settings.project_dir
        return self.settings.project_dir.parent.parent

    @cached_property
    def tracking(self) -> Tracking:
        from shipyard.tracking import Tracking

        return Tracking(self)

    @cached_property
    def registry(self) -> ModelRegistry:
        from shipyard.models.registry import ModelRegistry

        return ModelRegistry(self)

    @cached_property
    def features(self) -> FeatureStore:
        from shipyard.features import FeatureStore

        return FeatureStore(self)

    @cached_property
    def secrets(self) -> SecretStore:
        from shipyard.secrets import SecretStore

        return SecretStore(self.store, self.settings.state_dir)

    @cached_property
    def data(self) -> DataCatalog:
        from shipyard.data.catalog import DataCatalog

        return DataCatalog(self.store, self.artifacts, self.secrets, self.settings.project_dir,
                           scratch_dir=self.settings.state_dir / "tmp" / "datasets")

    @cached_property
    def pipelines(self) -> Pipelines:
        from shipyard.pipelines.service import Pipelines

        return Pipelines(self)

    @cached_property
    def schedules(self) -> Schedules:
        from shipyard.pipelines.schedules import Schedules

        return Schedules(self.store)

    @cached_property
    def monitoring(self) -> Monitoring:
        from shipyard.monitoring import Monitoring

        return Monitoring(self.store, self.artifacts, feature_monitor=lambda views: self.features.monitor(views),
                          model_lineage=lambda name, version: self.registry.get_version(name, version).lineage,
                          secrets=lambda name: self.secrets.get(name),
                          dataset_reader=lambda name, version: self.data.read(name, version))

    def close(self) -> None:
        with self._acting_lock:
            acting, self._acting = list(self._acting.values()), {}
        for ws in acting:
            ws.close()
        self.store.dispose()

    def __repr__(self) -> str:
        return (f"Workspace(project={self.settings.project!r}, project_dir={str(self.settings.project_dir)!r}, "
                f"metadata_url={redact_url(self.settings.metadata_url)!r})")


#: a server URL (http://, https://) or a project folder, used by ``connect()`` and ``current()`` when
#: no project is named (as MLFLOW_TRACKING_URI is for MLflow)
TRACKING_URI_ENV = "SHIPYARD_TRACKING_URI"

class Session(Protocol):
    """What ``connect`` opens: a local ``Workspace`` or a server's ``sy.Client``, with the same registry,
    tracking and features interfaces."""

    @property
    def registry(self) -> RegistryAPI: ...

    @property
    def tracking(self) -> TrackingAPI: ...

    @property
    def features(self) -> FeaturesAPI: ...


_current: Session | None = None
_current_lock = threading.Lock()


def _is_server(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def _open(target: str | Path | None, token: str | None, overrides: dict[str, Any]) -> Session:
    if target is None and os.environ.get(TRACKING_URI_ENV):
        target = os.environ[TRACKING_URI_ENV]
    if _is_server(target):
        from shipyard.client import Client

        unknown = sorted(set(overrides) - {"project", "timeout"})
        if unknown:
            raise InvalidInput(f"{unknown[0]!r} is a setting of a local project; a server ({target}) takes only "
                               "project= and timeout=", {"field": unknown[0]})
        return Client(str(target), token=token, **overrides)
    return Workspace(load_settings(target, **overrides), token=token)


def connect(project_dir: str | Path | None = None, *, token: str | None = None,
            **overrides: Any) -> Session:
    """Open the project's workspace, or a server, and make it the default for ``sy.start_run``,
    ``sy.log_model`` and friends.

    ``project_dir`` is a project folder, or a server's URL (``"http://host:8000"``): then the
    registry, tracking and features calls go to that server (``sy.Client``), acting as the user of
    ``token``, else of SHIPYARD_TOKEN, else of the token ``shipyard login URL`` saved. Without
    ``project_dir``, the SHIPYARD_TRACKING_URI environment variable names either. ``token`` acts as
    that token's user (see the module docstring for where a token is found otherwise);
    ``project="name"`` opens a hosted project.
    """
    global _current
    session = _open(project_dir, token, overrides)
    with _current_lock:
        _current = session
    return session


def current() -> Session:
    """The workspace or server last opened by ``connect``; on first use, SHIPYARD_TRACKING_URI's or
    the default project."""
    global _current
    with _current_lock:
        if _current is None:
            _current = _open(None, None, {})
        return _current
