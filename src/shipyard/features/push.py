"""Push: validated rows go to the online store and are appended to the view's offline log.

``push(store, "driver_stats", rows)`` accepts a pandas DataFrame, a pyarrow Table, a list of row
dicts or a dict of columns. Every row needs the view's join keys, its timestamp field and each
feature (``None`` for a missing value); a value of the wrong type fails the whole push with an
``InvalidInput`` naming the view, field and row, before anything is written.

Idempotency: a row whose (entity key, event timestamp) was already pushed (within
``DEDUPE_WINDOW``) is a duplicate; it is neither rewritten online nor appended offline again, so
retries and stream redeliveries are harmless. Rows older than what is online (late events) are not
served but still go to the offline log once, where point-in-time joins place them correctly.

A writer that died between the online write and the offline append left rows online that never
reached the offline log. When such a row comes back (a stream redelivers it, a caller retries the
push) the online store reports it as a duplicate, and that verdict alone decides: every duplicate
is looked up in the offline-log files written since it can first have been written (its event
time or, for a stream message, its publication time, whichever is earlier) and appended when none
holds it, so the offline log gets each row exactly once. A transport's own redelivery flag is not
trusted for this: a NATS server can hand a redelivered message out as a first delivery, and a
recreated consumer group or durable consumer delivers everything again as new.
"""

from __future__ import annotations

import datetime as dt
import numbers
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shipyard.errors import InvalidInput
from shipyard.features.definitions import FeatureView
from shipyard.features.online import online_store_of
from shipyard.features.paths import OFFLINE_LOG_PREFIX

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore

# How long (entity key, event time) pairs are remembered to recognise replayed late events.
DEDUPE_WINDOW = dt.timedelta(days=7)

