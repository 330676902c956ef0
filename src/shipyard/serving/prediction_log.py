"""The prediction log: sampled records of what was served, as Parquet in the artifact store.

``PredictionLog.submit`` only appends the record (a dict) to an in-memory deque — no lock, no
thread wake-up — so a response never waits for storage; past ``max_queue`` waiting records new ones
are dropped and counted. A background thread wakes every ``encode_interval``, takes what arrived
and encodes it ``chunk_size`` records at a time into Arrow record batches (one ``pa.array`` call per
column, JSON cells encoded by orjson), giving up the GIL between chunks so the event loop never
waits behind it for long. Every ``flush_interval`` (or at ``batch_size`` buffered rows) it writes one
Parquet file per scene and day under ``prediction_logs/scene=<scene>/date=<YYYY-MM-DD>/``;
``flush`` and ``close`` write everything submitted before them. ``read_prediction_log`` is the
reader for monitoring and feature logging.

Feature logging: with a ``feature_logger(scene, records)`` callback (the engine wires
``StoreFeatures.log_served`` when it serves from a workspace feature store), the records of each
write that carry served features are also handed to the feature store's log, so served vectors of a
scene's ``features`` steps are kept with their request id, time and entity keys for skew checks —
sampled at the scene's log rate and written from this background thread, never from the request path.

Record columns: ts (ms), request_id, scene, version, arm, kind (live|shadow), inputs, features,
outputs and models (JSON text), latency_ms, features_ms, model_ms, fallback, error.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import random
import threading
import time
import uuid
from collections import deque
from typing import Any

import orjson

log = logging.getLogger(__name__)

PREFIX = "prediction_logs"
COLUMNS = ("ts", "request_id", "scene", "version", "arm", "kind", "inputs", "features", "outputs", "models",
           "latency_ms", "features_ms", "model_ms", "fallback", "error")
JSON_COLUMNS = ("inputs", "features", "outputs", "models")
DAY_MS = 86_400_000
# records per call of the feature logger: the feature log's own file size (it writes every 1,000
# vectors), so the GIL is given up between files without making more of them
FEATURE_CHUNK = 1_000
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class PredictionLog:
    def __init__(self, artifacts: Any, *, sample_rate: float = 1.0, max_queue: int = 10_000,
                 batch_size: int = 20_000, flush_interval: float = 10.0, on_drop: Any = None,
                 feature_logger: Any = None, encode_interval: float = 0.5, chunk_size: int = 64) -> None:
        self.artifacts = artifacts
        self.sample_rate = float(sample_rate)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.encode_interval = min(encode_interval, flush_interval)
        self.chunk_size = chunk_size
        self.dropped = 0
        self.written = 0
        self.on_drop = on_drop
        self.feature_logger = feature_logger
        self._incoming: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._waiters: list[threading.Event] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sampled(self, rate: float | None = None) -> bool:
        rate = self.sample_rate if rate is None else rate
        return rate >= 1.0 or (rate > 0 and random.random() < rate)

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one record; False (and counted) when ``max_queue`` records are already waiting."""
        if self._thread is None:
            self._ensure_thread()
        if len(self._incoming) >= self.max_queue:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return False
        self._incoming.append(record)  # atomic under the GIL; the writer polls, nothing to signal
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._loop, name="shipyard-prediction-log", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        buffer = _Buffer()
        deadline = time.monotonic() + self.flush_interval
        while True:
            self._wake.wait(self.encode_interval)
            self._wake.clear()
            with self._lock:  # taken before draining: they wait for everything submitted before them
                waiters, self._waiters = self._waiters, []
                closing = self._closing
            self._drain(buffer)
            if waiters or closing or buffer.rows >= self.batch_size or time.monotonic() >= deadline:
                try:
                    self._write(buffer)
                except Exception:  # the writer thread must outlive any one batch
                    log.exception("prediction log: could not write %d records", buffer.rows)
                buffer = _Buffer()
                deadline = time.monotonic() + self.flush_interval
            for event in waiters:
                event.set()
            if closing:
                return

    def _drain(self, buffer: _Buffer) -> None:
        """Encode everything waiting, ``chunk_size`` records at a time, yielding the GIL between chunks."""
        incoming, size = self._incoming, self.chunk_size
        while incoming:
            chunk = [incoming.popleft() for _ in range(min(size, len(incoming)))]
            try:
                buffer.add(chunk, keep_raw=self.feature_logger is not None)
            except Exception:  # a malformed record costs its chunk, not the writer or the buffer
                self.dropped += len(chunk)
                log.exception("prediction log: could not encode %d records", len(chunk))
            time.sleep(0)  # let the event loop run before the next chunk

    def _write(self, buffer: _Buffer) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for (scene, day), batches in buffer.batches.items():
            table = pa.Table.from_batches(batches, schema=_schema())
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            path = f"{PREFIX}/scene={_safe(scene)}/date={day}/part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
            try:
                self.artifacts.put_bytes(path, sink.getvalue())
                self.written += table.num_rows
            except Exception:  # a storage outage must not kill the writer thread
                log.exception("prediction log: could not write %d records to %s", table.num_rows, path)
            time.sleep(0)
        if self.feature_logger is not None:
            for scene, rows in buffer.raw.items():
                for start in range(0, len(rows), FEATURE_CHUNK):
                    try:
                        self.feature_logger(scene, rows[start:start + FEATURE_CHUNK])
                    except Exception:
                        log.exception("prediction log: feature logging failed for scene %s", scene)
                    time.sleep(0)

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything submitted so far (blocks up to ``timeout``)."""
        if self._thread is None:
            return
        done = threading.Event()
        with self._lock:
            self._waiters.append(done)
        self._wake.set()
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything submitted so far and stop the writer."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._closing = True
        self._wake.set()
        thread.join(timeout)
        with self._lock:
            if self._thread is thread:
                self._thread = None


class _Buffer:
    """Encoded records waiting for the next write: Arrow record batches per (scene, day)."""

    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], list[Any]] = {}
        self.raw: dict[str, list[dict[str, Any]]] = {}
        self.rows = 0

    def add(self, records: list[dict[str, Any]], keep_raw: bool) -> None:
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rec in records:
            groups.setdefault((rec["scene"], rec["ts"] // DAY_MS), []).append(rec)
        for (scene, day), rows in groups.items():
            name = dt.datetime.fromtimestamp(day * 86_400, tz=dt.UTC).strftime("%Y-%m-%d")
            self.batches.setdefault((scene, name), []).append(_batch(rows))
            if keep_raw:
                served = [r for r in rows if r.get("features") is not None]
                if served:
                    self.raw.setdefault(scene, []).extend(served)
        self.rows += len(records)


def _batch(rows: list[dict[str, Any]]) -> Any:
    """One Arrow record batch from records: a list per column, then one ``pa.array`` call each."""
    import pyarrow as pa

    dumps, opts = orjson.dumps, _JSON_OPTS
    arrays = []
    for field in _schema():
        name = field.name
        values = [r.get(name) for r in rows]
        if name in JSON_COLUMNS:
            values = [None if v is None else dumps(v, option=opts) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=_schema())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@functools.cache
def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("ts", pa.int64()), ("request_id", pa.string()), ("scene", pa.string()), ("version", pa.int64()),
        ("arm", pa.string()), ("kind", pa.string()), ("inputs", pa.string()), ("features", pa.string()),
        ("outputs", pa.string()), ("models", pa.string()), ("latency_ms", pa.float64()),
        ("features_ms", pa.float64()), ("model_ms", pa.float64()), ("fallback", pa.bool_()), ("error", pa.string()),
    ])


def read_prediction_log(artifacts: Any, scene: str, start: str | dt.date | None = None,
                        end: str | dt.date | None = None, *, decode: bool = True) -> Any:
    """Records of ``scene`` between dates ``start`` and ``end`` (inclusive) as a DataFrame.

    With ``decode`` the JSON columns come back as Python objects.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    lo = str(start) if start else "0000-00-00"
    hi = str(end) if end else "9999-99-99"
    frames = []
    for path in artifacts.list(f"{PREFIX}/scene={_safe(scene)}"):
        if not path.endswith(".parquet"):
            continue
        day = path.split("date=", 1)[1].split("/", 1)[0] if "date=" in path else ""
        if lo <= day <= hi:
            frames.append(pq.read_table(io.BytesIO(artifacts.get_bytes(path))).to_pandas())
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    if decode:
        for column in ("inputs", "features", "outputs", "models"):
            frame[column] = [orjson.loads(v) if isinstance(v, str) else None for v in frame[column]]
    return frame
