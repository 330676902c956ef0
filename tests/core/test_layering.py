"""Layering rules, checked on the import statements of every module.

- store/, artifacts/, config.py, errors.py, jsontypes.py sit at the bottom: they import no subsystem.
- A subsystem's core modules never import the shells (cli, server, http modules, click, fastapi).
- The remote views never import the client or the workspace.
- No import cycle among the imports executed at import time (``if TYPE_CHECKING:`` blocks and
  imports inside functions are not edges): a shared name moves to a small module both sides import.
- No import cycle among all imports, function bodies included (only ``if TYPE_CHECKING:`` blocks are
  not edges): the workspace builds the subsystems, and none of them imports it back.
- No two public classes share a name.
- Public functions and methods are typed: no ``-> Any`` outside a short allowlist, each entry with
  its reason; ``Any`` parameters only shrink from a recorded baseline.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tests.core.baselines import check_shrinking_baseline

SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"
BOTTOM = {"store", "artifacts", "config", "errors", "jsontypes"}
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


# -- no import cycle ------------------------------------------------------------------------------
# Two graphs of the modules' imports; ``if TYPE_CHECKING:`` blocks never run, so neither counts them.
# - at import time: imports inside functions run later, on first use, so they are not edges; a cycle
#   here means the result depends on which module a user happens to import first;
# - all imports, function bodies included: a cycle here means the layers are tangled (a subsystem
#   reaching back into the workspace that builds it, say), whenever the import happens to run.
# Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so a module imports the
# packages above what it names too (except its own: they are already running).
# Dynamic imports (``importlib.import_module``, the packages' lazy name maps) are not edges.
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_imports(name: str, path: Path, known: set[str], *, functions: bool) -> set[str]:
    """The modules of ``known`` that ``name`` (at ``path``) imports, skipping ``TYPE_CHECKING`` blocks,
    and function bodies unless ``functions``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not functions:
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                subs = {f"{module}.{alias.name}" for alias in node.names} & known
                found.update(subs)
                if len(subs) < len(node.names):
                    found.add(module)
            elif isinstance(node, ast.Match):
                for case in node.cases:
                    visit(case.body)
            for field in ("body", "orelse", "handlers", "finalbody"):
                value = getattr(node, field, None)
                if isinstance(value, list):
                    visit(value)

    visit(ast.parse(path.read_text()).body)
    parents = {".".join(module.split(".")[:depth]) for module in found for depth in range(1, module.count(".") + 1)}
    parents = {parent for parent in parents if not (name == parent or name.startswith(parent + "."))}
    return {imported for imported in found | parents if imported in known and imported != name}


def _import_time_imports(name: str, path: Path, known: set[str]) -> set[str]:
    return _module_imports(name, path, known, functions=False)


def _graph(*, functions: bool) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _module_imports(name, path, set(paths), functions=functions) for name, path in paths.items()}


def import_time_graph() -> dict[str, set[str]]:
    return _graph(functions=False)


def all_imports_graph() -> dict[str, set[str]]:
    return _graph(functions=True)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path: list[str] = [root]
        state[root] = 1
        iters = [iter(sorted(graph[root]))]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_sees_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_time_graph_skips_type_checking_and_function_bodies(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nimport shipyard.errors\nif TYPE_CHECKING:\n"
                   "    import shipyard.config\nelse:\n    import shipyard.store\n"
                   "def f():\n    import shipyard.workspace\n")
    known = {"shipyard.errors", "shipyard.config", "shipyard.store", "shipyard.workspace"}
    assert _import_time_imports("shipyard.m", mod, known) == {"shipyard.errors", "shipyard.store"}


