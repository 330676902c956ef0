"""``auto_migrate`` and ``shipyard db upgrade|current``: who may change the schema, and when."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.config import load_settings, project_settings
from shipyard.errors import ConfigError
from shipyard.store import MetadataStore
from shipyard.workspace import Workspace

FIRST = "0001"


def _old_database(url: str, schema: str = "") -> str:
    """A database left at the first revision by an older Shipyard; returns this Shipyard's head."""
    store = MetadataStore(url, migrate=False, schema=schema)
    store.upgrade(FIRST)
    head = store.head_revision()
    assert store.current_revision() == FIRST != head
    store.dispose()
    return head


def _revision(url: str, schema: str = "") -> str | None:
    store = MetadataStore(url, migrate=False, schema=schema)
    try:
        return store.current_revision()
    finally:
        store.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_project_upgrades_itself_by_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p' / '.shipyard' / 'shipyard.db'}"
    head = _old_database(url)
    settings = load_settings(tmp_path / "p")
    assert settings.auto_migrate is True
    Workspace(settings).close()
    assert _revision(url) == head


def test_auto_migrate_false_refuses_a_schema_behind_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p' / '.shipyard' / 'shipyard.db'}"
    _old_database(url)
    before = _tables(url)
    with pytest.raises(ConfigError, match=r"schema revision 0001 .* run `shipyard db upgrade`") as err:
        Workspace(load_settings(tmp_path / "p", auto_migrate=False))
    assert err.value.details["field"] == "auto_migrate"
    assert err.value.details["command"] == "shipyard db upgrade"
    assert _revision(url) == FIRST and _tables(url) == before


def test_auto_migrate_false_still_creates_an_empty_database(tmp_path: Path) -> None:
    ws = Workspace(load_settings(tmp_path / "p", auto_migrate=False))
    assert ws.store.status().state == "current"
    ws.close()


@pytest.mark.parametrize("text", ["maybe", "2"])
def test_auto_migrate_must_be_a_boolean(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="auto_migrate.*true or false"):
        load_settings(tmp_path, auto_migrate=text)


def test_auto_migrate_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_AUTO_MIGRATE", "false")
    assert load_settings(tmp_path).auto_migrate is False


def test_a_schema_newer_than_this_shipyard_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p' / '.shipyard' / 'shipyard.db'}"
    Workspace(load_settings(tmp_path / "p")).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(ConfigError, match="revision 9999, which this Shipyard does not know"):
        Workspace(load_settings(tmp_path / "p", auto_migrate=False))


def test_db_commands_on_sqlite_with_a_hosted_project(tmp_path: Path) -> None:
    root = tmp_path / "p"
    url = f"sqlite:///{root / '.shipyard' / 'shipyard.db'}"
    head = _old_database(url)
    hosted = project_settings(load_settings(root), "credit")
    _old_database(hosted.metadata_url)
    runner = CliRunner()
    current = runner.invoke(main, ["--project", str(root), "db", "current"])
    assert current.exit_code == 1, current.output
    assert f"default: {FIRST} (behind; this Shipyard's head is {head})" in current.output
    assert f"credit: {FIRST} (behind" in current.output
    assert _revision(url) == FIRST  # looking changes nothing
    upgraded = runner.invoke(main, ["--project", str(root), "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"default: {FIRST} -> {head}" in upgraded.output and f"credit: {FIRST} -> {head}" in upgraded.output
    assert _revision(url) == head and _revision(hosted.metadata_url) == head
    again = runner.invoke(main, ["--project", str(root), "db", "upgrade"])
    assert f"default: already at {head}" in again.output
    ok = runner.invoke(main, ["--project", str(root), "db", "current", "--json"])
    assert ok.exit_code == 0 and '"state": "current"' in ok.output


@pytest.mark.postgres
def test_postgres_server_refuses_to_start_until_db_upgrade(postgres_url: str, tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    head = _old_database(postgres_url)
    _old_database(postgres_url, schema="project_credit")
    settings = load_settings(root, metadata_url=postgres_url, auto_migrate=False)
    env = {**os.environ, "SHIPYARD_METADATA_URL": postgres_url, "SHIPYARD_PROJECT_DIR": str(root),
           "SHIPYARD_AUTO_MIGRATE": "false", "PYTHONPATH": os.pathsep.join(sys.path)}
    refused = subprocess.run([sys.executable, "-m", "shipyard.cli", "server", "--port", "1"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "error [config_error]" in refused.stderr and "run `shipyard db upgrade`" in refused.stderr
    assert _revision(postgres_url) == FIRST
    upgraded = subprocess.run([sys.executable, "-m", "shipyard.cli", "db", "upgrade"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"credit: {FIRST} -> {head}" in upgraded.stdout and "schema project_credit" in upgraded.stdout
    assert _revision(postgres_url) == head and _revision(postgres_url, "project_credit") == head
    ws = Workspace(settings)
    assert ws.store.status().state == "current"
    ws.close()


@pytest.mark.postgres
def test_postgres_upgrades_on_open_by_default(postgres_url: str, tmp_path: Path) -> None:
    head = _old_database(postgres_url)
    Workspace(load_settings(tmp_path, metadata_url=postgres_url)).close()
    assert _revision(postgres_url) == head


@pytest.mark.postgres
def test_postgres_fresh_database_is_created_without_auto_migrate(postgres_url: str, tmp_path: Path) -> None:
    ws = Workspace(load_settings(tmp_path, metadata_url=postgres_url, auto_migrate=False))
    assert ws.store.status().state == "current"
    ws.close()
