"""The online store interface and the encoding every backend shares.

An online store keeps, per feature view and entity key, the latest row of feature values and its
event timestamp. Writes are conditional on event time: a row replaces the stored one only when its
event timestamp is newer (or equal, when ``overwrite_equal`` is set), so replaying a batch or a
stream is idempotent on (entity key, event timestamp) and late events never hide fresher values.
Reads return one column per requested feature with ``None`` for entities that are missing or whose
row is older than the view's TTL.

Push and stream writes pass ``dedupe_window``: the store then remembers each (entity key, event
time) for that long, so a replayed event older than the stored one is recognised as a duplicate
rather than a late event (which would otherwise be logged offline a second time).

Values keep their type: int, float, str and bool round-trip as themselves and timestamps come back
as timezone-aware ``datetime`` objects.

Bulk writes (``write_table``, used by materialization) encode whole Arrow columns at once
(``encode_key_column``, ``encode_value_column``, ``encode_row_column``) into the same JSON the
per-row encoders produce (floats may differ only in exponent notation), so rows written either
way read back as the same typed values.
"""

from __future__ import annotations

import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.jsontypes import JSON

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_TS_TAG = "$ts"
_TS_MARK = b'"$ts"'
_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


@dataclass
class WriteResult:
    """What one ``write_batch`` did: rows stored, and rows skipped as duplicates or stale.

    Without ``with_status`` a backend may count every skipped row as stale."""

    written: int = 0
    duplicates: int = 0
    stale: int = 0
    # Per input row: "written", "duplicate" (same event ts already stored) or "stale" (older).
    status: list[str] | None = None

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.written += other.written
        self.duplicates += other.duplicates
        self.stale += other.stale
        if self.status is not None and other.status is not None:
            self.status.extend(other.status)
        return self


@dataclass(frozen=True)
class ViewStats:
    """Cheap per-view facts kept by the store itself."""

    entities: int
    max_event_ts: dt.datetime | None
    last_write: dt.datetime | None


# -- encoding -----------------------------------------------------------------------------------
def to_micros(value: Any) -> int:
    """Event time as integer microseconds since the epoch (UTC); naive datetimes count as UTC."""
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return to_micros(value.to_pydatetime())
    if hasattr(value, "astype") and str(getattr(value, "dtype", "")).startswith("datetime64"):
        return int(value.astype("datetime64[us]").astype("int64"))
    if isinstance(value, str):
        return to_micros(dt.datetime.fromisoformat(value))
    raise TypeError(f"cannot use {value!r} as an event timestamp")


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def now_micros() -> int:
    return time.time_ns() // 1000


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_TS_TAG: to_micros(value)}
    if hasattr(value, "to_pydatetime"):
        return {_TS_TAG: to_micros(value)}
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"value {value!r} of type {type(value).__name__} cannot be stored online")


def encode_key(key: Sequence[Any]) -> bytes:
    """Entity key (tuple of join-key values in the view's join-key order) as bytes."""
    if len(key) == 1 and type(key[0]) is int:  # the common key, as orjson writes it
        return b"[%d]" % key[0]
    return orjson.dumps(list(key), default=_default, option=_DUMPS_OPTS)


def decode_key(raw: bytes) -> tuple[Any, ...]:
    return tuple(orjson.loads(raw))


def encode_value(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_DUMPS_OPTS)


def decode_value(raw: bytes | str | None) -> JSON | dt.datetime:
    if raw is None:
        return None
    value = orjson.loads(raw)
    if type(value) is dict and _TS_TAG in value:
        return from_micros(value[_TS_TAG])
    return value


def encode_row(row: Mapping[str, Any]) -> bytes:
    # datetimes pass through orjson to ``_default``, which tags them
    return orjson.dumps(row, default=_default, option=_DUMPS_OPTS)


def decode_row(raw: bytes) -> dict[str, Any]:
    row = orjson.loads(raw)
    if _TS_MARK not in raw:
        return row
    for name, value in row.items():
        if type(value) is dict and _TS_TAG in value:
            row[name] = from_micros(value[_TS_TAG])
    return row


