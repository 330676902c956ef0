"""Feature logging: the exact feature vectors served, kept as Parquet for skew checks and samples.

``log_features(store, request_id, ts, entity_keys, feature_vector)`` buffers one served vector;
buffers are written as one Parquet file per flush under
``features/logs/date=YYYY-MM-DD/part-….parquet`` in the artifact store (partitioned by the date of
the request timestamp). A buffer is flushed when it holds ``FLUSH_ROWS`` vectors, when
``FLUSH_SECONDS`` passed since its first vector, on ``flush_feature_logs(store)`` and at exit.

Entity keys and feature values are stored as typed JSON (floats round-trip exactly, timestamps
come back as datetimes), so ``read_feature_logs`` returns exactly what was served. Feature names
are kept as given: ``"view:feature"`` references, ``view__feature`` or plain names.

``training_set_from_logs`` turns logged vectors (optionally joined with labels) into training
rows: the "real-time samples" of models trained on what they actually saw.
"""

from __future__ import annotations

import atexit
import datetime as dt
import io
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import InvalidInput
from shipyard.features.online import workspace_of
from shipyard.features.online.base import decode_row, encode_row
from shipyard.features.push import coerce_timestamp

if TYPE_CHECKING:
    import numpy as np

    from shipyard.artifacts import ArtifactStore
    from shipyard.features.store import FeatureStore

LOG_PREFIX = "features/logs"
YIELD_EVERY = 64
FLUSH_ROWS = 1000
FLUSH_SECONDS = 5.0

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("entities", pa.string()),
    ("features", pa.string()),
    ("logged_at", pa.timestamp("us", tz="UTC")),
])


