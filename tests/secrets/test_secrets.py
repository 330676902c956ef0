"""Secrets: encrypted at rest, never shown in listings, logs, errors or CLI output; key handling and rotation."""

from __future__ import annotations

import logging
import os
import pickle
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.fernet import Fernet, InvalidToken

from shipyard.config import load_settings
from shipyard.errors import ConfigError, IntegrityError, InvalidInput, NotFound
from shipyard.secrets import KEY_ENV, SecretValue, scrubbed_environ
from shipyard.store.schema import events, secrets
from shipyard.workspace import Workspace

PLAIN = "pa55-Wörd-7f3a91c2e8"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def _all_stored_text(ws: Workspace) -> str:
    with ws.store.read() as conn:
        rows = [*conn.execute(sa.select(secrets)).all(), *conn.execute(sa.select(events)).all()]
    return "\n".join(repr(tuple(r)) for r in rows)


def test_round_trip_and_listing_has_no_values(workspace: Workspace) -> None:
    info = workspace.secrets.put("db_password", PLAIN, actor="alice")
    assert info.revision == 1 and info.created_by == "alice"
    assert workspace.secrets.get("db_password") == PLAIN
    workspace.secrets.put("db_password", PLAIN + "2", actor="bob")
    assert workspace.secrets.get("db_password") == PLAIN + "2"
    listed = workspace.secrets.list()
    assert [i.name for i in listed] == ["db_password"]
    assert listed[0].revision == 2 and listed[0].updated_by == "bob"
    assert PLAIN not in repr(listed) and PLAIN not in str([i.to_dict() for i in listed])
    # stored rows hold a Fernet token that decrypts to the value with the project key only
    stored = _all_stored_text(workspace)
    assert PLAIN not in stored
    with workspace.store.read() as conn:
        token = conn.execute(sa.select(secrets.c.ciphertext)).scalar_one()
    key = (workspace.settings.state_dir / "secret.key").read_text().strip()
    assert Fernet(key.encode()).decrypt(token.encode()).decode() == PLAIN + "2"
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(token.encode())
    workspace.secrets.delete("db_password", actor="alice")
    with pytest.raises(NotFound, match="db_password"):
        workspace.secrets.get("db_password")


def test_plaintext_never_in_sqlite_file_or_logs(sqlite_workspace: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    ws = sqlite_workspace
    caplog.set_level(logging.DEBUG)
    # echo every statement and parameter (caplog puts the logger's level back after the test)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    ws.secrets.put("api_key", PLAIN, actor="alice")
    ws.secrets.get("api_key")
    ws.secrets.rotate_key(actor="alice")
    ws.secrets.put("api_key", PLAIN, actor="alice")
    ws.store.dispose()
    db = Path(ws.settings.metadata_url.removeprefix("sqlite:///"))
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            data = path.read_bytes()
            assert PLAIN.encode() not in data and PLAIN.encode("utf-16-le") not in data
    assert caplog.records, "statement logging was captured"
    assert all(PLAIN not in r.getMessage() for r in caplog.records)


def test_key_file_created_0600_and_group_readable_file_refused(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    ws.secrets.put("a", "value-a", actor="alice")
    key_file = ws.settings.state_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.chmod(0o640)
    with pytest.raises(ConfigError) as err:
        ws.secrets.put("b", "value-b", actor="alice")
    assert f"chmod 600 {key_file}" in err.value.message
    key_file.chmod(0o600)
    assert [i.name for i in ws.secrets.list()] == ["a"]  # the refused put wrote nothing


def test_environment_key_wins_and_wrong_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, key)
    ws = Workspace(load_settings(tmp_path / "p", user="alice"))
    ws.secrets.put("token", PLAIN, actor="alice")
    assert not (ws.settings.state_dir / "secret.key").exists()
    assert ws.secrets.get("token") == PLAIN
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(IntegrityError) as err:
        ws.secrets.get("token")
    assert "token" in err.value.message and PLAIN not in err.value.message and key not in err.value.message
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError, match=KEY_ENV):
        ws.secrets.get("token")
    ws.close()


