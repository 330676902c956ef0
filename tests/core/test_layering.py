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


# -- the client and the remote views -------------------------------------------------------------
# ``sy.Client`` (client.py) builds the remote views (``*/remote.py``) over a ``Connection``
# (connection.py). The views and the connection never import the client or the workspace, and
# no cycle runs through any of them among module-level imports (``TYPE_CHECKING`` blocks
# included); imports inside functions are deferred on purpose and are not edges here.
REMOTE_SIDE = ("shipyard.client", "shipyard.connection")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: Path, known: set[str]) -> set[str]:
    """Modules imported outside function bodies (``from pkg import sub`` counts ``pkg.sub`` too)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "handlers", "finalbody"):
                visit(getattr(node, field, None) or [])

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in known}


def _remote_side(name: str) -> bool:
    return name in REMOTE_SIDE or name.endswith(".remote")


def test_remote_views_never_import_the_client_or_the_workspace() -> None:
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        if not (_remote_side(name) and name != "shipyard.client"):
            continue
        for imported in _imports(path):
            assert imported not in ("shipyard.client", "shipyard.workspace"), (
                f"{name} imports {imported}: remote views speak through shipyard.connection.Connection")


def test_no_import_cycle_through_the_client_or_the_remote_views() -> None:
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: _module_level_imports(path, set(paths)) for name, path in paths.items()}
    for start in (n for n in graph if _remote_side(n)):
        parent: dict[str, str] = {}
        stack = list(graph[start])
        for first in stack:
            parent[first] = start
        while stack:
            node = stack.pop()
            if node == start:
                chain = [start]
                while chain[-1] != start or len(chain) == 1:
                    chain.append(parent[chain[-1]])
                raise AssertionError("import cycle: " + " -> ".join(reversed(chain)))
            for nxt in graph[node]:
                if nxt not in parent:
                    parent[nxt] = node
                    stack.append(nxt)


def test_no_two_public_classes_share_a_name() -> None:
    """A class name says what it is: two public classes called the same (``Plan``, ``Registry``)
    make imports, tracebacks and docs ambiguous."""
    seen: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                seen.setdefault(node.name, []).append(_module_name(path))
    shared = {name: modules for name, modules in seen.items() if len(modules) > 1}
    assert not shared, f"public classes sharing a name (rename them after what they are): {shared}"
