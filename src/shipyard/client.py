"""HTTP client for a remote Shipyard server; server errors come back as the same error classes.

``sy.Client(url)`` offers the same Python API as a local workspace: ``.models`` (the registry),
``.runs`` (tracking), ``.features`` and ``.scenes``. The registry, tracking and features views
implement the same typed interfaces as their local counterparts (``RegistryAPI``, ``TrackingAPI``,
``FeaturesAPI``), so code written against one runs against the other.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from shipyard.connection import Connection
from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    from shipyard.features.remote import RemoteFeatures
    from shipyard.models.remote import RemoteRegistry
    from shipyard.serving.remote import RemoteServing
    from shipyard.tracking.remote import RemoteTracking


class Client(Connection):
    """A remote server, acting as a token's user.

    The token is ``token``, else the ``SHIPYARD_TOKEN`` environment variable, else the one
    ``shipyard login URL`` saved for this URL. ``project`` names the project to act in (default:
    the token's project, else ``default``).
    """

    # Each view lives beside its subsystem (``remote.py``) and is imported on first use, so that
    # ``import shipyard.client`` stays light; the views import only ``shipyard.connection``.
    @cached_property
    def runs(self) -> RemoteTracking:
        from shipyard.tracking.remote import RemoteTracking

        return RemoteTracking(self)

    @property
    def tracking(self) -> RemoteTracking:
        """The same as ``runs``, under the local workspace's name."""
        return self.runs

    @cached_property
    def models(self) -> RemoteRegistry:
        from shipyard.models.remote import RemoteRegistry

        return RemoteRegistry(self)

    @property
    def registry(self) -> RemoteRegistry:
        """The same as ``models``, under the local workspace's name."""
        return self.models

    @cached_property
    def features(self) -> RemoteFeatures:
        from shipyard.features.remote import RemoteFeatures

        return RemoteFeatures(self)

    @cached_property
    def scenes(self) -> RemoteServing:
        from shipyard.serving.remote import RemoteServing

        return RemoteServing(self)

    def health(self) -> dict[str, Any]:
        return self.get("/healthz")

    def whoami(self) -> dict[str, Any]:
        """The user this client acts as, with its roles per project."""
        return self.get("/api/v1/auth/whoami")

    @property
    def user(self) -> str:
        """The name of the token's user, as the server knows it."""
        return str(self.whoami()["name"])

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, project={self.project!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "ShipyardError"]
