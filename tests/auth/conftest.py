from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.server import create_app
from shipyard.workspace import Workspace


@pytest.fixture
def server_ws(metadata_url: str, tmp_path: Path) -> Iterator[Workspace]:
    """The server's own workspace on every metadata backend (in-process validation)."""
    settings = load_settings(tmp_path / "project", metadata_url=metadata_url, artifact_root=str(tmp_path / "artifacts"),
                             validation_subprocess=False, validation_timing_calls=5)
    ws = Workspace(settings, principal=SERVER)
    yield ws
    ws.close()


@pytest.fixture
def client(server_ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(server_ws, follow_interval=0), raise_server_exceptions=False) as http:
        yield http
