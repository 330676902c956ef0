"""Pipelines as a graph of nodes and typed edges, written in Python or as a YAML/JSON document.

The document is the form a visual editor reads and writes: stable node ids, optional ``x``/``y``
positions, explicit edges (each with a stable id). ``inputs`` on a node is a shorthand for edges::

    name: credit
    params: {target: creditability}          # run parameters, used as ${target}; --param overrides
    defaults: {retries: 0, timeout_s: 600}
    nodes:
      - id: data
        component: load_dataset
        params: {dataset: german_credit}
        position: {x: 0, y: 0}
      - id: split
        component: split
        inputs: {data: data}                 # "node" (its only output) or "node.output"
        params: {target: "${target}", test_size: 0.3}
    edges:
      - {from: split.train, to: binning.train}

The same pipeline in Python::

    p = Pipeline("credit", params={"target": "creditability"})
    data = p.add("data", "load_dataset", dataset="german_credit")
    split = p.add("split", "split", data=data, target="${target}", test_size=0.3)
    p.add("binning", "bin_woe", train=split["train"], target="${target}")

Validation names the node for every problem: unknown components and params, missing or mistyped
params, edges to unknown ports, type mismatches between nodes, inputs without an edge, and cycles.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import yaml

from shipyard.errors import InvalidInput
from shipyard.pipelines.components import Component, resolve_component
from shipyard.pipelines.types import check_param_value, compatible

DOCUMENT_VERSION = 1
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")
REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NODE_KEYS = {"id", "component", "params", "inputs", "label", "description", "position", "timeout_s", "retries",
             "cache"}
DOC_KEYS = {"version", "name", "description", "experiment", "params", "defaults", "nodes", "edges"}


@dataclass
class PipelineNode:
    id: str
    component: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    description: str = ""
    position: dict[str, float] | None = None
    timeout_s: float | None = None
    retries: int | None = None
    cache: bool = True

    def __getitem__(self, output: str) -> NodeOutput:
        return NodeOutput(self.id, output)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "component": self.component, "params": dict(self.params)}
        for key in ("label", "description"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.position is not None:
            out["position"] = dict(self.position)
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.retries is not None:
            out["retries"] = self.retries
        if not self.cache:
            out["cache"] = False
        return out


@dataclass(frozen=True)
class NodeOutput:
    node: str
    output: str | None = None  # None: the node's only output


@dataclass(frozen=True)
class Edge:
    source: str
    output: str | None
    target: str
    input: str
    id: str = ""

    def key(self) -> str:
        return self.id or f"{self.source}.{self.output}->{self.target}.{self.input}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.key(), "from": {"node": self.source, "output": self.output},
                "to": {"node": self.target, "input": self.input}}


class Pipeline:
    """A pipeline under construction or loaded from a document; ``validate`` checks it."""

    def __init__(self, name: str, *, params: Mapping[str, Any] | None = None, description: str = "",
                 experiment: str | None = None, defaults: Mapping[str, Any] | None = None,
                 base_dir: str | Path | None = None) -> None:
        self.name = name
        self.params = dict(params or {})
        self.description = description
        self.experiment = experiment
        self.defaults = dict(defaults or {})
        self.base_dir = Path(base_dir).resolve() if base_dir else Path.cwd()
        self.nodes: dict[str, PipelineNode] = {}
        self.edges: list[Edge] = []

    # -- building --------------------------------------------------------------------------------
    def add(self, id: str, component: Any, *, label: str = "", position: Mapping[str, float] | None = None,  # noqa: A002
            timeout_s: float | None = None, retries: int | None = None, cache: bool = True,
            **values: Any) -> PipelineNode:
        """Add a node; keyword values that are nodes or ``node["output"]`` become edges, others params."""
        ref = component if isinstance(component, str) else _ref_of(component)
        params = {}
        node = PipelineNode(id, ref, params, label, "", dict(position) if position else None, timeout_s, retries, cache)
        if id in self.nodes:
            raise InvalidInput(f"node id {id!r} is used twice; give every node its own id", {"node": id})
        self.nodes[id] = node
        for key, value in values.items():
            if isinstance(value, PipelineNode):
                self.edges.append(Edge(value.id, None, id, key))
            elif isinstance(value, NodeOutput):
                self.edges.append(Edge(value.node, value.output, id, key))
            else:
                params[key] = value
        return node

    def connect(self, source: str, target: str) -> None:
        """Add an edge ``"node.output"`` → ``"node.input"``."""
        self.edges.append(_edge(source, target, ""))

    # -- documents -------------------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        """The canonical document: explicit edges with stable ids (what a visual editor saves)."""
        doc: dict[str, Any] = {"version": DOCUMENT_VERSION, "name": self.name}
        if self.description:
            doc["description"] = self.description
        if self.experiment:
            doc["experiment"] = self.experiment
        if self.params:
            doc["params"] = copy.deepcopy(self.params)
        if self.defaults:
            doc["defaults"] = dict(self.defaults)
        doc["nodes"] = [n.to_dict() for n in self.nodes.values()]
        doc["edges"] = [e.to_dict() for e in self.edges]
        return doc

    def sha256(self) -> str:
        text = json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], base_dir: str | Path | None = None) -> Pipeline:
        if not isinstance(doc, Mapping):
            raise InvalidInput("a pipeline document must be a mapping with name, nodes and edges", {"field": "document"})
        unknown = set(doc) - DOC_KEYS
        if unknown:
            raise InvalidInput(f"pipeline document: unknown key(s) {sorted(unknown)}; use {sorted(DOC_KEYS)}",
                               {"field": sorted(unknown)[0]})
        if int(doc.get("version", DOCUMENT_VERSION)) != DOCUMENT_VERSION:
            raise InvalidInput(f"pipeline document version {doc.get('version')!r} is not supported; use 1",
                               {"field": "version"})
        for key, kind in (("params", Mapping), ("defaults", Mapping), ("nodes", list), ("edges", list)):
            if key in doc and not isinstance(doc[key], kind):
                raise InvalidInput(f"pipeline document: {key} must be a {'mapping' if kind is Mapping else 'list'}",
                                   {"field": key})
        pipeline = cls(str(doc.get("name") or ""), params=doc.get("params"), description=str(doc.get("description", "")),
                       experiment=doc.get("experiment"), defaults=doc.get("defaults"), base_dir=base_dir)
        for i, raw in enumerate(doc.get("nodes") or []):
            pipeline._add_raw(raw, i)
        for i, raw in enumerate(doc.get("edges") or []):
            if not isinstance(raw, Mapping) or "from" not in raw or "to" not in raw:
                raise InvalidInput(f"edge #{i + 1} needs 'from' and 'to'", {"field": f"edges[{i}]"})
            pipeline.edges.append(_edge(raw["from"], raw["to"], str(raw.get("id") or "")))
        return pipeline

    def _add_raw(self, raw: Any, index: int) -> None:
        if not isinstance(raw, Mapping) or not raw.get("id"):
            raise InvalidInput(f"node #{index + 1} needs an id", {"field": f"nodes[{index}]"})
        node_id = str(raw["id"])
        unknown = set(raw) - NODE_KEYS
        if unknown:
            raise InvalidInput(f"node {node_id!r}: unknown key(s) {sorted(unknown)}; use {sorted(NODE_KEYS)}",
                               {"node": node_id, "field": sorted(unknown)[0]})
        if node_id in self.nodes:
            raise InvalidInput(f"node id {node_id!r} is used twice; give every node its own id", {"node": node_id})
        params = raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise InvalidInput(f"node {node_id!r}: params must be a mapping", {"node": node_id, "field": "params"})
        self.nodes[node_id] = PipelineNode(
            node_id, str(raw.get("component") or ""), dict(params), str(raw.get("label") or ""),
            str(raw.get("description") or ""), raw.get("position"), raw.get("timeout_s"), raw.get("retries"),
            bool(raw.get("cache", True)))
        inputs = raw.get("inputs") or {}
        if not isinstance(inputs, Mapping):
            raise InvalidInput(f"node {node_id!r}: inputs must map an input name to 'node' or 'node.output'",
                               {"node": node_id, "field": "inputs"})
        for port, source in inputs.items():
            self.edges.append(_edge(source, {"node": node_id, "input": str(port)}, ""))

    # -- graph -----------------------------------------------------------------------------------
    def incoming(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.target == node_id]

    def upstream(self, node_id: str) -> set[str]:
        return {e.source for e in self.edges if e.target == node_id}

    def downstream(self, node_id: str) -> set[str]:
        return {e.target for e in self.edges if e.source == node_id}

    def ancestors(self, node_id: str) -> set[str]:
        return _closure(node_id, self.upstream)

    def descendants(self, node_id: str) -> set[str]:
        return _closure(node_id, self.downstream)

    def order(self) -> list[str]:
        """Topological order (document order among ready nodes)."""
        indegree = {n: 0 for n in self.nodes}
        for e in self.edges:
            if e.target in indegree and e.source in indegree:
                indegree[e.target] += 1
        ready = [n for n in self.nodes if indegree[n] == 0]
        out = []
        position = {n: i for i, n in enumerate(self.nodes)}
        while ready:
            node = ready.pop(0)
            out.append(node)
            for edge in self.edges:
                if edge.source == node and edge.target in indegree:
                    indegree[edge.target] -= 1
                    if indegree[edge.target] == 0:
                        ready.append(edge.target)
            ready.sort(key=position.__getitem__)
        return out


def _ref_of(func: Any) -> str:
    from shipyard.pipelines.components import component_of

    return component_of(func).name


def _closure(start: str, step: Any) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in step(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _end(value: Any, port_key: str) -> tuple[str, str | None]:
    if isinstance(value, Mapping):
        return str(value.get("node") or ""), (str(value[port_key]) if value.get(port_key) else None)
    text = str(value or "")
    node, _, port = text.partition(".")
    return node, (port or None)


def _edge(source: Any, target: Any, edge_id: str) -> Edge:
    src, output = _end(source, "output")
    dst, port = _end(target, "input")
    if not port:
        raise InvalidInput(f"edge {edge_id or ''} to {dst!r} must name the input: 'node.input'",
                           {"node": dst, "field": "edges"})
    return Edge(src, output, dst, port, edge_id)


def load_pipeline(source: str | Path | Mapping[str, Any] | Pipeline, base_dir: str | Path | None = None) -> Pipeline:
    """A pipeline from a YAML/JSON file, a Python file (defining ``pipeline``), a document or a Pipeline."""
    if isinstance(source, Pipeline):
        return source
    if isinstance(source, Mapping):
        return Pipeline.from_document(source, base_dir)
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"pipeline file {str(path)!r} does not exist", {"field": "file"})
    if path.suffix == ".py":
        from shipyard.pipelines.components import _load_file_module

        module = _load_file_module(path.resolve())
        found = getattr(module, "pipeline", None)
        if callable(found) and not isinstance(found, Pipeline):
            found = found()
        if not isinstance(found, Pipeline):
            raise InvalidInput(f"{path} must define `pipeline`, a shipyard.pipelines.Pipeline (or a function "
                               "returning one)", {"field": "file"})
        found.base_dir = path.resolve().parent
        return found
    try:
        doc = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}",
                           {"field": "file"}) from None
    return Pipeline.from_document(doc, base_dir or path.resolve().parent)


# -- binding and validation ------------------------------------------------------------------------
@overload
def substitute(value: Mapping[str, Any], params: Mapping[str, Any], node: str) -> dict[str, Any]: ...
@overload
def substitute(value: object, params: Mapping[str, Any], node: str) -> object: ...
def substitute(value: object, params: Mapping[str, Any], node: str) -> object:
    """Replace ``${name}`` by run parameters: a whole-string reference keeps the parameter's type."""
    if isinstance(value, str):
        whole = REF_RE.fullmatch(value)
        names = REF_RE.findall(value)
        for name in names:
            if name not in params:
                raise InvalidInput(f"node {node!r}: parameter ${{{name}}} is not defined in the pipeline's params",
                                   {"node": node, "field": "params", "param": name})
        if whole:
            return params[whole.group(1)]
        return REF_RE.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {k: substitute(v, params, node) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, node) for v in value]
    return value


