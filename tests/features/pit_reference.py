"""A naive point-in-time join written for clarity, not speed: the reference engines are checked against.

For every entity row, scan every view row: keep rows with equal keys and event time <= row time,
pick the greatest (event time, created time); null if none, or if older than the row time minus TTL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def naive_pit(entity_rows: list[dict[str, Any]], view_rows: list[dict[str, Any]], keys: list[str], ts: str,
              features: list[str], ttl: timedelta | None, created: str | None = None,
              entity_ts: str = "event_timestamp") -> list[dict[str, Any]]:
    out = []
    for row in entity_rows:
        best: dict[str, Any] | None = None
        best_key: tuple[datetime, datetime] | None = None
        for cand in view_rows:
            if any(cand[k] != row[k] for k in keys) or cand[ts] > row[entity_ts]:
                continue
            order = (cand[ts], cand[created] if created else datetime.min)
            if best_key is None or order > best_key:
                best, best_key = cand, order
        if best is not None and ttl is not None and best[ts] < row[entity_ts] - ttl:
            best = None
        out.append({f: (best[f] if best is not None else None) for f in features})
    return out
