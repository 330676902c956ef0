"""No private attribute of a dependency is used outside the one module that isolates it.

LightGBM's single-row and small-batch entry points are private (``_LIB``, ``_InnerPredictor``,
``Booster._handle``); ``shipyard/models/flavors/lightgbm_fast.py`` uses them behind a version check
with a public fallback (both tested in tests/models/test_lightgbm_small_batch.py). Anywhere else a
private name of a dependency breaks silently on its next release, so this test refuses:

- ``from dependency import _name`` (and ``import dependency._module``);
- ``dependency._name`` on an imported module, at any depth (``values.ValueClass._multiprocess``);
- ``getattr(obj, "_name")`` on an object that is not Shipyard's own;
- the private names known to tempt (``KNOWN``), on any object.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"
ISOLATED = {"models/flavors/lightgbm_fast.py"}
# private names of dependencies met in this codebase or its issues (an object's type is not known
# statically, so these are matched by name whatever they are read from)
KNOWN = ("_LIB", "_InnerPredictor", "_handle", "_safe_call", "_c_str", "_C_API_", "_sock", "_native_telemetry",
         "_multiprocess", "_buffer", "_parser", "_connection", "_in_use_connections", "_available_connections")
# own private attributes read through getattr (the object is Shipyard's own)
OWN_GETATTR = {("models/log_model.py", "_tracking")}
# public despite the underscore: documented API of SQLAlchemy rows and namedtuples
PUBLIC = {"_mapping", "_asdict", "_fields", "_replace", "_make", "_getframe", "_exit"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC


def violations(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    dependency_names: set[str] = set()  # local names bound to a dependency's module or object
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("shipyard"):
                    dependency_names.add((alias.asname or alias.name).split(".")[0])
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{rel}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and not node.module.startswith("shipyard") and node.module != "__future__" \
                and not (path.parent / (node.module.split(".")[0] + ".py")).is_file():  # a sibling file
            for alias in node.names:
                if _private(alias.name) or any(_private(p) for p in node.module.split(".")):
                    found.append(f"{rel}:{node.lineno}: from {node.module} import {alias.name}")
                dependency_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in dependency_names and any(map(_private, chain)):
                found.append(f"{rel}:{node.lineno}: {base.id}.{'.'.join(reversed(chain))}")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own and any(node.attr == k or (k.endswith("_") and node.attr.startswith(k)) for k in KNOWN):
                found.append(f"{rel}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2:
            key = node.args[1]
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and _private(key.value) \
                    and (rel, key.value) not in OWN_GETATTR:
                found.append(f"{rel}:{node.lineno}: {node.func.id}(..., {key.value!r})")
    return sorted(set(found))


def test_no_private_attribute_of_a_dependency_outside_its_isolating_module() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in ISOLATED:
            found += violations(path, rel)
    assert not found, ("private names of dependencies (use the public API, or isolate a fast path in one "
                       "module behind a version check with a public fallback):\n" + "\n".join(found))


def test_the_check_sees_each_kind_of_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import lightgbm\nfrom lightgbm.basic import _LIB\nfrom prometheus_client import values\n"
        "from shipyard.x import _own\n"
        "a = values.ValueClass._multiprocess\nb = lightgbm._version\nc = booster._handle\n"
        "d = getattr(client, '_sock')\ne = row._mapping\nf = self._cache\ng = self._handle\n"
        "h = self.client._sock\n")
    found = {re.sub(r"^sample\.py:\d+: ", "", f) for f in violations(sample, "sample.py")}
    assert found == {"from lightgbm.basic import _LIB", "values.ValueClass._multiprocess", "._multiprocess",
                     "lightgbm._version", "._handle", "getattr(..., '_sock')", "._sock"}


def test_the_isolating_module_is_the_only_exception() -> None:
    assert all((SRC / rel).is_file() for rel in ISOLATED)
    assert violations(SRC / "models/flavors/lightgbm_fast.py", "lightgbm_fast.py"), \
        "lightgbm_fast.py no longer uses private names: drop it from ISOLATED"


def test_prometheus_multiprocess_storage_is_checked_through_public_names(tmp_path: Path) -> None:
    # set before prometheus_client is imported: the shared-file storage; after: refused, naming why
    before = ("import os; os.environ['PROMETHEUS_MULTIPROC_DIR'] = {d!r}\n"
              "from shipyard.serving.metrics import _check_multiprocess_values; _check_multiprocess_values()\n")
    after = ("import prometheus_client, os; os.environ['PROMETHEUS_MULTIPROC_DIR'] = {d!r}\n"
             "from shipyard.errors import ConfigError\n"
             "from shipyard.serving.metrics import _check_multiprocess_values\n"
             "try:\n    _check_multiprocess_values()\nexcept ConfigError as exc:\n    print('refused', exc.message)\n")
    for code, expect in ((before, ""), (after, "refused PROMETHEUS_MULTIPROC_DIR is set but")):
        done = subprocess.run([sys.executable, "-c", code.format(d=str(tmp_path))], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(expect), done.stdout
