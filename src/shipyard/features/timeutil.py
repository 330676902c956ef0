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
