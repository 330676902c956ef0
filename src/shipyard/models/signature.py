"""Model signatures: the ordered, typed input columns a model expects, in MLflow's JSON format.

A ``Signature`` is stored in ``MLmodel`` exactly as MLflow writes it (``inputs``/``outputs`` are
JSON strings of column specs such as ``{"type": "double", "name": "age", "required": true}``), so
either tool can read the other's. ``Signature.validate`` turns a record, a list of records, a
DataFrame or an array into the ordered array a model's fast path takes, and raises
``SchemaMismatch`` naming the first missing, extra or wrongly typed field.

Rules (the same in training, batch and online scoring):

- numeric columns (``double``, ``float``, ``long``, ``integer``) accept ints and floats; ``None``
  and NaN mean "missing" and become NaN; booleans and strings are rejected (no string-to-number
  or string-to-date conversion ever happens behind the caller's back);
- ``boolean`` accepts ``True``/``False`` only; ``string`` accepts ``str`` only; ``datetime``
  accepts ``datetime``/``numpy.datetime64``/``pandas.Timestamp`` only, never a string;
- a record with a field the signature does not list is rejected unless ``allow_extra=True``;
- the result is ``float64`` when every column is numeric or boolean, else an ``object`` array.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import InvalidInput, SchemaMismatch

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
COLUMN_TYPES = NUMERIC_TYPES | {"boolean", "string", "binary", "datetime"}

_KIND_TO_TYPE = {"f": "double", "i": "long", "u": "long", "b": "boolean", "M": "datetime", "U": "string"}


@dataclass(frozen=True)
class ColSpec:
    """One named input or output column."""

    name: str | None
    type: str = "double"
    required: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out


@dataclass(frozen=True)
class TensorSpec:
    """An unnamed array output (MLflow's ``tensor`` spec)."""

    dtype: str = "float64"
    shape: tuple[int, ...] = (-1,)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "tensor", "tensor-spec": {"dtype": self.dtype, "shape": list(self.shape)}}


def _parse_specs(raw: Any, where: str) -> list[ColSpec | TensorSpec]:
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"signature {where} is not valid JSON: {exc}; re-save the model") from exc
    if not isinstance(raw, list):
        raise InvalidInput(f"signature {where} must be a JSON list of column specs; re-save the model")
    specs: list[ColSpec | TensorSpec] = []
    for item in raw:
        if not isinstance(item, dict) or "type" not in item:
            raise InvalidInput(f"signature {where} has a malformed entry {item!r}; re-save the model")
        if item["type"] == "tensor":
            ts = item.get("tensor-spec", {})
            specs.append(TensorSpec(str(ts.get("dtype", "float64")), tuple(ts.get("shape", [-1]))))
        else:
            specs.append(ColSpec(item.get("name"), str(item["type"]), bool(item.get("required", True))))
    return specs


