"""One project served by a real uvicorn on a loopback port, and the two ways to reach it.

``side`` is ``local`` (a Workspace on the project, acting as the admin's token) or ``remote``
(``sy.Client`` on the server with the same token): the shared suite in test_parity.py runs once
with each and expects the same objects, values and errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipyard.client import Client
from shipyard.config import load_settings
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import user_token
from tests.features.pit_support import T0, write_project
from tests.serving.conftest import LiveServer


@dataclass
class Served:
    ws: Workspace  # the server's own workspace (set-up and checks)
    url: str
    admin_token: str
    server: LiveServer

    def token_of(self, name: str, role: str) -> str:
        return user_token(self.ws, name, role, "*")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("parity")
    ws = Workspace(load_settings(root / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=20))
    stats = pd.DataFrame({"user_id": [1, 2, 1], "x": [1.5, 2.5, 3.5], "n": [2, 3, 4],
                          "ts": pd.to_datetime([T0, T0, T0 + timedelta(hours=2)], utc=True),
                          "created": pd.to_datetime([T0, T0, T0 + timedelta(hours=2)], utc=True)})
    pairs = pd.DataFrame({"user_id": [1], "shop": ["a"], "ts": pd.to_datetime([T0], utc=True), "y": [2.0],
                          "label": ["p"]})
    write_project(ws.settings.project_dir, stats, pairs, ttl_hours=24)
    ws.features.apply(str(ws.settings.project_dir / "features"))
    server = LiveServer(create_app(ws, follow_interval=0)).__enter__()
    token = server.headers["Authorization"].removeprefix("Bearer ")
    try:
        yield Served(ws, server.url, token, server)
    finally:
        server.__exit__()
        ws.close()


@pytest.fixture(params=["local", "remote"])
def side(request: pytest.FixtureRequest, served: Served) -> Iterator[tuple[str, Any]]:
    """(name, session): a local Workspace or a Client, both acting as the admin's token."""
    if request.param == "local":
        session: Any = Workspace(served.ws.settings, token=served.admin_token)
        yield "local", session
        session.close()
    else:
        client = Client(served.url, token=served.admin_token)
        yield "remote", client
        client.close()


def as_reviewer(served: Served, kind: str) -> Any:
    """The same side, acting as a reviewer (approvals need someone other than the registrant)."""
    token = served.token_of("bob", "reviewer")
    if kind == "local":
        return Workspace(served.ws.settings, token=token)
    return Client(served.url, token=token)


def model_folder(root: Path) -> tuple[Path, Any, pd.DataFrame]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from shipyard.models import save_model

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"income": rng.normal(5, 2, 120), "debt": rng.normal(2, 1, 120)})
    y = (X.debt - 0.4 * X.income + rng.normal(0, 1, 120) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    return save_model(model, root / "model", input_example=X.head(3)), model, X
