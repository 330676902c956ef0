"""Compile a pipeline to a readable standalone Python script.

The script holds, in order: imports; a small ``Context`` stand-in (metrics are printed and kept, files
go to ``output/<node>/``); the source of every component the pipeline uses (built-ins copied with the
helpers they call; user components imported from their module); one ``node_<id>`` function per node
calling its component with the node's parameters written out; and a ``main`` that calls the nodes in
order and writes every node's metrics to ``output/metrics.json``. Plan-time facts are fixed when the
script is written: a dataset node reads the exact version the pipeline would read (its Parquet file;
``--data NODE=PATH`` points it elsewhere). Registration is replaced by writing the model to a file.
"""

from __future__ import annotations

import inspect
import pprint
import re
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shipyard.pipelines.components import ATTRIBUTE, Component
from shipyard.pipelines.dag import BoundPipeline

PREAMBLE = '''
import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

DATA: dict[str, str] = {}  # node id -> data file, from --data NODE=PATH
OUTPUT = Path("output")


class Context:
    """What a component's ``ctx`` offers inside Shipyard, reduced to plain files and prints."""

    def __init__(self, node_id: str, resolved: dict[str, Any] | None = None) -> None:
        self.node_id = node_id
        self.resolved = dict(resolved or {})
        self.metrics: dict[str, float] = {}
        self.params: dict[str, str] = {}

    def log_metric(self, key: str, value: float) -> None:
        self.metrics[key] = float(value)
        print(f"  {self.node_id}.{key} = {float(value):.6g}")

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value)

    def log_param(self, key: str, value: Any) -> None:
        self.params[key] = str(value)

    def log_params(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            self.log_param(key, value)

    def write_text(self, name: str, text: str) -> Path:
        folder = OUTPUT / self.node_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        return folder / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        folder = OUTPUT / self.node_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return folder / name

    def record_read(self, dataset: str, version: int) -> None:
        pass


def load_file_at(path: str, format: str | None = None) -> pd.DataFrame:
    kind = format or path.rsplit(".", 1)[-1].lower()
    if kind in ("parquet", "pq"):
        return pd.read_parquet(path)
    if kind in ("xlsx", "excel"):
        return pd.read_excel(path)
    return pd.read_csv(path)


def as_outputs(result: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(result, tuple):
        return dict(zip(names, result))
    return dict(result)
'''


def _strip_decorators(source: str) -> str:
    lines = textwrap.dedent(source).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("def ", "async def ")))
    return "\n".join(lines[start:]) + "\n"


def _module_helpers(func: Callable[..., Any], seen: dict[str, str]) -> None:
    """Add to ``seen`` the source of module-level functions ``func`` calls (recursively), before it."""
    module = sys.modules.get(func.__module__)
    if module is None:
        return
    names: set[str] = set()
    stack = [func.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if inspect.iscode(c))
    for name in sorted(names):
        target = getattr(module, name, None)
        if (inspect.isfunction(target) and target.__module__ == func.__module__ and name not in seen
                and not hasattr(target, ATTRIBUTE)):
            _module_helpers(target, seen)
            seen[name] = _strip_decorators(inspect.getsource(target))


def _py_name(node_id: str) -> str:
    return re.sub(r"\W", "_", node_id)


def _literal(value: Any) -> str:
    return pprint.pformat(value, width=100, sort_dicts=False)