@dataclass(frozen=True)
class Signature:
    """Ordered input columns (and, informatively, outputs) of a model."""

    inputs: tuple[ColSpec, ...]
    outputs: tuple[ColSpec | TensorSpec, ...] = field(default_factory=lambda: (TensorSpec(),))

    def __post_init__(self) -> None:
        for spec in self.inputs:
            if spec.type not in COLUMN_TYPES:
                raise InvalidInput(
                    f"input column {spec.name!r} has type {spec.type!r}, which Shipyard cannot check; "
                    f"use one of {sorted(COLUMN_TYPES)}"
                )
        names = self.input_names
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        object.__setattr__(self, "_numeric", all(s.type in NUMERIC_TYPES or s.type == "boolean" for s in self.inputs))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_columns(cls, columns: Mapping[str, str] | Sequence[str], outputs: Sequence[ColSpec | TensorSpec] | None = None) -> Signature:
        """``{"age": "double", ...}`` or a list of names (all ``double``)."""
        if isinstance(columns, Mapping):
            ins = tuple(ColSpec(str(n), t) for n, t in columns.items())
        else:
            ins = tuple(ColSpec(str(n)) for n in columns)
        return cls(ins, tuple(outputs) if outputs else (TensorSpec(),))

    @classmethod
    def infer(cls, example: Any, names: Sequence[str] | None = None, output: Any = None) -> Signature:
        """Infer column specs from a DataFrame, a record, a list of records or a 2-D array."""
        import pandas as pd

        frame = to_frame(example, names)
        ins = []
        for col in frame.columns:
            kind = frame[col].dtype.kind
            if kind == "O" or isinstance(frame[col].dtype, pd.StringDtype):
                typ = "string"
            else:
                typ = _KIND_TO_TYPE.get(kind, "double")
            ins.append(ColSpec(str(col), typ))
        outs: tuple[ColSpec | TensorSpec, ...] = (TensorSpec(),)
        if output is not None:
            arr = np.asarray(output)
            shape = (-1,) + tuple(arr.shape[1:])
            outs = (TensorSpec(str(arr.dtype), shape),)
        return cls(tuple(ins), outs)

    @classmethod
    def from_mlmodel(cls, section: Mapping[str, Any] | None) -> Signature | None:
        """Read the ``signature`` section of an MLmodel file (``None`` if absent or tensor-based)."""
        if not section:
            return None
        ins = _parse_specs(section.get("inputs"), "inputs")
        if not ins or any(isinstance(s, TensorSpec) for s in ins):
            return None
        outs = _parse_specs(section.get("outputs"), "outputs") or [TensorSpec()]
        return cls(tuple(s for s in ins if isinstance(s, ColSpec)), tuple(outs))

    def to_mlmodel(self) -> dict[str, Any]:
        return {
            "inputs": json.dumps([s.to_dict() for s in self.inputs]),
            "outputs": json.dumps([s.to_dict() for s in self.outputs]),
            "params": None,
        }

    # -- use ----------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [str(s.name) for s in self.inputs]

    def validate(self, data: Any, *, allow_extra: bool = False) -> np.ndarray:
        """Check ``data`` against the inputs and return a 2-D array in input order."""
        import pandas as pd

        if isinstance(data, Mapping):
            return self._records([data], allow_extra)
        if isinstance(data, pd.DataFrame):
            return self._frame(data, allow_extra)
        if isinstance(data, np.ndarray):
            return self._array(data)
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            if data and all(isinstance(r, Mapping) for r in data):
                return self._records(data, allow_extra)
            if data and all(isinstance(r, list | tuple) for r in data):
                return self._records(self._rows(data), allow_extra)
            if any(isinstance(r, Mapping | list | tuple) for r in data):
                i = next(i for i, r in enumerate(data) if not isinstance(r, Mapping | list | tuple))
                raise SchemaMismatch(
                    f"record {i} is a {type(data[i]).__name__}; every record must be an object of field: value "
                    f"(or every row a list of {len(self.inputs)} values)",
                    {"field": f"[{i}]", "record": i, "problem": "type"},
                )
            return self._records(self._rows([data]), allow_extra)  # one row of values
        raise SchemaMismatch(
            f"cannot score a {type(data).__name__}; pass a record (dict), a list of records, "
            "a pandas DataFrame or a 2-D NumPy array"
        )

    def frame(self, data: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        """``data`` checked as ``validate`` does, as a DataFrame in input order with each column of
        its declared type — what MLflow's schema enforcement hands a model: ``double`` float64,
        ``float`` float32, ``long`` int64, ``integer`` int32, ``boolean`` bool, ``datetime``
        datetime64[ns], ``string``/``binary`` objects. A missing value (null) makes an integer
        column float64 (NaN) and a boolean column object (None)."""
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            self.validate(data, allow_extra=allow_extra)
            columns = {s.name: data[s.name].to_numpy(dtype=object) if s.name in data.columns
                       else np.full(len(data), None, dtype=object) for s in self.inputs}
            index = data.index
        else:
            X = self.validate(data, allow_extra=allow_extra)
            columns = {s.name: X[:, j] for j, s in enumerate(self.inputs)}
            index = None
        return pd.DataFrame({str(s.name): _typed_column(s, columns[s.name]) for s in self.inputs}, index=index)

    def example(self, rows: int = 5) -> pd.DataFrame:
        """A small valid frame built from the column types alone (for models saved without an
        input example): numbers 0, 1, 2, ..., alternating booleans, strings ``"a"``, ``"b"``, ...,
        days from 2024-01-01."""
        values: dict[str, list[Any]] = {}
        for spec in self.inputs:
            if spec.type in ("double", "float"):
                values[str(spec.name)] = [float(i) for i in range(rows)]
            elif spec.type in ("long", "integer"):
                values[str(spec.name)] = list(range(rows))
            elif spec.type == "boolean":
                values[str(spec.name)] = [i % 2 == 0 for i in range(rows)]
            elif spec.type == "datetime":
                values[str(spec.name)] = [_dt.datetime(2024, 1, 1 + i % 28) for i in range(rows)]
            elif spec.type == "binary":
                values[str(spec.name)] = [bytes([97 + i % 26]) for i in range(rows)]
            else:
                values[str(spec.name)] = [chr(97 + i % 26) for i in range(rows)]
        return self.frame([{k: v[i] for k, v in values.items()} for i in range(rows)])

    def _rows(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Rows of values in input order as records (so each value is checked by its field)."""
        names, n = self.input_names, len(self.inputs)
        out = []
        for i, row in enumerate(rows):
            if len(row) != n:
                raise SchemaMismatch(
                    f"row {i} has {len(row)} values; the model takes {n} in this order: {names}",
                    {"field": f"[{i}]", "record": i, "problem": "shape", "expected": n, "got": len(row)},
                )
            out.append(dict(zip(names, row, strict=True)))
        return out

    def _records(self, records: Sequence[Mapping[str, Any]], allow_extra: bool) -> np.ndarray:
        specs = self.inputs
        out = np.empty((len(records), len(specs)), dtype=np.float64 if self._numeric else object)
        for r, rec in enumerate(records):
            if not allow_extra:
                index = self._index  # type: ignore[attr-defined]
                for key in rec:
                    if key not in index:
                        raise SchemaMismatch(
                            f"unexpected field {key!r} (record {r}); the model takes {self.input_names}",
                            {"field": key, "record": r, "problem": "extra"},
                        )
            row = out[r]
            for j, spec in enumerate(specs):
                try:
                    value = rec[spec.name]  # type: ignore[index]
                except KeyError:
                    if spec.required:
                        raise SchemaMismatch(
                            f"missing field {spec.name!r} (record {r}); add it (null means missing)",
                            {"field": spec.name, "record": r, "problem": "missing"},
                        ) from None
                    value = None
                checked = _check_value(spec, value, r)
                row[j] = np.nan if checked is None and self._numeric else checked
        return out

    def _frame(self, frame: Any, allow_extra: bool) -> np.ndarray:
        cols = frame.columns
        missing = [s.name for s in self.inputs if s.name not in cols and s.required]
        if missing:
            raise SchemaMismatch(
                f"missing column {missing[0]!r}; the model takes {self.input_names}",
                {"field": missing[0], "problem": "missing"},
            )
        if not allow_extra:
            extra = [c for c in cols if c not in self._index]  # type: ignore[attr-defined]
            if extra:
                raise SchemaMismatch(
                    f"unexpected column {extra[0]!r}; the model takes {self.input_names}",
                    {"field": extra[0], "problem": "extra"},
                )
        for spec in self.inputs:
            if spec.name not in cols:
                continue
            kind = frame[spec.name].dtype.kind
            ok = (
                kind in "fiu" if spec.type in NUMERIC_TYPES
                else kind == "b" if spec.type == "boolean"
                else kind == "M" if spec.type == "datetime"
                else kind in "OUT" or str(frame[spec.name].dtype).startswith("str")
            )
            if not ok:
                raise SchemaMismatch(
                    f"column {spec.name!r} has dtype {frame[spec.name].dtype}, expected {spec.type}; "
                    "convert it before scoring (no automatic conversion)",
                    {"field": spec.name, "problem": "type", "expected": spec.type, "got": str(frame[spec.name].dtype)},
                )
        if self._numeric:
            arr = np.empty((len(frame), len(self.inputs)), dtype=np.float64)
            for j, spec in enumerate(self.inputs):
                arr[:, j] = frame[spec.name].to_numpy(dtype=np.float64) if spec.name in cols else np.nan
            return arr
        return np.column_stack(
            [frame[s.name].to_numpy(dtype=object) if s.name in cols else np.full(len(frame), None) for s in self.inputs]
        ) if len(self.inputs) else np.empty((len(frame), 0), dtype=object)

    def _array(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.inputs):
            raise SchemaMismatch(
                f"array of shape {arr.shape} does not match the {len(self.inputs)} input columns "
                f"{self.input_names}; pass shape (n, {len(self.inputs)}) in that order",
                {"problem": "shape", "expected": len(self.inputs), "got": list(arr.shape)},
            )
        if self._numeric:
            if arr.dtype.kind not in "fiub":
                raise SchemaMismatch(
                    f"array dtype {arr.dtype} is not numeric; the model's inputs are numeric",
                    {"problem": "type", "got": str(arr.dtype)},
                )
            return arr.astype(np.float64, copy=False)
        return arr


_NUMPY_TYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _typed_column(spec: ColSpec, values: np.ndarray) -> Any:
    typ = spec.type
    if values.dtype == object:
        gaps = np.fromiter((_missing(v) for v in values), dtype=bool, count=len(values))
    elif values.dtype.kind == "f":
        gaps = np.isnan(values)
    else:
        gaps = np.zeros(len(values), dtype=bool)
    if typ in _NUMPY_TYPES:
        if typ in ("long", "integer") and gaps.any():
            typ = "double"  # NaN marks the missing values, as pandas does
        plain = values.tolist() if values.dtype == object else values
        return np.asarray([None if g else v for v, g in zip(plain, gaps, strict=True)] if gaps.any() else plain,
                          dtype=_NUMPY_TYPES[typ])
    if typ == "boolean":
        if gaps.any():
            return np.array([None if g else bool(v) for v, g in zip(values, gaps, strict=True)], dtype=object)
        return values.astype(bool)
    if typ == "datetime":
        import pandas as pd

        return pd.to_datetime(pd.Series(values, dtype=object)).to_numpy(dtype="datetime64[ns]")
    return values.astype(object)


def _check_value(spec: ColSpec, value: Any, record: int) -> Any:
    typ = spec.type
    if value is None:
        return np.nan if typ in NUMERIC_TYPES else None
    if typ in NUMERIC_TYPES:
        if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool | np.bool_):
            if typ in ("long", "integer") and isinstance(value, float | np.floating) and not (
                math.isnan(value) or float(value).is_integer()
            ):
                raise _type_error(spec, value, record)
            return value
    elif typ == "boolean":
        if isinstance(value, bool | np.bool_):
            return bool(value)
    elif typ == "string":
        if isinstance(value, str):
            return value
    elif typ == "datetime":
        if isinstance(value, _dt.datetime | _dt.date | np.datetime64):
            return value
    elif typ == "binary":
        if isinstance(value, bytes | bytearray):
            return value
    raise _type_error(spec, value, record)


def _type_error(spec: ColSpec, value: Any, record: int) -> SchemaMismatch:
    hint = " (strings are never converted to dates)" if spec.type == "datetime" else ""
    return SchemaMismatch(
        f"field {spec.name!r} (record {record}) expects {spec.type}, got {type(value).__name__} {value!r}{hint}",
        {"field": spec.name, "record": record, "problem": "type", "expected": spec.type, "got": type(value).__name__},
    )


def to_frame(data: Any, names: Sequence[str] | None = None) -> pd.DataFrame:
    """A pandas DataFrame from a DataFrame, record, list of records or array (``names`` for arrays)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame().T if names is None else pd.DataFrame([data.to_dict()])
    if isinstance(data, Mapping):
        return pd.DataFrame([dict(data)])
    if isinstance(data, Sequence) and not isinstance(data, str | bytes) and data and all(isinstance(r, Mapping) for r in data):
        return pd.DataFrame(list(data))
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidInput(f"expected 2-D data, got shape {arr.shape}")
    cols = list(names) if names is not None else [f"f{i}" for i in range(arr.shape[1])]
    if len(cols) != arr.shape[1]:
        raise SchemaMismatch(f"array has {arr.shape[1]} columns but the model takes {len(cols)}: {cols}")
    return pd.DataFrame(arr, columns=cols)
