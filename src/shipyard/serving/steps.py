"""Compiled decision-flow steps: plain Python objects the request path calls directly.

A flow runs on a list of rows (one dict per record). Each step reads fields from the rows and
writes its outputs into them; a model step scores all rows in one call, so a batch costs one
model call, not one per row. ``Node.run`` is the error boundary: any failure inside a step is
raised as a ``ShipyardError`` whose ``details["step"]`` names the innermost failing step (and
``details["dependency"]`` says whether a feature store or a model failed, for fallbacks).

Steps that call a dependency (a feature service, a model version) go through that dependency's
circuit breaker for the request's arm (``Trace.breakers``): an open circuit fails the step at once
(503, ``details["circuit"] == "open"``) without calling the dependency, a 5xx failure counts
against it, a success closes it. A request past its timeout (``Trace.expired``) counts nothing as
a success, so a dependency that always answers late still opens its circuit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import InvalidInput, ModelError, NotFound, Overloaded, ShipyardError
from shipyard.models.loaded import model_failure
from shipyard.serving.expr import Expression

if TYPE_CHECKING:
    from shipyard.serving.sources import ServableModel

Row = dict[str, Any]

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="shipyard-flow")
    return _pool


class Trace:
    """What one request did: time in feature lookups and model calls, model versions used, time
    spent waiting for a thread of the arm's pool; and what it runs under: the arm's circuit
    breakers (``breakers(dependency)``, None to run without), whether its time is up, and the
    dependency step it is in (a timeout is charged to that dependency)."""

    __slots__ = ("features_s", "model_s", "queue_s", "models", "breakers", "expired", "running")

    def __init__(self, breakers: Callable[[str], Any] | None = None) -> None:
        self.features_s = 0.0
        self.model_s = 0.0
        self.queue_s = 0.0
        self.models: dict[str, int] = {}
        self.breakers = breakers
        self.expired = False
        self.running: Node | None = None


def to_python(values: Any) -> list[Any]:
    """Model output as JSON-ready Python values; float32 keeps its shortest exact decimal form."""
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        return _floats(arr.astype(str).tolist())
    if arr.dtype.kind in "fiub":
        return arr.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]


def _floats(items: Any) -> Any:
    if isinstance(items, list):
        return [_floats(i) for i in items]
    return float(items)


class Node:
    """A compiled step. ``reads`` are the fields it needs, ``writes`` maps outputs to types."""

    kind = "step"
    dependency = ""
    # what this step calls, for its circuit breaker ("model credit v2", "features credit_scoring")
    target = ""

    def __init__(self, step_id: str) -> None:
        self.id = step_id
        self.reads: set[str] = set()
        self.writes: dict[str, str] = {}

    def run(self, rows: list[Row], trace: Trace) -> None:
        breaker = trace.breakers(self.target) if self.target and trace.breakers is not None else None
        if breaker is not None:
            if not breaker.allow():
                raise Overloaded(f"step {self.id!r}: circuit open for {self.target} after repeated failures; "
                                 f"retry in {breaker.cooldown:g} s",
                                 {"step": self.id, "dependency": self.dependency, "circuit": "open",
                                  "retry_after": max(1, int(breaker.cooldown))})
            trace.running = self
        try:
            self._run(rows, trace)
        except ShipyardError as exc:
            exc.details.setdefault("step", self.id)
            if self.dependency:
                exc.details.setdefault("dependency", self.dependency)
            if breaker is not None and exc.status >= 500:
                breaker.failure()
            raise
        except Exception as exc:
            if breaker is not None:
                breaker.failure()
            raise ModelError(
                f"step {self.id!r} ({self.kind}) failed: {type(exc).__name__}: {exc}",
                {"step": self.id, "kind": self.kind, "exception": type(exc).__name__,
                 **({"dependency": self.dependency} if self.dependency else {})},
            ) from exc
        if breaker is not None and not trace.expired:
            breaker.success()

    def _run(self, rows: list[Row], trace: Trace) -> None:
        raise NotImplementedError

    def children(self) -> Sequence[Node]:
        return ()

    def walk(self) -> list[Node]:
        out: list[Node] = [self]
        for child in self.children():
            out.extend(child.walk())
        return out


ON_MISSING = ("null", "error", "fallback")


class FeaturesNode(Node):
    """Looks up a feature service for each row's entity.

    An entity the online store does not hold (every requested feature null) is, by ``on_missing``:
    ``null`` — scored with null features (the default, as the store answers); ``error`` — refused
    with 404 naming the entity; ``fallback`` — answered with the scene's fallback, flagged, without
    counting against the circuit breaker (the store is healthy, the entity is unknown). ``found``
    names a boolean field to write, for rules such as ``when: not applicant_known``.
    """

    kind = "features"
    dependency = "features"

    def __init__(self, step_id: str, source: Any, service: str, entity: dict[str, str], names: list[str],
                 on_missing: str = "null", found: str | None = None, request: dict[str, str] | None = None) -> None:
        super().__init__(step_id)
        self.source = source
        self.service = service
        self.entity = entity
        # request fields of the service's on-demand views: {request_field: scene_field}
        self.request = dict(request or {})
        self.names = names
        self.on_missing = on_missing
        self.found = found
        self.target = f"features {service}"
        self.reads = set(entity.values()) | set(self.request.values())
        self.writes = {n: "any" for n in names}
        if found:
            self.writes[found] = "boolean"

    def _run(self, rows: list[Row], trace: Trace) -> None:
        start = time.perf_counter()
        keys = [{key: row.get(field) for key, field in self.entity.items()} for row in rows]
        asked = keys if not self.request else [
            {**key, **{name: row.get(field) for name, field in self.request.items()}} for key, row in zip(keys, rows, strict=True)]
        try:
            found = self.source.lookup(self.service, asked)
        except InvalidInput as exc:
            # the request passed the scene's input checks, so what the store refuses is the scene's
            # (e.g. the service gained an on-demand view needing a request field the step does not pass)
            fix = (f"; pass it with request: {{{exc.details['field']}: <scene field>}} in step {self.id!r} "
                   "and apply the scene again") if "request field" in exc.message and "field" in exc.details else ""
            raise ModelError(f"step {self.id!r}: feature service {self.service!r} refused the lookup: "
                             f"{exc.message}{fix}",
                             {**exc.details, "step": self.id, "service": self.service}) from exc
        names = self.names
        check = self.on_missing != "null" or self.found
        for row, values, key in zip(rows, found, keys, strict=True):
            for name in names:
                row[name] = values.get(name)
            if check:
                known = any(row[name] is not None for name in names)
                if self.found:
                    row[self.found] = known
                if not known and self.on_missing != "null":
                    trace.features_s += time.perf_counter() - start
                    raise NotFound(f"entity {key} has no features in service {self.service!r}",
                                   {"field": next(iter(self.entity.values())), "entity": key,
                                    "service": self.service, "on_missing": self.on_missing})
        trace.features_s += time.perf_counter() - start


class ExprNode(Node):
    kind = "expr"

    def __init__(self, step_id: str, output: str, expr: Expression) -> None:
        super().__init__(step_id)
        self.output = output
        self.expr = expr
        self.reads = set(expr.names)
        self.writes = {output: "any"}

    def _run(self, rows: list[Row], trace: Trace) -> None:
        expr, output = self.expr, self.output
        for row in rows:
            value = expr(row)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"expression {expr.source!r} gave {value} for output {output!r}")
            row[output] = value


class ModelNode(Node):
    """Scores rows with a loaded model; ``fields[i]`` feeds the model's ``input_names[i]``."""

    kind = "model"
    dependency = "model"

    def __init__(self, step_id: str, name: str, version: int, model: ServableModel, fields: list[str],
                 output: str, outputs: list[str] | None, numeric: bool, kind: str = "model") -> None:
        super().__init__(step_id)
        self.kind = kind
        self.name = name
        self.ref = str(version)
        self.version = version
        self.model = model
        self.fields = fields
        self.input_names = list(model.input_names) if model.input_names else list(fields)
        self.output = output
        self.outputs = outputs
        self.numeric = numeric
        self.target = f"model {name} v{version}"
        self.reads = set(fields)
        self.writes = {o: "any" for o in outputs} if outputs else {output: "double" if numeric else "any"}

    def _run(self, rows: list[Row], trace: Trace) -> None:
        start = time.perf_counter()
        fields = self.fields
        try:
            if self.numeric:
                X = np.array([[row.get(f) for f in fields] for row in rows], dtype=np.float64)
                result = self.model.predict_array(X)
            else:
                records = [{n: row.get(f) for n, f in zip(self.input_names, fields, strict=True)} for row in rows]
                result = self.model.predict(records)
        except Exception as exc:  # noqa: BLE001 - the model's code (hooks included) may raise anything
            failure = model_failure(exc, self.name, self.version)
            if failure is exc:
                raise
            raise ModelError(f"step {self.id!r} ({self.kind}) failed: {failure.message}",
                             {**failure.details, "step": self.id, "kind": self.kind}) from exc
        values = to_python(result)
        trace.model_s += time.perf_counter() - start
        trace.models[self.name] = self.version
        if len(values) != len(rows):
            raise ValueError(f"model {self.name} v{self.version} returned {len(values)} outputs for {len(rows)} rows")
        if self.outputs:
            for row, value in zip(rows, values, strict=True):
                items = value if isinstance(value, list) else [value]
                for key, item in zip(self.outputs, items, strict=False):
                    row[key] = item
        else:
            output = self.output
            for row, value in zip(rows, values, strict=True):
                row[output] = value