def test_rotate_with_key_file_reencrypts_and_retires_the_old_key(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    for i in range(3):
        ws.secrets.put(f"s{i}", f"value-{i}", actor="alice")
    key_file = ws.settings.state_dir / "secret.key"
    old_key = key_file.read_text().strip().encode()
    report = ws.secrets.rotate_key(actor="alice")
    assert report.secrets == 3 and report.retired_keys == 1
    new_keys = key_file.read_text().split()
    assert len(new_keys) == 1 and new_keys[0].encode() != old_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with ws.store.read() as conn:
        tokens = conn.execute(sa.select(secrets.c.ciphertext)).scalars().all()
    for token in tokens:
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(token.encode())
    assert [ws.secrets.get(f"s{i}") for i in range(3)] == ["value-0", "value-1", "value-2"]


def test_rotate_with_environment_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, old)
    ws = Workspace(load_settings(tmp_path / "p", user="alice"))
    ws.secrets.put("s", PLAIN, actor="alice")
    with pytest.raises(ConfigError, match="NEW_KEY,OLD_KEY"):
        ws.secrets.rotate_key(actor="alice")
    monkeypatch.setenv(KEY_ENV, f"{new},{old}")
    assert ws.secrets.rotate_key(actor="alice").secrets == 1
    monkeypatch.setenv(KEY_ENV, new)
    assert ws.secrets.get("s") == PLAIN
    ws.close()


@pytest.mark.parametrize(("name", "value", "field"), [
    ("1bad", "v", "name"), ("has space", "v", "name"), ("", "v", "name"),
    ("ok", "", "value"), ("ok", 42, "value"),
])
def test_bad_input_is_refused_and_changes_nothing(sqlite_workspace: Workspace, name: str, value: object,
                                                  field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sqlite_workspace.secrets.put(name, value, actor="alice")  # type: ignore[arg-type]
    assert err.value.details["field"] == field
    assert sqlite_workspace.secrets.list() == []


def test_secret_value_never_shows_itself() -> None:
    value = SecretValue(PLAIN, "db")
    for text in (repr(value), str(value), f"{value}", f"{value!s:>30}", f"{value}", str([value])):
        assert PLAIN not in text
    assert value.reveal() == PLAIN
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(value)


def test_scrubbed_environ_drops_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    env = scrubbed_environ({"X": "1"})
    assert KEY_ENV not in env and env["X"] == "1" and env.get("PATH") == os.environ.get("PATH")


def test_cli_set_list_delete_never_print_the_value(tmp_path: Path) -> None:
    from shipyard.cli import main

    project = tmp_path / "proj"
    runner = CliRunner()
    outputs = []
    result = runner.invoke(main, ["-p", str(project), "secrets", "set", "warehouse"], input=PLAIN + "\n")
    outputs.append(result.output)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["-p", str(project), "secrets", "list"])
    outputs.append(result.output)
    assert "warehouse" in result.output
    result = runner.invoke(main, ["-p", str(project), "secrets", "list", "--json"])
    outputs.append(result.output)
    result = runner.invoke(main, ["-p", str(project), "secrets", "rotate-key"])
    outputs.append(result.output)
    assert result.exit_code == 0
    ws = Workspace(load_settings(project))
    assert ws.secrets.get("warehouse") == PLAIN  # stdin's trailing newline is not part of the value
    ws.close()
    result = runner.invoke(main, ["-p", str(project), "secrets", "set", "warehouse", "--value", PLAIN])
    assert result.exit_code != 0  # there is no flag for the value
    outputs.append(result.output)
    result = runner.invoke(main, ["-p", str(project), "secrets", "delete", "warehouse", "--yes"])
    outputs.append(result.output)
    assert result.exit_code == 0
    assert all(PLAIN not in out for out in outputs)
