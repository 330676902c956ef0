"""Feature value types and typed fields.

A type is a short string so that definitions, the registry and the HTTP API speak the same words:
``float64``, ``int64``, ``string``, ``bool``, ``timestamp``. ``Float64`` and friends are the same
strings under names that read well in definitions: ``Field("amount", Float64)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from shipyard.errors import InvalidInput

Float64 = "float64"
Int64 = "int64"
String = "string"
Bool = "bool"
Timestamp = "timestamp"

DTYPES: tuple[str, ...] = (Float64, Int64, String, Bool, Timestamp)

_ALIASES = {
    "float": Float64,
    "double": Float64,
    "float32": Float64,
    "int": Int64,
    "int32": Int64,
    "integer": Int64,
    "bigint": Int64,
    "str": String,
    "varchar": String,
    "boolean": Bool,
    "datetime": Timestamp,
}

ARROW_TYPES: dict[str, pa.DataType] = {
    Float64: pa.float64(),
    Int64: pa.int64(),
    String: pa.string(),
    Bool: pa.bool_(),
    Timestamp: pa.timestamp("us", tz="UTC"),
}

DUCKDB_TYPES: dict[str, str] = {
    Float64: "DOUBLE",
    Int64: "BIGINT",
    String: "VARCHAR",
    Bool: "BOOLEAN",
    Timestamp: "TIMESTAMPTZ",
}


def normalize_dtype(dtype: object, where: str = "") -> str:
    """The canonical type name for ``dtype`` (a name, an alias or a Python type)."""
    if isinstance(dtype, type):
        dtype = {float: Float64, int: Int64, str: String, bool: Bool}.get(dtype, dtype.__name__)
    text = str(dtype).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in DTYPES:
        prefix = f"{where}: " if where else ""
        raise InvalidInput(
            f"{prefix}unknown type {dtype!r}; use one of {', '.join(DTYPES)}",
            {"field": where or "dtype", "dtype": str(dtype)},
        )
    return text


def dtype_of_arrow(arrow_type: pa.DataType) -> str | None:
    """The feature type that can hold an Arrow column without loss, or None."""
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return Float64
    if pa.types.is_integer(arrow_type):
        return Int64
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return String
    if pa.types.is_boolean(arrow_type):
        return Bool
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return Timestamp
    if pa.types.is_null(arrow_type):
        return None
    return None


@dataclass(frozen=True)
class Field:
    """One typed column of a feature view, request source or on-demand view."""

    name: str
    dtype: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidInput(
                f"field name {self.name!r} is not a valid identifier; use letters, digits and '_'",
                {"field": str(self.name)},
            )
        if self.name.startswith("__"):
            # the stores keep their own columns and fields under such names (__ts, __event_ts, ...)
            raise InvalidInput(f"field name {self.name!r} starts with '__', which is reserved; rename the field",
                               {"field": self.name})
        object.__setattr__(self, "dtype", normalize_dtype(self.dtype, f"field {self.name!r}"))

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.dtype]

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description, "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        return cls(spec["name"], spec["dtype"], spec.get("description", ""), dict(spec.get("tags", {})))
