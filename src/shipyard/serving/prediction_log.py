"""The prediction log: sampled records of what was served, as Parquet in the artifact store.

``PredictionLog.submit`` only puts a dict on a bounded queue (drop-and-count when full), so a
response never waits for storage. A background thread batches records and writes one Parquet file
per scene and day per flush under ``prediction_logs/scene=<scene>/date=<YYYY-MM-DD>/``; ``close``
flushes what is left. ``read_prediction_log`` is the reader for monitoring and feature logging.

Feature logging: with a ``feature_logger(scene, records)`` callback (the engine wires
``StoreFeatures.log_served`` when it serves from a workspace feature store), each batch written
is also handed to the feature store's log, so served vectors of a scene's ``features`` steps are
kept with their request id, time and entity keys for skew checks — sampled at the scene's log
rate and written from this background thread, never from the request path.

Record columns: ts (ms), request_id, scene, version, arm, kind (live|shadow), inputs, features,
outputs and models (JSON text), latency_ms, features_ms, model_ms, fallback, error.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import queue
import random
import threading
import time
import uuid
from typing import Any

import orjson

log = logging.getLogger(__name__)

PREFIX = "prediction_logs"
COLUMNS = ("ts", "request_id", "scene", "version", "arm", "kind", "inputs", "features", "outputs", "models",
           "latency_ms", "features_ms", "model_ms", "fallback", "error")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


class PredictionLog:
    def __init__(self, artifacts: Any, *, sample_rate: float = 1.0, max_queue: int = 10_000,
                 batch_size: int = 2_000, flush_interval: float = 2.0, on_drop: Any = None,
                 feature_logger: Any = None) -> None:
        self.artifacts = artifacts
        self.sample_rate = float(sample_rate)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dropped = 0
        self.written = 0
        self.on_drop = on_drop
        self.feature_logger = feature_logger
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flushed = threading.Condition()

    def sampled(self, rate: float | None = None) -> bool:
        rate = self.sample_rate if rate is None else rate
        return rate >= 1.0 or (rate > 0 and random.random() < rate)

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one record; False (and counted) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return False

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="shipyard-prediction-log", daemon=True)
                    self._thread.start()

    def _loop(self) -> None:
        pending: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval
        stop = False
        while not stop:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
                if item is None:
                    stop = True
                elif item.get("__flush__"):
                    self._write(pending)
                    pending = []
                    with self._flushed:
                        self._flushed.notify_all()
                    continue
                else:
                    pending.append(item)
            except queue.Empty:
                pass
            if stop or len(pending) >= self.batch_size or time.monotonic() >= deadline:
                self._write(pending)
                pending = []
                deadline = time.monotonic() + self.flush_interval
        with self._flushed:
            self._flushed.notify_all()

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rec in records:
            day = dt.datetime.fromtimestamp(rec["ts"] / 1000, tz=dt.UTC).strftime("%Y-%m-%d")
            groups.setdefault((rec["scene"], day), []).append(rec)
        for (scene, day), rows in groups.items():
            table = pa.table({c: [_cell(r.get(c), c) for r in rows] for c in COLUMNS}, schema=_schema())
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            path = f"{PREFIX}/scene={_safe(scene)}/date={day}/part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
            try:
                self.artifacts.put_bytes(path, buf.getvalue())
                self.written += len(rows)
            except Exception:  # a storage outage must not kill the writer thread
                log.exception("prediction log: could not write %d records to %s", len(rows), path)
            if self.feature_logger is not None:
                try:
                    self.feature_logger(scene, rows)
                except Exception:
                    log.exception("prediction log: feature logging failed for scene %s", scene)

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued so far (blocks up to ``timeout``)."""
        if self._thread is None:
            return
        with self._flushed:
            self._queue.put({"__flush__": True})
            self._flushed.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _cell(value: Any, column: str) -> Any:
    if column in ("inputs", "features", "outputs", "models"):
        return _json(value) if value is not None else None
    return value


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
