"""Feature monitoring: per view, what was materialized, how fresh it is and what it looks like.

``monitor(store)`` reports for every online feature view:

- ``online``: entities stored, newest event time, last write and ``freshness_seconds``
  (now - newest event time), and the share of entities whose row is older than the TTL;
- ``materialization``: the last run (window, rows read and written, status) and totals;
- ``features``: per feature, the missing rate and distribution (count, mean, std, min, max,
  quantiles; top values for strings) of the values served now, computed over up to ``sample``
  entities of the online store.

The monitoring subsystem's alert rules read these numbers; the API and CLI print them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_ARROW = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(), "bool": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC")}


def _numeric_stats(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "quantiles": {}}
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"p{int(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES},
    }


def column_stats(table: pa.Table, fields: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Missing rate and distribution of each field's column (NaN counts as missing)."""
    out: dict[str, dict[str, Any]] = {}
    n = table.num_rows
    for f in fields:
        name, dtype = f.name, f.dtype
        if name not in table.column_names:
            continue
        column = table.column(name)
        entry: dict[str, Any] = {"dtype": dtype, "count": n}
        if dtype in ("float64", "int64", "bool"):
            data = column.cast(pa.float64()).to_numpy(zero_copy_only=False) if n else np.array([], dtype=float)
            present = data[~np.isnan(data)]
            missing = n - int(present.size)
            entry.update(_numeric_stats(present))
        elif dtype == "timestamp":
            values = [v for v in column.to_pylist() if v is not None]
            missing = n - len(values)
            entry["min"] = min(values).isoformat() if values else None
            entry["max"] = max(values).isoformat() if values else None
        else:
            values = [v for v in column.to_pylist() if v is not None]
            missing = n - len(values)
            counts = Counter(values)
            entry["distinct"] = len(counts)
            entry["top"] = [{"value": v, "count": c} for v, c in counts.most_common(5)]
        entry["missing"] = missing
        entry["missing_rate"] = missing / n if n else None
        out[name] = entry
    return out


def online_snapshot(store: Any, view: Any, *, sample: int = 100_000, now: dt.datetime | None = None) -> dict[str, Any]:
    """Freshness, expiry and feature distributions of what the online store serves for ``view``."""
    from shipyard.features.online import online_store_of

    online = online_store_of(store)
    now = now or dt.datetime.now(dt.UTC)
    stats = online.stats(view.name)
    cutoff = now - view.ttl if getattr(view, "ttl", None) else None
    rows: dict[str, list[Any]] = {f.name: [] for f in view.fields}
    scanned = expired = 0
    for _key, event_ts, values in online.scan(view.name, limit=sample):
        scanned += 1
        if cutoff is not None and event_ts < cutoff:
            expired += 1
            continue
        for f in view.fields:
            rows[f.name].append(values.get(f.name))
    table = pa.table({f.name: pa.array(rows[f.name], type=_ARROW.get(f.dtype)) for f in view.fields})
    return {
        "entities": stats.entities,
        "max_event_ts": stats.max_event_ts.isoformat() if stats.max_event_ts else None,
        "last_write": stats.last_write.isoformat() if stats.last_write else None,
        "freshness_seconds": (now - stats.max_event_ts).total_seconds() if stats.max_event_ts else None,
        "scanned": scanned,
        "expired": expired,
        "expired_rate": expired / scanned if scanned else None,
        "features": column_stats(table, view.fields),
    }


def materialization_summary(store: Any, view: str) -> dict[str, Any]:
    """The last materialization run of ``view`` and totals over all runs."""
    from shipyard.features.online import workspace_of
    from shipyard.store.schema import feature_materializations as runs

    with workspace_of(store).store.read() as conn:
        last = conn.execute(sa.select(runs).where(runs.c.view == view).order_by(runs.c.id.desc()).limit(1)).first()
        totals = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(runs.c.rows), 0)).where(
            runs.c.view == view, runs.c.status == "succeeded")).first()
    if last is None:
        return {"runs": 0, "rows_written_total": 0, "last_run": None}
    row = last._mapping
    details = dict(row["details"] or {})

    def iso(ms: int | None) -> str | None:
        return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()

    return {
        "runs": int(totals[0]),
        "rows_written_total": int(totals[1]),
        "last_run": {
            "id": row["id"], "status": row["status"], "mode": details.get("mode"), "view_version": row["view_version"],
            "start": iso(row["start_ts"]), "end": iso(row["end_ts"]), "rows_written": row["rows"],
            "rows_read": details.get("rows_read"), "seconds": details.get("seconds"),
            "started_at": iso(row["started_at"]), "finished_at": iso(row["finished_at"]),
            "error": details.get("error"), "stats": details.get("stats"),
        },
    }


def monitor(store: Any, views: Sequence[str] | None = None, *, sample: int = 100_000,
            now: dt.datetime | None = None) -> dict[str, Any]:
    """Monitoring report for ``views`` (default: every online feature view)."""
    now = now or dt.datetime.now(dt.UTC)
    if views:
        chosen = [store.get_view(v) for v in views]
    else:
        chosen = [v for v in store.list_views() if hasattr(v, "timestamp_field") and getattr(v, "online", True)]
    report = []
    for view in chosen:
        report.append({
            "view": view.name,
            "version": getattr(view, "version", None),
            "ttl_seconds": view.ttl.total_seconds() if getattr(view, "ttl", None) else None,
            "online": online_snapshot(store, view, sample=sample, now=now),
            "materialization": materialization_summary(store, view.name),
        })
    return {"generated_at": now.isoformat(), "views": report}
