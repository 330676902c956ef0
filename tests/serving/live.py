"""Which token each live test server of this session accepts (shared by conftest and the tests)."""

from __future__ import annotations

SERVER_HEADERS: dict[str, dict[str, str]] = {}


def auth_for(url: str) -> dict[str, str]:
    """The admin Authorization header of the live server at ``url`` (or a URL under it)."""
    for base, headers in SERVER_HEADERS.items():
        if url.startswith(base):
            return headers
    raise KeyError(url)