def generate_script(bound: BoundPipeline, facts: dict[str, dict[str, Any]]) -> str:
    pipeline = bound.pipeline
    helpers: dict[str, str] = {}
    functions: dict[str, str] = {}
    imports: list[str] = []
    for node_id in bound.order:
        comp = bound.nodes[node_id].component
        if comp.script is not None or comp.func.__name__ in functions:
            continue
        if comp.builtin:
            _module_helpers(comp.func, helpers)
            functions[comp.func.__name__] = _strip_decorators(inspect.getsource(comp.func)).replace(
                "ctx: NodeContext", "ctx: Context")
        else:
            imports.append(_user_import(comp, pipeline.base_dir))
    parts = [
        "#!/usr/bin/env python",
        f'"""Pipeline {pipeline.name!r}, written as a plain script by Shipyard on '
        f'{datetime.now(UTC):%Y-%m-%d %H:%M} UTC (document sha256 {pipeline.sha256()[:12]}).\n\n'
        f"Same components and parameters as `shipyard pipelines run`; run it with plain Python:\n\n"
        f"    python {_py_name(pipeline.name)}.py [--data NODE=PATH] [--output DIR]\n\n"
        "Each node's metrics are printed and written to OUTPUT/metrics.json.\n\"\"\"",
        "",
        "from __future__ import annotations",
        PREAMBLE.rstrip(),
    ]
    if imports:
        parts += ["", "# user components", *sorted(set(imports))]
    if helpers:
        parts += ["", "", "# --- helpers the components call " + "-" * 60]
        for source in helpers.values():
            parts += ["", source.rstrip(), ""]
    if functions:
        parts += ["", "# --- components " + "-" * 76]
        for source in functions.values():
            parts += ["", source.rstrip(), ""]
    parts += ["", "# --- nodes " + "-" * 81]
    for node_id in bound.order:
        parts += ["", _node_function(bound, node_id, facts.get(node_id, {})).rstrip(), ""]
    parts += ["", _main(bound), "", "", 'if __name__ == "__main__":', "    main()", ""]
    return "\n".join(parts)


def _user_import(comp: Component, base_dir: Any) -> str:
    module, _, attr = comp.name.rpartition(":")
    if module.endswith(".py"):
        from pathlib import Path

        path = Path(module) if Path(module).is_absolute() else Path(base_dir) / module
        return (f"sys.path.insert(0, {str(path.resolve().parent)!r})\n"
                f"from {path.stem} import {attr.split('.')[0]}  # noqa: E402")
    return f"from {module} import {attr.split('.')[0]}  # noqa: E402"


def _node_function(bound: BoundPipeline, node_id: str, facts: dict[str, Any]) -> str:
    node = bound.nodes[node_id]
    comp = node.component
    args = list(node.inputs)
    signature = ", ".join(args)
    head = f"def node_{_py_name(node_id)}({signature}):"
    doc = f'    """{node_id}: {comp.name}{" — " + node.node.label if node.node.label else ""}"""\n'
    if comp.script is not None:
        return head + "\n" + doc + comp.script(node_id, node.params, facts)
    call_args = []
    if comp.takes_context:
        keep = {k: v for k, v in facts.items() if k not in ("local_path",)}
        call_args.append(f"ctx=Context({node_id!r}{', ' + _literal(keep) if keep else ''})")
    call_args += [f"{a}={a}" for a in args]
    for name, value in node.params.items():
        call_args.append(f"{name}={_literal(value)}")
    target = comp.func.__name__ if comp.builtin else comp.name.rpartition(":")[2]
    call = f"{target}(\n        " + ",\n        ".join(call_args) + ",\n    )"
    return f"{head}\n{doc}    return {call}\n"


def _main(bound: BoundPipeline) -> str:
    lines = [
        "def main(argv: list[str] | None = None) -> dict[str, Any]:",
        '    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])',
        '    parser.add_argument("--data", action="append", default=[], metavar="NODE=PATH",',
        '                        help="read a data node from this file instead")',
        '    parser.add_argument("--output", default="output", help="folder for metrics, reports and models")',
        "    args = parser.parse_args(argv)",
        "    global OUTPUT",
        "    OUTPUT = Path(args.output)",
        "    DATA.update(item.split(\"=\", 1) for item in args.data)",
        "    results: dict[str, Any] = {}",
    ]
    for node_id in bound.order:
        node = bound.nodes[node_id]
        args = []
        for port, (src, out) in node.inputs.items():
            source = bound.nodes[src].component
            ref = f"results[{src!r}]" if len(source.outputs) == 1 else f"results[{src!r}][{out!r}]"
            args.append(f"{port}={ref}")
        call = f"node_{_py_name(node_id)}({', '.join(args)})"
        names = [o.name for o in node.component.outputs]
        if len(names) > 1:
            call = f"as_outputs({call}, {names!r})"
        lines += [f"    print('{node_id} ...')", f"    results[{node_id!r}] = {call}"]
    lines += [
        "    metrics = {name: value for name, value in results.items() if isinstance(value, dict)",
        "               and all(isinstance(v, (int, float)) for v in value.values())}",
        "    OUTPUT.mkdir(parents=True, exist_ok=True)",
        '    (OUTPUT / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))',
        '    print(json.dumps(metrics, indent=2, sort_keys=True))',
        "    return results",
    ]
    return "\n".join(lines)
