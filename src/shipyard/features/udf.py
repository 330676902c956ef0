"""Python functions inside definitions: kept as source text so the registry can rebuild them.

A transformation or on-demand function is stored as its source code plus the top-level imports of
the file it was written in. Rebuilding it from the registry compiles that text again, so the
function a server runs is the function that was applied, and the same one runs offline and online.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipyard.errors import InvalidInput


@dataclass(frozen=True)
class PythonCode:
    name: str
    source: str
    imports: str = ""

    @classmethod
    def of(cls, func: Callable[..., Any], where: str) -> PythonCode:
        if not callable(func) or getattr(func, "__name__", "<lambda>") == "<lambda>":
            raise InvalidInput(
                f"{where}: the transformation must be a named function defined with 'def', not a lambda",
                {"field": where},
            )
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError):
            raise InvalidInput(
                f"{where}: cannot read the source of {func.__name__!r}; define it in a .py file",
                {"field": where},
            ) from None
        source = _strip_decorators(source)
        imports = ""
        module = inspect.getmodule(func)
        if module is not None:
            try:
                imports = _top_level_imports(inspect.getsource(module))
            except (OSError, TypeError, SyntaxError):
                imports = ""
        return cls(func.__name__, source, imports)

    def to_spec(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source, "imports": self.imports}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> PythonCode:
        return cls(spec["name"], spec["source"], spec.get("imports", ""))

    def compile(self) -> Callable[..., Any]:
        import numpy
        import pandas

        namespace: dict[str, Any] = {"__name__": f"shipyard_udf_{self.name}", "pd": pandas, "np": numpy}
        try:
            if self.imports:
                exec(compile(self.imports, f"<imports of {self.name}>", "exec"), namespace)  # noqa: S102
        except Exception:  # noqa: BLE001 - an import that no longer resolves: keep going without it
            pass
        exec(compile(self.source, f"<{self.name}>", "exec"), namespace)  # noqa: S102
        return namespace[self.name]


def _strip_decorators(source: str) -> str:
    tree = ast.parse(source)
    node = tree.body[0]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
        lines = source.splitlines(keepends=True)
        return "".join(lines[node.lineno - 1 :])
    return source


def _top_level_imports(module_source: str) -> str:
    tree = ast.parse(module_source)
    parts = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shipyard"):
                continue
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            parts.append(ast.unparse(node))
    return "\n".join(parts)
