"""Decision flows: the declarative step document, its validation and its compilation to a plan.

A flow is a tree of steps; every step is a mapping with a ``type``:

=========== ===================================================================================
features    ``service``, ``entity: {entity_key: field}``, optional ``features: [names]``
expr        ``output``, ``expr`` (a safe expression, see :mod:`shipyard.serving.expr`)
model       ``model``, ``ref`` (alias or version, default ``champion``), ``output`` (default
            ``<model>_score``) or ``outputs: [..]``, optional ``inputs: {model_column: field}``
rules       inline ``rules: [{name, when, then}]`` + ``default`` + ``output``, or a ``ruleset``
            model: ``model`` + ``ref`` + ``output``
serial      ``steps: [..]`` run in order (a bare list is a serial flow)
parallel    ``steps: [..]`` independent branches; ``threads: true`` runs them concurrently
fusion      ``steps`` (optional) then ``inputs: [fields]`` combined by ``method`` (``weighted``
            with ``weights``, ``mean``, ``max``, ``min``) or ``expr``; writes ``output``
switch      ``cases: [{when, then: step}]`` and optional ``default: step``
scene       ``scene`` (+ ``version``): another scene's flow inlined as a sub-scene
=========== ===================================================================================

``compile_flow`` validates the whole tree before anything runs — unknown models, feature services
and fields, type mismatches between scene inputs and model signatures, duplicate step ids, branches
that read each other's outputs and sub-scene cycles — and raises ``InvalidInput`` naming the step.
The result is a :class:`CompiledFlow` of ready objects: the request path never parses anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.serving import steps as st
from shipyard.serving.expr import compile_expression

STEP_TYPES = ("features", "expr", "model", "rules", "serial", "parallel", "fusion", "switch", "scene")
FIELD_TYPES = ("double", "float", "integer", "long", "string", "boolean", "any")
NUMERIC = frozenset({"double", "float", "integer", "long", "boolean", "any"})

SceneLoader = Callable[[str, int | None], tuple[int, Mapping[str, Any]]]


@dataclass
class CompiledFlow:
    """A compiled flow: ``root.run(rows, trace)`` scores rows in place."""

    root: st.Node
    inputs: dict[str, str]
    writes: dict[str, str]
    models: dict[str, int] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    entity_fields: dict[str, str] = field(default_factory=dict)  # entity key -> row field, for feature logs

    def run(self, rows: list[dict[str, Any]], trace: st.Trace | None = None) -> st.Trace:
        trace = trace or st.Trace()
        self.root.run(rows, trace)
        return trace

    def model_nodes(self) -> list[st.ModelNode]:
        return [n for n in self.root.walk() if isinstance(n, st.ModelNode)]


def _fail(step: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(f"step {step!r}: {message}", {"step": step, **details})


class _Compiler:
    def __init__(self, models: Any, features: Any, scenes: SceneLoader | None,
                 overrides: Mapping[str, str], stack: tuple[str, ...]) -> None:
        self.models = models
        self.features = features
        self.scenes = scenes
        self.overrides = overrides
        self.stack = stack
        self.ids: set[str] = set()
        self.counter = 0
        self.versions: dict[str, int] = {}
        self.feature_names: list[str] = []
        self.services: list[str] = []
        self.entity_fields: dict[str, str] = {}

    def _id(self, spec: Mapping[str, Any], kind: str) -> str:
        raw = spec.get("id")
        if raw is None:
            self.counter += 1
            raw = f"{kind}_{self.counter}"
        step_id = str(raw)
        if step_id in self.ids:
            raise _fail(step_id, "the step id is used twice; give every step a unique id")
        self.ids.add(step_id)
        return step_id

    def step(self, spec: Any, avail: dict[str, str], where: str) -> st.Node:
        if isinstance(spec, list):
            spec = {"type": "serial", "steps": spec}
        if not isinstance(spec, Mapping):
            raise _fail(where, f"a step must be a mapping with a 'type', got {type(spec).__name__}")
        kind = spec.get("type")
        if kind not in STEP_TYPES:
            raise _fail(str(spec.get("id", where)), f"unknown step type {kind!r}; use one of {', '.join(STEP_TYPES)}")
        step_id = self._id(spec, str(kind))
        node: st.Node = getattr(self, "_" + str(kind))(step_id, spec, avail)
        missing = sorted(node.reads - set(avail))
        if missing:
            raise _fail(step_id, f"reads field(s) {', '.join(map(repr, missing))} that no scene input or "
                                 "earlier step provides; add them to the scene inputs or fix the name",
                        fields=missing)
        return node

    # -- leaves ---------------------------------------------------------------------------------
    def _features(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        service = spec.get("service")
        entity = spec.get("entity")
        if not isinstance(service, str) or not service:
            raise _fail(step_id, "a features step needs 'service' (the feature service name)")
        if not isinstance(entity, Mapping) or not entity:
            raise _fail(step_id, "a features step needs 'entity': {entity_key: request_field}")
        if self.features is None:
            raise _fail(step_id, "no feature store is configured for this server")
        try:
            known = self.features.feature_names(service)
        except NotFound:
            raise _fail(step_id, f"feature service {service!r} does not exist; apply it first",
                        service=service) from None
        names = spec.get("features") or known
        if not names:
            raise _fail(step_id, f"cannot tell which features service {service!r} returns; list them in 'features'")
        if known:
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise _fail(step_id, f"feature service {service!r} has no feature(s) {unknown}; it has {sorted(known)}")
        on_missing = spec.get("on_missing", "null")
        if on_missing not in st.ON_MISSING:
            raise _fail(step_id, f"on_missing is {on_missing!r}; use one of {', '.join(st.ON_MISSING)}",
                        field="on_missing")
        found = spec.get("found")
        if found is not None and (not isinstance(found, str) or not found.isidentifier()):
            raise _fail(step_id, "'found' names the boolean field to write (e.g. found: applicant_known)",
                        field="found")
        request = spec.get("request") or {}
        if not isinstance(request, Mapping):
            raise _fail(step_id, "'request' maps request fields of the service's on-demand views to scene fields: "
                                 "{request_field: scene_field}", field="request")
        entity_map = {str(k): str(v) for k, v in entity.items()}
        request_map = {str(k): str(v) for k, v in request.items()}
        self._check_request_fields(step_id, service, {**entity_map, **request_map})
        node = st.FeaturesNode(step_id, self.features, service, entity_map,
                               [str(n) for n in names], on_missing=on_missing, found=found, request=request_map)
        self.feature_names.extend(node.names)
        self.services.append(service)
        for key, source in node.entity.items():
            self.entity_fields.setdefault(key, source)
        avail.update(node.writes)
        return node

    def _check_request_fields(self, step_id: str, service: str, passed: Mapping[str, str]) -> None:
        """Every request field an on-demand view of ``service`` needs is passed by the step: without
        it every request would fail, so the scene is refused here instead."""
        needed = getattr(self.features, "request_fields", None)
        if needed is None:  # a feature source that cannot tell (in-memory sources have no on-demand views)
            return
        for name, view in needed(service).items():
            if name not in passed:
                raise _fail(step_id, f"feature service {service!r} includes on-demand view {view!r}, which needs "
                                     f"request field {name!r}; pass it from a scene field with "
                                     f"request: {{{name}: <scene field>}} in this step",
                            field=name, service=service, view=view)

    def _expr(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        output = spec.get("output")
        if not isinstance(output, str) or not output:
            raise _fail(step_id, "an expr step needs 'output' (the field it writes)")
        node = st.ExprNode(step_id, output, compile_expression(str(spec.get("expr", "")), step_id))
        self._check_reads(node, avail)
        avail.update(node.writes)
        return node

    def _check_reads(self, node: st.Node, avail: dict[str, str]) -> None:
        missing = sorted(node.reads - set(avail))
        if missing:
            raise _fail(node.id, f"reads unknown field(s) {', '.join(map(repr, missing))}; "
                                 "add them to the scene inputs or to an earlier step", fields=missing)

    def _load(self, step_id: str, name: str, ref: str) -> tuple[int, Any]:
        ref = str(self.overrides.get(name, ref))
        try:
            version = self.models.resolve(name, ref)
            model = self.models.load(name, version)
        except NotFound as exc:
            raise _fail(step_id, f"model {name}@{ref} not found: {exc.message}", model=name, ref=ref) from None
        except ShipyardError as exc:
            raise _fail(step_id, f"model {name}@{ref} cannot be loaded: {exc.message}", model=name) from None
        self.versions[name] = version
        return version, model

    def _model(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str], kind: str = "model") -> st.Node:
        name = spec.get("model")
        if not isinstance(name, str) or not name:
            raise _fail(step_id, f"a {kind} step needs 'model' (a registered model name)")
        version, model = self._load(step_id, name, str(spec.get("ref", "champion")))
        mapping = dict(spec.get("inputs") or {})
        signature = getattr(model, "signature", None)
        columns = list(model.input_names or [])
        if not columns:
            raise _fail(step_id, f"model {name} v{version} has no input signature; re-save it with an input_example")
        fields = [str(mapping.get(c, c)) for c in columns]
        types = {str(s.name): s.type for s in signature.inputs} if signature is not None else {}
        for col, fld in zip(columns, fields, strict=True):
            if fld not in avail:
                raise _fail(step_id, f"model {name} v{version} needs input {col!r} (field {fld!r}), which no scene "
                                     "input or earlier step provides", field=fld, model=name)
            want, have = types.get(col, "double"), avail[fld]
            if want != "string" and want != "datetime" and have == "string":
                raise _fail(step_id, f"type mismatch: model {name} input {col!r} is {want} but field {fld!r} is "
                                     "string; declare it numeric or add an expr step converting it", field=fld)
            if want == "string" and have not in ("string", "any"):
                raise _fail(step_id, f"type mismatch: model {name} input {col!r} is string but field {fld!r} is {have}",
                            field=fld)
        numeric = bool(model.has_fast_path) and all(types.get(c, "double") in NUMERIC for c in columns)
        outputs = spec.get("outputs")
        output = str(spec.get("output") or f"{name}_{'decision' if kind == 'rules' else 'score'}")
        node = st.ModelNode(step_id, name, version, model, fields, output,
                            [str(o) for o in outputs] if outputs else None, numeric, kind=kind)
        node.ref = str(self.overrides.get(name, spec.get("ref", "champion")))
        avail.update(node.writes)
        return node

    def _rules(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        if spec.get("model"):
            return self._model(step_id, spec, avail, kind="rules")
        rules = spec.get("rules")
        output = spec.get("output", "decision")
        if not isinstance(rules, list) or not rules:
            raise _fail(step_id, "a rules step needs 'rules': [{name, when, then}] or 'model' (a ruleset model)")
        compiled = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or "when" not in rule or "then" not in rule:
                raise _fail(step_id, f"rule #{i + 1} needs 'when' (an expression) and 'then' (the value)")
            name = str(rule.get("name", f"rule_{i + 1}"))
            compiled.append((name, compile_expression(str(rule["when"]), f"{step_id}.{name}"), rule["then"]))
        node = st.RulesNode(step_id, str(output), compiled, spec.get("default"))
        self._check_reads(node, avail)
        avail.update(node.writes)
        return node

    # -- combinators ----------------------------------------------------------------------------
    def _children(self, step_id: str, spec: Mapping[str, Any], key: str = "steps", required: bool = True) -> list[Any]:
        children = spec.get(key)
        if not children and not required:
            return []
        if not isinstance(children, list) or not children:
            raise _fail(step_id, f"a {spec.get('type')} step needs '{key}': a non-empty list of steps")
        return children

    def _serial(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        nodes = [self.step(c, avail, f"{step_id}[{i}]") for i, c in enumerate(self._children(step_id, spec))]
        return st.SerialNode(step_id, nodes)

    def _branches(self, step_id: str, specs: list[Any], avail: dict[str, str]) -> list[st.Node]:
        nodes: list[st.Node] = []
        written: dict[str, str] = {}  # output -> the branch writing it
        for i, child in enumerate(specs):
            local = dict(avail)
            node = self.step(child, local, f"{step_id}[{i}]")
            for out in node.writes:
                if out in written and out not in avail:
                    raise _fail(step_id, f"branches {written[out]!r} and {node.id!r} both write {out!r}; "
                                         "give them different outputs")
                written[out] = node.id
            nodes.append(node)
        for node in nodes:
            crossing = sorted(node.reads & {o for o, owner in written.items() if owner != node.id and o not in avail})
            if crossing:
                raise _fail(node.id, f"parallel branches are independent but it reads {crossing}, written by a "
                                     "sibling; run them in a serial step instead")
        for node in nodes:
            avail.update(node.writes)
        return nodes

    def _parallel(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        nodes = self._branches(step_id, self._children(step_id, spec), avail)
        return st.ParallelNode(step_id, nodes, threads=bool(spec.get("threads", False)))

    def _fusion(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        nodes = self._branches(step_id, self._children(step_id, spec, required=False), avail)
        inputs = spec.get("inputs") or [n.output for n in nodes if isinstance(n, st.ModelNode)]
        output = spec.get("output")
        method = str(spec.get("method", "weighted" if spec.get("weights") else "mean"))
        if not isinstance(output, str) or not output:
            raise _fail(step_id, "a fusion step needs 'output' (the fused field)")
        expr = None
        if spec.get("expr") is not None:
            method = "expr"
            expr = compile_expression(str(spec["expr"]), step_id)
        elif method not in st.FUSERS:
            raise _fail(step_id, f"unknown fusion method {method!r}; use weighted, mean, max, min or expr")
        if not inputs and expr is None:
            raise _fail(step_id, "a fusion step needs 'inputs' (fields to combine)")
        weights = [float(w) for w in spec.get("weights") or [1.0] * len(inputs)]
        if method == "weighted" and (len(weights) != len(inputs) or any(w < 0 for w in weights) or sum(weights) <= 0):
            raise _fail(step_id, f"'weights' must be {len(inputs)} non-negative numbers with a positive sum, one per input")
        unknown = sorted(set(inputs) - set(avail))
        if unknown:
            raise _fail(step_id, f"fusion input(s) {unknown} are not produced by any step or scene input", fields=unknown)
        for name in inputs:
            if avail[name] == "string":
                raise _fail(step_id, f"type mismatch: fusion input {name!r} is a string; fuse numeric scores only")
        node = st.FusionNode(step_id, nodes, [str(i) for i in inputs], output, method, weights, expr)
        self._check_reads(node, avail)
        avail[output] = node.writes[output]
        return node

    def _switch(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        cases = spec.get("cases")
        if not isinstance(cases, list) or not cases:
            raise _fail(step_id, "a switch step needs 'cases': [{when: expression, then: step}]")
        compiled, outs = [], {}
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping) or "when" not in case or "then" not in case:
                raise _fail(step_id, f"case #{i + 1} needs 'when' (an expression) and 'then' (a step)")
            cond = compile_expression(str(case["when"]), f"{step_id}.case{i + 1}")
            unknown = sorted(cond.names - set(avail))
            if unknown:
                raise _fail(step_id, f"case #{i + 1} reads unknown field(s) {unknown}", fields=unknown)
            local = dict(avail)
            compiled.append((cond, self.step(case["then"], local, f"{step_id}.case{i + 1}")))
            outs.update(local)
        default = None
        if spec.get("default") is not None:
            local = dict(avail)
            default = self.step(spec["default"], local, f"{step_id}.default")
            outs.update(local)
        avail.update(outs)
        return st.SwitchNode(step_id, compiled, default)

    def _scene(self, step_id: str, spec: Mapping[str, Any], avail: dict[str, str]) -> st.Node:
        name = spec.get("scene")
        if not isinstance(name, str) or self.scenes is None:
            raise _fail(step_id, "a scene step needs 'scene' (the name of an applied scene)")
        if name in self.stack:
            cycle = " -> ".join((*self.stack, name))
            raise _fail(step_id, f"sub-scenes form a cycle: {cycle}; remove one of the references", cycle=cycle)
        try:
            _version, sub = self.scenes(name, spec.get("version"))
        except NotFound:
            raise _fail(step_id, f"sub-scene {name!r} does not exist; apply it first") from None
        self.stack = (*self.stack, name)
        try:
            child = self.step(sub["flow"], avail, f"{step_id}/{name}")
        finally:
            self.stack = self.stack[:-1]
        return st.SerialNode(step_id, [child])


def compile_flow(flow: Any, *, inputs: Mapping[str, str], models: Any, features: Any = None,
                 scenes: SceneLoader | None = None, overrides: Mapping[str, str] | None = None,
                 scene_name: str = "") -> CompiledFlow:
    """Validate ``flow`` against the scene ``inputs`` and compile it (see the module doc)."""
    field_types = {name: parse_type(t, name)[0] for name, t in inputs.items()}
    compiler = _Compiler(models, features, scenes, overrides or {}, (scene_name,) if scene_name else ())
    avail = dict(field_types)
    root = compiler.step(flow, avail, "flow")
    writes = {k: v for k, v in avail.items() if k not in field_types}
    return CompiledFlow(root, field_types, writes, dict(compiler.versions), compiler.feature_names, compiler.services,
                compiler.entity_fields)


def parse_type(declared: Any, name: str) -> tuple[str, bool]:
    """``"double"`` -> (double, required); ``"double?"`` -> (double, optional)."""
    text = str(declared).strip()
    optional = text.endswith("?")
    base = text.rstrip("?")
    if base not in FIELD_TYPES:
        raise InvalidInput(f"input {name!r} has type {declared!r}; use one of {', '.join(FIELD_TYPES)} "
                           "(add '?' for an optional field)", {"field": name})
    return base, not optional


# -- Python builders ----------------------------------------------------------------------------
def _with_id(spec: dict[str, Any], step_id: str | None) -> dict[str, Any]:
    if step_id:
        spec["id"] = step_id
    return spec


def serial(*steps: dict[str, Any], id: str | None = None) -> dict[str, Any]:  # noqa: A002
    return _with_id({"type": "serial", "steps": list(steps)}, id)


def parallel(*steps: dict[str, Any], id: str | None = None, threads: bool = False) -> dict[str, Any]:  # noqa: A002
    return _with_id({"type": "parallel", "steps": list(steps), "threads": threads}, id)


def fusion(*steps: dict[str, Any], output: str, inputs: list[str] | None = None, method: str = "mean",
           weights: list[float] | None = None, expr: str | None = None, id: str | None = None) -> dict[str, Any]:  # noqa: A002
    spec: dict[str, Any] = {"type": "fusion", "steps": list(steps), "output": output, "method": method}
    for key, value in (("inputs", inputs), ("weights", weights), ("expr", expr)):
        if value is not None:
            spec[key] = value
    return _with_id(spec, id)


def switch(cases: list[tuple[str, dict[str, Any]]], default: dict[str, Any] | None = None,
           id: str | None = None) -> dict[str, Any]:  # noqa: A002
    spec: dict[str, Any] = {"type": "switch", "cases": [{"when": w, "then": t} for w, t in cases]}
    if default is not None:
        spec["default"] = default
    return _with_id(spec, id)


def model(name: str, ref: str = "champion", output: str | None = None, inputs: dict[str, str] | None = None,
          id: str | None = None) -> dict[str, Any]:  # noqa: A002
    spec: dict[str, Any] = {"type": "model", "model": name, "ref": str(ref)}
    if output:
        spec["output"] = output
    if inputs:
        spec["inputs"] = inputs
    return _with_id(spec, id)


def expr(output: str, source: str, id: str | None = None) -> dict[str, Any]:  # noqa: A002
    return _with_id({"type": "expr", "output": output, "expr": source}, id)


def features(service: str, entity: dict[str, str], names: list[str] | None = None,
             id: str | None = None, on_missing: str = "null", found: str | None = None,  # noqa: A002
             request: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "features", "service": service, "entity": entity}
    if request:
        spec["request"] = request
    if names:
        spec["features"] = names
    if on_missing != "null":
        spec["on_missing"] = on_missing
    if found:
        spec["found"] = found
    return _with_id(spec, id)


def rules(rules: list[dict[str, Any]], output: str = "decision", default: Any = None,
          id: str | None = None) -> dict[str, Any]:  # noqa: A002
    return _with_id({"type": "rules", "rules": rules, "output": output, "default": default}, id)
