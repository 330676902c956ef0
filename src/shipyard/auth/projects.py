"""The projects one server hosts: each is a Workspace of its own, opened on first use.

The default project is the server's own workspace; every other project gets its own metadata
database or schema, artifact prefix, online-store prefix and definitions folder (see
``shipyard.config.project_settings``), and shares the server's users, tokens and audit log.
"""

from __future__ import annotations

import threading
from typing import Any

from shipyard.auth.principal import DEFAULT_PROJECT
from shipyard.config import project_settings
from shipyard.workspace import Workspace


class ProjectWorkspaces:
    def __init__(self, root: Workspace) -> None:
        self.root = root
        self._open: dict[str, Workspace] = {DEFAULT_PROJECT: root}
        self._lock = threading.Lock()
        self._known: set[str] = {DEFAULT_PROJECT}

    def get(self, name: str) -> Workspace:
        """The workspace of project ``name``; NotFound when no admin created it."""
        found = self._open.get(name)
        if found is not None:
            return found
        if name not in self._known:
            self.root.auth.get_project(name)  # NotFound naming the fix
            self._known.add(name)
        with self._lock:
            found = self._open.get(name)
            if found is None:
                found = self._open[name] = self._open_project(name)
            return found

    def opened_workspace(self, name: str) -> Workspace | None:
        """The workspace of ``name`` when it is open already, else None (no database access)."""
        return self._open.get(name)

    def create(self, name: str, description: str, *, actor: str) -> dict[str, Any]:
        record = self.root.auth.create_project(name, description, actor=actor)
        self._known.add(name)
        self.get(name)  # provisions the schema or database file and its folders now
        return record

    def _open_project(self, name: str) -> Workspace:
        settings = project_settings(self.root.settings, name)
        for sub in ("features", "scenes", "pipelines", ".shipyard"):
            (settings.project_dir / sub).mkdir(parents=True, exist_ok=True)
        return Workspace(settings, control=self.root.store)

    def opened(self) -> list[Workspace]:
        return list(self._open.values())

    def names(self) -> list[str]:
        return [p["name"] for p in self.root.auth.list_projects()] or [DEFAULT_PROJECT]

    def close(self) -> None:
        for name, ws in list(self._open.items()):
            if name != DEFAULT_PROJECT:
                ws.close()



def check_public_target(ws: Workspace, kind: str, name: str) -> None:
    """``NotFound`` unless the scene or model ``name`` exists in ``ws``'s project: an endpoint is
    made public for something that is there (a typo would otherwise open nothing now and, later, a
    model or scene of that name nobody meant to open)."""
    if kind == "model":
        ws.registry.get_model(name)
    else:
        from shipyard.serving.scene import get_scene

        get_scene(ws, name)
