"""Small, safe expressions for decision flows: ``amount / max(income, 1)``, ``score > 0.8``.

An expression is parsed once with :mod:`ast`, checked against a whitelist and compiled into nested
Python closures; nothing is ever passed to ``eval``. Allowed: numbers, strings, booleans, ``None``,
names of fields, arithmetic (``+ - * / // % **``), comparisons (chained too, ``in``/``not in``
against a literal list/tuple), ``and``/``or``/``not``, ``x if cond else y``, list/tuple literals
and calls to the functions in ``FUNCTIONS``. Attribute access, subscripts, lambdas, comprehensions
and every other construct are refused with an error naming the construct.

Missing values: a field that is absent or ``None`` reads as ``None``; arithmetic on ``None``
yields ``None`` and comparisons with ``None`` are false, so ``score > 0.5`` never raises on a
missing score. Use ``coalesce(x, default)`` or ``isnull(x)`` to decide explicitly.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.errors import InvalidInput

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]


def _isnull(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _coalesce(*xs: Any) -> Any:
    for x in xs:
        if not _isnull(x):
            return x
    return None


def _clip(x: Any, lo: Any, hi: Any) -> Any:
    return None if _isnull(x) else min(max(x, lo), hi)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "float": float,
    "int": int,
    "str": str,
    "bool": bool,
    "len": len,
    "log": math.log,
    "log1p": math.log1p,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "sigmoid": _sigmoid,
    "clip": _clip,
    "isnull": _isnull,
    "coalesce": _coalesce,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class Expression:
    """A compiled expression: call it with a mapping of field values."""

    __slots__ = ("source", "names", "_fn")

    def __init__(self, source: str, fn: Compiled, names: frozenset[str]) -> None:
        self.source = source
        self.names = names
        self._fn = fn

    def __call__(self, env: Env) -> object:
        return self._fn(env)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str, where: str = "expr") -> Expression:
    """Parse and compile ``source``; ``where`` names the step in error messages."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput(f"{where}: the expression is empty; write e.g. 'score > 0.5'", {"step": where})
    if len(source) > 2000:
        raise InvalidInput(f"{where}: the expression is longer than 2000 characters", {"step": where})
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidInput(
            f"{where}: expression {source!r} is not valid: {exc.msg} at column {exc.offset}",
            {"step": where, "expression": source},
        ) from None
    names: set[str] = set()
    fn = _Compiler(where, source, names).visit(tree.body)
    return Expression(source, fn, frozenset(names))


class _Compiler:
    def __init__(self, where: str, source: str, names: set[str]) -> None:
        self.where = where
        self.source = source
        self.names = names

    def fail(self, what: str) -> InvalidInput:
        return InvalidInput(
            f"{self.where}: {what} is not allowed in expression {self.source!r}; use fields, literals, "
            f"operators and the functions {', '.join(sorted(FUNCTIONS))}",
            {"step": self.where, "expression": self.source},
        )

    def visit(self, node: ast.AST) -> Compiled:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"'{type(node).__name__}'")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Compiled:
        value = node.value
        if not isinstance(value, (int, float, str, bool, type(None))):
            raise self.fail(f"constant {value!r}")
        return lambda env: value

    def visit_Name(self, node: ast.Name) -> Compiled:
        name = node.id
        if name in ("True", "False", "None"):
            const = {"True": True, "False": False, "None": None}[name]
            return lambda env: const
        self.names.add(name)
        return lambda env: env.get(name)

    def _sequence(self, node: ast.List | ast.Tuple) -> Compiled:
        items = [self.visit(e) for e in node.elts]
        return lambda env: tuple(item(env) for item in items)

    visit_List = _sequence
    visit_Tuple = _sequence

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Compiled:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub):
            return lambda env: None if (v := operand(env)) is None else -v
        if isinstance(node.op, ast.UAdd):
            return operand
        raise self.fail(f"operator '{type(node.op).__name__}'")

    def visit_BinOp(self, node: ast.BinOp) -> Compiled:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator '{type(node.op).__name__}'")
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Pow):
            def power(env: Env) -> Any:
                a, b = left(env), right(env)
                if a is None or b is None:
                    return None
                if abs(b) > 64:
                    raise ValueError("exponent larger than 64")
                return a**b
            return power

        def binop(env: Env) -> Any:
            a, b = left(env), right(env)
            if a is None or b is None:
                return None
            return op(a, b)

        return binop

    def visit_BoolOp(self, node: ast.BoolOp) -> Compiled:
        parts = [self.visit(v) for v in node.values]
        if isinstance(node.op, ast.And):
            def all_of(env: Env) -> Any:
                result: Any = True
                for part in parts:
                    result = part(env)
                    if not result:
                        return result
                return result
            return all_of

        def any_of(env: Env) -> Any:
            result: Any = False
            for part in parts:
                result = part(env)
                if result:
                    return result
            return result

        return any_of

    def visit_Compare(self, node: ast.Compare) -> Compiled:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(f"comparison '{type(op).__name__}'")
            ops.append((fn, isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))))
        first = self.visit(node.left)
        rest = [self.visit(c) for c in node.comparators]

        def compare(env: Env) -> bool:
            a = first(env)
            for (fn, none_ok), getter in zip(ops, rest, strict=True):
                b = getter(env)
                if not none_ok and (a is None or b is None):
                    return False
                if not fn(a, b):
                    return False
                a = b
            return True

        return compare

    def visit_IfExp(self, node: ast.IfExp) -> Compiled:
        test, body, orelse = self.visit(node.test), self.visit(node.body), self.visit(node.orelse)
        return lambda env: body(env) if test(env) else orelse(env)

    def visit_Call(self, node: ast.Call) -> Compiled:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.fail(f"calling {name!r}")
        if node.keywords:
            raise self.fail("keyword arguments")
        fn = FUNCTIONS[node.func.id]
        args = [self.visit(a) for a in node.args]
        if fn in (_isnull, _coalesce):
            return lambda env: fn(*(a(env) for a in args))

        def call(env: Env) -> Any:
            values = [a(env) for a in args]
            if any(v is None for v in values):
                return None
            return fn(*values)

        return call
