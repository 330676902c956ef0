"""Layering rules, checked on the import statements of every module.

- store/, artifacts/, config.py, errors.py sit at the bottom: they import no subsystem.
- A subsystem's core modules never import the shells (cli, server, http modules, click, fastapi).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"
BOTTOM = {"store", "artifacts", "config", "errors"}
SHELL_NAMES = ("http", "cli", "remote", "server", "client")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _is_shell(path: Path) -> bool:
    stem = path.stem
    return any(stem == n or stem.endswith("_" + n) or stem.startswith(n + "_") for n in SHELL_NAMES)


def test_bottom_layer_imports_no_subsystem() -> None:
    allowed = {f"shipyard.{name}" for name in BOTTOM}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0].removesuffix(".py") not in BOTTOM:
            continue
        for name in _imports(path):
            if name.startswith("shipyard."):
                top = ".".join(name.split(".")[:2])
                assert top in allowed, f"{rel} imports {name}: the bottom layer may not depend on subsystems"


def test_core_modules_do_not_import_shells() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if len(rel.parts) < 2 or _is_shell(path) or rel.parts[0] in ("ui", "demo"):
            continue
        for name in _imports(path):
            head = name.split(".")[0]
            assert head not in ("click", "fastapi"), f"{rel} imports {name}: keep {head} in http.py/cli.py"
            assert name not in ("shipyard.cli", "shipyard.server"), f"{rel} imports {name}"
            assert not name.endswith((".cli", ".http")), f"{rel} imports the shell module {name}"
