"""Arrow tables from pandas frames, and pandas frames of Arrow decimals that compute as numbers.

pyarrow converts a pandas column by reading ``Series.values``, which pandas 3.1 deprecates for
timezone-aware columns (a ``Pandas4Warning`` per column and call). ``table_from_pandas`` hands
pyarrow those columns as naive UTC values, then gives them back their time zone, in the Arrow
type and in the pandas metadata: the table is the one ``pa.Table.from_pandas`` makes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import pyarrow as pa


def arrow_tz_name(tz: dt.tzinfo) -> str:
    """A time zone as pyarrow spells it (IANA name, ``UTC`` or ``+01:00``)."""
    return str(pa.array([dt.datetime(2000, 1, 1, tzinfo=tz)]).type.tz)


def table_from_pandas(frame: pd.DataFrame, **options: Any) -> pa.Table:
    """``pa.Table.from_pandas(frame, preserve_index=False, **options)`` without the deprecated read
    of timezone-aware columns."""
    options.setdefault("preserve_index", False)
    aware = {str(name): arrow_tz_name(dtype.tz) for name, dtype in frame.dtypes.items()
             if isinstance(dtype, pd.DatetimeTZDtype)}
    if not aware or options.get("schema") is not None or len(set(map(str, frame.columns))) != len(frame.columns):
        return pa.Table.from_pandas(frame, **options)
    naive = frame.copy(deep=False)
    for i, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.DatetimeTZDtype):
            naive.isetitem(i, frame.iloc[:, i].dt.tz_convert(None))  # the UTC values
    table = pa.Table.from_pandas(naive, **options)
    schema = table.schema
    for name, tz in aware.items():
        i = schema.get_field_index(name)
        field = schema.field(i)
        schema = schema.set(i, field.with_type(pa.timestamp(field.type.unit, tz=tz)))
    meta = dict(schema.metadata or {})
    if b"pandas" in meta:
        pandas_meta = json.loads(meta[b"pandas"])
        for column in pandas_meta["columns"]:
            if column.get("field_name") in aware:
                column["pandas_type"] = "datetimetz"
                column["metadata"] = {"timezone": aware[column["field_name"]]}
        meta[b"pandas"] = json.dumps(pandas_meta).encode()
    return table.cast(schema.with_metadata(meta))


def decimals_as_floats(frame: pd.DataFrame) -> pd.DataFrame:
    """SQL NUMERIC/DECIMAL columns (Arrow ``decimal128``) arrive in pandas as Python ``Decimal`` objects:
    numbers, to be binned as such (as object columns they would be counted as thousands of categories
    and hide any shift). Returns ``frame`` itself when it has no such column."""
    from decimal import Decimal

    out = frame
    for name in frame.columns:
        col = frame[name]
        if col.dtype != object:
            continue
        present = col.dropna()
        if not len(present) or not isinstance(present.iloc[0], Decimal):
            continue
        if all(isinstance(v, Decimal) for v in present):
            if out is frame:
                out = frame.copy()
            out[name] = col.astype("float64")
    return out
