"""Input checks shared by the binning, selection and scorecard estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shipyard.errors import InvalidInput, InvalidType, SchemaMismatch


def as_frame(X: Any, names: list[str] | None = None, *, field: str = "X") -> pd.DataFrame:
    """``X`` (DataFrame, dict of columns or 2-D array) as a DataFrame with text column names;
    ``names`` name the columns of an array when there are as many."""
    check_dense(X, field)
    if isinstance(X, pd.DataFrame):
        df = X
    elif isinstance(X, dict):
        df = pd.DataFrame(X)
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise InvalidInput(f"{field} must be a 2-D table, got an array of shape {arr.shape}. Reshape your "
                               "data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single "
                               "sample, or pass a DataFrame", {"field": field})
        cols = names if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
        df = pd.DataFrame(arr, columns=cols)
    if any(not isinstance(c, str) for c in df.columns):
        df = df.rename(columns=str)
    complex_cols = [c for c, t in df.dtypes.items() if getattr(t, "kind", "") == "c"]
    if complex_cols:
        raise InvalidType(f"Complex data not supported: columns {complex_cols} hold complex numbers; pass their "
                          "real parts or magnitudes", {"field": complex_cols[0]})
    return df


def check_dense(X: Any, field: str = "X") -> None:
    if sp.issparse(X):
        raise InvalidType(f"{field} is a sparse matrix, and sparse input is not supported; pass a dense array or "
                          "DataFrame (X.toarray())", {"field": field})


def check_not_empty(df: pd.DataFrame, where: str, field: str = "X") -> None:
    if df.shape[1] == 0:
        raise InvalidInput(f"{field} has 0 feature(s) (shape={df.shape}) while a minimum of 1 is required by "
                           f"{where}; pass at least one column", {"field": field})
    if len(df) == 0:
        raise InvalidInput(f"{field} is empty (0 rows, {df.shape[1]} columns); {where} needs rows with both good "
                           "and bad outcomes", {"field": field, "rows": 0})


def column_kind(s: pd.Series, forced_categorical: bool) -> str:
    name = s.name
    if forced_categorical:
        return "categorical"
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return "numeric"
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("integer", "floating", "decimal", "mixed-integer-float"):
        return "numeric"
    if inferred in ("string", "categorical", "empty", "boolean"):
        return "categorical"
    raise InvalidInput(
        f"column {name!r} mixes value types ({inferred}); cast it to numbers or to strings, or list it in "
        "categorical=[...] to bin its values as text", {"field": str(name), "inferred": inferred})


def numeric_values(s: pd.Series) -> np.ndarray:
    if s.dtype == np.float64:
        return s.to_numpy()  # no copy; callers never write into it
    try:
        return pd.to_numeric(s, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise SchemaMismatch(
            f"column {s.name!r} must be numeric but holds non-numeric values ({exc}); fix the input data",
            {"field": str(s.name)}) from exc


def categorical_values(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=object, na_value=None)
