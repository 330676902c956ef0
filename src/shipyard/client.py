"""HTTP client for a remote Shipyard server; server errors come back as the same error classes."""

from __future__ import annotations

from typing import Any

import httpx

from shipyard.errors import ShipyardError, StoreUnavailable, error_from_dict


class Client:
    """A remote server, acting as a token's user.

    The token is ``token``, else the ``SHIPYARD_TOKEN`` environment variable, else the one
    ``shipyard login URL`` saved for this URL. ``project`` names the project to act in (default:
    the token's project, else ``default``).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0,
                 project: str | None = None):
        import os

        from shipyard.auth.credentials import server_token

        self.url = url.rstrip("/")
        token = token or os.environ.get("SHIPYARD_TOKEN") or server_token(self.url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if project:
            headers["X-Shipyard-Project"] = project
        self.project = project
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach Shipyard server at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"error": {"code": "internal", "message": response.text[:500]}}
            raise error_from_dict(payload, response.status_code)
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    # Subsystem views over this connection; each lives beside its subsystem as ``remote.py``.
    @property
    def runs(self) -> Any:
        from shipyard.tracking.remote import RemoteTracking

        return RemoteTracking(self)

    @property
    def models(self) -> Any:
        from shipyard.models.remote import RemoteRegistry

        return RemoteRegistry(self)

    @property
    def features(self) -> Any:
        from shipyard.features.remote import RemoteFeatures

        return RemoteFeatures(self)

    @property
    def scenes(self) -> Any:
        from shipyard.serving.remote import RemoteServing

        return RemoteServing(self)

    def health(self) -> dict[str, Any]:
        return self.get("/healthz")

    def whoami(self) -> dict[str, Any]:
        """The user this client acts as, with its roles per project."""
        return self.get("/api/v1/auth/whoami")

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, project={self.project!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "ShipyardError"]
