"""The binary target: one parser for the whole risk toolkit (metrics, binning, selection,
scorecards, rules, reports, the profile and the command line).

:func:`binary_target` turns a target into an ``int8`` array with **1 = bad** and 0 = good.

Without ``bad=`` the target must be one of

* numbers or booleans with values in {0, 1} (1 / ``True`` = bad);
* two labels from one recognised pair, ignoring case and surrounding spaces — the second of each
  pair is bad: ``good``/``bad``, ``N``/``Y``, ``no``/``yes``, ``0``/``1``, ``false``/``true``.

With ``bad=<value>`` any two distinct values are accepted and the rows equal to ``bad`` are bad.
``bad`` is matched by value first, then by its text (ignoring case and surrounding spaces), so
``--bad 1`` on the command line finds the number 1 and ``bad="Y"`` finds ``"y"``.

Missing values, more than two distinct values, a single class and an empty target are refused
with :class:`~shipyard.errors.InvalidInput` naming the field and the fix.

``bad_value=`` (the binning estimators' former name for ``bad=``) still works for one release
and warns; :func:`resolve_bad` implements that.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

TargetLabel: TypeAlias = "str | int | float | bool"
"""A target value naming the bad class (``bad=``): text, a number or a boolean."""
ValuesLike: TypeAlias = "pd.Series | ArrayLike"
"""One column of values: a pandas Series, a NumPy array or a list."""
FrameLike: TypeAlias = "pd.DataFrame | ArrayLike"
"""Feature columns: a DataFrame, or a 2-D array or list of rows (columns then numbered)."""

__all__ = ["KNOWN_PAIRS", "binary_target", "resolve_bad"]

#: Label pairs recognised without ``bad=``: (good, bad), compared in lower case.
KNOWN_PAIRS: tuple[tuple[str, str], ...] = (
    ("good", "bad"), ("n", "y"), ("no", "yes"), ("0", "1"), ("false", "true"), ("0.0", "1.0"),
)
_BAD_OF = {frozenset(p): p[1] for p in KNOWN_PAIRS}
_ONE_LABEL = {lab: p for p in KNOWN_PAIRS for lab in p}


def _label(value: Any) -> str:
    return str(value).strip().lower()


def _show(values: Any) -> list[str]:
    return sorted(str(v) for v in values)[:10]


def binary_target(y: ValuesLike, bad: TargetLabel | None = None, *, field: str = "target") -> np.ndarray:
    """``y`` as an ``int8`` array of 0/1 with 1 = bad (rules in the module docstring)."""
    if y is None:
        raise InvalidInput(f"{field!r} is None: the risk toolkit requires y to be passed, but the target y "
                           "is None; pass the binary target (1 = bad)", {"field": field})
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise InvalidInput(f"{field!r} must be one column; got {y.shape[1]} columns", {"field": field})
        y = y.iloc[:, 0]
    if isinstance(y, pd.Series):
        s = y.reset_index(drop=True)
    else:
        arr = np.asarray(y)
        if arr.ndim > 1 and arr.size == max(arr.shape, default=0):
            arr = arr.ravel()  # a column vector
        if arr.ndim != 1:
            raise InvalidInput(f"{field!r} must be one-dimensional; got shape {arr.shape}", {"field": field})
        s = pd.Series(arr, copy=False)
    if len(s) == 0:
        raise InvalidInput(f"{field!r} is empty (0 rows); give at least one good and one bad row",
                           {"field": field, "n": 0})
    na = s.isna()
    if na.any():
        raise InvalidInput(
            f"{field!r} has {int(na.sum())} missing values; drop those rows or fill the target first",
            {"field": field, "missing": int(na.sum())},
        )
    values = pd.unique(s)
    if len(values) > 2:
        raise InvalidInput(
            f"{field!r} must be binary (two classes, 1 = bad); it has {len(values)} distinct values "
            f"{_show(values)}. Recode it to 0/1", {"field": field, "n_values": len(values)},
        )
    if bad is not None:
        out = _by_bad_value(s, values, bad, field)
    elif (pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s)) and not pd.api.types.is_complex_dtype(s):
        arr = s.to_numpy(dtype=np.float64)
        if not np.isin(arr, (0.0, 1.0)).all():
            raise InvalidInput(
                f"{field!r} has values {_show(values)}, not 0/1; recode it to 0/1 (1 = bad) or pass "
                "bad=<the value that means bad>", {"field": field, "values": [str(v) for v in values]},
            )
        out = arr.astype(np.int8)
    else:
        labels = {_label(v) for v in values}
        bad_label = _BAD_OF.get(frozenset(labels))
        if bad_label is None and len(labels) == 1:
            pair = _ONE_LABEL.get(next(iter(labels)))
            bad_label = pair[1] if pair else None
        if bad_label is None:
            raise InvalidInput(
                f"cannot tell which value of {field!r} means bad among {_show(values)}; pass "
                "bad=<the value that means bad> (recognised without it: good/bad, Y/N, yes/no, 1/0, "
                "True/False)", {"field": field, "values": [str(v) for v in values]},
            )
        out = (s.map(_label) == bad_label).to_numpy(dtype=np.int8)
    n_bad = int(out.sum())
    if n_bad == 0 or n_bad == len(out):
        raise InvalidInput(
            f"{field!r} has only one class ({'bad' if n_bad else 'good'}) in {len(out)} rows; binning, WOE "
            "and metrics need both good and bad rows", {"field": field, "n": len(out), "n_bad": n_bad},
        )
    return out


def _by_bad_value(s: pd.Series, values: np.ndarray, bad: Any, field: str) -> np.ndarray:
    try:
        exact = [v for v in values if v == bad]
    except (TypeError, ValueError):  # values that do not compare with ``bad``
        exact = []
    if exact:
        return (s == exact[0]).to_numpy(dtype=np.int8)
    by_text = [v for v in values if _label(v) == _label(bad)]
    if len(by_text) == 1:
        return (s == by_text[0]).to_numpy(dtype=np.int8)
    raise InvalidInput(
        f"{field!r} has no value bad={bad!r}; its values are {_show(values)}: pass one of them as bad=",
        {"field": "bad", "bad": str(bad), "values": [str(v) for v in values]},
    )


_Label = TypeVar("_Label")


def resolve_bad(bad: _Label, bad_value: _Label, where: str) -> _Label:
    """``bad``, or the deprecated ``bad_value`` with a ``DeprecationWarning``."""
    if bad_value is None:
        return bad
    if bad is not None and _label(bad) != _label(bad_value):
        raise InvalidInput(f"{where}: bad={bad!r} and bad_value={bad_value!r} disagree; pass only bad=",
                           {"field": "bad_value"})
    warnings.warn(f"{where}: bad_value= is deprecated and will be removed in the next release; use "
                  f"bad={bad_value!r}", DeprecationWarning, stacklevel=3)
    return bad_value
