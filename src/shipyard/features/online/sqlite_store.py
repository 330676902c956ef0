"""The embedded SQLite online store (the default): one file next to the project.

Chosen as the default after measuring it against LMDB (docs/benchmarks.md, "Online store
choice"): reads are within a few microseconds of LMDB, batch writes are comparable, and SQLite
needs no extra package, tolerates several writer processes and is easy to inspect.

Rows are stored as (view, encoded entity key) → (event time in µs, JSON row of feature values).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from shipyard.features.online.base import (
    EncodedOnlineStore,
    ViewStats,
    WriteResult,
    classify,
    decode_key,
    decode_row,
    encode_key,
    encode_row,
    from_micros,
    now_micros,
    pick_values,
    to_micros,
    ttl_cutoff,
)

_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_rows (
    view TEXT NOT NULL, ek BLOB NOT NULL, ts INTEGER NOT NULL, val BLOB NOT NULL,
    PRIMARY KEY (view, ek)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_seen (
    view TEXT NOT NULL, ek BLOB NOT NULL, ts INTEGER NOT NULL, seen_at INTEGER NOT NULL,
    PRIMARY KEY (view, ek, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_views (
    view TEXT PRIMARY KEY, version INTEGER, max_ts INTEGER, last_write INTEGER
);
"""




