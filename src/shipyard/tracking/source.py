"""Where a run came from: the script path and the git commit of the working folder.

The commit is read straight from ``.git`` (HEAD, loose refs, packed-refs, worktrees), with no
subprocess, so starting a run stays cheap.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = candidate.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                return target if target.is_absolute() else (folder / target).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            value = loose.read_text(errors="replace").strip()
            return value if _SHA.match(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(errors="replace").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1].strip() == ref and _SHA.match(parts[0]):
                return parts[0]
    return None


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit checked out in the repository holding ``start`` (default: the working folder)."""
    try:
        git_dir = _git_dir(Path(start or os.getcwd()).resolve())
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(errors="replace").strip()
        if head.startswith("ref:"):
            return _resolve_ref(git_dir, head[4:].strip())
        return head if _SHA.match(head) else None
    except OSError:
        return None


def source_name() -> str:
    """The script that started the run, or the interpreter's name in a notebook or REPL."""
    main = sys.argv[0] if sys.argv else ""
    if main and main not in ("-c", "-m") and Path(main).is_file():
        return str(Path(main).resolve())
    return main or "<interactive>"