class RulesNode(Node):
    """First matching rule wins: writes its ``then`` value to ``output`` and its name to ``output_rule``."""

    kind = "rules"

    def __init__(self, step_id: str, output: str, rules: list[tuple[str, Expression, Any]], default: Any) -> None:
        super().__init__(step_id)
        self.output = output
        self.rules = rules
        self.default = default
        for _name, cond, _then in rules:
            self.reads |= cond.names
        self.writes = {output: "any", f"{output}_rule": "string"}

    def _run(self, rows: list[Row], trace: Trace) -> None:
        output, rule_key = self.output, f"{self.output}_rule"
        for row in rows:
            for name, cond, then in self.rules:
                if cond(row):
                    row[output] = then
                    row[rule_key] = name
                    break
            else:
                row[output] = self.default
                row[rule_key] = None


class SerialNode(Node):
    kind = "serial"

    def __init__(self, step_id: str, steps: list[Node]) -> None:
        super().__init__(step_id)
        self.steps = steps
        for step in steps:
            self.reads |= step.reads - set(self.writes)
            self.writes.update(step.writes)

    def children(self) -> Sequence[Node]:
        return self.steps

    def _run(self, rows: list[Row], trace: Trace) -> None:
        for step in self.steps:
            step.run(rows, trace)


class ParallelNode(Node):
    """Independent branches on the same rows; ``threads=True`` runs them concurrently (I/O-bound)."""

    kind = "parallel"

    def __init__(self, step_id: str, steps: list[Node], threads: bool = False) -> None:
        super().__init__(step_id)
        self.steps = steps
        self.threads = threads and len(steps) > 1
        for step in steps:
            self.reads |= step.reads
            self.writes.update(step.writes)

    def children(self) -> Sequence[Node]:
        return self.steps

    def _run(self, rows: list[Row], trace: Trace) -> None:
        if not self.threads:
            for step in self.steps:
                step.run(rows, trace)
            return
        futures = [_executor().submit(step.run, rows, trace) for step in self.steps]
        errors = []
        for future in futures:
            try:
                future.result()
            except ShipyardError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