_ARROW = {
    "float64": pa.float64(),
    "int64": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass
class PushResult:
    view: str
    rows: int = 0
    written: int = 0
    duplicates: int = 0
    stale: int = 0
    offline_rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "rows": self.rows, "written": self.written, "duplicates": self.duplicates,
                "stale": self.stale, "offline_rows": self.offline_rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PushResult:
        return cls(**{k: data[k] for k in ("view", "rows", "written", "duplicates", "stale", "offline_rows")
                      if k in data})


def as_records(rows: Any) -> list[dict[str, Any]]:
    """Rows from a DataFrame, Arrow table, list of dicts or dict of columns."""
    if isinstance(rows, pa.Table | pa.RecordBatch):
        return rows.to_pylist()
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        return rows.to_dict(orient="records")
    if isinstance(rows, Mapping):
        columns = {k: list(v) if not isinstance(v, str | bytes) and hasattr(v, "__iter__") else [v] for k, v in rows.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput(f"columns have different lengths {sorted(lengths)}; give one value per row in each",
                               {"field": "rows"})
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInput(f"row {i} is a {type(row).__name__}; give a mapping of column to value",
                                   {"field": "rows", "row": i})
            out.append(dict(row))
        return out
    raise InvalidInput(f"cannot push {type(rows).__name__}; give a DataFrame, Arrow table, list of dicts or "
                       "dict of columns", {"field": "rows"})


_MISSING_TYPES = frozenset(("NAType", "NaTType"))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return value != value
    if kind is int or kind is str or kind is bool:
        return False
    if isinstance(value, float) and value != value:
        return True
    return kind.__name__ in _MISSING_TYPES


def coerce_timestamp(value: Any) -> dt.datetime:
    """A timezone-aware datetime from a datetime, pandas Timestamp, numpy datetime64 or ISO string."""
    if type(value) is str:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if hasattr(value, "to_pydatetime"):
        return coerce_timestamp(value.to_pydatetime())
    if type(value).__name__ == "datetime64":
        import pandas as pd

        return coerce_timestamp(pd.Timestamp(value).to_pydatetime())
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise TypeError(type(value).__name__)


_EXACT: dict[str, type[int | float | str | bool]] = {"float64": float, "int64": int, "string": str, "bool": bool}
_ABSENT = object()


def coerce_value(value: Any, dtype: str) -> int | float | str | bool | dt.datetime | None:
    """``value`` as the Python type of ``dtype``; raises TypeError/ValueError when it is not one."""
    if type(value) is _EXACT.get(dtype):
        return value
    if _is_missing(value):
        return None
    if dtype == "float64":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(type(value).__name__)
        return float(value)
    if dtype == "int64":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(type(value).__name__)
        return int(value)
    if dtype == "string":
        if not isinstance(value, str):
            raise TypeError(type(value).__name__)
        return value
    if dtype == "bool":
        if type(value).__name__ not in ("bool", "bool_"):
            raise TypeError(type(value).__name__)
        return bool(value)
    if dtype == "timestamp":
        return coerce_timestamp(value)
    raise TypeError(f"unknown type {dtype}")


@dataclass
class Prepared:
    """Validated rows of one view, ready for the online and offline writes."""

    keys: list[tuple[Any, ...]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    event_ts: list[dt.datetime] = field(default_factory=list)
    created: list[dt.datetime] = field(default_factory=list)

    def records(self, view: Any, rows: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Full rows (keys, timestamps, features) for the offline log."""
        created = getattr(view, "created_timestamp_field", None)
        out = []
        for i in range(len(self.keys)) if rows is None else rows:
            record = dict(zip(view.join_keys, self.keys[i], strict=True))
            record[view.timestamp_field] = self.event_ts[i]
            if created:
                record[created] = self.created[i]
            record.update(self.values[i])
            out.append(record)
        return out


def prepare_rows(view: Any, records: Sequence[Mapping[str, Any]], *, allow_extra: bool = False,
                 errors: dict[int, InvalidInput] | None = None) -> Prepared:
    """Check and convert rows against the view's keys, timestamp and typed fields.

    The first bad row raises ``InvalidInput``; with ``errors`` given, bad rows are recorded there by
    index and skipped instead.
    """
    if errors is None:
        return _prepare(view, records, allow_extra, None)
    return _prepare(view, records, allow_extra, errors)


def _prepare(view: Any, records: Sequence[Mapping[str, Any]], allow_extra: bool,
             errors: dict[int, InvalidInput] | None) -> Prepared:
    join_keys = list(view.join_keys)
    key_types = dict(getattr(view, "key_types", {}) or {})
    ts_field = view.timestamp_field
    created = getattr(view, "created_timestamp_field", None)
    fields = [(f.name, f.dtype) for f in view.fields]
    known = set(join_keys) | {ts_field} | {name for name, _ in fields} | ({created} if created else set())
    out = Prepared()
    for i, row in enumerate(records):
        try:
            _prepare_one(view, i, row, join_keys, key_types, ts_field, created, fields, known, allow_extra, out)
        except InvalidInput as exc:
            if errors is None:
                raise
            errors[i] = exc
    return out


def _prepare_one(view: Any, i: int, row: Mapping[str, Any], join_keys: list[str], key_types: dict[str, str],
                 ts_field: str, created: str | None, fields: list[tuple[str, str]], known: set[str],
                 allow_extra: bool, out: Prepared) -> None:
    if not allow_extra:
        extra = [c for c in row if c not in known]
        if extra:
            raise InvalidInput(
                f"feature view {view.name!r}: row {i} has unknown columns {extra}; its columns are "
                f"{', '.join(sorted(known))}",
                {"view": view.name, "field": extra[0], "row": i},
            )
    key = []
    for k in join_keys:
        value = row.get(k)
        if _is_missing(value):
            raise InvalidInput(f"feature view {view.name!r}: row {i} has no value for join key {k!r}; "
                               "every pushed row needs all join keys", {"view": view.name, "field": k, "row": i})
        if k in key_types:
            try:
                value = coerce_value(value, key_types[k])
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"feature view {view.name!r}: join key {k!r} in row {i} must be "
                                   f"{key_types[k]}, got {value!r} ({exc})",
                                   {"view": view.name, "field": k, "row": i}) from None
        elif hasattr(value, "item"):
            value = value.item()
        key.append(value)
    raw_ts = row.get(ts_field)
    try:
        if _is_missing(raw_ts):
            raise ValueError("missing")
        stamp = coerce_timestamp(raw_ts)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"feature view {view.name!r}: row {i} needs timestamp field {ts_field!r} as a datetime or "
            f"ISO-8601 string, got {raw_ts!r}",
            {"view": view.name, "field": ts_field, "row": i},
        ) from None
    values: dict[str, Any] = {}
    for name, dtype in fields:
        value = row.get(name, _ABSENT)
        if type(value) is _EXACT.get(dtype):
            values[name] = value
            continue
        if value is _ABSENT:
            raise InvalidInput(f"feature view {view.name!r}: row {i} has no field {name!r}; send every "
                               "feature (None for a missing value)", {"view": view.name, "field": name, "row": i})
        try:
            values[name] = coerce_value(value, dtype)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"feature view {view.name!r}: field {name!r} must be {dtype}, got {value!r} "
                f"({type(value).__name__}) in row {i}; fix the value or the field's type",
                {"view": view.name, "field": name, "row": i, "expected": dtype},
            ) from None
    out.keys.append(tuple(key))
    out.values.append(values)
    out.event_ts.append(stamp)
    if created:
        raw = row.get(created)
        out.created.append(stamp if _is_missing(raw) else coerce_timestamp(raw))


def offline_table(view: Any, records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with the view's column types."""
    key_types = dict(getattr(view, "key_types", {}) or {})
    columns: dict[str, pa.Array] = {}
    names = list(view.join_keys) + [view.timestamp_field]
    created = getattr(view, "created_timestamp_field", None)
    if created:
        names.append(created)
    names += [f.name for f in view.fields]
    dtypes = {f.name: f.dtype for f in view.fields}
    dtypes[view.timestamp_field] = "timestamp"
    if created:
        dtypes[created] = "timestamp"
    dtypes.update(key_types)
    for name in names:
        data = [r.get(name) for r in records]
        arrow_type = _ARROW.get(dtypes.get(name, ""))
        columns[name] = pa.array(data, type=arrow_type) if arrow_type is not None else pa.array(data)
    return pa.table(columns)


def write_prepared(store: FeatureStore, view: FeatureView, prepared: Prepared, *, to_offline: bool = True,
                   published_ms: Mapping[int, int] | None = None) -> PushResult:
    """Online write (conditional on event time), then the offline append of the rows written or
    stale online and of the duplicates the offline log does not hold yet (see module doc).

    ``published_ms`` maps rows to the time their stream message was published (ms), when known:
    a duplicate is looked for in the offline log from that time or its event time, the earlier."""
    online = online_store_of(store)
    result = PushResult(view.name, rows=len(prepared.keys))
    if not prepared.keys:
        return result
    written = online.write_batch(view.name, prepared.keys, prepared.values, prepared.event_ts,
                                 version=getattr(view, "version", None), with_status=True,
                                 dedupe_window=DEDUPE_WINDOW)
    result.written, result.duplicates, result.stale = written.written, written.duplicates, written.stale
    result.details["online_at"] = time.time()  # when the rows became readable online
    if to_offline:
        status = written.status or []
        fresh = [i for i, s in enumerate(status) if s != "duplicate"]
        again = [i for i, s in enumerate(status) if s == "duplicate"]
        if again:
            missing = _not_logged(store, view, prepared, again, fresh, published_ms or {})
            result.details["offline_recovered"] = len(missing)
            fresh = sorted(fresh + missing)
        if fresh:
            store.offline_append(view.name, offline_table(view, prepared.records(view, fresh)))
            result.offline_rows = len(fresh)
    return result


# Clock difference tolerated between a message's publication time and the offline-log file names.
_CLOCK_SLACK_MS = 1000


def _not_logged(store: Any, view: Any, prepared: Prepared, rows: Sequence[int], fresh: Sequence[int],
                published_ms: Mapping[int, int]) -> list[int]:
    """The ``rows`` (duplicates online) that neither an offline-log file written since they can
    first have been written nor the ``fresh`` rows of this batch hold, each (key, event time) once.
    Files older than ``DEDUPE_WINDOW`` are not read (replays older than that are not recognised)."""
    oldest = int(time.time() * 1000) - DEDUPE_WINDOW // dt.timedelta(milliseconds=1)
    since = min(min(_micros(prepared.event_ts[i]) // 1000, published_ms.get(i, sys.maxsize)) for i in rows)
    logged = _logged_pairs(store, view, max(oldest, since - _CLOCK_SLACK_MS))
    if logged is None:
        return []
    logged.update(_pair(prepared, i) for i in fresh)
    missing = []
    for i in rows:
        if _pair(prepared, i) not in logged:
            logged.add(_pair(prepared, i))
            missing.append(i)
    return missing


def _pair(prepared: Prepared, i: int) -> tuple[tuple[Any, ...], int]:
    return tuple(prepared.keys[i]), _micros(prepared.event_ts[i])


def _micros(ts: dt.datetime) -> int:
    return (ts - _EPOCH) // dt.timedelta(microseconds=1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _logged_pairs(store: Any, view: Any, since_ms: int) -> set[tuple[tuple[Any, ...], int]] | None:
    """(key, event time in µs) of the rows in the view's offline-log files written since ``since_ms``
    (their names start with the write time), read only when a batch holds duplicates; None for a
    store that keeps no offline-log files of its own."""
    import io
    import re

    import pyarrow.parquet as pq

    from shipyard.features.online import workspace_of

    try:
        artifacts = workspace_of(store).artifacts
    except Exception:  # noqa: BLE001 - a store without a workspace keeps no offline-log files
        return None
    columns = [*view.join_keys, view.timestamp_field]
    found: set[tuple[tuple[Any, ...], int]] = set()
    for path in artifacts.list(f"{OFFLINE_LOG_PREFIX}/{view.name}"):
        name = path.rsplit("/", 1)[-1]
        stamp = re.match(r"(?:part|compact)-(\d{13})-.*\.parquet$", name)
        if stamp is None or int(stamp.group(1)) < since_ms:
            continue
        table = pq.read_table(io.BytesIO(artifacts.get_bytes(path)), columns=columns)
        micros = table.column(view.timestamp_field).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        keys = zip(*(table.column(k).to_pylist() for k in view.join_keys), strict=True)
        found.update(zip(keys, micros, strict=True))
    return found


def push(store: FeatureStore, view: str, rows: Any, *, to_offline: bool = True) -> PushResult:
    """Validate ``rows`` for feature view ``view``, write them online and append them offline."""
    definition = store.get_view(view)
    if not isinstance(definition, FeatureView):
        raise InvalidInput(f"{view!r} is an on-demand feature view; push to the feature views it reads from",
                           {"view": view})
    prepared = prepare_rows(definition, as_records(rows))
    return write_prepared(store, definition, prepared, to_offline=to_offline)
