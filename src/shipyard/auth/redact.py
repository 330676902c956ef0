"""Responses never show where things live on the server.

Absolute paths of a project's folder, its local artifact root and the temporary folder are
rewritten in every JSON response and error message of the API: artifacts become ``artifacts:/...``
(a URI the registry accepts back), project files become project-relative, temporary files
``<tmp>/...``. Paths elsewhere on the server are not ours to show, and Shipyard does not put them
in responses.
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path
from typing import Any, TypeVar, overload

from starlette.responses import JSONResponse

_K = TypeVar("_K")


class PathRedactor:
    def __init__(self) -> None:
        self._roots: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(str(Path(tempfile.gettempdir()).resolve()), "<tmp>")
        if tempfile.gettempdir() != str(Path(tempfile.gettempdir()).resolve()):
            self.add(tempfile.gettempdir(), "<tmp>")

    def add(self, root: str, replacement: str) -> None:
        root = root.rstrip("/")
        if not root.startswith("/") or root == "":
            return
        with self._lock:
            if self._roots.get(root) == replacement:
                return
            self._roots[root] = replacement
            ordered = sorted(self._roots, key=len, reverse=True)
            self._pattern = re.compile("|".join(f"(?:{re.escape(r)})(?=/|$|[^A-Za-z0-9_.-])" for r in ordered))

    def add_project(self, project_dir: Path, artifact_root: str) -> None:
        if not artifact_root.startswith(("s3://", "gs://", "memory://")):
            local = artifact_root.removeprefix("file://")
            self.add(str(Path(local).resolve()), "artifacts:")
            self.add(local, "artifacts:")
        self.add(str(project_dir.resolve()), ".")
        self.add(str(project_dir), ".")

    def text(self, value: str) -> str:
        pattern = self._pattern
        if pattern is None or "/" not in value:
            return value
        return pattern.sub(self._replace, value)

    def _replace(self, match: re.Match[str]) -> str:
        return self._roots[match.group(0)]

    @overload
    def redact(self, value: str) -> str: ...
    @overload
    def redact(self, value: dict[_K, Any]) -> dict[_K, Any]: ...
    @overload
    def redact(self, value: object) -> object: ...
    def redact(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(v) for v in value]
        return value


REDACTOR = PathRedactor()


class RedactedJSONResponse(JSONResponse):
    """The API's default response: JSON with server paths rewritten."""

    def render(self, content: Any) -> bytes:
        return super().render(REDACTOR.redact(content))
