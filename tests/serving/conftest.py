"""Serving fixtures: small real models (saved with shipyard.models, registered in the registry),
in-memory feature services, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from shipyard.models import load_model, save_model
from shipyard.serving.sources import ModelCatalog, StaticFeatures

FEATURES = ["income", "debt", "age"]


def make_data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"income": rng.normal(5, 2, n), "debt": rng.normal(2, 1, n), "age": rng.integers(20, 70, n)
                      .astype(float)})
    y = (X.debt * 1.5 - X.income * 0.6 + rng.normal(0, 1, n) > -1).astype(int).to_numpy()
    return X, y


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of saved models: two classifiers (champion, challenger) and a regressor."""
    X, y = make_data()
    root = tmp_path_factory.mktemp("serving-models")
    out = {
        "lr_a": save_model(LogisticRegression(max_iter=300).fit(X, y), root / "lr_a", input_example=X.head(5)),
        "lr_b": save_model(LogisticRegression(C=0.01, max_iter=300).fit(X[["income", "debt", "age"]], 1 - y),
                           root / "lr_b", input_example=X.head(5)),
        "ridge": save_model(Ridge().fit(X, X.income * 2.0), root / "ridge", input_example=X.head(5)),
    }
    return out


@pytest.fixture(scope="session")
def loaded(saved_models: dict[str, Path]) -> dict[str, Any]:
    return {k: load_model(p) for k, p in saved_models.items()}


@pytest.fixture
def catalog(loaded: dict[str, Any]) -> ModelCatalog:
    return make_catalog(loaded)


@pytest.fixture
def feature_source() -> StaticFeatures:
    return make_features()


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    root = tmp_path_factory.mktemp("serving-ws")
    ws = Workspace(load_settings(root / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=20))
    yield ws
    ws.close()


def make_catalog(loaded: dict[str, Any]) -> ModelCatalog:
    cat = ModelCatalog()
    cat.add("credit", loaded["lr_a"], version=1, aliases=["champion"])
    cat.add("credit", loaded["lr_b"], version=2, aliases=["challenger"])
    cat.add("limit", loaded["ridge"], version=1, aliases=["champion"])
    return cat


def make_features() -> StaticFeatures:
    fs = StaticFeatures()
    rows = {(f"u{i}",): {"income": 3.0 + i % 5, "debt": 1.0 + (i % 3), "age": 30.0 + i % 20} for i in range(200)}
    fs.add_service("applicant", ["user_id"], FEATURES, rows)
    return fs


def register(ws: Any, folder: Path, name: str, alias: str | None = "champion") -> int:
    mv = ws.registry.register(folder, name, await_validation=True)
    if alias:
        ws.registry.set_alias(name, alias, mv.version, force=True)
    return mv.version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from tests.conftest import auth_headers
        from tests.serving.live import SERVER_HEADERS

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # an admin's token: every request of the tests below is authenticated
        self.headers = auth_headers(app.state.workspace)
        SERVER_HEADERS[self.url] = self.headers
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live_server() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


# The credit scene of the release and rollout tests: its inputs, a request, and a model that fails.
CREDIT_INPUTS = {"user_id": "string", "income": "double", "debt": "double", "age": "double"}


def credit_record(i: int) -> dict:
    return {"user_id": f"user-{i}", "income": 2.0 + (i % 7), "debt": 1.0 + (i % 4) * 0.5, "age": 25.0 + i % 40}


class FailingModel:
    input_names = ["income", "debt", "age"]
    signature = None
    has_fast_path = True

    def predict_array(self, X):
        raise RuntimeError("challenger is broken")