def test_a_module_imports_the_packages_above_what_it_names(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("import shipyard.pipelines.service\nfrom shipyard.tracking import core\n")
    known = {"shipyard", "shipyard.pipelines", "shipyard.pipelines.service", "shipyard.tracking",
             "shipyard.tracking.core"}
    # shipyard.m is inside the package shipyard, which is already running: not an edge
    assert _import_time_imports("shipyard.m", mod, known) == known - {"shipyard"}


def test_all_imports_graph_counts_function_bodies_but_not_type_checking(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import shipyard.config\n"
                   "def f():\n    import shipyard.workspace\n"
                   "class C:\n    async def g(self):\n        from shipyard import errors\n")
    known = {"shipyard.errors", "shipyard.config", "shipyard.workspace"}
    assert _module_imports("shipyard.m", mod, known, functions=True) == {"shipyard.workspace", "shipyard.errors"}
    assert _module_imports("shipyard.m", mod, known, functions=False) == set()


def test_no_import_cycle_among_modules_at_import_time() -> None:
    cycle = find_cycle(import_time_graph())
    assert cycle is None, ("import cycle at import time: " + " -> ".join(cycle or [])
                           + " (annotate through TYPE_CHECKING, or move the shared names to a small module)")


# Edges allowed to close a loop, each with its reason; none today (``sy.run_pipeline`` lives in
# ``shipyard.fluent``, above the workspace, since ``sy.pipelines`` is the package the workspace builds).
CYCLE_EDGES_ALLOWED: set[tuple[str, str]] = set()


def test_no_import_cycle_among_all_imports() -> None:
    """The workspace is the composition root: it builds every subsystem, so no subsystem imports it,
    not even inside a function. What needs "the current workspace" lives above it (``shipyard.fluent``)
    or is handed what it needs (a settings object, a function opening the workspace)."""
    graph = all_imports_graph()
    for source, target in sorted(CYCLE_EDGES_ALLOWED):
        assert target in graph[source], f"{source} no longer imports {target}: drop it from CYCLE_EDGES_ALLOWED"
        graph[source] = graph[source] - {target}
    cycle = find_cycle(graph)
    assert cycle is None, ("import cycle (function bodies included): " + " -> ".join(cycle or [])
                           + " (pass what the lower module needs as an argument, or move the entry point "
                           "above the module it imports)")


# -- typed boundaries ------------------------------------------------------------------------------
# Modules being rewritten elsewhere at the time this rule came in; drop each once it types its ws.
WS_ANY_PENDING: set[str] = set()


def test_the_workspace_is_never_typed_any() -> None:
    """A function taking the workspace says so (``ws: Workspace`` under TYPE_CHECKING, or a Protocol
    of what it uses): ``ws: Any`` hides every cross-subsystem call it makes from the type checker."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        if name in WS_ANY_PENDING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and node.arg in ("ws", "workspace") \
                    and isinstance(node.annotation, ast.Name) and node.annotation.id == "Any":
                found.append(f"{name}:{node.lineno}: {node.arg}: Any")
    assert not found, "\n".join(found)


# A public function or method (of a public class, in a public module) says what it takes and gives:
# ``Any`` at that boundary hides every call through it from the type checker. The allowlist holds the
# few places where ``Any`` is the honest answer, each with why; ``*args: Any`` / ``**kwargs: Any``
# pass arguments on to a callee that types them, and are not counted.
ANY_ALLOWED: dict[str, str] = {
    "shipyard:__getattr__ -> Any": "lazy module attribute: its type is that of the attribute named",
    "shipyard.pipelines:__getattr__ -> Any": "lazy module attribute: its type is that of the attribute named",
    "shipyard.risk:__getattr__ -> Any": "lazy module attribute: its type is that of the attribute named",
    "shipyard.auth.http:allow -> Any": "FastAPI dependency marker, the default of a parameter typed "
                                       "RequestContext: typed Any exactly as fastapi.Depends is",
    "shipyard.auth.http:allow_authenticated -> Any": "FastAPI dependency marker (see allow)",
    "shipyard.auth.http:allow_public -> Any": "FastAPI dependency marker (see allow)",
    "shipyard.connection:Connection.request -> Any": "the transport: an answer is what its endpoint returns "
                                                     "(object, list, bytes); each remote view types it",
    "shipyard.connection:Connection.get -> Any": "the transport (see Connection.request)",
    "shipyard.connection:Connection.post -> Any": "the transport (see Connection.request)",
    "shipyard.connection:Connection.delete -> Any": "the transport (see Connection.request)",
}
# ``Any`` parameters of public functions per module; the counts may only go down, as mypy's baseline:
#     SHIPYARD_UPDATE_ANY_BASELINE=1 python -m pytest tests/core/test_layering.py -k any_param
ANY_PARAMS_BASELINE = Path(__file__).with_name("any_params_baseline.json")


class AnyAnnotation(NamedTuple):
    module: str
    line: int
    function: str  # qualified name within the module
    what: str  # "-> Any" or "name: Any"

    @property
    def key(self) -> str:
        return f"{self.module}:{self.function} {self.what}"


def _is_any(node: ast.expr | None) -> bool:
    """``Any``, ``typing.Any``, ``"Any"``, or a union / Optional with ``Any`` in it."""
    if isinstance(node, ast.Name):
        return node.id == "Any"
    if isinstance(node, ast.Attribute):
        return node.attr == "Any"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return _is_any(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_any(node.left) or _is_any(node.right)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name | ast.Attribute):
        name = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        if name in ("Optional", "Union"):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return any(_is_any(item) for item in items)
    return False


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _public_functions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef
                                                                                 | ast.AsyncFunctionDef]]:
    """Module-level functions and methods of public classes (nested functions are no one's API)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if _is_public(node.name):
                yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            if _is_public(node.name):
                yield from _public_functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.If):
            yield from _public_functions(node.body + node.orelse, prefix)
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            yield from _public_functions(node.body + handlers + node.orelse + node.finalbody, prefix)


def any_annotations(root: Path) -> list[AnyAnnotation]:
    """Every ``Any`` in the signature of a public function of a public module under package ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for name, fn in _public_functions(ast.parse(path.read_text()).body):
            if _is_any(fn.returns):
                found.append(AnyAnnotation(module, fn.lineno, name, "-> Any"))
            args = fn.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs:
                if _is_any(arg.annotation):
                    found.append(AnyAnnotation(module, fn.lineno, name, f"{arg.arg}: Any"))
    return found


def test_public_functions_never_return_any() -> None:
    found = [a for a in any_annotations(SRC) if a.what == "-> Any"]
    unexplained = [f"{a.module}:{a.line}: {a.function} -> Any" for a in found if a.key not in ANY_ALLOWED]
    assert not unexplained, ("a public function returns Any; give it its type (a dataclass, TypedDict, "
                             "Protocol, TypeVar, shipyard.jsontypes.JSON, object):\n" + "\n".join(unexplained))
    stale = sorted(set(ANY_ALLOWED) - {a.key for a in any_annotations(SRC)})
    assert not stale, f"allowlisted but no longer found (drop them from ANY_ALLOWED): {stale}"


def test_any_parameters_never_grow_past_the_baseline() -> None:
    found = [a for a in any_annotations(SRC) if a.what != "-> Any" and a.key not in ANY_ALLOWED]
    check_shrinking_baseline(
        Counter(a.module for a in found), ANY_PARAMS_BASELINE, what="Any parameters in public functions",
        env_var="SHIPYARD_UPDATE_ANY_BASELINE", rerun="python -m pytest tests/core/test_layering.py -k any_param",
        details=lambda grown: [f"{a.module}:{a.line}: {a.function}({a.what})" for a in found if a.module in grown],
        fix="type them")


def test_any_annotations_finds_public_any_and_only_that(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "_private").mkdir(parents=True)
    (package / "__init__.py").write_text("def __getattr__(name: str) -> Any: ...\n")
    (package / "_private" / "hidden.py").write_text("def f() -> Any: ...\n")
    (package / "mod.py").write_text(
        "from typing import Any, Optional\n"
        "def returns() -> Any: ...\n"
        "def optional(x: Optional[Any], y: 'Any | None', z: int, *args: Any, **kwargs: Any) -> int: ...\n"
        "def typed(x: dict[str, Any]) -> list[Any]: ...\n"
        "def _private() -> Any: ...\n"
        "def outer() -> None:\n"
        "    def nested() -> Any: ...\n"
        "class Public:\n"
        "    def method(self, value: Any) -> typing.Any: ...\n"
        "    def _helper(self) -> Any: ...\n"
        "class _Hidden:\n"
        "    def method(self) -> Any: ...\n"
        "if True:\n"
        "    async def conditional(*, k: Any = None) -> None: ...\n")
    found = {a.key for a in any_annotations(package)}
    assert found == {
        "pkg:__getattr__ -> Any", "pkg.mod:returns -> Any", "pkg.mod:optional x: Any", "pkg.mod:optional y: Any",
        "pkg.mod:Public.method value: Any", "pkg.mod:Public.method -> Any", "pkg.mod:conditional k: Any"}