# -- bulk encoding of Arrow columns -------------------------------------------------------------
def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of binary arrays and byte literals."""
    return pc.binary_join_element_wise(*parts, b"")


def _as_binary(values: list[bytes]) -> pa.Array:
    return pa.array(values, pa.binary())


def encode_value_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``encode_value`` of every element, computed column-wise for numbers, booleans and timestamps.

    Floats print as their shortest round-trip decimal (Arrow's formatter), with ``.0`` added to
    integral values so they read back as floats; NaN and infinities become ``null`` as orjson does.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_floating(kind):
        column = column.cast(pa.float64())
        finite = pc.is_finite(column)
        text = pc.cast(column, pa.string())
        plain = pc.invert(pc.match_substring_regex(text, r"[.en]"))
        text = pc.if_else(plain, pc.binary_join_element_wise(text, ".0", ""), text)
        text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_timestamp(kind):
        # nanoseconds are truncated, as the per-row path (via datetime) does
        micros = column.cast(pa.timestamp("us", tz=kind.tz), safe=False).cast(pa.int64())
        text = pc.binary_join_element_wise('{"$ts":', pc.cast(micros, pa.string()), "}", "")
    else:  # strings need JSON escaping; anything else goes through the per-value encoder
        return _as_binary([encode_value(v) for v in column.to_pylist()])
    return pc.fill_null(text, "null").cast(pa.binary())


def encode_key_column(table: pa.Table, join_keys: Sequence[str]) -> pa.Array:
    """``encode_key`` of every row's join-key values."""
    parts: list[Any] = [b"["]
    for i, name in enumerate(join_keys):
        column = table.column(name).combine_chunks()
        if i:
            parts.append(b",")
        if pa.types.is_integer(column.type) and column.null_count == 0:
            parts.append(pc.cast(column, pa.string()).cast(pa.binary()))
        else:
            parts.append(_as_binary([encode_value(v) for v in column.to_pylist()]))
    parts.append(b"]")
    return _join(*parts)


def encode_row_column(table: pa.Table, names: Sequence[str]) -> pa.Array:
    """``encode_row`` of every row restricted to ``names``, as one binary array."""
    parts: list[Any] = []
    for i, name in enumerate(names):
        parts.append(("{" if i == 0 else ",").encode() + orjson.dumps(name) + b":")
        parts.append(encode_value_column(table.column(name)))
    if not parts:
        return pa.array([b"{}"] * table.num_rows, pa.binary())
    parts.append(b"}")
    return _join(*parts)


def micros_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Event times of a column as int64 microseconds since the epoch (UTC)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz=column.type.tz), safe=False).cast(pa.int64())
    return pa.array([to_micros(v) for v in column.to_pylist()], pa.int64())


def ttl_cutoff(ttl: dt.timedelta | None, now: Any = None) -> int | None:
    """Oldest event time (micros) still served under ``ttl``; None when the view never expires."""
    if ttl is None or not ttl:
        return None
    current = now_micros() if now is None else to_micros(now)
    return current - int(ttl.total_seconds() * 1_000_000)


