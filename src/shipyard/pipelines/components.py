"""Components: typed functions a pipeline node runs.

A component is a plain Python function. Its parameters are either **inputs** (values arriving along
edges, typed by :mod:`shipyard.pipelines.types`) or **params** (JSON values set in the document);
a parameter called ``ctx`` receives the :class:`~shipyard.pipelines.context.NodeContext` (metrics,
report files, the workspace). ``@component`` states the types; an undecorated function is read from
its annotations (``pd.DataFrame`` → table input, anything else → param; one output named ``output``).

    from shipyard.pipelines import component

    @component(inputs={"data": "table"}, outputs={"clean": "table", "dropped": "json"})
    def drop_duplicates(data, subset: list | None = None):
        clean = data.drop_duplicates(subset=subset)
        return {"clean": clean, "dropped": {"rows": len(data) - len(clean)}}

A document names a component by built-in name (``split``), ``package.module:function`` or
``path/to/file.py:function`` (relative to the document's folder). The component's code hash — the
source of the function, its declared version and, for built-ins, the Shipyard version — is part of
every cache key, so editing the function re-runs its nodes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from shipyard.errors import InvalidInput
from shipyard.pipelines.types import ANY, JSON, TABLE, check_type

ATTRIBUTE = "__shipyard_component__"
CONTEXT_PARAM = "ctx"
_F = TypeVar("_F", bound=Callable[..., Any])
_BUILTINS: dict[str, Component] = {}
_load_lock = threading.Lock()


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Port:
    name: str
    type: str
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "optional": self.optional}


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "any"
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if not self.required:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class Component:
    name: str  # what documents write: a built-in name or "module:function"
    func: Callable[..., Any]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    params: tuple[Param, ...]
    description: str = ""
    version: str = "1"
    takes_context: bool = False
    builtin: bool = False
    # False for components with effects that must happen on every run (e.g. materialization)
    cacheable: bool = True
    # resolver(params, services) -> facts fixed at plan time (e.g. the dataset version "latest" means)
    resolver: Callable[..., dict[str, Any]] | None = None
    # script(node_id, params, resolved) -> source of a standalone stand-in for code generation
    script: Callable[..., str] | None = None
    _hash: list[str] = field(default_factory=list, compare=False, repr=False)

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Port | None:
        return next((p for p in self.outputs if p.name == name), None)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def code_hash(self) -> str:
        if not self._hash:
            digest = hashlib.sha256()
            digest.update(function_source(self.func).encode())
            digest.update(f"\0{self.version}".encode())
            if self.builtin:
                from shipyard import __version__

                digest.update(f"\0shipyard {__version__}".encode())
            self._hash.append(digest.hexdigest())
        return self._hash[0]

    def to_dict(self) -> dict[str, Any]:
        """The palette entry a visual editor shows: ports, params, defaults."""
        return {"name": self.name, "description": self.description, "builtin": self.builtin,
                "inputs": [p.to_dict() for p in self.inputs], "outputs": [p.to_dict() for p in self.outputs],
                "params": [p.to_dict() for p in self.params]}


def function_source(func: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        code = func.__code__  # no source file (a REPL, exec): hash the bytecode instead
        return repr((code.co_code, code.co_consts, code.co_names))


def _type_from_annotation(annotation: Any) -> str | None:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = str(text).replace("pd.", "").replace("pandas.", "")
    if "DataFrame" in text:
        return TABLE
    if "Binner" in text:
        return "binner"
    return None


def _param_type(annotation: Any, default: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    for name in ("bool", "int", "float", "str", "list", "dict"):
        if str(text).split("|")[0].strip().split("[")[0] == name:
            return name
    if default is not REQUIRED and default is not None:
        for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list),
                           ("dict", dict)):
            if type(default) is kind:
                return name
    return "any"


def make_component(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | str | None = None,
    optional: tuple[str, ...] = (),
    choices: Mapping[str, tuple[Any, ...]] | None = None,
    description: str | None = None,
    version: str = "1",
    builtin: bool = False,
    cacheable: bool = True,
    resolver: Callable[..., dict[str, Any]] | None = None,
    script: Callable[..., str] | None = None,
) -> Component:
    sig = inspect.signature(func)
    in_ports: list[Port] = []
    params: list[Param] = []
    takes_context = False
    declared = dict(inputs or {})
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidInput(f"component {func.__qualname__}: *args/**kwargs are not supported; name every "
                               "input and param", {"field": "component"})
        default = REQUIRED if p.default is inspect.Parameter.empty else p.default
        if p.name == CONTEXT_PARAM:
            takes_context = True
            continue
        port_type = declared.get(p.name) or (None if inputs is not None else _type_from_annotation(p.annotation))
        if port_type is not None:
            in_ports.append(Port(p.name, check_type(port_type, f"{func.__qualname__}.{p.name}"),
                                 optional=p.name in optional or default is None))
        else:
            params.append(Param(p.name, _param_type(p.annotation, default), default,
                                (choices or {}).get(p.name)))
    unknown = set(declared) - {p.name for p in in_ports}
    if unknown:
        raise InvalidInput(f"component {func.__qualname__}: inputs {sorted(unknown)} are not parameters of the "
                           "function", {"field": "inputs"})
    if outputs is None:
        ret = _type_from_annotation(sig.return_annotation) if sig.return_annotation is not sig.empty else None
        out_map = {"output": ret or ANY}
    elif isinstance(outputs, str):
        out_map = {"output": outputs}
    else:
        out_map = dict(outputs)
    out_ports = tuple(Port(n, check_type(t, f"{func.__qualname__} output {n}")) for n, t in out_map.items())
    doc = inspect.getdoc(func) or ""
    return Component(
        name=name or f"{func.__module__}:{func.__qualname__}", func=func, inputs=tuple(in_ports),
        outputs=out_ports, params=tuple(params), description=description or doc.split("\n\n")[0],
        version=str(version), takes_context=takes_context, builtin=builtin, cacheable=cacheable, resolver=resolver,
        script=script,
    )


@overload
def component(func: _F, **options: Any) -> _F: ...
@overload
def component(func: None = None, **options: Any) -> Callable[[_F], _F]: ...
def component(func: Callable[..., Any] | None = None, **options: Any) -> Callable[..., Any]:
    """Declare a function's input/output types (see the module docstring); returns the function itself."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, ATTRIBUTE, make_component(f, **options))
        return f

    return wrap(func) if func is not None else wrap


