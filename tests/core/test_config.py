from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import init_project, load_settings
from shipyard.errors import ConfigError


def test_defaults_live_inside_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_METADATA_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_ARTIFACT_ROOT", raising=False)
    s = load_settings(tmp_path)
    assert s.metadata_url == f"sqlite:///{tmp_path.resolve() / '.shipyard' / 'shipyard.db'}"
    assert s.artifact_root == str(tmp_path.resolve() / ".shipyard" / "artifacts")
    assert s.server_port == 8000


def test_precedence_defaults_file_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    (tmp_path / "shipyard.yaml").write_text("server_port: 9001\nserver_workers: 3\nserver_host: 0.0.0.0\n")
    monkeypatch.setenv("SHIPYARD_SERVER_WORKERS", "5")
    monkeypatch.setenv("SHIPYARD_SERVER_HOST", "10.0.0.1")
    s = load_settings(tmp_path, server_host="127.0.0.2")
    assert (s.server_port, s.server_workers, s.server_host) == (9001, 5, "127.0.0.2")


def test_unknown_key_in_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text("metdata_url: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match="metdata_url"):
        load_settings(tmp_path)


def test_bad_type_names_field_and_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_SERVER_PORT", "eighty")
    with pytest.raises(ConfigError, match="server_port.*SHIPYARD_SERVER_PORT"):
        load_settings(tmp_path)


def test_init_creates_layout(tmp_path: Path) -> None:
    root = init_project(tmp_path / "proj")
    for name in ("shipyard.yaml", "features", "scenes", "pipelines"):
        assert (root / name).exists()
    # the template is valid, fully commented YAML
    assert load_settings(root).project_dir == root
