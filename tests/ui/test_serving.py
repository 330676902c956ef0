"""The UI's page, static files and API docs as the server sends them: security headers, no CDN,
caching, compression, and no file outside the static folder."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shipyard.auth.permissions import ROLE_PERMISSIONS
from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.errors import InvalidInput, NotFound
from shipyard.server import create_app
from shipyard.store.schema import api_tokens
from shipyard.ui import login_link
from shipyard.ui.assets import STATIC_DIR, Assets
from shipyard.workspace import Workspace
from tests.conftest import user_token

SECURITY = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.fixture
def server_ws(tmp_path):
    ws = Workspace(load_settings(tmp_path / "project", validation_subprocess=False), principal=SERVER)
    yield ws
    ws.close()


@pytest.fixture
def client(server_ws):
    with TestClient(create_app(server_ws, follow_interval=0), raise_server_exceptions=False) as http:
        yield http


def _config(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="sy-config">(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_the_page_is_served_at_root_with_strict_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, value in SECURITY.items():
        assert page.headers[name] == value
    csp = page.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert script_src.split() == ["'self'"]  # no inline or eval'd script
    assert "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-cache"
    # the only inline <script> is the JSON configuration, which a browser does not execute
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert all('type="application/json"' in attrs or ("src=" in attrs and not body.strip())
               for attrs, body in scripts)
    assert "http://" not in page.text and "https://" not in page.text
    for path in ("/ui", "/ui/"):
        moved = client.get(path, follow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == "/"


def test_the_role_table_in_the_page_is_the_servers(client):
    config = _config(client.get("/").text)
    assert set(config["roles"]) == set(ROLE_PERMISSIONS)
    for role, permissions in ROLE_PERMISSIONS.items():
        assert set(config["roles"][role]) == {f"{r}:{a}" for r, a in permissions}
    assert {"runs", "models", "features", "scenes", "auth"} <= set(config["apis"])


def test_every_file_the_page_names_is_served_compressed_and_cached(client):
    page = client.get("/").text
    urls = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', page)
    assert any(u.endswith("/js/main.js") for u in urls) and any(u.endswith("/app.css") for u in urls)
    for url in urls:
        plain = client.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200, url
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        for name, value in SECURITY.items():
            assert plain.headers[name] == value
        packed = client.get(url, headers={"Accept-Encoding": "gzip"})
        if len(plain.content) >= 512 and not url.endswith(".png"):
            assert packed.headers.get("content-encoding") == "gzip"
            assert len(packed.headers["content-length"]) and int(packed.headers["content-length"]) < len(plain.content)
        assert packed.content == plain.content  # the client decompressed it
        again = client.get(url, headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_module_imports_all_resolve_to_served_files(client):
    """Every relative import in the app's modules names a file the server has."""
    build = _config(client.get("/").text)["build"]
    files = set(Assets().files())
    for rel in files:
        if not rel.startswith("js/"):
            continue
        text = (STATIC_DIR / rel).read_text()
        for target in re.findall(r"""(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""", text):
            base = rel.rsplit("/", 1)[0]
            parts = f"{base}/{target}".split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in (".", ""):
                    resolved.append(part)
            path = "/".join(resolved)
            assert path in files, f"{rel} imports {target}, which is not a served file"
            assert client.get(f"/ui/static/{build}/{path}").status_code == 200


@pytest.mark.parametrize("path", ["../shell.py", "..%2Fshell.py", "js/../../http.py", ".hidden", "nope.js",
                                  "vendor/../../__init__.py", "js/%2e%2e/%2e%2e/links.py"])
def test_nothing_outside_the_static_folder_is_served(client, path):
    build = _config(client.get("/").text)["build"]
    response = client.get(f"/ui/static/{build}/{path}")
    assert response.status_code == 404
    assert b"import" not in response.content


def test_an_old_build_id_gets_the_file_but_is_not_cached_for_long(client):
    response = client.get("/ui/static/000000000000/app.css")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"


