"""Timestamps at the feature store's edges: everything is compared in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from shipyard.errors import InvalidInput


def to_utc(value: Any, field: str) -> datetime:
    """A tz-aware UTC datetime from a datetime, pandas Timestamp, epoch seconds or ISO text.

    Naive values are taken to be UTC already.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            ts = pd.Timestamp(value, unit="s", tz="UTC")
        else:
            ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} {value!r} is not a timestamp; give a datetime or ISO text such as "
                           "'2024-01-31T00:00:00Z'", {"field": field}) from None
    if ts is pd.NaT:
        raise InvalidInput(f"{field} is empty; give a timestamp", {"field": field})
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def format_duration(seconds: float | None) -> str:
    """A duration as people read it: ``45 s``, ``5 min 3 s``, ``3 h 12 min``, ``2 d 4 h``; ``-`` for
    None. Two units at most, the smaller one dropped when it is zero; a negative duration (an event
    time in the future) gets a minus sign."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(float(seconds))
    if round(s, 1) < 10:
        return f"{sign}{round(s, 1):g} s"  # tenths under ten seconds
    total = int(round(s))
    units = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))
    for i, (name, size) in enumerate(units):
        if total >= size or name == "s":
            big, rest = divmod(total, size)
            small_name, small_size = units[i + 1] if i + 1 < len(units) else ("", 1)
            small = rest // small_size if small_name else 0
            return f"{sign}{big} {name}" + (f" {small} {small_name}" if small else "")
    raise AssertionError("unreachable")  # pragma: no cover
