"""How the app is assembled: the route modules it names, what /readyz does, serving settings."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shipyard import server
from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.store.database import MetadataStore


def test_every_api_module_exists_and_exposes_a_route_hook() -> None:
    modules = server.route_modules()
    assert [m.__name__ for m in modules] == server.API_MODULES
    for module in modules:
        assert any(hasattr(module, hook) for hook in server.ROUTE_HOOKS), module.__name__


def test_a_typo_in_api_modules_stops_the_app_naming_the_entry(monkeypatch, sqlite_workspace) -> None:
    monkeypatch.setattr(server, "API_MODULES", [*server.API_MODULES, "shipyard.tracking.htttp"])
    with pytest.raises(ConfigError, match=r"'shipyard\.tracking\.htttp', which is not a module"):
        server.create_app(sqlite_workspace, follow_interval=0)


def test_a_module_that_serves_no_routes_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'shipyard\.errors', which exposes none of router"):
        server.route_modules(["shipyard.errors"])


def test_a_missing_dependency_of_a_real_module_is_not_reported_as_a_typo(monkeypatch) -> None:
    import importlib

    def fail(name: str) -> None:
        raise ModuleNotFoundError("No module named 'somedep'", name="somedep")

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(ModuleNotFoundError, match="somedep"):
        server.route_modules(["shipyard.tracking.http"])


def test_readyz_only_asks_the_database_and_never_migrates(monkeypatch, sqlite_workspace) -> None:
    app = server.create_app(sqlite_workspace, follow_interval=0, recover=False)
    upgrades: list[str] = []
    monkeypatch.setattr(MetadataStore, "upgrade", lambda self, revision="head": upgrades.append(revision))
    monkeypatch.setattr(MetadataStore, "require_current", lambda self: upgrades.append("check"))
    with TestClient(app) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 200 and answer.json()["status"] == "ready"
    assert upgrades == []


def test_serving_options_come_from_settings(tmp_path, monkeypatch) -> None:
    from shipyard.workspace import Workspace

    monkeypatch.setenv("SHIPYARD_SERVE_MODEL", "credit@challenger")  # what `shipyard server --model` sets
    settings = load_settings(tmp_path / "project", serving_follow_interval_s=0.5)
    assert settings.serve_model == "credit@challenger"
    ws = Workspace(settings)
    try:
        app = server.create_app(ws, recover=False)
        state = app.state.serving
        assert state.single_model == ("credit", "challenger")
        assert state.follow_interval == 0.5
    finally:
        ws.close()


def test_the_follow_interval_setting_is_bounded(tmp_path) -> None:
    with pytest.raises(ConfigError, match="serving_follow_interval_s"):
        load_settings(tmp_path / "project", serving_follow_interval_s=-1)
