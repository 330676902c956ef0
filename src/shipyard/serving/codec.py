"""Request bodies in, response bodies out — without changing a value on the way.

- JSON is parsed with orjson; ``NaN``/``Infinity`` are refused with the field that holds them.
- Strings stay strings (no date guessing); numbers stay numbers; float32 model outputs are
  written in their shortest exact decimal form (see ``steps.to_python``).
- MLflow's scoring bodies are accepted: ``dataframe_split``, ``dataframe_records``, ``instances``,
  ``inputs``, and CSV (``text/csv``) with numbers parsed only where the model expects numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import orjson

from shipyard.errors import InvalidInput

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


class _NonFinite(float):
    pass


def parse_json(body: bytes) -> Any:
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


def scene_records(payload: Any) -> tuple[list[Any], bool]:
    """A scene body is one record (an object), ``{"records": [...]}`` or a list of records."""
    if isinstance(payload, list):
        return payload, False
    if isinstance(payload, dict):
        if len(payload) == 1 and isinstance(payload.get("records"), list):
            return payload["records"], False
        return [payload], True
    raise InvalidInput("the body must be a JSON object (one record), a list of records or {\"records\": [...]}",
                       {"field": "body"})


def model_records(payload: Any, names: Sequence[str]) -> tuple[list[Any], bool]:
    """Records (dicts) or rows (lists in ``names`` order) from any accepted body; and 'single'."""
    if isinstance(payload, dict):
        keys = [k for k in MLFLOW_KEYS if k in payload]
        if len(keys) > 1:
            raise InvalidInput(f"the body has {keys}; send exactly one of {', '.join(MLFLOW_KEYS)}", {"field": keys[1]})
        if keys:
            extra = sorted(set(payload) - {keys[0], "params"})
            if extra:
                raise InvalidInput(f"unknown top-level field(s) {extra} next to {keys[0]!r}", {"field": extra[0]})
            return _mlflow(keys[0], payload[keys[0]]), False
        if len(payload) == 1 and isinstance(payload.get("records"), list):
            return payload["records"], False
        return [payload], True
    if isinstance(payload, list):
        return payload, False
    raise InvalidInput(f"the body must be a JSON object; send one of {', '.join(MLFLOW_KEYS)}", {"field": "body"})


def _mlflow(kind: str, value: Any) -> list[Any]:
    if kind == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise InvalidInput("dataframe_split needs {\"columns\": [...], \"data\": [[...], ...]}",
                               {"field": "dataframe_split"})
        columns = value.get("columns")
        extra = sorted(set(value) - {"columns", "data", "index"})
        if extra:
            raise InvalidInput(f"dataframe_split has unknown key(s) {extra}", {"field": f"dataframe_split.{extra[0]}"})
        if columns is None:
            return value["data"]
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
        return value
    if isinstance(value, dict):  # columnar "inputs"/"instances": {column: [values]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if -1 in lengths or len(lengths) > 1:
            raise InvalidInput(f"{kind} as an object must map every column to a list of equal length",
                               {"field": kind})
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in value.items()} for i in range(n)]
    if isinstance(value, list):
        return value
    raise InvalidInput(f"{kind} must be a list of records/rows or an object of columns", {"field": kind})


def csv_records(body: bytes, names: Sequence[str], numeric: Sequence[str]) -> list[dict[str, Any]]:
    """CSV with a header row; columns the model expects as numbers are parsed, the rest stay text."""
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
    numeric_set = set(numeric)
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInput(f"CSV line {line} has {len(row)} values for {len(header)} columns", {"field": f"line {line}"})
        record: dict[str, Any] = {}
        for col, cell in zip(header, row, strict=True):
            if col in numeric_set:
                if cell == "":
                    record[col] = None
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise InvalidInput(f"CSV line {line}: column {col!r} must be a number, got {cell[:40]!r}",
                                       {"field": col}) from None
                if not math.isfinite(value):
                    raise InvalidInput(f"CSV line {line}: column {col!r} is {cell}; numbers must be finite",
                                       {"field": col})
                record[col] = value
            else:
                record[col] = cell
        out.append(record)
    return out