def test_api_docs_use_vendored_swagger_with_a_hashed_inline_script(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn." not in docs.text and "https://" not in docs.text
    for name, value in SECURITY.items():
        assert docs.headers[name] == value
    csp = docs.headers["content-security-policy"]
    assert "'unsafe-inline'" not in re.search(r"script-src ([^;]*)", csp).group(1)
    assert "'sha256-" in csp
    for url in re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', docs.text):
        assert client.get(url).status_code == 200
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_vendored_assets_carry_their_licences():
    vendor = STATIC_DIR / "vendor"
    packages = [p for p in vendor.iterdir() if p.is_dir()]
    assert packages
    for package in packages:
        assert (package / "LICENSE").is_file(), f"{package.name} has no LICENSE file"


def test_assets_total_under_one_megabyte_compressed():
    raw, packed = Assets().sizes()
    assert packed < 1_000_000, f"{packed} bytes compressed"
    assert raw > packed


# -- login links --------------------------------------------------------------------------------
def test_a_login_link_signs_in_once_and_opens_the_project(client, server_ws):
    user_token(server_ws, "ana", "viewer", "default")
    url = login_link(server_ws, "http://127.0.0.1:9/", user="ana", project="default", minutes=5)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == ("http", "127.0.0.1:9", "/", "")
    route, _, query = parts.fragment.partition("?")
    assert route == "/link"
    params = parse_qs(query)
    assert params["project"] == ["default"]
    token = params["token"][0]
    first = client.post("/api/v1/auth/link", json={"token": token})
    assert first.status_code == 200 and first.json()["user"] == "ana"
    assert client.get("/api/v1/auth/whoami").json()["name"] == "ana"  # the session cookie works
    client.cookies.clear()
    assert client.post("/api/v1/auth/link", json={"token": token}).status_code == 401


def test_login_links_refuse_bad_input_and_create_nothing(server_ws):
    user_token(server_ws, "ana", "viewer", "default")
    server_ws.auth.create_user("robot", kind="service", actor="test")
    before = _links(server_ws)
    cases = [({"base_url": "ftp://x"}, "url"), ({"base_url": "http://x/?a=1"}, "url"),
             ({"minutes": 0}, "expires_minutes"), ({"minutes": 1e9}, "expires_minutes"),
             ({"user": "robot"}, "user")]
    for kwargs, field in cases:
        base = kwargs.pop("base_url", "http://127.0.0.1:8000")
        with pytest.raises(InvalidInput) as info:
            login_link(server_ws, base, **{"user": "ana", **kwargs})
        assert info.value.details["field"] == field
    with pytest.raises(NotFound, match="nobody"):
        login_link(server_ws, user="nobody")
    with pytest.raises(NotFound, match="shipyard projects create"):
        login_link(server_ws, user="ana", project="nowhere")
    assert _links(server_ws) == before == 0


def _links(ws) -> int:
    with ws.auth.store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(api_tokens)
                            .where(api_tokens.c.kind == "login_link")).scalar_one()


def test_shipyard_ui_link_prints_a_working_link(tmp_path, monkeypatch):
    from shipyard.cli import main

    runner = CliRunner()
    project = tmp_path / "proj"
    assert runner.invoke(main, ["init", str(project)]).exit_code == 0
    monkeypatch.delenv("SHIPYARD_TOKEN", raising=False)
    result = runner.invoke(main, ["-p", str(project), "ui", "link", "--url", "http://example.test:8123"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip().splitlines()[0]
    assert url.startswith("http://example.test:8123/#/link?token=shy_")
    token = parse_qs(urlsplit(url).fragment.partition("?")[2])["token"][0]
    ws = Workspace(load_settings(project), principal=SERVER)
    try:
        assert ws.auth.use_login_link(token) == "admin"
    finally:
        ws.close()
    refused = runner.invoke(main, ["-p", str(project), "ui", "link", "--expires-minutes", "0"])
    assert refused.exit_code == 2 and "expires-minutes" in refused.output


def test_the_server_command_the_demo_prints_is_one_the_cli_accepts(tmp_path, monkeypatch):
    import shlex

    from shipyard.cli import main
    from shipyard.ui import announce_login_link

    runner = CliRunner()
    project = tmp_path / "proj"
    assert runner.invoke(main, ["init", str(project)]).exit_code == 0
    monkeypatch.delenv("SHIPYARD_TOKEN", raising=False)
    ws = Workspace(load_settings(project))
    said: list[str] = []
    try:
        announce_login_link(ws, said.append)
    finally:
        ws.close()
    command = re.search(r"`(shipyard [^`]+)`", said[0]).group(1)
    args = shlex.split(command)[1:]
    assert "server" in args
    checked = runner.invoke(main, [*args, "--help"])  # parses every option, starts nothing
    assert checked.exit_code == 0, (command, checked.output)