FUSERS: dict[str, Callable[[list[float], list[float]], float | None]] = {}


def _weighted(values: list[float], weights: list[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if pairs and total else None


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


FUSERS["weighted"] = _weighted
FUSERS["mean"] = lambda v, w: (sum(p) / len(p)) if (p := _present(v)) else None
FUSERS["max"] = lambda v, w: max(p) if (p := _present(v)) else None
FUSERS["min"] = lambda v, w: min(p) if (p := _present(v)) else None


class FusionNode(Node):
    """Runs its branches, then combines ``inputs`` into ``output`` (weighted, mean, max, min, expr)."""

    kind = "fusion"

    def __init__(self, step_id: str, steps: list[Node], inputs: list[str], output: str, method: str,
                 weights: list[float], expr: Expression | None) -> None:
        super().__init__(step_id)
        self.steps = steps
        self.inputs = inputs
        self.output = output
        self.method = method
        self.weights = weights
        self.expr = expr
        self.fuse = FUSERS.get(method)
        own = set()
        for step in steps:
            self.reads |= step.reads
            self.writes.update(step.writes)
            own |= set(step.writes)
        self.reads |= (set(inputs) | (expr.names if expr else set())) - own
        self.writes[output] = "double" if method != "expr" else "any"

    def children(self) -> Sequence[Node]:
        return self.steps

    def _run(self, rows: list[Row], trace: Trace) -> None:
        for step in self.steps:
            step.run(rows, trace)
        output, inputs = self.output, self.inputs
        if self.expr is not None:
            for row in rows:
                row[output] = self.expr(row)
            return
        fuse, weights = self.fuse, self.weights
        for row in rows:
            row[output] = fuse([row.get(i) for i in inputs], weights)  # type: ignore[misc]


class SwitchNode(Node):
    """Routes each row to the first branch whose condition holds (else ``default``, else nothing)."""

    kind = "switch"

    def __init__(self, step_id: str, cases: list[tuple[Expression, Node]], default: Node | None) -> None:
        super().__init__(step_id)
        self.cases = cases
        self.default = default
        for cond, node in cases:
            self.reads |= cond.names | node.reads
            self.writes.update(node.writes)
        if default is not None:
            self.reads |= default.reads
            self.writes.update(default.writes)

    def children(self) -> Sequence[Node]:
        return [n for _, n in self.cases] + ([self.default] if self.default else [])

    def _branch(self, row: Row) -> Node | None:
        for cond, node in self.cases:
            if cond(row):
                return node
        return self.default

    def _run(self, rows: list[Row], trace: Trace) -> None:
        if len(rows) == 1:
            node = self._branch(rows[0])
            if node is not None:
                node.run(rows, trace)
            return
        groups: dict[int, tuple[Node, list[Row]]] = {}
        for row in rows:
            node = self._branch(row)
            if node is not None:
                groups.setdefault(id(node), (node, []))[1].append(row)
        for node, subset in groups.values():
            node.run(subset, trace)
