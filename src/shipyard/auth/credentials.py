"""Tokens kept on disk for the CLI and ``sy.connect()``: readable by their owner only.

``<project>/.shipyard/credentials`` holds the token ``shipyard init`` made for the project's first
admin. ``~/.shipyard/credentials`` holds one token per server URL, written by ``shipyard login``.
Both are JSON, mode 0600; a file others can read is refused with the chmod that fixes it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from shipyard.errors import ConfigError

PROJECT_FILE = Path(".shipyard") / "credentials"


def _read(path: Path) -> dict[str, object]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"credentials file {path} can be read by other users; run: chmod 600 {path}",
                          {"field": "credentials", "path": str(path)})
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"credentials file {path} is not valid JSON ({exc}); delete it and log in again",
                          {"field": "credentials", "path": str(path)}) from None
    return doc if isinstance(doc, dict) else {}


def _write(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def project_token(project_dir: Path) -> str | None:
    token = _read(project_dir / PROJECT_FILE).get("token")
    return token if isinstance(token, str) and token else None


def save_project_token(project_dir: Path, user: str, token: str) -> Path:
    path = project_dir / PROJECT_FILE
    _write(path, {"user": user, "token": token})
    return path


def user_file() -> Path:
    return Path(os.environ.get("SHIPYARD_CREDENTIALS") or Path.home() / ".shipyard" / "credentials")


def server_token(url: str) -> str | None:
    entry = _read(user_file()).get(url.rstrip("/"))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def save_server_token(url: str, user: str, token: str) -> Path:
    path = user_file()
    doc = _read(path)
    doc[url.rstrip("/")] = {"user": user, "token": token}
    _write(path, doc)
    return path
