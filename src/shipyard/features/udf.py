"""Python functions inside definitions: kept as source text so the registry can rebuild them, and
the typed frame an on-demand function receives.

A transformation or on-demand function is stored as its source code plus the top-level imports of
the file it was written in. Rebuilding it from the registry compiles that text again, so the
function a server runs is the function that was applied, and the same one runs offline and online.

:func:`input_frame` builds what an on-demand function gets, the same way for training sets and
online reads: every input in its declared type — ``float64`` (NaN when missing), ``int64`` and
``bool`` as pandas' nullable ``Int64``/``boolean`` (``<NA>``), ``string`` as pandas reads Arrow
text, ``timestamp`` as UTC datetimes (``NaT``) — so ``df["x"].abs()`` or ``np.log1p(df["x"])``
work for an unknown or expired entity whose inputs are all missing, and give what training gave.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.errors import InvalidInput, SchemaMismatch
from shipyard.features.types import ARROW_TYPES, Bool, Float64, Int64

#: Arrow -> pandas types for features handed to Python: integers and booleans stay nullable.
PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
_EXACT = {Float64: float, Int64: int, Bool: bool}
_NULLABLE = {Int64: "Int64", Bool: "boolean"}


@dataclass(frozen=True)
class PythonCode:
    name: str
    source: str
    imports: str = ""

    @classmethod
    def of(cls, func: Callable[..., Any], where: str) -> PythonCode:
        if not callable(func) or getattr(func, "__name__", "<lambda>") == "<lambda>":
            raise InvalidInput(
                f"{where}: the transformation must be a named function defined with 'def', not a lambda",
                {"field": where},
            )
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError):
            raise InvalidInput(
                f"{where}: cannot read the source of {func.__name__!r}; define it in a .py file",
                {"field": where},
            ) from None
        source = _strip_decorators(source)
        imports = ""
        module = inspect.getmodule(func)
        if module is not None:
            try:
                imports = _top_level_imports(inspect.getsource(module))
            except (OSError, TypeError, SyntaxError):
                imports = ""
        return cls(func.__name__, source, imports)

    def to_spec(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source, "imports": self.imports}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> PythonCode:
        return cls(spec["name"], spec["source"], spec.get("imports", ""))

    def compile(self) -> Callable[..., Any]:
        import numpy
        import pandas

        namespace: dict[str, Any] = {"__name__": f"shipyard_udf_{self.name}", "pd": pandas, "np": numpy}
        try:
            if self.imports:
                exec(compile(self.imports, f"<imports of {self.name}>", "exec"), namespace)  # noqa: S102
        except Exception:  # noqa: BLE001 - an import that no longer resolves: keep going without it
            pass
        exec(compile(self.source, f"<{self.name}>", "exec"), namespace)  # noqa: S102
        return namespace[self.name]


def _strip_decorators(source: str) -> str:
    tree = ast.parse(source)
    node = tree.body[0]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
        lines = source.splitlines(keepends=True)
        return "".join(lines[node.lineno - 1 :])
    return source


def _top_level_imports(module_source: str) -> str:
    tree = ast.parse(module_source)
    parts = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shipyard"):
                continue
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            parts.append(ast.unparse(node))
    return "\n".join(parts)


def input_frame(columns: Mapping[str, Any], types: Mapping[str, str], where: str,
                index: pd.Index | None = None) -> pd.DataFrame:
    """The frame an on-demand function receives: ``columns`` (name -> list, array, Series or Arrow
    column) each cast to its declared type in ``types`` (see the module docstring)."""
    return pd.DataFrame({name: typed_column(values, types[name], name, where) for name, values in columns.items()},
                        index=index)


def typed_column(values: Any, dtype: str, name: str,
                 where: str) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """One input column in its declared type, as a NumPy or pandas extension array."""
    if type(values) is list:
        # online reads: the arrays the Arrow route below gives, built directly (a read is a few rows)
        exact = _EXACT.get(dtype)
        if exact is not None and all(type(v) is exact or v is None for v in values):
            if dtype == Float64:
                return np.fromiter((np.nan if v is None else v for v in values), np.float64, len(values))
            return pd.array(values, dtype=_NULLABLE[dtype])
    target = ARROW_TYPES[dtype]
    try:
        array = _arrow(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError,
            OverflowError) as exc:
        sample = next((v for v in _python(values) if v is not None), None)
        raise SchemaMismatch(f"{where}: input {name!r} is declared {dtype} but holds {sample!r} "
                             f"({type(sample).__name__}); send {dtype} values ({exc})",
                             {"field": name, "expected": dtype}) from None
    series = array.to_pandas(types_mapper=PANDAS_TYPES)
    return series.array if isinstance(series.dtype, pd.api.extensions.ExtensionDtype) else series.to_numpy()


def _arrow(values: Any, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)  # Arrow reads naive times as UTC
    if isinstance(values, pa.Array | pa.ChunkedArray):
        array = values
    else:
        try:
            return pa.array(values, type=target, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if pa.types.is_timestamp(target):  # ISO text, or datetimes of another unit or zone
                utc = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601").dt.tz_localize(None)
                return pa.array(utc, type=target, from_pandas=True)
            array = pa.array(values, from_pandas=True)
    if array.type == target:
        return array
    try:
        return array.cast(target)
    except pa.ArrowInvalid:
        if pa.types.is_timestamp(target) and pa.types.is_timestamp(array.type):
            return array.cast(target, safe=False)  # sub-microsecond digits: timestamps are kept in µs
        raise


def _python(values: Any) -> list[Any]:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pylist()
    if isinstance(values, pd.Series):
        return values.tolist()
    return list(values)
