"""Which server files a request may name: only those inside its project's folder, and never inside
the project's state folder (``.shipyard/``: metadata, artifacts and uploads live there, so code put
there through an upload could otherwise be run), nor, from the default project, inside the hosted
projects' folder (``projects/``). Links and ``..`` are followed before deciding."""

from __future__ import annotations

from pathlib import Path

from shipyard.config import DEFAULT_PROJECT, HOSTED_PROJECTS_DIR, Settings
from shipyard.errors import Forbidden


def project_path(settings: Settings, path: str | Path | None) -> Path | None:
    """``path`` resolved against the project folder when it stays inside it (and outside
    ``.shipyard/``); None when it does not. No path means the project folder itself."""
    root = settings.project_dir.resolve()
    if path is None or str(path) == "":
        return root
    state = settings.state_dir.resolve()
    try:
        chosen = (root / str(path).removeprefix("file://")).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if chosen != root and root not in chosen.parents:
        return None
    if chosen == state or state in chosen.parents:
        return None
    # the default project's folder holds every hosted project's folder
    hosted = (root / HOSTED_PROJECTS_DIR).resolve()
    if settings.project == DEFAULT_PROJECT and (chosen == hosted or hosted in chosen.parents):
        return None
    return chosen


def require_project_path(settings: Settings, path: str | Path | None, field: str, what: str) -> Path:
    """``project_path`` or a Forbidden error naming the field and what the path was for."""
    found = project_path(settings, path)
    if found is None:
        raise Forbidden(f"{what} {str(path)!r} is outside the project's folder; give a path relative to the "
                        "project (and outside .shipyard/ and, in the default project, projects/)", {"field": field})
    return found
