"""REST routes of data sources and datasets: permissions, secret values and server paths never in
responses or the audit log, refresh/versions/diff/profile over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import user_token

SECRET = "pg-Passw0rd-55e1"


@pytest.fixture
def server_ws(tmp_path: Path) -> Iterator[Workspace]:
    settings = load_settings(tmp_path / "project", validation_subprocess=False, validation_timing_calls=5)
    ws = Workspace(settings, principal=SERVER)
    yield ws
    ws.close()


@pytest.fixture
def client(server_ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(server_ws, follow_interval=0), raise_server_exceptions=False) as http:
        yield http


def _as(ws: Workspace, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(ws, role + '_user', role, 'default')}"}


def test_sources_and_datasets_over_http(client: TestClient, server_ws: Workspace) -> None:
    project = server_ws.settings.project_dir
    (project / "data").mkdir(parents=True)
    pd.DataFrame({"x": range(100), "bad": [0, 1] * 50}).to_csv(project / "data" / "loans.csv", index=False)
    modeler, viewer, admin = _as(server_ws, "modeler"), _as(server_ws, "viewer"), _as(server_ws, "admin")
    server_ws.secrets.put("pg_pw", SECRET, actor="admin")
    seen: list[str] = []

    def call(method: str, path: str, headers: dict[str, str], expect: int, **kw: object) -> dict:
        response = client.request(method, f"/api/v1{path}", headers=headers, **kw)
        seen.append(response.text)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content and "json" in response.headers["content-type"] else {}

    call("POST", "/data/sources", viewer, 403, json={"name": "files", "kind": "file", "spec": {"root": "data"}})
    files = call("POST", "/data/sources", modeler, 201, json={"name": "files", "kind": "file", "spec": {"root": "data"}})
    assert files["spec"]["root"] == "data"
    # a folder outside the project is the server's own files: only an admin adds such a source
    outside = {"name": "etc", "kind": "file", "spec": {"root": "/etc"}}
    call("POST", "/data/sources", modeler, 403, json=outside)
    assert call("POST", "/data/sources", admin, 201, json=outside)["spec"]["root"] == "(a folder outside the project)"
    call("POST", "/data/sources", modeler, 403, json={"name": "lite", "kind": "sql", "spec": {"url": "sqlite:////x.db"}})
    pg = {"name": "pg", "kind": "sql", "spec": {"url": "postgresql+psycopg://etl@127.0.0.1:1/dwh",
                                                 "secrets": {"password": "pg_pw"}}}
    assert call("POST", "/data/sources", modeler, 201, json=pg)["spec"]["secrets"] == {"password": "pg_pw"}
    assert not call("POST", "/data/sources/pg/test", modeler, 200)["ok"]
    call("POST", "/data/sources/pg/test", viewer, 403)
    listed = call("GET", "/data/sources", viewer, 200)
    assert {s["name"] for s in listed} == {"files", "etc", "pg"}
    preview = call("POST", "/data/sources/files/preview", modeler, 200, json={"path": "loans.csv", "limit": 3})
    assert preview["columns"] == ["x", "bad"] and preview["rows"] == [[0, 0], [1, 1], [2, 0]]

    call("POST", "/datasets", modeler, 201, json={"name": "loans", "source": "files",
                                                 "spec": {"path": "loans.csv", "profile": {"target": "bad"}}})
    # a refresh killed mid-way left its scratch folder: the next refresh removes it, and its own
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    scratch = server_ws.settings.state_dir / "tmp" / "datasets"
    (scratch / f"refresh-{dead.pid}-left").mkdir(parents=True)
    (scratch / f"refresh-{dead.pid}-left" / "part-0.parquet").write_bytes(b"x")
    refreshed = call("POST", "/datasets/loans/refresh", modeler, 200, json={})
    assert list(scratch.iterdir()) == []
    assert refreshed["created"] and refreshed["version"]["rows"] == 100
    pd.DataFrame({"x": range(120), "bad": [0, 1] * 60}).to_csv(project / "data" / "loans.csv", index=False)
    call("POST", "/datasets/loans/refresh", modeler, 200, json={"chunk_rows": 50})
    versions = call("GET", "/datasets/loans/versions", viewer, 200)
    assert [v["rows"] for v in versions] == [100, 120]
    assert call("GET", "/datasets/loans/diff", viewer, 200)["row_delta"] == 20
    assert call("GET", "/datasets/loans/versions/2/rows?limit=2", viewer, 200)["rows"] == [[0, 0], [1, 1]]
    assert call("GET", "/datasets/loans/versions/1/profile", viewer, 200)["overview"]["rows"] == 100
    html = client.get("/api/v1/datasets/loans/versions/latest/profile?format=html", headers=viewer)
    assert html.status_code == 200 and html.text.startswith("<!") and len(html.text) > 1000
    assert call("GET", "/datasets/loans", viewer, 200)["latest_version"] == 2
    assert call("GET", "/datasets/loans/lineage", viewer, 200)["versions"] == [1, 2]
    call("GET", "/datasets/nosuch/versions", viewer, 404)
    # a version beyond the database's integers is refused naming the field and the range
    huge = "99999999999999999999999"
    for path, field in ((f"/datasets/loans/diff?a={huge}&b=2", "a"), (f"/datasets/loans/diff?a=1&b={huge}", "b"),
                        ("/datasets/loans/diff?a=x&b=2", "a"), ("/datasets/loans/diff?a=0&b=2", "a"),
                        (f"/datasets/loans/versions/{huge}", "version"),
                        (f"/datasets/loans/versions/{huge}/rows", "version"),
                        (f"/datasets/loans/versions/{huge}/profile", "version")):
        error = call("GET", path, viewer, 400)["error"]
        assert error["details"]["field"] == field, (path, error)
        assert field in error["message"]
        if "x" not in path:
            assert str(2**31 - 1) in error["message"], error
    call("POST", "/datasets", modeler, 400, json={"name": "bad", "source": "files", "spec": {"query": "x"}})
    # a path leaving the source's root is refused when saved, by the rule that refuses it when read
    for path in ("../../.shipyard/credentials", "a/../../b.csv", "s3://other/x.csv"):
        error = call("POST", "/datasets", modeler, 400, json={"name": "creds", "source": "files",
                                                              "spec": {"path": path}})["error"]
        assert error["details"]["field"] == "path", error
    call("GET", "/datasets/creds", viewer, 404)
    call("DELETE", "/data/sources/files", modeler, 409)
    for text in seen:
        assert SECRET not in text and str(project) not in text
    audit = json.dumps([r.__dict__ for r in server_ws.audit.list(limit=1000)], default=str)
    assert SECRET not in audit