@dataclass
class BoundNode:
    node: PipelineNode
    component: Component
    params: dict[str, Any]  # after substitution, with defaults
    inputs: dict[str, tuple[str, str]]  # input -> (source node, source output)
    timeout_s: float | None
    retries: int


@dataclass
class BoundPipeline:
    pipeline: Pipeline
    params: dict[str, Any]
    nodes: dict[str, BoundNode]
    order: list[str]


def _problem(problems: list[dict[str, Any]], node: str, field: str, message: str) -> None:
    problems.append({"node": node, "field": field, "message": message})


def bind(pipeline: Pipeline, overrides: Mapping[str, Any] | None = None) -> BoundPipeline:
    """Validate the pipeline with run parameters ``overrides``; every problem names its node."""
    problems: list[dict[str, Any]] = []
    unknown = sorted(set(overrides or {}) - set(pipeline.params))
    if unknown:
        raise InvalidInput(f"--param {unknown[0]!r} is not a parameter of pipeline {pipeline.name!r}; its parameters "
                           f"are {sorted(pipeline.params)}", {"field": "params", "param": unknown[0]})
    params = {**pipeline.params, **(overrides or {})}
    if not pipeline.name or not ID_RE.match(pipeline.name):
        _problem(problems, "", "name", f"pipeline name {pipeline.name!r} is not valid; use letters, digits, '_', '-'")
    if not pipeline.nodes:
        _problem(problems, "", "nodes", "the pipeline has no nodes")
    components: dict[str, Component] = {}
    for node in pipeline.nodes.values():
        if not ID_RE.match(node.id):
            _problem(problems, node.id, "id", f"node id {node.id!r} is not valid; use letters, digits, '_', '-'")
        try:
            components[node.id] = resolve_component(node.component, pipeline.base_dir, node.id)
        except InvalidInput as exc:
            _problem(problems, node.id, "component", exc.message)
    bound_params: dict[str, dict[str, Any]] = {}
    for node in pipeline.nodes.values():
        comp = components.get(node.id)
        if comp is None:
            continue
        try:
            values = substitute(node.params, params, node.id)
        except InvalidInput as exc:
            _problem(problems, node.id, "params", exc.message)
            continue
        bound_params[node.id] = _check_params(node, comp, values, problems)
        _check_node_options(node, pipeline.defaults, problems)
    inputs = _check_edges(pipeline, components, problems)
    order = pipeline.order()
    if len(order) != len(pipeline.nodes):
        stuck = [n for n in pipeline.nodes if n not in order]
        _problem(problems, stuck[0], "edges", f"the pipeline has a cycle through nodes {stuck}; remove an edge")
    if problems:
        first = problems[0]
        raise InvalidInput(first["message"] if len(problems) == 1 else
                           f"{first['message']} (and {len(problems) - 1} more problem(s))",
                           {"node": first["node"], "field": first["field"], "problems": problems})
    nodes = {}
    for node_id in order:
        node = pipeline.nodes[node_id]
        timeout = node.timeout_s if node.timeout_s is not None else pipeline.defaults.get("timeout_s")
        retries = node.retries if node.retries is not None else pipeline.defaults.get("retries", 0)
        nodes[node_id] = BoundNode(node, components[node_id], bound_params[node_id], inputs.get(node_id, {}),
                                   float(timeout) if timeout is not None else None, int(retries or 0))
    return BoundPipeline(pipeline, params, nodes, order)


