"""Load feature definitions from Python files and validate them, pointing errors at file and line.

``load_repo(path)`` accepts a project folder (its ``features/`` folder is read), a folder of ``.py``
files, or one file. Every module-level Entity, FeatureView, OnDemandFeatureView and FeatureService
is collected. Relative file paths in sources are resolved against the project folder (the parent of
``features/``), so the registry records where the data is, not where the command ran.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
)

FEATURES_DIR = "features"


@dataclass
class Repo:
    root: Path  # the folder relative source paths are resolved against
    files: list[Path]
    definitions: list[Definition]

    def of_kind(self, kind: str) -> list[Definition]:
        return [d for d in self.definitions if d.kind == kind]


def find_files(path: str | Path) -> tuple[Path, list[Path]]:
    target = Path(path).resolve()
    if not target.exists():
        raise InvalidInput(f"features path {str(target)!r} does not exist; give a project folder, its features/ "
                           "folder or a .py file", {"field": "path"})
    if target.is_file():
        if target.suffix != ".py":
            raise InvalidInput(f"{target} is not a Python file", {"field": "path"})
        root = target.parent.parent if target.parent.name == FEATURES_DIR else target.parent
        return root, [target]
    folder = target / FEATURES_DIR if (target / FEATURES_DIR).is_dir() else target
    root = folder.parent if folder.name == FEATURES_DIR else folder
    # hidden names count below the folder only: a project may itself live under ~/.local or similar
    files = sorted(p for p in folder.rglob("*.py")
                   if not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(folder).parts))
    return root, files


def load_repo(path: str | Path) -> Repo:
    root, files = find_files(path)
    found: list[Definition] = []
    ids: set[int] = set()
    with _SiblingImports(files) as siblings:
        for file in files:
            for obj in _exec_file(file, siblings):
                if id(obj) not in ids:
                    ids.add(id(obj))
                    found.append(obj)
    resolved = [_resolve_paths(obj, root) for obj in found]
    validate(resolved)
    return Repo(root, files, resolved)


def _module_name(file: Path) -> str:
    return f"shipyard_features_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}_{file.stem}"


class _SiblingImports(importlib.abc.MetaPathFinder):
    """While a repo loads, ``from customers import customer_stats`` in one definitions file imports
    the sibling ``customers.py`` once, and that same module is then collected, so the view is one
    object rather than a copy reported as "defined twice". The plain module names are removed
    afterwards, so the next load (a re-plan in a long-running server) executes edited files again."""

    def __init__(self, files: list[Path]) -> None:
        taken = set(sys.modules) | set(sys.stdlib_module_names)
        self.by_name = {f.stem: f for f in files if f.stem.isidentifier() and f.stem not in taken}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        file = self.by_name.get(fullname)
        return None if file is None else importlib.util.spec_from_file_location(fullname, file)

    def __enter__(self) -> _SiblingImports:
        sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.meta_path.remove(self)
        for name in self.by_name:
            sys.modules.pop(name, None)


def _exec_file(file: Path, siblings: _SiblingImports | None = None) -> list[Definition]:
    imported = sys.modules.get(file.stem)
    if imported is not None and getattr(imported, "__file__", None) == str(file):
        # already executed by a sibling's import (see _SiblingImports)
        return [value for value in vars(imported).values() if isinstance(value, Definition)]
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if siblings is not None and siblings.by_name.get(file.stem) == file:
        sys.modules[file.stem] = module  # a sibling loaded later imports this very module
    added_path = str(file.parent)
    sys.path.insert(0, added_path)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise InvalidInput(f"{file}:{exc.lineno}: syntax error: {exc.msg}; fix the file",
                           {"file": str(file), "line": exc.lineno}) from None
    except ShipyardError as exc:
        line = _user_line(exc, file)
        exc.message = f"{file}:{line}: {exc.message}"
        exc.args = (exc.message,)
        exc.details = {**exc.details, "file": str(file), "line": line}
        raise
    except Exception as exc:  # noqa: BLE001 - user code failed while loading
        line = _user_line(exc, file)
        raise InvalidInput(f"{file}:{line}: loading the definitions raised {type(exc).__name__}: {exc}",
                           {"file": str(file), "line": line}) from exc
    finally:
        if added_path in sys.path:
            sys.path.remove(added_path)
    return [value for value in vars(module).values() if isinstance(value, Definition)]


def _user_line(exc: BaseException, file: Path) -> int:
    line = 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file:
            line = frame.lineno or 0
    return line


def _resolve_paths(obj: Definition, root: Path) -> Definition:
    if isinstance(obj, FeatureView):
        resolved = obj.source.resolve(root)
        if resolved is not obj.source:
            obj.source = resolved
    return obj


def _err(obj: Definition, message: str, **details: object) -> InvalidInput:
    return InvalidInput(f"{obj.location}: {message}",
                        {"file": obj.location.file, "line": obj.location.line, **details})


def validate(definitions: list[Definition]) -> None:
    """Cross-checks: unique names, known entities, known features in services and on-demand views."""
    by_key: dict[tuple[str, str], Definition] = {}
    view_names: dict[str, Definition] = {}
    for obj in definitions:
        key = (obj.kind, obj.name)
        if key in by_key:
            raise _err(obj, f"{obj.kind.replace('_', ' ')} {obj.name!r} is defined twice (also at "
                            f"{by_key[key].location}); rename one", name=obj.name)
        by_key[key] = obj
        if isinstance(obj, FeatureView | OnDemandFeatureView):
            if obj.name in view_names:
                raise _err(obj, f"view name {obj.name!r} is already used at {view_names[obj.name].location}; "
                                "feature views and on-demand views share one namespace", name=obj.name)
            view_names[obj.name] = obj
    entities = {o.name: o for o in definitions if isinstance(o, Entity)}
    for obj in definitions:
        if isinstance(obj, FeatureView):
            for ent in obj.entities:
                known = entities.get(ent.name)
                if known is None:
                    raise _err(obj, f"feature view {obj.name!r} uses entity {ent.name!r}, which is not defined at "
                                    "module level in the features folder; define it there",
                               view=obj.name, entity=ent.name)
                if known.to_spec() != ent.to_spec():
                    raise _err(obj, f"feature view {obj.name!r} uses a different definition of entity "
                                    f"{ent.name!r} than {known.location}; use one Entity object",
                               view=obj.name, entity=ent.name)
    for obj in definitions:
        if isinstance(obj, OnDemandFeatureView):
            for ref in obj.feature_inputs:
                _check_ref(obj, ref, view_names, allow_odfv=False)
            inputs = obj.input_columns
            dupes = sorted({c for c in inputs if inputs.count(c) > 1})
            if dupes:
                raise _err(obj, f"on-demand feature view {obj.name!r} has inputs with the same name {dupes} from "
                                "different sources; select fewer features with view[[...]]", view=obj.name)
        if isinstance(obj, FeatureService):
            expanded: list[str] = []
            for ref in obj.features:
                if ":" not in ref:
                    view = view_names.get(ref)
                    if view is None:
                        raise _unknown_view(obj, ref, view_names)
                    expanded.extend(f"{ref}:{f}" for f in view.feature_names)  # type: ignore[attr-defined]
                else:
                    _check_ref(obj, ref, view_names, allow_odfv=True)
                    expanded.append(ref)
            obj.features = list(dict.fromkeys(expanded))


def _unknown_view(obj: Definition, name: str, views: dict[str, Definition]) -> InvalidInput:
    known = ", ".join(sorted(views)) or "none"
    return _err(obj, f"{obj.kind.replace('_', ' ')} {obj.name!r} refers to unknown feature view {name!r} "
                     f"(defined: {known}); fix the name or define the view", view=name)


def _check_ref(obj: Definition, ref: str, views: dict[str, Definition], allow_odfv: bool) -> None:
    view_name, _, feature = ref.partition(":")
    view = views.get(view_name)
    if view is None:
        raise _unknown_view(obj, view_name, views)
    if not allow_odfv and isinstance(view, OnDemandFeatureView):
        raise _err(obj, f"on-demand feature view {obj.name!r} cannot take inputs from another on-demand view "
                        f"{view_name!r}", view=view_name)
    names = view.feature_names  # type: ignore[attr-defined]
    if feature not in names:
        raise _err(obj, f"{obj.kind.replace('_', ' ')} {obj.name!r} refers to unknown feature {feature!r} of "
                        f"view {view_name!r} (its features: {', '.join(names)})", view=view_name, feature=feature)