# -- interface ----------------------------------------------------------------------------------
class OnlineStore(ABC):
    """Latest feature values per (view, entity key). Implementations: embedded SQLite, LMDB, Redis."""

    kind: str = "abstract"

    @abstractmethod
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
        """Store rows whose event time is newer than what is stored; return what happened.

        With ``dedupe_window`` the store also remembers every (entity key, event time) it saw for
        that long, so a replayed *older* event is reported as a duplicate instead of stale.
        """

    @abstractmethod
    def read(
        self,
        view: str,
        feature_names: Sequence[str],
        entity_keys: Sequence[Sequence[Any]],
        *,
        ttl: dt.timedelta | None = None,
        now: Any = None,
    ) -> dict[str, list[Any]]:
        """One list per feature, aligned with ``entity_keys``; None where missing or expired."""

    def write_table(
        self,
        view: str,
        table: pa.Table,
        join_keys: Sequence[str],
        timestamp_field: str,
        feature_names: Sequence[str],
        *,
        version: int | None = None,
        overwrite_equal: bool = False,
    ) -> WriteResult:
        """``write_batch`` for rows held in an Arrow table (materialization); no per-row status.

        Backends override it to encode whole columns at once; this default goes row by row."""
        keys = list(zip(*(table.column(k).to_pylist() for k in join_keys), strict=True))
        values = table.select(list(feature_names)).to_pylist()
        return self.write_batch(view, keys, values, micros_column(table.column(timestamp_field)).to_pylist(),
                                version=version, overwrite_equal=overwrite_equal)

    def read_many(
        self, requests: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]], dt.timedelta | None]],
        now: Any = None,
    ) -> list[dict[str, list[Any]]]:
        """Several ``read`` calls, as (view, feature names, entity keys, ttl); one round trip where
        the backend allows."""
        return [self.read(view, names, keys, ttl=ttl, now=now) for view, names, keys, ttl in requests]

    def prepare_read(
        self, views: Sequence[tuple[str, Sequence[str], dt.timedelta | None]]
    ) -> Callable[..., list[dict[str, list[Any]]]]:
        """A reader for a fixed list of (view, feature names, ttl), called as ``read(keys_per_view,
        now=None)`` with one list of entity keys per view; returns what ``read_many`` would.
        Backends prepare what does not change between calls (the online read path calls it once
        per feature plan)."""
        spec = list(views)

        def read(keys_per_view: Sequence[Sequence[Sequence[Any]]], now: Any = None) -> list[dict[str, list[Any]]]:
            return self.read_many([(view, names, keys, ttl) for (view, names, ttl), keys
                                   in zip(spec, keys_per_view, strict=True)], now=now)

        return read

    @abstractmethod
    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        """Stored event time per entity key (None when absent); used by push and streams."""

    @abstractmethod
    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        """Every stored (entity key, event time, values) of a view, in no particular order."""

    @abstractmethod
    def stats(self, view: str) -> ViewStats:
        """Entity count, newest event time and last write time of a view."""

    @abstractmethod
    def delete_view(self, view: str) -> int:
        """Remove every row of a view; return how many entity rows were removed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def classify(stored: int | None, incoming: int, overwrite_equal: bool) -> str:
    """Decide a conditional write: "written", "duplicate" or "stale"."""
    if stored is None or incoming > stored:
        return "written"
    if incoming == stored:
        return "written" if overwrite_equal else "duplicate"
    return "stale"


class EncodedOnlineStore(OnlineStore):
    """A store that writes Arrow tables by encoding whole columns at once (keys, event times in µs,
    JSON rows) and storing the encoded lists: the embedded SQLite and LMDB stores."""

    def write_table(
        self,
        view: str,
        table: pa.Table,
        join_keys: Sequence[str],
        timestamp_field: str,
        feature_names: Sequence[str],
        *,
        version: int | None = None,
        overwrite_equal: bool = False,
    ) -> WriteResult:
        if table.num_rows == 0:
            return WriteResult()
        return self.write_encoded(view, encode_key_column(table, join_keys).to_pylist(),
                                  micros_column(table.column(timestamp_field)).to_pylist(),
                                  encode_row_column(table, feature_names).to_pylist(), version, overwrite_equal)

    @abstractmethod
    def write_encoded(self, view: str, keys: list[bytes], stamps: list[int], rows: list[bytes],
                      version: int | None, overwrite_equal: bool) -> WriteResult:
        """Conditional writes of encoded rows (no per-row status); rows not written count as stale."""


def pick_values(raw: bytes, names: Sequence[str]) -> list[Any]:
    """The values of ``names`` in an encoded JSON row, in that order (missing names give None)."""
    row = decode_row(raw)
    return [row.get(name) for name in names]