def _check_params(node: PipelineNode, comp: Component, values: dict[str, Any],
                  problems: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in values:
        if comp.param(name) is None:
            known = [p.name for p in comp.params]
            hint = " (it is an input: connect an edge to it)" if comp.input(name) else ""
            _problem(problems, node.id, f"params.{name}",
                     f"node {node.id!r}: {comp.name} has no param {name!r}{hint}; its params are {known}")
    for param in comp.params:
        if param.name in values:
            value = values[param.name]
            if not check_param_value(param.type, value):
                _problem(problems, node.id, f"params.{param.name}",
                         f"node {node.id!r}: param {param.name!r} must be {param.type}, got {value!r}")
            elif param.choices and value not in param.choices:
                _problem(problems, node.id, f"params.{param.name}",
                         f"node {node.id!r}: param {param.name!r} is {value!r}; use one of {list(param.choices)}")
            out[param.name] = value
        elif param.required:
            _problem(problems, node.id, f"params.{param.name}",
                     f"node {node.id!r}: {comp.name} needs param {param.name!r}")
        else:
            out[param.name] = param.default
    return out


def _check_node_options(node: PipelineNode, defaults: Mapping[str, Any], problems: list[dict[str, Any]]) -> None:
    timeout = node.timeout_s if node.timeout_s is not None else defaults.get("timeout_s")
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0):
        _problem(problems, node.id, "timeout_s", f"node {node.id!r}: timeout_s must be a positive number of seconds")
    retries = node.retries if node.retries is not None else defaults.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        _problem(problems, node.id, "retries", f"node {node.id!r}: retries must be a whole number ≥ 0")
    if node.position is not None and not (
            isinstance(node.position, Mapping) and all(isinstance(node.position.get(k), int | float) for k in "xy")):
        _problem(problems, node.id, "position", f"node {node.id!r}: position must be {{x: number, y: number}}")