class SQLiteOnlineStore(EncodedOnlineStore):
    """One SQLite file in WAL mode; a connection per thread."""

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._writes = 0
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            # 64 MB of page cache: bulk upserts of a few hundred thousand rows stay in memory
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def write_batch(
        self,
        view: str,
        keys: Sequence[Sequence[Any]],
        values: Sequence[Mapping[str, Any]],
        event_ts: Sequence[Any],
        *,
        version: int | None = None,
        overwrite_equal: bool = False,
        with_status: bool = False,
        dedupe_window: dt.timedelta | None = None,
    ) -> WriteResult:
        result = WriteResult(status=[] if with_status else None)
        if not keys:
            return result
        encoded = [encode_key(k) for k in keys]
        stamps = [to_micros(t) for t in event_ts]
        conn = self._conn()
        if not with_status and dedupe_window is None:
            rows = [(view, ek, ts, encode_row(row)) for ek, ts, row in zip(encoded, stamps, values, strict=True)]
            return self._upsert(conn, view, rows, version, overwrite_equal)
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored: dict[bytes, int] = {}
            unique = list(dict.fromkeys(encoded))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for ek, ts in conn.execute(
                    f"SELECT ek, ts FROM online_rows WHERE view = ? AND ek IN ({marks})", (view, *chunk)
                ):
                    stored[ek] = ts
            pending: dict[bytes, tuple[int, bytes]] = {}
            seen: dict[tuple[bytes, int], None] = {}
            max_ts = None
            for i, ek in enumerate(encoded):
                ts = stamps[i]
                verdict = classify(stored.get(ek), ts, overwrite_equal)
                if dedupe_window is not None and verdict != "duplicate":
                    if verdict == "stale" and ((ek, ts) in seen or conn.execute(
                        "SELECT 1 FROM online_seen WHERE view = ? AND ek = ? AND ts = ?", (view, ek, ts)
                    ).fetchone()):
                        verdict = "duplicate"
                    else:
                        seen[(ek, ts)] = None
                if verdict == "written":
                    stored[ek] = ts
                    pending[ek] = (ts, encode_row(values[i]))
                    result.written += 1
                    max_ts = ts if max_ts is None or ts > max_ts else max_ts
                elif verdict == "duplicate":
                    result.duplicates += 1
                else:
                    result.stale += 1
                if with_status:
                    result.status.append(verdict)  # type: ignore[union-attr]
            if seen:
                stamp = now_micros()
                conn.executemany("INSERT OR IGNORE INTO online_seen (view, ek, ts, seen_at) VALUES (?, ?, ?, ?)",
                                 [(view, ek, ts, stamp) for ek, ts in seen])
                self._writes += 1
                if self._writes % 500 == 0:
                    horizon = stamp - int(dedupe_window.total_seconds() * 1e6)  # type: ignore[union-attr]
                    conn.execute("DELETE FROM online_seen WHERE view = ? AND seen_at < ?", (view, horizon))
            if pending:
                conn.executemany(
                    "INSERT INTO online_rows (view, ek, ts, val) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (view, ek) DO UPDATE SET ts = excluded.ts, val = excluded.val",
                    [(view, ek, ts, val) for ek, (ts, val) in pending.items()],
                )
                conn.execute(
                    "INSERT INTO online_views (view, version, max_ts, last_write) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (view) DO UPDATE SET version = coalesce(excluded.version, version), "
                    "max_ts = max(coalesce(max_ts, excluded.max_ts), excluded.max_ts), last_write = excluded.last_write",
                    (view, version, max_ts, now_micros()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def write_encoded(self, view: str, keys: list[bytes], stamps: list[int], rows: list[bytes],
                      version: int | None, overwrite_equal: bool) -> WriteResult:
        return self._upsert(self._conn(), view, list(zip([view] * len(keys), keys, stamps, rows, strict=True)),
                            version, overwrite_equal)

    def _upsert(self, conn: sqlite3.Connection, view: str, rows: list[tuple[str, bytes, int, bytes]],
                version: int | None, overwrite_equal: bool) -> WriteResult:
        """Bulk conditional upsert of (view, key, event µs, row) without per-row status: rows not
        written are counted as stale."""
        newer = ">=" if overwrite_equal else ">"
        # In key order the B-tree is filled page by page instead of touching a random page per row.
        # A key repeated in the batch keeps its input order (the sort is stable), as the upsert needs.
        rows.sort(key=itemgetter(1))
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO online_rows (view, ek, ts, val) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (view, ek) DO UPDATE SET ts = excluded.ts, val = excluded.val "
                f"WHERE excluded.ts {newer} online_rows.ts",
                rows,
            )
            written = conn.total_changes - before
            if written:
                conn.execute(
                    "INSERT INTO online_views (view, version, max_ts, last_write) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (view) DO UPDATE SET version = coalesce(excluded.version, version), "
                    "max_ts = max(coalesce(max_ts, excluded.max_ts), excluded.max_ts), last_write = excluded.last_write",
                    (view, version, max(row[2] for row in rows), now_micros()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return WriteResult(written=written, stale=len(rows) - written)

    def read(
        self,
        view: str,
        feature_names: Sequence[str],
        entity_keys: Sequence[Sequence[Any]],
        *,
        ttl: dt.timedelta | None = None,
        now: Any = None,
    ) -> dict[str, list[Any]]:
        cutoff = ttl_cutoff(ttl, now)
        conn = self._conn()
        names = list(feature_names)
        out: dict[str, list[Any]] = {name: [] for name in names}
        columns = [out[name] for name in names]
        if len(entity_keys) == 1:
            found = conn.execute(
                "SELECT ts, val FROM online_rows WHERE view = ? AND ek = ?", (view, encode_key(entity_keys[0]))
            ).fetchone()
            rows = {0: found} if found else {}
            lookup = [0]
        else:
            encoded = [encode_key(k) for k in entity_keys]
            rows = {}
            unique = list(dict.fromkeys(encoded))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for ek, ts, val in conn.execute(
                    f"SELECT ek, ts, val FROM online_rows WHERE view = ? AND ek IN ({marks})", (view, *chunk)
                ):
                    rows[ek] = (ts, val)
            lookup = encoded
        for ek in lookup:
            hit = rows.get(ek)
            if hit is None or (cutoff is not None and hit[0] < cutoff):
                for column in columns:
                    column.append(None)
                continue
            for column, value in zip(columns, pick_values(hit[1], names), strict=True):
                column.append(value)
        return out

    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        encoded = [encode_key(k) for k in entity_keys]
        found: dict[bytes, int] = {}
        unique = list(dict.fromkeys(encoded))
        conn = self._conn()
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for ek, ts in conn.execute(
                f"SELECT ek, ts FROM online_rows WHERE view = ? AND ek IN ({marks})", (view, *chunk)
            ):
                found[ek] = ts
        return [from_micros(found[ek]) if ek in found else None for ek in encoded]

    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        query = "SELECT ek, ts, val FROM online_rows WHERE view = ?"
        params: tuple[Any, ...] = (view,)
        if limit is not None:
            query += " LIMIT ?"
            params = (view, int(limit))
        for ek, ts, val in self._conn().execute(query, params).fetchall():
            yield decode_key(ek), from_micros(ts), decode_row(val)

    def stats(self, view: str) -> ViewStats:
        conn = self._conn()
        (count,) = conn.execute("SELECT count(*) FROM online_rows WHERE view = ?", (view,)).fetchone()
        meta = conn.execute("SELECT max_ts, last_write FROM online_views WHERE view = ?", (view,)).fetchone()
        if meta is None:
            return ViewStats(count, None, None)
        return ViewStats(
            count,
            from_micros(meta[0]) if meta[0] is not None else None,
            from_micros(meta[1]) if meta[1] is not None else None,
        )

    def delete_view(self, view: str) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            removed = conn.execute("DELETE FROM online_rows WHERE view = ?", (view,)).rowcount
            conn.execute("DELETE FROM online_seen WHERE view = ?", (view,))
            conn.execute("DELETE FROM online_views WHERE view = ?", (view,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return removed

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._conns.clear()
        self._local = threading.local()


