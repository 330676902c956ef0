"""The embedded LMDB online store (``online_store: lmdb``), for read-heavy single-writer use.

Key = view NUL encoded entity key; value = 8-byte event time in µs + JSON row of feature values.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import require
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

_TS = struct.Struct(">q")
_ENVS: dict[str, Any] = {}
_ENVS_LOCK = threading.Lock()


def _open_env(path: Path, map_size: int) -> Any:
    # LMDB forbids opening one environment twice in a process; share it.
    lmdb = require("lmdb", "lmdb")
    key = str(path.resolve())
    with _ENVS_LOCK:
        env = _ENVS.get(key)
        if env is None:
            path.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(key, map_size=map_size, max_dbs=4, subdir=True, lock=True, readahead=False)
            _ENVS[key] = env
        return env


class LMDBOnlineStore(EncodedOnlineStore):
    """One LMDB environment; key = view NUL entity-key, value = 8-byte event time + JSON row."""

    kind = "lmdb"

    def __init__(self, path: str | Path, map_size: int = 1 << 36) -> None:
        self.path = Path(path)
        self.env = _open_env(self.path, map_size)
        self._rows = self.env.open_db(b"rows")
        self._meta = self.env.open_db(b"views")
        self._seen = self.env.open_db(b"seen")

    @staticmethod
    def _key(view: str, ek: bytes) -> bytes:
        return view.encode() + b"\x00" + ek

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
        if not keys:
            return WriteResult(status=[] if with_status else None)
        return self._write(view, [encode_key(k) for k in keys], [to_micros(t) for t in event_ts],
                           lambda i: encode_row(values[i]), version, overwrite_equal, with_status, dedupe_window)

    def write_encoded(self, view: str, keys: list[bytes], stamps: list[int], rows: list[bytes],
                      version: int | None, overwrite_equal: bool) -> WriteResult:
        return self._write(view, keys, stamps, rows.__getitem__, version, overwrite_equal, False, None)

    def _write(self, view: str, encoded: list[bytes], stamps: list[int], row_at: Any, version: int | None,
               overwrite_equal: bool, with_status: bool, dedupe_window: dt.timedelta | None) -> WriteResult:
        """Conditional writes of encoded keys; ``row_at(i)`` gives row i's encoded values."""
        import orjson

        result = WriteResult(status=[] if with_status else None)
        with self.env.begin(write=True) as txn:
            rows = txn.cursor(self._rows)
            max_ts = None
            for i, ek in enumerate(encoded):
                full = self._key(view, ek)
                ts = stamps[i]
                current = rows.get(full)
                verdict = classify(None if current is None else _TS.unpack_from(current)[0], ts, overwrite_equal)
                if dedupe_window is not None and verdict != "duplicate":
                    # remember (key, ts); a stale event already seen is a replay
                    fresh = txn.put(full + b"\x00" + _TS.pack(ts), _TS.pack(now_micros()), overwrite=False,
                                    db=self._seen)
                    if verdict == "stale" and not fresh:
                        verdict = "duplicate"
                if verdict == "written":
                    rows.put(full, _TS.pack(ts) + row_at(i))
                    result.written += 1
                    max_ts = ts if max_ts is None or ts > max_ts else max_ts
                elif verdict == "duplicate":
                    result.duplicates += 1
                else:
                    result.stale += 1
                if with_status:
                    result.status.append(verdict)  # type: ignore[union-attr]
            if result.written:
                raw = txn.get(view.encode(), db=self._meta)
                meta = orjson.loads(raw) if raw else {}
                if max_ts is not None and (meta.get("max_ts") is None or max_ts > meta["max_ts"]):
                    meta["max_ts"] = max_ts
                meta["last_write"] = now_micros()
                if version is not None:
                    meta["version"] = version
                txn.put(view.encode(), orjson.dumps(meta), db=self._meta)
        return result

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
        names = list(feature_names)
        out: dict[str, list[Any]] = {name: [] for name in names}
        columns = [out[name] for name in names]
        prefix = view.encode() + b"\x00"
        with self.env.begin(db=self._rows, buffers=False) as txn:
            for key in entity_keys:
                raw = txn.get(prefix + encode_key(key))
                if raw is None or (cutoff is not None and _TS.unpack_from(raw)[0] < cutoff):
                    for column in columns:
                        column.append(None)
                    continue
                for column, value in zip(columns, pick_values(raw[8:], names), strict=True):
                    column.append(value)
        return out

    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        prefix = view.encode() + b"\x00"
        out: list[dt.datetime | None] = []
        with self.env.begin(db=self._rows) as txn:
            for key in entity_keys:
                raw = txn.get(prefix + encode_key(key))
                out.append(None if raw is None else from_micros(_TS.unpack_from(raw)[0]))
        return out

    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        prefix = view.encode() + b"\x00"
        found = []
        with self.env.begin(db=self._rows) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, raw in cursor:
                    if not key.startswith(prefix) or (limit is not None and len(found) >= limit):
                        break
                    found.append((decode_key(key[len(prefix) :]), from_micros(_TS.unpack_from(raw)[0]), decode_row(raw[8:])))
        yield from found

    def stats(self, view: str) -> ViewStats:
        import orjson

        prefix = view.encode() + b"\x00"
        count = 0
        with self.env.begin() as txn:
            cursor = txn.cursor(self._rows)
            if cursor.set_range(prefix):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(prefix):
                        break
                    count += 1
            raw = txn.get(view.encode(), db=self._meta)
        meta = orjson.loads(raw) if raw else {}
        max_ts, last = meta.get("max_ts"), meta.get("last_write")
        return ViewStats(count, from_micros(max_ts) if max_ts else None, from_micros(last) if last else None)

    def delete_view(self, view: str) -> int:
        prefix = view.encode() + b"\x00"
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(self._rows)
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break
                    removed += 1
            txn.delete(view.encode(), db=self._meta)
            seen = txn.cursor(self._seen)
            if seen.set_range(prefix):
                while seen.key().startswith(prefix):
                    if not seen.delete():
                        break
        return removed
