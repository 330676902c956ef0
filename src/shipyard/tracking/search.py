"""A small, safe filter language for searching runs, compiled to SQL (never evaluated).

Grammar (keywords are case-insensitive)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := atom ("and" atom)*
    atom       := "(" or_expr ")" | comparison
    comparison := field op value | field ["not"] "in" "(" value ("," value)* ")"
                | field "is" ["not"] "null"
    field      := metrics.KEY | params.KEY | tags.KEY | attributes.NAME | NAME
    op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "ilike" | "not like"

A KEY may be quoted with backquotes or double quotes (``metrics.`val auc` ``). Metrics compare
to numbers against each run's latest value; params and tags compare to quoted strings with
=, !=, like, ilike and in. A run without the named metric, param or tag never matches a
comparison (``!=`` included); ``is null`` finds exactly those runs. ``like`` is case-sensitive
on every backend, ``ilike`` is not. Attributes: status, name (run_name), user, id (run_id),
parent_run_id, source_git_commit, start_time, end_time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from shipyard.errors import InvalidInput
from shipyard.store.schema import run_latest_metrics, run_params, run_tags, runs

ENTITY_ALIASES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
}
ATTRIBUTES = {
    "status": "status", "name": "name", "run_name": "name", "user": "user", "id": "id", "run_id": "id",
    "parent_run_id": "parent_run_id", "source_git_commit": "source_git_commit",
    "start_time": "start_time", "end_time": "end_time",
}
NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
COMPARISONS = {"=", "!=", "<", "<=", ">", ">="}
STRING_OPS = {"=", "!=", "like", "ilike", "not like", "in", "not in", "is null", "is not null"}
NUMBER_OPS = COMPARISONS | {"in", "not in", "is null", "is not null"}


@dataclass(frozen=True)
class Comparison:
    entity: str  # metrics | params | tags | attributes
    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    items: tuple[FilterNode, ...]


FilterNode: TypeAlias = "Comparison | BoolOp"
"""A node of a filter's syntax tree."""


@dataclass(frozen=True)
class Token:
    kind: str  # word | ident | string | number | op | ( | ) | ,
    text: str
    value: Any
    pos: int