def builtin(name: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        comp = make_component(f, name=name, builtin=True, **options)
        setattr(f, ATTRIBUTE, comp)
        _BUILTINS[name] = comp
        return f

    return wrap


BUILTIN_MODULES = ("shipyard.pipelines.builtins.data", "shipyard.pipelines.builtins.modelling",
                   "shipyard.pipelines.builtins.platform")


def builtins() -> dict[str, Component]:
    """Every built-in component by name (their modules are imported on first use)."""
    with _load_lock:
        for name in BUILTIN_MODULES:
            if name not in sys.modules:
                importlib.import_module(name)
    return dict(_BUILTINS)


def component_of(func: Callable[..., Any]) -> Component:
    found = getattr(func, ATTRIBUTE, None)
    if isinstance(found, Component):
        return found
    return make_component(func)


def _load_file_module(path: Path) -> Any:
    """Import a component file; the module is named after the file's content, so an edited file is
    imported afresh (a long-lived worker or scheduler never runs stale code)."""
    digest = hashlib.sha256(str(path).encode() + b"\0" + path.read_bytes()).hexdigest()[:16]
    name = f"shipyard_user_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


_module_mtimes: dict[str, float] = {}


def _import_fresh(name: str) -> Any:
    """Import a module, reloading it when its file changed since this process imported it."""
    module = importlib.import_module(name)
    source = getattr(module, "__file__", None)
    if source and Path(source).exists() and not name.startswith("shipyard."):
        mtime = Path(source).stat().st_mtime
        seen = _module_mtimes.setdefault(name, mtime)
        if mtime != seen:
            module = importlib.reload(module)
            _module_mtimes[name] = mtime
    return module


def resolve_component(ref: Any, base_dir: Path | None = None, node: str = "") -> Component:
    """The component a document names: a built-in, ``module:function`` or ``file.py:function``."""
    where = f"node {node!r}: " if node else ""
    if callable(ref):
        return component_of(ref)
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"{where}component must be a built-in name or 'module:function'",
                           {"field": "component", "node": node})
    known = builtins()
    if ref in known:
        return known[ref]
    if ":" not in ref:
        raise InvalidInput(
            f"{where}unknown component {ref!r}; use a built-in ({', '.join(sorted(known))}) or 'module:function'",
            {"field": "component", "node": node, "component": ref})
    module_part, _, attr = ref.rpartition(":")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part)
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            module = _load_file_module(path.resolve())
        else:
            if base_dir is not None and str(base_dir) not in sys.path:
                sys.path.insert(0, str(base_dir))
            module = _import_fresh(module_part)
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, FileNotFoundError, SyntaxError) as exc:
        raise InvalidInput(f"{where}component {ref!r} cannot be loaded: {type(exc).__name__}: {exc}",
                           {"field": "component", "node": node, "component": ref}) from None
    if not callable(target):
        raise InvalidInput(f"{where}component {ref!r} is not a function", {"field": "component", "node": node})
    comp = component_of(target)
    return comp if comp.name == ref else _renamed(comp, ref)


def _renamed(comp: Component, ref: str) -> Component:
    from dataclasses import replace

    return replace(comp, name=ref, _hash=list(comp._hash))


__all__ = ["JSON", "REQUIRED", "Component", "Param", "Port", "builtin", "builtins", "component", "component_of",
           "make_component", "resolve_component"]