class FeatureLogger:
    """Buffers served vectors of one workspace and writes them as Parquet."""

    def __init__(self, artifacts: ArtifactStore, flush_rows: int = FLUSH_ROWS, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.artifacts = artifacts
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: list[tuple[str, int, str, str, int]] = []
        self._first = 0.0
        self._lock = threading.Lock()
        self.files: list[str] = []

    def log(self, request_id: str, ts: dt.datetime | np.datetime64 | str, entity_keys: Mapping[str, Any],
            feature_vector: Mapping[str, Any]) -> None:
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput("request_id must be a non-empty string", {"field": "request_id"})
        if not isinstance(entity_keys, Mapping) or not isinstance(feature_vector, Mapping):
            raise InvalidInput("entity_keys and feature_vector must be mappings of name to value",
                               {"field": "feature_vector"})
        try:
            stamp = coerce_timestamp(ts)
        except (TypeError, ValueError):
            raise InvalidInput(f"ts {ts!r} is not a timestamp; give a datetime or ISO text", {"field": "ts"}) from None
        # times as integer microseconds: Arrow turns a list of ints into timestamps in one step,
        # where aware datetimes cost a Python call each
        row = (request_id, (stamp - _EPOCH) // _MICROSECOND, encode_row(entity_keys).decode(),
               encode_row(feature_vector).decode(), time.time_ns() // 1000)
        with self._lock:
            if not self._rows:
                self._first = time.monotonic()
            self._rows.append(row)
            count = len(self._rows)
            due = count >= self.flush_rows or time.monotonic() - self._first >= self.flush_seconds
        if count % YIELD_EVERY == 0:
            # vectors usually come in long runs from a background writer: give the GIL up now and
            # then so a server's event loop does not wait behind the whole run
            time.sleep(0)
        if due:
            self.flush()

    def flush(self) -> list[str]:
        """Write buffered vectors (one file per request date); returns the paths written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return []
        by_day: dict[int, list[tuple[str, int, str, str, int]]] = {}
        for row in rows:
            by_day.setdefault(row[1] // _DAY_US, []).append(row)
        written = []
        for number, part in sorted(by_day.items()):
            day = (_EPOCH + dt.timedelta(days=number)).date().isoformat()
            columns = list(zip(*part, strict=True))
            table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, _SCHEMA, strict=True)],
                                         schema=_SCHEMA)
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd")
            path = f"{LOG_PREFIX}/date={day}/part-{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:10]}.parquet"
            self.artifacts.put_bytes(path, buffer.getvalue())
            written.append(path)
        self.files.extend(written)
        return written

    @property
    def pending(self) -> int:
        return len(self._rows)


_LOGGERS: weakref.WeakKeyDictionary[Any, FeatureLogger] = weakref.WeakKeyDictionary()
_LOGGERS_LOCK = threading.Lock()


def feature_logger(store: FeatureStore) -> FeatureLogger:
    """The one logger of ``store`` (created on first use, flushed at exit)."""
    with _LOGGERS_LOCK:
        found = _LOGGERS.get(store)
        if found is None:
            found = FeatureLogger(workspace_of(store).artifacts)
            _LOGGERS[store] = found
            atexit.register(found.flush)
        return found


def log_features(store: FeatureStore, request_id: str, ts: dt.datetime | np.datetime64 | str,
                 entity_keys: Mapping[str, Any],
                 feature_vector: Mapping[str, Any]) -> None:
    """Record one served feature vector (buffered; see the module docstring)."""
    feature_logger(store).log(request_id, ts, entity_keys, feature_vector)


def flush_feature_logs(store: FeatureStore) -> list[str]:
    return feature_logger(store).flush()


def _log_paths(artifacts: Any, start: dt.datetime | None, end: dt.datetime | None) -> list[str]:
    out = []
    for path in artifacts.list(LOG_PREFIX):
        folder = path.split("/")[-2]
        if not folder.startswith("date=") or not path.endswith(".parquet"):
            continue
        day = dt.date.fromisoformat(folder[len("date="):])
        if (start is not None and day < start.date()) or (end is not None and day > end.date()):
            continue
        out.append(path)
    return out


LoggedVector = tuple[str, dt.datetime, dict[str, Any], dict[str, Any]]  # request_id, ts, entities, features


def read_feature_logs(store: FeatureStore, start: dt.datetime | str | None = None,
                      end: dt.datetime | str | None = None) -> pd.DataFrame:
    """Logged vectors with start <= ts < end: request_id, ts, then entity and feature columns
    (typed as served). ``.attrs`` holds the names of the entity and feature columns."""
    return feature_log_frame(read_logged_vectors(store, start, end))


def read_logged_vectors(store: FeatureStore, start: dt.datetime | str | None = None,
                        end: dt.datetime | str | None = None) -> list[LoggedVector]:
    """The logged vectors with start <= ts < end as decoded, ordered by time then request id.

    A feature present with value ``None`` was served as missing; one absent was not served at all
    (the vector came from another view or service): the frame of :func:`feature_log_frame` shows
    both as missing, these vectors keep the difference."""
    if start is not None:
        start = coerce_timestamp(start)
    if end is not None:
        end = coerce_timestamp(end)
    logger = feature_logger(store)
    logger.flush()
    paths = _log_paths(logger.artifacts, start, end)
    if not paths:
        return []
    table = pa.concat_tables([pq.read_table(io.BytesIO(logger.artifacts.get_bytes(p))) for p in paths])
    kept: list[LoggedVector] = []
    for request_id, ts, entities, features in zip(table.column("request_id").to_pylist(), table.column("ts").to_pylist(),
                                                  table.column("entities").to_pylist(),
                                                  table.column("features").to_pylist(), strict=True):
        if (start is not None and ts < start) or (end is not None and ts >= end):
            continue
        kept.append((request_id, ts, decode_row(entities.encode()), decode_row(features.encode())))
    kept.sort(key=lambda r: (r[1], r[0]))  # stable: equal times and ids keep the files' order
    return kept


def feature_log_frame(kept: list[LoggedVector]) -> pd.DataFrame:
    """Logged vectors as a frame: request_id, ts, entity and feature columns (typed as served), in
    the order given; ``.attrs`` names the entity and feature columns."""
    if not kept:
        frame = pd.DataFrame({"request_id": pd.Series(dtype=str), "ts": pd.Series(dtype="datetime64[us, UTC]")})
        frame.attrs.update(entity_columns=[], feature_columns=[])
        return frame
    entity_cols: list[str] = []
    feature_cols: list[str] = []
    for _, _, ents, feats in kept:
        entity_cols.extend(k for k in ents if k not in entity_cols)
        feature_cols.extend(k for k in feats if k not in feature_cols)
    data: dict[str, pd.Series] = {
        "request_id": pd.Series([r[0] for r in kept], dtype=object),
        "ts": pd.Series(pd.to_datetime([r[1] for r in kept], utc=True)),
    }
    for col in entity_cols:
        data[col] = _typed([r[2].get(col) for r in kept])
    for col in feature_cols:
        data[col] = _typed([r[3].get(col) for r in kept])
    frame = pd.DataFrame(data)
    frame.attrs.update(entity_columns=entity_cols, feature_columns=feature_cols)
    return frame


def _typed(values: list[Any]) -> pd.Series:
    """A column as served: integers and booleans stay so (nullable) when some vectors lack a value."""
    present = [v for v in values if v is not None]
    if present and len(present) < len(values):
        if all(type(v) is bool for v in present):
            return pd.Series(values, dtype="boolean")
        if all(type(v) is int for v in present):
            return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, dt.datetime) for v in present):
        return pd.Series(pd.to_datetime(values, utc=True))
    return pd.Series(values) if present else pd.Series(values, dtype=object)


def training_set_from_logs(store: FeatureStore, start: dt.datetime | str | None = None,
                           end: dt.datetime | str | None = None, labels: pd.DataFrame | None = None,
                           on: str | list[str] = "request_id") -> pd.DataFrame:
    """Training rows from served vectors ("real-time samples"), joined with ``labels`` on ``on``
    when given (rows without a label are dropped)."""
    logs = read_feature_logs(store, start, end)
    if labels is None:
        return logs
    keys = [on] if isinstance(on, str) else list(on)
    missing = [k for k in keys if k not in labels.columns or k not in logs.columns]
    if missing:
        raise InvalidInput(f"cannot join labels on {missing}: both the logs and labels need these columns",
                           {"field": "on", "missing": missing})
    joined = logs.merge(labels, on=keys, how="inner", suffixes=("", "_label"))
    joined.attrs.update(logs.attrs)
    return joined
