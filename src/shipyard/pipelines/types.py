"""Port types: what flows along a pipeline edge, and how each kind is stored as an artifact.

========  =======================================  ==============================
type      Python value                             stored as
========  =======================================  ==============================
table     ``pandas.DataFrame``                     Parquet (index kept)
model     a fitted estimator (anything picklable)  cloudpickle
binner    ``shipyard.risk.binning.Binner``         cloudpickle
json      dict, list, number, text, bool, None     JSON (sorted keys)
any       anything picklable                       cloudpickle
========  =======================================  ==============================

An output may feed an input of the same type, and ``any`` connects to everything. Pickled values are
only ever read back from the project's own artifact store after their sha256 matched the recorded one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from shipyard.errors import InvalidInput

TABLE = "table"
MODEL = "model"
BINNER = "binner"
JSON = "json"
ANY = "any"
TYPES = (TABLE, MODEL, BINNER, JSON, ANY)
EXTENSIONS = {TABLE: "parquet", JSON: "json", MODEL: "pkl", BINNER: "pkl", ANY: "pkl"}

# parameter types: the names a document and the decorator use
PARAM_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")


def check_type(name: object, field: str) -> str:
    if name not in TYPES:
        raise InvalidInput(f"{field}: type {name!r} is not known; use one of {list(TYPES)}", {"field": field})
    return str(name)


def compatible(output_type: str, input_type: str) -> bool:
    return output_type == input_type or ANY in (output_type, input_type)


def check_param_value(kind: str, value: Any) -> bool:
    if value is None or kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind == "dict":
        return isinstance(value, dict)
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON data")


@dataclass(frozen=True)
class Encoded:
    data: bytes
    sha256: str
    extension: str
    summary: dict[str, Any]


def encode(kind: str, value: Any, where: str) -> Encoded:
    """Serialise an output value of type ``kind``; ``where`` names the node output in errors."""
    summary: dict[str, Any] = {}
    if kind == TABLE:
        import pandas as pd

        if not isinstance(value, pd.DataFrame):
            raise InvalidInput(f"{where} must be a table (pandas DataFrame), got {type(value).__name__}",
                               {"field": where})
        import pyarrow.parquet as pq

        from shipyard.arrow_util import table_from_pandas

        buffer = io.BytesIO()
        # what DataFrame.to_parquet does, without pyarrow reading Series.values of tz-aware columns
        pq.write_table(table_from_pandas(value, preserve_index=None), buffer, compression="zstd")
        data = buffer.getvalue()
        summary = {"rows": len(value), "columns": len(value.columns)}
    elif kind == JSON:
        try:
            data = json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":")).encode()
        except TypeError as exc:
            raise InvalidInput(f"{where} must be JSON data (dict, list, number, text): {exc}",
                               {"field": where}) from None
    else:
        import cloudpickle

        if kind == BINNER and not hasattr(value, "bins_"):
            raise InvalidInput(f"{where} must be a fitted Binner, got {type(value).__name__}", {"field": where})
        data = cloudpickle.dumps(value)
        summary = {"class": f"{type(value).__module__}.{type(value).__qualname__}"}
    return Encoded(data, hashlib.sha256(data).hexdigest(), EXTENSIONS[kind], summary)


def decode(kind: str, data: bytes) -> object:
    if kind == TABLE:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    if kind == JSON:
        return json.loads(data)
    import pickle

    return pickle.loads(data)  # noqa: S301 - only bytes from the project's artifact store, sha256-checked
