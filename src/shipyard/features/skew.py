"""Training/serving skew: logged served vectors against the offline point-in-time recomputation.

``skew(store, "cust_stats" | "risk_service", start, end)`` reads the vectors logged with
``log_features`` in [start, end), rebuilds the same rows with ``get_training_set`` (entity keys and
request fields from the log, the log timestamp as the point in time) and compares every feature:

- values match when both are missing, or equal (numbers within ``rtol``·max(1, |offline|));
- per feature: rows compared, mismatches, mismatch rate, mismatches where only one side is
  missing, the largest and mean absolute numeric difference, and the ``top`` largest differences
  with their request id, time and entity.

A logged feature is found under its reference (``view:feature``), ``view__feature`` or its plain
name, in that order; features never logged are listed in ``not_logged``. Every logged vector that
carries any of the target's features is compared — also one whose served features are all missing,
which is what a missed materialization looks like (the offline recomputation has values) — while
vectors logged for other views or services, which carry none of them, are left out.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from shipyard.errors import InvalidInput, NotFound
from shipyard.features.logging import feature_log_frame, read_logged_vectors

_TS_COLUMN = "event_timestamp"


@dataclass
class FeatureSkew:
    feature: str
    compared: int = 0
    mismatches: int = 0
    mismatch_rate: float = 0.0
    null_mismatches: int = 0
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    top: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SkewReport:
    target: str
    start: str | None
    end: str | None
    rows: int = 0
    rows_with_mismatch: int = 0
    mismatch_rate: float = 0.0
    features: list[FeatureSkew] = field(default_factory=list)
    not_logged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def feature(self, ref: str) -> FeatureSkew:
        for f in self.features:
            if f.feature == ref:
                return f
        raise KeyError(ref)


def _refs(store: Any, target: str) -> list[str]:
    try:
        view = store.get_view(target)
    except NotFound:
        view = None
    if view is not None:
        return [f"{view.name}:{f.name}" for f in view.fields]
    try:
        return list(store.get_service(target).features)
    except NotFound:
        raise NotFound(f"{target!r} is neither a feature view nor a feature service; name one that is applied",
                       {"field": "target"}) from None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _same(served: Any, offline: Any, rtol: float) -> tuple[bool, float | None]:
    """(equal?, absolute difference when both are numbers)."""
    if _missing(served) and _missing(offline):
        return True, None
    if _missing(served) or _missing(offline):
        return False, None
    a, b = _numeric(served), _numeric(offline)
    if a is not None and b is not None:
        diff = abs(a - b)
        return diff <= rtol * max(1.0, abs(b)), diff
    if isinstance(served, dt.datetime) or isinstance(offline, pd.Timestamp | dt.datetime):
        return pd.Timestamp(served) == pd.Timestamp(offline), None
    if hasattr(offline, "item"):
        offline = offline.item()
    return served == offline, None


def skew(store: Any, target: str, start: Any = None, end: Any = None, *, rtol: float = 1e-9,
         top: int = 5) -> SkewReport:
    """Compare served (logged) feature values with the offline recomputation for ``target``."""
    refs = _refs(store, target)
    vectors = read_logged_vectors(store, start, end)
    logs = feature_log_frame(vectors)
    report = SkewReport(target, None if start is None else pd.Timestamp(start).isoformat(),
                        None if end is None else pd.Timestamp(end).isoformat())
    logged = set(logs.attrs.get("feature_columns", []))
    columns: dict[str, str] = {}
    for ref in refs:
        view, name = ref.split(":", 1)
        for candidate in (ref, f"{view}__{name}", name):
            if candidate in logged:
                columns[ref] = candidate
                break
        else:
            report.not_logged.append(ref)
    if not columns:
        return report
    # vectors that served any of these features, even as missing values (not vectors of other targets)
    wanted = set(columns.values())
    served = [not wanted.isdisjoint(features) for _, _, _, features in vectors]
    rows = logs[served] if len(logs) else logs
    if rows.empty:
        return report
    entity_cols = [c for c in logs.attrs.get("entity_columns", []) if c in rows.columns]
    if _TS_COLUMN in entity_cols:
        raise InvalidInput(f"logged entity keys contain {_TS_COLUMN!r}, which skew uses for the log time",
                           {"field": _TS_COLUMN})
    entity_df = rows[entity_cols].copy()
    entity_df[_TS_COLUMN] = pd.to_datetime(rows["ts"], utc=True)
    entity_df = entity_df.reset_index(drop=True)
    offline = store.get_training_set(entity_df, features=list(columns), timestamp_column=_TS_COLUMN,
                                     full_feature_names=True)
    rows = rows.reset_index(drop=True)
    report.rows = len(rows)
    any_mismatch = [False] * len(rows)
    for ref, column in columns.items():
        view, name = ref.split(":", 1)
        recomputed = offline[f"{view}__{name}"].tolist()
        served = rows[column].tolist()
        entry = FeatureSkew(ref)
        diffs: list[tuple[float, int]] = []
        total_diff = 0.0
        numeric = 0
        for i, (a, b) in enumerate(zip(served, recomputed, strict=True)):
            entry.compared += 1
            equal, diff = _same(a, b, rtol)
            if diff is not None and not math.isnan(diff):
                total_diff += diff
                numeric += 1
            if equal:
                continue
            entry.mismatches += 1
            any_mismatch[i] = True
            if diff is None:
                entry.null_mismatches += 1 if (_missing(a) or _missing(b)) else 0
            diffs.append((math.inf if diff is None else diff, i))
        if numeric:
            finite = [d for d, _ in diffs if d != math.inf]
            entry.max_abs_diff = max(finite) if finite else 0.0
            entry.mean_abs_diff = total_diff / numeric
        entry.mismatch_rate = entry.mismatches / entry.compared if entry.compared else 0.0
        for diff, i in sorted(diffs, key=lambda d: -d[0])[:top]:
            entry.top.append({
                "request_id": rows.at[i, "request_id"], "ts": pd.Timestamp(rows.at[i, "ts"]).isoformat(),
                "entity": {c: _plain(rows.at[i, c]) for c in entity_cols},
                "served": _plain(served[i]), "offline": _plain(recomputed[i]),
                "abs_diff": None if diff == math.inf else diff,
            })
        report.features.append(entry)
    report.rows_with_mismatch = sum(any_mismatch)
    report.mismatch_rate = report.rows_with_mismatch / report.rows if report.rows else 0.0
    return report


def _plain(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value
