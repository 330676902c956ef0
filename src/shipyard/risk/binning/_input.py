"""Input checks shared by the binning, selection and scorecard estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput, SchemaMismatch


def as_frame(X: Any, names: list[str] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, dict):
        return pd.DataFrame(X)
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidInput(f"X must be a 2-D table, got an array of shape {arr.shape}; pass a DataFrame",
                           {"field": "X"})
    cols = names if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=cols)


def binary_target(y: Any, bad_value: Any = None) -> np.ndarray:
    """The target as a float array of 0/1 (1 = bad). Accepts 0/1, booleans, or any two values when
    ``bad_value`` names the bad one (``good``/``bad`` strings are recognised without it)."""
    s = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy())
    if s.isna().any():
        raise InvalidInput(f"target has {int(s.isna().sum())} missing values; drop those rows first",
                           {"field": "target"})
    uniq = pd.unique(s)
    if len(uniq) > 2:
        shown = [str(u) for u in uniq[:5]]
        raise InvalidInput(
            f"target must be binary (two classes, 1 = bad); found {len(uniq)} distinct values {shown}...; "
            "recode it to 0/1", {"field": "target", "n_classes": len(uniq)})
    if bad_value is not None:
        out = (s == bad_value).to_numpy(dtype=np.float64)
        if not out.any() and str(bad_value) not in {str(u) for u in uniq}:
            raise InvalidInput(f"bad_value={bad_value!r} does not occur in the target (values: "
                               f"{[str(u) for u in uniq]})", {"field": "bad_value"})
    else:
        vals = {str(u).lower() for u in uniq}
        if vals <= {"good", "bad"}:
            out = (s.astype(str).str.lower() == "bad").to_numpy(dtype=np.float64)
        elif s.dtype == bool or vals <= {"0", "1", "0.0", "1.0", "true", "false"}:
            out = s.astype(float).to_numpy(dtype=np.float64)
        else:
            raise InvalidInput(
                f"target values {[str(u) for u in uniq]} are not 0/1; pass bad_value= to say which is bad",
                {"field": "target"})
    if out.sum() == 0 or out.sum() == len(out):
        raise InvalidInput(
            "target has only one class (all good or all bad); binning and WOE need both bad and good rows",
            {"field": "target"})
    return out


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