def _check_edges(pipeline: Pipeline, components: Mapping[str, Component],
                 problems: list[dict[str, Any]]) -> dict[str, dict[str, tuple[str, str]]]:
    inputs: dict[str, dict[str, tuple[str, str]]] = {}
    for edge in pipeline.edges:
        if edge.source not in pipeline.nodes:
            _problem(problems, edge.target, "edges",
                     f"node {edge.target!r}: input {edge.input!r} comes from unknown node {edge.source!r}")
            continue
        if edge.target not in pipeline.nodes:
            _problem(problems, edge.source, "edges", f"an edge from {edge.source!r} goes to unknown node {edge.target!r}")
            continue
        src, dst = components.get(edge.source), components.get(edge.target)
        if src is None or dst is None:
            continue
        output = edge.output
        if output is None:
            if len(src.outputs) != 1:
                _problem(problems, edge.target, "edges",
                         f"node {edge.target!r}: {edge.source!r} has outputs {[o.name for o in src.outputs]}; "
                         f"name one, e.g. '{edge.source}.{src.outputs[0].name}'")
                continue
            output = src.outputs[0].name
        out_port, in_port = src.output(output), dst.input(edge.input)
        if out_port is None:
            _problem(problems, edge.target, "edges",
                     f"node {edge.target!r}: {edge.source!r} has no output {output!r}; its outputs are "
                     f"{[o.name for o in src.outputs]}")
            continue
        if in_port is None:
            _problem(problems, edge.target, f"inputs.{edge.input}",
                     f"node {edge.target!r}: {dst.name} has no input {edge.input!r}; its inputs are "
                     f"{[i.name for i in dst.inputs]}")
            continue
        if not compatible(out_port.type, in_port.type):
            _problem(problems, edge.target, f"inputs.{edge.input}",
                     f"node {edge.target!r}: input {edge.input!r} takes {in_port.type} but {edge.source}.{output} "
                     f"gives {out_port.type}")
            continue
        if edge.input in inputs.setdefault(edge.target, {}):
            _problem(problems, edge.target, f"inputs.{edge.input}",
                     f"node {edge.target!r}: input {edge.input!r} has two edges; keep one")
            continue
        inputs[edge.target][edge.input] = (edge.source, output)
    for node_id, comp in components.items():
        for port in comp.inputs:
            if not port.optional and port.name not in inputs.get(node_id, {}):
                _problem(problems, node_id, f"inputs.{port.name}",
                         f"node {node_id!r}: input {port.name!r} ({port.type}) is not connected")
    return inputs


def select(pipeline: Pipeline, start: str | None, stop: str | None) -> set[str]:
    """Nodes a run executes: from ``start`` and everything after it, up to ``stop`` and what it needs."""
    for name, value in (("--from", start), ("--to", stop)):
        if value is not None and value not in pipeline.nodes:
            raise InvalidInput(f"{name} {value!r} is not a node of {pipeline.name!r}; nodes: {list(pipeline.nodes)}",
                               {"field": name.strip('-'), "node": value})
    chosen = set(pipeline.nodes)
    if start is not None:
        chosen &= {start} | pipeline.descendants(start)
    if stop is not None:
        chosen &= {stop} | pipeline.ancestors(stop)
    if not chosen:
        raise InvalidInput(f"--to {stop!r} does not come after --from {start!r}: nothing to run", {"field": "to"})
    return chosen


def iter_ids(values: Iterable[str]) -> list[str]:
    return list(values)
