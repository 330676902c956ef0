"""One-time login links: a URL that opens the UI signed in, for the first sign-in of a person.

The token travels in the URL's fragment (``/#/link?token=...``), which browsers never send to a
server, so it stays out of access logs and Referer headers; the UI posts it once to
``POST /api/v1/auth/link`` for a session cookie and then removes it from the address bar.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.auth.store import AuthStore
    from shipyard.workspace import Workspace

LINK_ROUTE = "/#/link"
DEFAULT_MINUTES = 60.0
MAX_MINUTES = 7 * 24 * 60.0
# people sign in; service accounts act with tokens
SIGN_IN_KINDS = ("person", "oidc")


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, when it is an http(s) URL with a host and no query."""
    parts = urlsplit(base_url.strip()) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInput(f"the UI's URL {base_url!r} is not valid; give the server's address, e.g. "
                           "http://127.0.0.1:8000 (with --url)", {"field": "url"})
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def server_url(host: str, port: int, scheme: str = "http") -> str:
    """The address a browser on this machine uses for a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def create_login_link(auth: AuthStore, user: str, base_url: str, *, project: str | None = None,
                      minutes: float = DEFAULT_MINUTES, actor: str) -> str:
    """A URL that signs ``user`` in once, within ``minutes``, and opens the UI on ``project``."""
    base = check_base_url(base_url)
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= MAX_MINUTES:
        raise InvalidInput(f"a login link's lifetime must be in (0, {MAX_MINUTES:g}] minutes, got {minutes!r}",
                           {"field": "expires_minutes"})
    record = auth.get_user(user)  # NotFound names the fix
    if record.kind not in SIGN_IN_KINDS:
        raise InvalidInput(f"user {user!r} is a {record.kind} account, which signs in with tokens only; "
                           "give a person's name with --user", {"field": "user"})
    if project is not None:
        auth.get_project(project)
    made = auth.create_token(user, name="login link", kind="login_link", expires_in_days=minutes / 1440,
                             actor=actor)
    query = {"token": made.token}
    if project is not None:
        query["project"] = project
    return f"{base}{LINK_ROUTE}?{urlencode(query)}"


def login_link(ws: Workspace, base_url: str | None = None, *, user: str | None = None,
               project: str | None = None, minutes: float = DEFAULT_MINUTES) -> str:
    """A one-time login link for ``user`` (default: the workspace's user) that opens the UI of the
    server at ``base_url`` (default: the project's server address) on ``project`` (default: the
    workspace's project). ``shipyard demo`` prints one at its end."""
    settings = ws.settings
    base = base_url or server_url(settings.server_host, settings.server_port)
    return create_login_link(ws.auth, user or ws.user, base, project=project or settings.project,
                             minutes=minutes, actor=ws.user)


def announce_login_link(ws: Workspace, say: Callable[[str], None], *, minutes: float = 24 * 60.0) -> str:
    """Print how to open the UI signed in as the workspace's user (``shipyard demo`` ends with this);
    returns the link."""
    settings = ws.settings
    link = login_link(ws, minutes=minutes)
    # -p belongs to `shipyard` itself, before the command
    say(f"Web UI: run `shipyard -p {shlex.quote(str(settings.project_dir))} server` and open this link (it works once, within "
        f"{minutes / 60:g} h; later, `shipyard ui link` prints a new one):")
    say(f"      {link}")
    return link
