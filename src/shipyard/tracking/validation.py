"""Checks on everything a run logs, so bad input fails early with the field named.

Metric values must be finite numbers: NaN and ±inf are refused with ``InvalidInput`` (SQLite
cannot store NaN in a NOT NULL column and a missing value is better said than guessed), so
the same call behaves the same on every backend. Log a sentinel or skip the point instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.store import now_ms
from shipyard.tracking.entities import Metric

MAX_KEY_LENGTH = 255
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000


def check_key(key: Any, kind: str) -> str:
    """A key is a non-empty string of at most 255 characters with no '..' and no leading '/'."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"{kind} key {key!r} is empty or not a string; give a name such as 'auc'", {"field": kind})
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}... is {len(key)} characters; keep keys at most {MAX_KEY_LENGTH}",
            {"field": kind, "key": key[:MAX_KEY_LENGTH]},
        )
    if key.startswith("/") or ".." in key or "\x00" in key:
        raise InvalidInput(
            f"{kind} key {key!r} may not start with '/' or contain '..'; use names like 'val/auc'",
            {"field": kind, "key": key},
        )
    return key


def _text(value: Any, key: str, kind: str, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise InvalidInput(
            f"{kind} {key!r} has a value of {len(text)} characters; the limit is {limit}; log long text "
            "with log_text() as an artifact",
            {"field": kind, "key": key},
        )
    return text


def check_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        out[check_key(key, "param")] = _text(value, key, "param", MAX_PARAM_VALUE_LENGTH)
    return out


def check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        out[check_key(key, "tag")] = _text(value, key, "tag", MAX_TAG_VALUE_LENGTH)
    return out


def check_value(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(
            f"metric {key!r} has value {value!r} of type {type(value).__name__}; metrics are numbers",
            {"field": "metric", "key": key},
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(
            f"metric {key!r} is {number}; only finite numbers are stored (skip the point or log a sentinel)",
            {"field": "metric", "key": key},
        )
    return number


def _int(value: Any, key: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidInput(f"metric {key!r} has {name} {value!r}; {name} must be an integer", {"field": name, "key": key})
    return int(value)


MetricRow = tuple[str, float, int, int]


def check_metrics(points: Iterable[Any], default_step: int | None = None) -> list[MetricRow]:
    """Normalise ``(key, value[, step[, timestamp]])`` tuples, dicts or Metric objects into
    ``(key, value, step, timestamp)`` tuples; a missing step is 0, a missing timestamp now."""
    now = now_ms()
    out: list[MetricRow] = []
    good_keys: set[str] = set()
    isfinite = math.isfinite
    for point in points:
        if type(point) is tuple and len(point) == 4:
            key, value, step, ts = point
        elif type(point) is tuple and 2 <= len(point) <= 3:
            key, value, step, ts = point + (None,) * (4 - len(point))
        elif isinstance(point, Metric):
            key, value, step, ts = point.key, point.value, point.step, point.timestamp
        elif isinstance(point, Mapping):
            key, value = point.get("key"), point.get("value")
            step, ts = point.get("step"), point.get("timestamp")
        else:
            try:
                key, value, *rest = point
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"metric point {point!r} is not (key, value, step, timestamp)", {"field": "metrics"}
                ) from None
            step = rest[0] if len(rest) > 0 else None
            ts = rest[1] if len(rest) > 1 else None
        if key not in good_keys:
            good_keys.add(check_key(key, "metric"))
        # fast path for the common types; everything else goes through the full checks
        if type(value) is float and isfinite(value):
            number = value
        elif type(value) is int:
            number = float(value)
        else:
            number = check_value(key, value)
        step = default_step if step is None else step
        step = 0 if step is None else step if type(step) is int else _int(step, key, "step")
        ts = now if ts is None else ts if type(ts) is int else _int(ts, key, "timestamp")
        out.append((key, number, step, ts))
    return out
