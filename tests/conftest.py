"""Shared fixtures: a workspace on every metadata backend, an artifact store on every backend.

Real backends are enabled by environment variables (``.ci/run`` sets them after starting the
services): SHIPYARD_TEST_POSTGRES_URL (a server URL; each test session gets its own database),
SHIPYARD_TEST_S3=1 (a moto server is started on loopback), SHIPYARD_TEST_REDIS_URL,
SHIPYARD_TEST_NATS_URL, SHIPYARD_TEST_SPARK=1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.config import load_settings
from shipyard.workspace import Workspace

# Spark's Python workers must run this interpreter (with pandas, pyarrow and shipyard installed).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

POSTGRES_URL = os.environ.get("SHIPYARD_TEST_POSTGRES_URL", "")
S3_ENABLED = os.environ.get("SHIPYARD_TEST_S3") == "1"

METADATA_BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
ARTIFACT_BACKENDS = ["local"] + (["s3"] if S3_ENABLED else [])


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("set SHIPYARD_TEST_POSTGRES_URL to run PostgreSQL tests")
    yield POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import sqlalchemy as sa

    name = f"sy_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback for the whole test session."""
    if not S3_ENABLED:
        pytest.skip("set SHIPYARD_TEST_S3=1 to run S3 tests")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    with pytest.MonkeyPatch.context() as env:  # the session's credentials, removed afterwards
        for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                           ("AWS_DEFAULT_REGION", "us-east-1")):
            if key not in os.environ:
                env.setenv(key, value)
        yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[tuple[str, dict]]:
    """A fresh bucket; yields (root URL, fsspec options)."""
    import boto3

    name = f"sy-test-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    yield f"s3://{name}/artifacts", options
    objects = client.list_objects_v2(Bucket=name).get("Contents", [])
    for obj in objects:
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(params=METADATA_BACKENDS)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'meta' / 'shipyard.db'}"


@pytest.fixture
def workspace(metadata_url: str, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on every enabled metadata backend, local artifacts, in-process validation."""
    settings = load_settings(
        tmp_path / "project",
        metadata_url=metadata_url,
        artifact_root=str(tmp_path / "artifacts"),
        user="alice",
        validation_subprocess=False,
        validation_timing_calls=20,
    )
    ws = Workspace(settings)
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[Workspace]:
    settings = load_settings(tmp_path / "project", user="alice", validation_subprocess=False, validation_timing_calls=20)
    ws = Workspace(settings)
    yield ws
    ws.close()


# -- authentication helpers -----------------------------------------------------------------------
def user_token(ws: Workspace, name: str = "admin", role: str = "admin", project: str = "*",
               scopes: list[str] | None = None) -> str:
    """A token of user ``name`` holding ``role`` in ``project`` (user and role created when missing)."""
    from shipyard.errors import NotFound

    auth = ws.auth
    auth.ensure_default_project()
    try:
        auth.get_user(name)
    except NotFound:
        auth.create_user(name, kind="person", actor="test")
    auth.grant(name, project, role, actor="test")
    return auth.create_token(name, scopes=scopes, expires_in_days=None, actor="test").token


def auth_headers(ws: Workspace, name: str = "admin", role: str = "admin", project: str = "*") -> dict[str, str]:
    """Authorization header of a user with ``role`` (admin of every project by default)."""
    return {"Authorization": f"Bearer {user_token(ws, name, role, project)}"}


def as_user(ws: Workspace, name: str, role: str, project: str = "*") -> Workspace:
    """A second workspace on the same project acting as ``name`` with ``role`` (e.g. a reviewer)."""
    return Workspace(ws.settings, token=user_token(ws, name, role, project))
