"""A real OpenID Connect provider (oidc-provider-mock, built on Authlib's server side) and a real
Shipyard server, each on a free loopback port in a thread, for the single sign-on tests."""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.workspace import Workspace

CALLBACK = "/api/v1/auth/oidc/callback"
ROLE_MAP = {
    "ml-modelers": {"credit": "modeler", "default": "viewer"},
    "ml-reviewers": {"credit": ["reviewer", "viewer"]},
    "ml-admins": {"*": "admin"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]


class Recorder:
    """WSGI wrapper keeping what the provider was sent (to check PKCE from the provider's side)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        # threads that served the provider: their log records are the provider's, not Shipyard's
        self.threads: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        body = b""
        if environ.get("REQUEST_METHOD") == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
        self.seen.append(Seen(environ["REQUEST_METHOD"], environ["PATH_INFO"],
                              parse_qs(environ.get("QUERY_STRING", "")), parse_qs(body.decode("latin-1"))))
        return self.app(environ, start_response)


@dataclass
class Provider:
    url: str
    recorder: Recorder

    def set_user(self, sub: str, **claims: Any) -> None:
        httpx.put(f"{self.url}/users/{sub}", json=claims).raise_for_status()

    def register(self, redirect_uri: str) -> tuple[str, str]:
        made = httpx.post(f"{self.url}/oauth2/clients", json={"redirect_uris": [redirect_uri]})
        made.raise_for_status()
        return made.json()["client_id"], made.json()["client_secret"]


class ProviderServer:
    def __init__(self, token_max_age: timedelta = timedelta(hours=1)) -> None:
        import oidc_provider_mock
        import werkzeug.serving

        app = oidc_provider_mock.app(require_client_registration=True, require_nonce=True,
                                     access_token_max_age=token_max_age)
        self.recorder = Recorder(app)
        self.server = werkzeug.serving.make_server("127.0.0.1", 0, self.recorder, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Provider:
        self.thread.start()
        return Provider(f"http://127.0.0.1:{self.server.server_port}", self.recorder)

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@dataclass
class Shipyard:
    url: str
    ws: Workspace
    secret: str
    client_id: str
    env: str
    responses: list[httpx.Response] = field(default_factory=list)

    def browser(self) -> httpx.Client:
        """A fresh browser: follows redirects, keeps cookies, and keeps every response it saw."""
        return httpx.Client(follow_redirects=True, timeout=30,
                            event_hooks={"response": [lambda r: (r.read(), self.responses.append(r))]})

    def sign_in(self, browser: httpx.Client, sub: str, next_path: str = "/api/v1/auth/whoami") -> httpx.Response:
        """Start at Shipyard, sign in as ``sub`` on the provider's page, follow every redirect back."""
        page = browser.get(f"{self.url}/api/v1/auth/oidc/login", params={"next": next_path})
        assert page.status_code == 200 and 'name="sub"' in page.text, page.text[:500]  # the provider's form
        return browser.post(str(page.url), data={"sub": sub})


class ShipyardServer:
    """uvicorn serving a Shipyard app whose ``oidc`` setting points at ``provider``."""

    def __init__(self, provider: Provider, metadata_url: str, project_dir: Any, *, secret: str | None = None,
                 **oidc: Any) -> None:
        import uvicorn

        from shipyard.server import create_app

        self.port = free_port()
        base = f"http://127.0.0.1:{self.port}"
        client_id, issued = provider.register(base + CALLBACK)
        self.env = f"SHIPYARD_TEST_OIDC_SECRET_{uuid.uuid4().hex[:8].upper()}"
        os.environ[self.env] = secret if secret is not None else issued
        settings = {"issuer": provider.url, "client_id": client_id, "client_secret_env": self.env,
                    "redirect_base": base, "role_map": ROLE_MAP, **oidc}
        self.ws = Workspace(load_settings(project_dir, metadata_url=metadata_url, oidc=settings,
                                          validation_subprocess=False), principal=SERVER)
        self.ws.auth.ensure_default_project()
        self.ws.auth.create_project("credit", actor="test")
        self.shipyard = Shipyard(base, self.ws, issued, client_id, self.env)
        # log_config=None: uvicorn's records go to the root logger, where the tests capture them
        config = uvicorn.Config(create_app(self.ws, follow_interval=0), host="127.0.0.1", port=self.port,
                                log_config=None, log_level=logging.DEBUG, access_log=True, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Shipyard:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self.shipyard

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.ws.close()
        os.environ.pop(self.env, None)
