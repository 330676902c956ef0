"""One authenticated HTTP connection to a Shipyard server; server errors come back as the same classes.

The subsystems' ``remote.py`` modules speak through a ``Connection``; ``shipyard.client.Client``
puts them together. Keeping the transport here, below both, is what lets the client import the
remote views without the views importing the client back.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from shipyard.config import TOKEN_ENV
from shipyard.errors import StoreUnavailable, error_from_dict


def resolve_token(url: str, token: str | None = None) -> str | None:
    """``token``, else SHIPYARD_TOKEN, else the one ``shipyard login URL`` saved for ``url``."""
    from shipyard.auth.credentials import server_token

    return token or os.environ.get(TOKEN_ENV) or server_token(url)


class Connection:
    """Requests to ``url`` as the token's user; the server decides who that is (no user name is sent)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0,
                 project: str | None = None) -> None:
        self.url = url.rstrip("/")
        token = resolve_token(self.url, token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if project:
            headers["X-Shipyard-Project"] = project
        self.project = project
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer (bytes for other content, None when empty); errors raised as ShipyardError."""
        try:
            # build_request + send is what Client.request does; a per-request timeout (uploads pass
            # timeout=None) rides on the request, also when the client is Starlette's TestClient,
            # whose request() deprecates a timeout argument
            response = self._http.send(self._http.build_request(method, path, **kwargs))
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

    def close(self) -> None:
        self._http.close()
