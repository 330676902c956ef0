"""Reading tables and writing specs for the binning commands (kept out of the CLI)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.errors import InvalidInput, NotFound
from shipyard.risk.binning.binner import Binner


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, Parquet or Excel file as a DataFrame (by suffix)."""
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"data file {str(p)!r} does not exist", {"field": "data"})
    suffix = p.suffix.lower()
    if suffix in (".csv", ".txt", ".gz"):
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".xlsx", ".xls"):
        return pd.read_excel(p)
    raise InvalidInput(f"cannot read {p.name!r}: use a .csv, .parquet or .xlsx file", {"field": "data"})


def bin_frame(df: pd.DataFrame, target: str, **params: Any) -> Binner:
    """Fit a ``Binner`` on every column of ``df`` except ``target``."""
    if target not in df.columns:
        raise InvalidInput(f"target column {target!r} is not in the data (columns: {list(df.columns)[:20]})",
                           {"field": "target"})
    X = df.drop(columns=[target])
    return Binner(**params).fit(X, df[target])


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