def _bad(text: str, pos: int, what: str) -> InvalidInput:
    return InvalidInput(
        f"filter: {what} at position {pos} in {text!r}; example: \"metrics.auc > 0.7 and params.model = 'lgbm'\"",
        {"field": "filter", "position": pos},
    )


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    quote = text[pos]
    out = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:  # doubled quote
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _bad(text, pos, "unterminated quote")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    word_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/:")
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(Token(ch, ch, ch, i))
            i += 1
        elif text.startswith(("<=", ">=", "!=", "<>", "=="), i):
            op = {"<>": "!=", "==": "="}.get(text[i : i + 2], text[i : i + 2])
            tokens.append(Token("op", op, op, i))
            i += 2
        elif ch in "=<>":
            tokens.append(Token("op", ch, ch, i))
            i += 1
        elif ch in "'\"":
            value, end = _read_quoted(text, i)
            tokens.append(Token("string", text[i:end], value, i))
            i = end
        elif ch == "`":
            raise _bad(text, i, "a backquoted key must follow 'metrics.', 'params.' or 'tags.'")
        elif ch.isdigit() or (ch in "+-." and i + 1 < len(text) and (text[i + 1].isdigit() or text[i + 1] == ".")):
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] in ".+-_") and not (
                text[j] in "+-" and text[j - 1] not in "eE"
            ):
                j += 1
            try:
                number = float(text[i:j])
            except ValueError:
                raise _bad(text, i, f"{text[i:j]!r} is not a number") from None
            tokens.append(Token("number", text[i:j], number, i))
            i = j
        elif ch in word_chars:
            j = i
            while j < len(text) and text[j] in word_chars:
                j += 1
            word = text[i:j]
            if word.endswith(".") and j < len(text) and text[j] in "`\"":
                key, end = _read_quoted(text, j)
                tokens.append(Token("ident", text[i:end], (word[:-1], key), i))
                i = end
            else:
                tokens.append(Token("word", word, word, i))
                i = j
        else:
            raise _bad(text, i, f"unexpected character {ch!r}")
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def is_word(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "word" and tok.text.lower() == word

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise _bad(self.text, len(self.text), f"expected {what} but the filter ended")
        self.i += 1
        return tok

    def parse(self) -> FilterNode:
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise _bad(self.text, tok.pos, f"unexpected {tok.text!r} (join conditions with 'and' / 'or')")
        return node

    def or_expr(self) -> FilterNode:
        items = [self.and_expr()]
        while self.is_word("or"):
            self.i += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> FilterNode:
        items = [self.atom()]
        while self.is_word("and"):
            self.i += 1
            items.append(self.atom())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def atom(self) -> FilterNode:
        tok = self.peek()
        if tok is not None and tok.kind == "(":
            self.i += 1
            node = self.or_expr()
            close = self.next("')'")
            if close.kind != ")":
                raise _bad(self.text, close.pos, "expected ')'")
            return node
        return self.comparison()

    def field(self) -> tuple[str, str, int]:
        tok = self.next("a field such as metrics.auc")
        if tok.kind == "ident":
            prefix, key = tok.value
        elif tok.kind == "word":
            prefix, _, key = tok.text.partition(".")
            if not key:
                prefix, key = "attributes", tok.text
        else:
            raise _bad(self.text, tok.pos, f"expected a field such as metrics.auc, got {tok.text!r}")
        entity = ENTITY_ALIASES.get(prefix.lower())
        if entity is None:
            raise _bad(self.text, tok.pos, f"unknown field {tok.text!r}; use metrics.*, params.*, tags.* or attributes.*")
        if entity == "attributes":
            if key.lower() not in ATTRIBUTES:
                raise _bad(self.text, tok.pos, f"unknown attribute {key!r}; known: {', '.join(sorted(ATTRIBUTES))}")
            key = ATTRIBUTES[key.lower()]
        if not key:
            raise _bad(self.text, tok.pos, "empty key")
        return entity, key, tok.pos

    def value(self) -> Any:
        tok = self.next("a value")
        if tok.kind not in ("string", "number"):
            raise _bad(self.text, tok.pos, f"expected a quoted string or a number, got {tok.text!r}")
        return tok.value

    def comparison(self) -> Comparison:
        entity, key, pos = self.field()
        if self.is_word("is"):
            self.i += 1
            negate = self.is_word("not")
            if negate:
                self.i += 1
            if not self.is_word("null"):
                raise _bad(self.text, pos, "expected 'is null' or 'is not null'")
            self.i += 1
            return self._typed(entity, key, "is not null" if negate else "is null", None, pos)
        negate = self.is_word("not")
        if negate:
            self.i += 1
        tok = self.next("an operator")
        if tok.kind == "word" and tok.text.lower() in ("in", "like", "ilike"):
            op = tok.text.lower()
            if op == "ilike" and negate:
                raise _bad(self.text, tok.pos, "'not ilike' is not supported")
            if op == "in":
                return self._typed(entity, key, "not in" if negate else "in", self._list(), pos)
            return self._typed(entity, key, "not like" if negate else "like" if op == "like" else "ilike", self.value(), pos)
        if negate or tok.kind != "op":
            raise _bad(self.text, tok.pos, f"expected an operator (=, !=, <, <=, >, >=, like, ilike, in), got {tok.text!r}")
        return self._typed(entity, key, tok.text, self.value(), pos)

    def _list(self) -> tuple[Any, ...]:
        open_ = self.next("'('")
        if open_.kind != "(":
            raise _bad(self.text, open_.pos, "expected '(' after 'in'")
        values = [self.value()]
        while True:
            tok = self.next("',' or ')'")
            if tok.kind == ")":
                return tuple(values)
            if tok.kind != ",":
                raise _bad(self.text, tok.pos, "expected ',' or ')' in the list")
            values.append(self.value())

    def _typed(self, entity: str, key: str, op: str, value: Any, pos: int) -> Comparison:
        numeric = entity == "metrics" or (entity == "attributes" and key in NUMERIC_ATTRIBUTES)
        allowed = NUMBER_OPS if numeric else STRING_OPS
        if op not in allowed:
            raise _bad(self.text, pos, f"operator {op!r} does not apply to {entity}.{key}; use one of {sorted(allowed)}")
        values = value if isinstance(value, tuple) else (() if value is None else (value,))
        for item in values:
            if numeric and not isinstance(item, float):
                raise _bad(self.text, pos, f"{entity}.{key} compares to numbers; drop the quotes around {item!r}")
            if not numeric and not isinstance(item, str):
                raise _bad(self.text, pos, f"{entity}.{key} holds text; quote the value: '{item:g}'")
        return Comparison(entity, key, op, value)


def parse_filter(text: str | None) -> FilterNode | None:
    """The syntax tree of a filter (``None`` for an empty one)."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


# --- SQL ----------------------------------------------------------------------------------------
def _like_glob(pattern: str) -> str:
    """A LIKE pattern as a (case-sensitive) SQLite GLOB pattern."""
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def _compare(column: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if op in COMPARISONS:
        return {
            "=": column == value, "!=": column != value, "<": column < value,
            "<=": column <= value, ">": column > value, ">=": column >= value,
        }[op]
    if op == "in":
        return column.in_(list(value))
    if op == "not in":
        return column.not_in(list(value))
    if op in ("like", "not like"):
        clause = column.op("GLOB", is_comparison=True)(_like_glob(value)) if dialect == "sqlite" else column.like(value)
        return sa.not_(clause) if op == "not like" else clause
    if op == "ilike":
        return column.ilike(value)
    raise AssertionError(op)


def _entity_clause(node: Comparison, dialect: str) -> ColumnElement[bool]:
    if node.entity == "attributes":
        column = runs.c[node.key]
        if node.op == "is null":
            return column.is_(None)
        if node.op == "is not null":
            return column.is_not(None)
        return sa.and_(column.is_not(None), _compare(column, node.op, node.value, dialect))
    table = {"metrics": run_latest_metrics, "params": run_params, "tags": run_tags}[node.entity]
    has_key = sa.and_(table.c.run_id == runs.c.id, table.c.key == node.key)
    if node.op in ("is null", "is not null"):
        exists = sa.exists().where(has_key)
        return ~exists if node.op == "is null" else exists
    return sa.exists().where(has_key, _compare(table.c.value, node.op, node.value, dialect))


def compile_filter(node: FilterNode | None, dialect: str) -> ColumnElement[bool] | None:
    """SQL over ``runs`` for a parsed filter; values are bound parameters, never spliced in."""
    if node is None:
        return None
    if isinstance(node, BoolOp):
        parts = [compile_filter(item, dialect) for item in node.items]
        return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
    return _entity_clause(node, dialect)


def parse_order_by(items: list[str] | None) -> list[tuple[str, str, bool]]:
    """``["metrics.auc DESC", "params.model"]`` → [(entity, key, descending), ...]."""
    out = []
    for item in items or []:
        text = item.strip()
        descending = False
        lowered = text.lower()
        for suffix, desc in ((" desc", True), (" asc", False)):
            if lowered.endswith(suffix):
                text, descending = text[: -len(suffix)].strip(), desc
                break
        tokens = tokenize(text) if text else []
        if len(tokens) != 1 or tokens[0].kind not in ("word", "ident"):
            raise InvalidInput(
                f"order_by {item!r} is not 'FIELD [ASC|DESC]'; example: 'metrics.auc DESC'", {"field": "order_by"}
            )
        parser = _Parser(text)
        entity, key, _ = parser.field()
        out.append((entity, key, descending))
    return out
