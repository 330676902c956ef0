"""The first admin of a project: created by ``shipyard init`` (or the first ``shipyard server`` of a
project that has no users), its token kept in ``.shipyard/credentials`` (mode 0600) so the CLI,
``sy.connect()`` and ``shipyard demo`` act as it with no extra step."""

from __future__ import annotations

from pathlib import Path

from shipyard.auth.credentials import PROJECT_FILE, project_token, save_project_token
from shipyard.auth.principal import ALL_PROJECTS
from shipyard.auth.store import AuthStore

FIRST_ADMIN = "admin"


def ensure_first_admin(auth: AuthStore, project_dir: Path, name: str = FIRST_ADMIN) -> Path | None:
    """Create the admin and save its token when the server has no users yet; the credentials path
    when one was written, else None (users exist already: nothing is changed)."""
    auth.ensure_default_project()
    if auth.user_count() > 0:
        return None
    auth.create_user(name, kind="person", roles={ALL_PROJECTS: "admin"}, display_name="first admin",
                     actor="shipyard init")
    made = auth.create_token(name, name="project credentials (shipyard init)", expires_in_days=None,
                             actor="shipyard init")
    return save_project_token(project_dir, name, made.token)


def has_credentials(project_dir: Path) -> bool:
    return (project_dir / PROJECT_FILE).is_file() and project_token(project_dir) is not None
