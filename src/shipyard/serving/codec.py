"""Request bodies in, response bodies out — without changing a value on the way.

- JSON is parsed with orjson; ``NaN``/``Infinity`` are refused with the field that holds them.
- Strings stay strings (no date guessing); numbers stay numbers; float32 model outputs are
  written in their shortest exact decimal form (see ``steps.to_python``).
- MLflow's scoring bodies are accepted: ``dataframe_split``, ``dataframe_records``, ``instances``,
  ``inputs``, and CSV (``text/csv``) with numbers parsed only where the model expects numbers.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from shipyard.errors import InvalidInput
from shipyard.jsontypes import JSON

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


class _NonFinite(float):
    pass


def parse_json(body: bytes) -> JSON:
    """Parse a JSON body; malformed JSON and non-finite numbers raise ``InvalidInput``."""
    if not body:
        raise InvalidInput("the request body is empty; send a JSON object", {"field": "body"})
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
    path = _find_non_finite(body)
    if path is not None:
        raise InvalidInput(f"field {path!r} is NaN or Infinity; JSON numbers must be finite (send null for "
                           "a missing value)", {"field": path})
    raise InvalidInput(f"malformed JSON: {problem}", {"field": "body"})


def _find_non_finite(body: bytes) -> str | None:
    try:
        doc = json.loads(body, parse_constant=lambda c: _NonFinite(c), parse_float=_finite_or_marker)
    except (ValueError, RecursionError):
        return None
    return _path_of(doc, "")


def _finite_or_marker(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(value)


def _path_of(doc: Any, prefix: str) -> str | None:
    if isinstance(doc, _NonFinite):
        return prefix or "body"
    if isinstance(doc, dict):
        for key, value in doc.items():
            found = _path_of(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found = _path_of(value, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None


def _records_envelope(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get("records"), list) and (
        len(payload) == 1 or (len(payload) == 2 and "request_id" in payload))


def scene_records(payload: Any) -> tuple[list[Any], bool]:
    """A scene body is one record (an object), ``{"records": [...]}`` (optionally with a
    ``"request_id"``) or a list of records."""
    if isinstance(payload, list):
        return payload, False
    if isinstance(payload, dict):
        if _records_envelope(payload):
            return payload["records"], False
        return [payload], True
    raise InvalidInput("the body must be a JSON object (one record), a list of records or {\"records\": [...]}",
                       {"field": "body"})


MAX_REQUEST_ID = 128


def body_request_id(payload: Any) -> str | None:
    """The request id of a ``{"records": [...], "request_id": "..."}`` body, else None."""
    if not isinstance(payload, dict) or "request_id" not in payload or not _records_envelope(payload):
        return None
    rid = payload["request_id"]
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID:
        raise InvalidInput(f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters",
                           {"field": "request_id"})
    return rid


def model_records(payload: Any, names: Sequence[str]) -> tuple[list[Any], bool]:
    """Records (dicts) or rows (lists in ``names`` order) from any accepted body; and 'single'.

    Every item of a batch must be of one kind — all objects or all rows of one length (the
    model's width when ``names`` is known) — else ``InvalidInput`` names the first item that is not.
    """
    if isinstance(payload, dict):
        keys = [k for k in MLFLOW_KEYS if k in payload]
        if len(keys) > 1:
            raise InvalidInput(f"the body has {keys}; send exactly one of {', '.join(MLFLOW_KEYS)}", {"field": keys[1]})
        if keys:
            extra = sorted(set(payload) - {keys[0], "params"})
            if extra:
                raise InvalidInput(f"unknown top-level field(s) {extra} next to {keys[0]!r}", {"field": extra[0]})
            params = payload.get("params")
            if params is not None and not isinstance(params, dict):
                raise InvalidInput("params must be an object of name: value", {"field": "params"})
            return _mlflow(keys[0], payload[keys[0]], names), False
        if len(payload) == 1 and isinstance(payload.get("records"), list):
            return _items("records", payload["records"], names, rows=False), False
        return [payload], True
    if isinstance(payload, list):
        return _items("body", payload, names), False
    raise InvalidInput(f"the body must be a JSON object; send one of {', '.join(MLFLOW_KEYS)}", {"field": "body"})


def model_params(payload: Any) -> dict[str, Any] | None:
    """MLflow's ``params`` next to the data (already checked by ``model_records``)."""
    if isinstance(payload, dict) and isinstance(payload.get("params"), dict) and payload["params"]:
        return dict(payload["params"])
    return None


def _items(field: str, items: list[Any], names: Sequence[str], *, rows: bool = True) -> list[Any]:
    """``items`` if they are all records, or all rows of the model's width; else a 400 naming one."""
    if not items:
        return items
    width = len(names) or None
    first = items[0]
    if type(first) is dict:
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise InvalidInput(f"{field}[{i}] is a {_kind(item)}; every record must be an object of "
                                   "field: value", {"field": f"{field}[{i}]"})
        return items
    if type(first) is list and rows:
        width = width or len(first)
        for i, item in enumerate(items):
            if type(item) is not list:
                raise InvalidInput(f"{field}[{i}] is a {_kind(item)}; every row must be a list of {width} values",
                                   {"field": f"{field}[{i}]"})
            if len(item) != width:
                raise InvalidInput(f"{field}[{i}] has {len(item)} values; the model takes {width}"
                                   + (f" ({', '.join(names)})" if names else ""), {"field": f"{field}[{i}]"})
        return items
    if rows and width == 1 and all(type(i) not in (dict, list) for i in items):
        return [[item] for item in items]  # one value per row for a one-input model
    what = "an object of field: value" + (f" or a list of {width} values" if rows and width else
                                            " or a list of values" if rows else "")
    raise InvalidInput(f"{field}[0] is a {_kind(first)}; each item must be {what}", {"field": f"{field}[0]"})


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__)


