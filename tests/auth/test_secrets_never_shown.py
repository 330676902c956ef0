"""A known secret — the database password — never appears in any response, log line, error or CLI
output of a server and CLI session that uses it (PostgreSQL accepts any password here: trust auth)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

CANARY = "s3cr3t-Canary-7f3a9b"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.postgres
def test_the_database_password_never_leaks(postgres_url: str, tmp_path: Path) -> None:
    url = sa.make_url(postgres_url).set(password=CANARY).render_as_string(hide_password=False)
    project = tmp_path / "project"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_METADATA_URL=url, SHIPYARD_PROJECT_DIR=str(project), SHIPYARD_VALIDATION_SUBPROCESS="false")
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "shipyard.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        outputs.extend([done.stdout, done.stderr])
        return done

    assert cli("init", str(project)).returncode == 0
    cli("runs", "list")
    cli("models", "versions", "nope")          # an error
    cli("models", "register", str(tmp_path), "--name", "x")  # another
    cli("users", "list")
    cli("--verbose", "features", "plan")
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--verbose", "server", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        token = json.loads((project / ".shipyard" / "credentials").read_text())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        requests = [("GET", "/api/v1/models", {}), ("GET", "/api/v1/models", auth),
                    ("POST", "/api/v1/experiments", {"json": {"name": "x"}, **{}}),
                    ("GET", "/readyz", {}), ("GET", "/openapi.json", {}), ("GET", "/metrics", auth)]
        for method, path, extra in requests:
            headers = extra if "Authorization" in extra else {}
            kwargs = {k: v for k, v in extra.items() if k != "Authorization"}
            outputs.append(httpx.request(method, base + path, headers=headers, timeout=30, **kwargs).text)
        for method, path, body in (("POST", "/api/v1/experiments", {"name": ""}),
                                   ("POST", "/api/v1/runs/search", {"filter": "metrics.x >>> 1"}),
                                   ("POST", "/api/v1/models/x/versions", {"source": "runs:/nope/model"}),
                                   ("POST", "/api/v1/features/plan", {}),
                                   ("GET", "/api/v1/users", None), ("GET", "/api/v1/audit", None),
                                   ("POST", "/v1/scenes/nope/predict", {"a": 1})):
            outputs.append(httpx.request(method, base + path, json=body, headers=auth, timeout=30).text)
    finally:
        server.terminate()
        server.wait(30)
    outputs.append(log.read_text())
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(project, metadata_url=url))
    outputs += [repr(ws), repr(ws.settings), repr(ws.store), str(ws.settings.to_dict())]
    ws.close()
    leaked = [text for text in outputs if CANARY in text]
    assert leaked == [], leaked[0][:2000]
    assert any("admin" in text for text in outputs)  # the session did real work
