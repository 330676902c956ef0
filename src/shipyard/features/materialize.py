"""Materialization: the latest offline value per entity, written into the online store.

``materialize(store, start, end)`` takes from each view's offline rows with start <= event time < end
the newest row per entity key (the created timestamp breaks ties) — chosen inside the offline scan
(``FeatureStore.read_offline_latest``), so only one row per entity is loaded — and writes them to
the online store in batches. Every run is recorded in the metadata store with the rows read and
written and the distribution of what was written (see ``monitoring``).

``materialize_incremental(store, end)`` continues each view from its watermark: the end of its
last successful run, or ``end - ttl`` (everything, without a TTL) the first time. Rows that arrive
late with an event time before the watermark are not picked up by incremental runs; re-run
``materialize`` over their window (writes are idempotent).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from shipyard.errors import InvalidInput
from shipyard.features.monitoring import column_stats
from shipyard.features.online import online_store_of, workspace_of
from shipyard.store import now_ms
from shipyard.store.schema import feature_materializations as runs

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class MaterializeResult:
    view: str
    version: int | None
    start: dt.datetime | None
    end: dt.datetime
    rows_read: int = 0
    rows_written: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    max_event_ts: dt.datetime | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("start", "end", "max_event_ts"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


def _utc(value: Any, name: str) -> dt.datetime:
    from shipyard.features.push import coerce_timestamp

    try:
        return coerce_timestamp(value).astimezone(dt.UTC)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} {value!r} is not a timestamp; give a datetime or ISO text such as "
                           "'2024-01-31T00:00:00Z'", {"field": name}) from None


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def latest_per_entity(table: pa.Table, view: Any, start: dt.datetime | None, end: dt.datetime) -> pa.Table:
    """Newest row per entity key with start <= event time < end (created timestamp breaks ties)."""
    if table.num_rows == 0:
        return table
    ts = _quote(view.timestamp_field)
    order = f"{ts} DESC"
    if getattr(view, "created_timestamp_field", None) and view.created_timestamp_field in table.column_names:
        order += f", {_quote(view.created_timestamp_field)} DESC NULLS LAST"
    keys = ", ".join(_quote(k) for k in view.join_keys)
    where = [f"{ts} < $end"]
    params: dict[str, Any] = {"end": end}
    if start is not None:
        where.append(f"{ts} >= $start")
        params["start"] = start
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("offline_rows", table)
        sql = (f"SELECT * FROM offline_rows WHERE {' AND '.join(where)} "
               f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1")
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()


def _micros(column: pa.ChunkedArray) -> list[int]:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
        return column.to_pylist()
    from shipyard.features.online.base import to_micros

    return [to_micros(v) for v in column.to_pylist()]


def _record_start(store: Any, view: Any, start: dt.datetime | None, end: dt.datetime, mode: str) -> int | None:
    ws = workspace_of(store)
    try:
        with ws.store.begin() as conn:
            res = conn.execute(runs.insert().values(
                view=view.name, view_version=int(getattr(view, "version", 0) or 0), start_ts=_ms(start),
                end_ts=_ms(end), rows=0, status="running", details={"mode": mode}, started_at=now_ms(),
                actor=ws.user))
            return int(res.inserted_primary_key[0])
    except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - schema not migrated
        log.warning("could not record materialization of %s: %s", view.name, exc)
        return None


def _record_end(store: Any, run_id: int | None, status: str, rows: int, details: dict[str, Any]) -> None:
    if run_id is None:
        return
    with workspace_of(store).store.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == run_id).values(
            status=status, rows=rows, details=details, finished_at=now_ms()))


def materialize_view(
    store: Any,
    view_name: str,
    start: Any,
    end: Any,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
    mode: str = "window",
) -> MaterializeResult:
    """Materialize one feature view over [start, end)."""
    view = store.get_view(view_name)
    if not hasattr(view, "timestamp_field"):
        raise InvalidInput(f"{view_name!r} is an on-demand feature view; it is computed at read time and "
                           "is not materialized", {"view": view_name})
    start_ts = _utc(start, "start") if start is not None else None
    end_ts = _utc(end, "end")
    if start_ts is not None and start_ts >= end_ts:
        raise InvalidInput(f"materialize window is empty: start {start_ts.isoformat()} is not before end "
                           f"{end_ts.isoformat()}", {"field": "start"})
    result = MaterializeResult(view.name, getattr(view, "version", None), start_ts, end_ts)
    run_id = _record_start(store, view, start_ts, end_ts, mode)
    result.run_id = run_id
    began = time.perf_counter()
    try:
        pushed = getattr(store, "read_offline_latest", None)
        if pushed is not None:
            latest, result.rows_read = pushed(view.name, start=start_ts, end=end_ts)
        else:  # a store that can only hand over its rows
            table = store.read_offline(view.name, start=start_ts, end=end_ts)
            result.rows_read = table.num_rows
            latest = latest_per_entity(table, view, start_ts, end_ts)
        total = latest.num_rows
        if progress is not None:
            progress(view.name, 0, total)
        online = online_store_of(store)
        names = [f.name for f in view.fields]
        for offset in range(0, total, batch_size):
            chunk = latest.slice(offset, batch_size)
            key_cols = [chunk.column(k).to_pylist() for k in view.join_keys]
            keys = list(zip(*key_cols, strict=True))
            values = chunk.select(names).to_pylist()
            written = online.write_batch(view.name, keys, values, _micros(chunk.column(view.timestamp_field)),
                                         version=result.version, overwrite_equal=True)
            result.rows_written += written.written
            result.unchanged += written.duplicates + written.stale
            if progress is not None:
                progress(view.name, min(offset + batch_size, total), total)
        if total:
            newest = pc.max(latest.column(view.timestamp_field)).as_py()
            result.max_event_ts = newest
        result.stats = column_stats(latest, view.fields)
    except BaseException as exc:
        result.seconds = time.perf_counter() - began
        _record_end(store, run_id, "failed", result.rows_written,
                    {"mode": mode, "error": f"{type(exc).__name__}: {exc}", "rows_read": result.rows_read})
        raise
    result.seconds = time.perf_counter() - began
    _record_end(store, run_id, "succeeded", result.rows_written, {
        "mode": mode, "rows_read": result.rows_read, "entities": latest.num_rows, "unchanged": result.unchanged,
        "seconds": round(result.seconds, 6), "max_event_ts": _ms(result.max_event_ts), "stats": result.stats,
    })
    log.info("materialized %s: %d rows read, %d written in %.2fs", view.name, result.rows_read,
             result.rows_written, result.seconds)
    return result


def _online_views(store: Any, views: Sequence[str] | None) -> list[str]:
    if views:
        return list(views)
    return [v.name for v in store.list_views() if hasattr(v, "timestamp_field") and getattr(v, "online", True)]


def materialize(
    store: Any,
    start: Any,
    end: Any,
    views: Sequence[str] | None = None,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> list[MaterializeResult]:
    """Materialize ``views`` (default: every online feature view) over [start, end)."""
    return [materialize_view(store, name, start, end, batch_size=batch_size, progress=progress)
            for name in _online_views(store, views)]


def watermark(store: Any, view: str) -> dt.datetime | None:
    """End of the view's last successful materialization, or None."""
    with workspace_of(store).store.read() as conn:
        found = conn.execute(sa.select(sa.func.max(runs.c.end_ts)).where(
            runs.c.view == view, runs.c.status == "succeeded")).scalar()
    return None if found is None else dt.datetime.fromtimestamp(found / 1000, tz=dt.UTC)


def materialize_incremental(
    store: Any,
    end: Any = None,
    views: Sequence[str] | None = None,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> list[MaterializeResult]:
    """Materialize each view from its watermark (or ``end - ttl`` the first time) up to ``end``."""
    end_ts = _utc(end, "end") if end is not None else dt.datetime.now(dt.UTC)
    results = []
    for name in _online_views(store, views):
        view = store.get_view(name)
        start = watermark(store, name)
        if start is None and getattr(view, "ttl", None):
            start = end_ts - view.ttl
        if start is not None and start >= end_ts:
            results.append(MaterializeResult(name, getattr(view, "version", None), start, end_ts))
            continue
        results.append(materialize_view(store, name, start, end_ts, batch_size=batch_size, progress=progress,
                                        mode="incremental"))
    return results