def _mlflow(kind: str, value: Any, names: Sequence[str]) -> list[Any]:
    if kind == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise InvalidInput("dataframe_split needs {\"columns\": [...], \"data\": [[...], ...]}",
                               {"field": "dataframe_split"})
        columns = value.get("columns")
        extra = sorted(set(value) - {"columns", "data", "index"})
        if extra:
            raise InvalidInput(f"dataframe_split has unknown key(s) {extra}", {"field": f"dataframe_split.{extra[0]}"})
        if columns is None:
            return _items("dataframe_split.data", value["data"], names)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput("dataframe_split.columns must be a list of names", {"field": "dataframe_split.columns"})
        out = []
        for i, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise InvalidInput(f"dataframe_split.data[{i}] must be a list of {len(columns)} values",
                                   {"field": f"dataframe_split.data[{i}]"})
            out.append(dict(zip(columns, row, strict=True)))
        return out
    if kind == "dataframe_records":
        if not isinstance(value, list):
            raise InvalidInput("dataframe_records must be a list of objects", {"field": "dataframe_records"})
        return _items("dataframe_records", value, names, rows=False)
    if isinstance(value, dict):  # columnar "inputs"/"instances": {column: [values]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if -1 in lengths or len(lengths) > 1:
            raise InvalidInput(f"{kind} as an object must map every column to a list of equal length",
                               {"field": kind})
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in value.items()} for i in range(n)]
    if isinstance(value, list):
        return _items(kind, value, names)
    raise InvalidInput(f"{kind} must be a list of records/rows or an object of columns", {"field": kind})


_NUMBER_TYPES = frozenset({"double", "float", "long", "integer"})
_TRUE, _FALSE = frozenset({"true", "True", "TRUE"}), frozenset({"false", "False", "FALSE"})


def csv_records(body: bytes, types: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """CSV with a header row, each cell parsed by its column's signature type (``types``: column ->
    type): numbers for numeric columns, ``true``/``false`` for booleans, text otherwise; an empty
    cell is null. Without a signature (``types`` None) a column whose cells all read as integers
    holds integers, one whose cells all read as numbers holds floats, any other holds text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV body is not UTF-8", {"field": "body"}) from None
    try:
        # newline="": the csv module handles \r, \n and \r\n itself (also inside quoted fields)
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}", {"field": "body"}) from None
    if not rows:
        raise InvalidInput("the CSV body is empty; send a header row and data rows", {"field": "body"})
    header = rows[0]
    body_rows = [(line, row) for line, row in enumerate(rows[1:], start=2) if row]
    for line, row in body_rows:
        if len(row) != len(header):
            raise InvalidInput(f"CSV line {line} has {len(row)} values for {len(header)} columns", {"field": f"line {line}"})
    kinds = dict(types) if types is not None else {col: _infer([r[j] for _, r in body_rows])
                                                   for j, col in enumerate(header)}
    out = []
    for line, row in body_rows:
        record: dict[str, Any] = {}
        for col, cell in zip(header, row, strict=True):
            record[col] = None if cell == "" else _cell(cell, kinds.get(col, "string"), col, line)
        out.append(record)
    return out


def _infer(cells: list[str]) -> str:
    present = [c for c in cells if c != ""]
    for kind in ("long", "double"):
        try:
            for cell in present:
                int(cell) if kind == "long" else float(cell)
            return kind if present else "string"
        except ValueError:
            continue
    return "string"


def _cell(cell: str, kind: str, col: str, line: int) -> Any:
    if kind in _NUMBER_TYPES:
        try:
            value: float | int = int(cell) if kind in ("long", "integer") and _integral(cell) else float(cell)
        except ValueError:
            raise InvalidInput(f"CSV line {line}: column {col!r} must be a number, got {cell[:40]!r}",
                               {"field": col}) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"CSV line {line}: column {col!r} is {cell}; numbers must be finite", {"field": col})
        return value
    if kind == "boolean":
        if cell in _TRUE or cell in _FALSE:
            return cell in _TRUE
        raise InvalidInput(f"CSV line {line}: column {col!r} must be true or false, got {cell[:40]!r}",
                           {"field": col})
    return cell


def _integral(cell: str) -> bool:
    text = cell.strip().lstrip("+-")
    return text.isdigit()


def mlflow_jsonable(out: Any) -> JSON:
    """A prediction as MLflow's scoring server writes it: arrays as nested lists (float32 widened
    to the double it is, as ``ndarray.tolist`` does), a DataFrame or Series as a list of records,
    NumPy scalars as Python numbers, timestamps in ISO form, bytes in base64; NaN becomes null."""
    import pandas as pd

    if isinstance(out, np.ndarray):
        if out.dtype.kind in "iub" or (out.dtype.kind == "f" and np.isfinite(out).all()):
            return out.tolist()  # plain numbers already: nothing to walk
        return _plain(out.tolist())
    if isinstance(out, pd.DataFrame):
        return _plain(out.to_dict(orient="records"))
    if isinstance(out, pd.Series):
        return _plain(pd.DataFrame(out).to_dict(orient="records"))
    return _plain(out)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(bytes(value)).decode("ascii")
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()
    return value
