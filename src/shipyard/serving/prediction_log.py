"""The prediction log: sampled records of what was served, as typed Parquet in the artifact store.

Two paths carry a record. **Memory**: ``submit`` appends it to an in-memory deque (no lock, no
thread wake-up); past ``max_queue`` waiting records new ones are dropped and counted. A background
thread wakes every ``encode_interval``, takes what arrived and encodes it ``chunk_size`` records at
a time into Arrow tables, giving up the GIL between chunks so the event loop never waits behind it
for long. Every ``flush_interval`` (or at ``batch_size`` buffered rows) it writes one Parquet file
per scene and day under ``prediction_logs/scene=<scene>/date=<YYYY-MM-DD>/``; ``flush`` and
``close`` write everything submitted before them.

**Spool** (crash safety, with ``spool_dir``): the same record is also appended to a local file,
``<spool_dir>/<instance>.<segment>.jsonl``, by a spool thread that writes what arrived and fsyncs
it as one group commit (every ``spool_interval`` seconds or ``spool_batch`` records, whichever
comes first). ``append`` returns a :class:`Ticket` that a request waits on before its response is
sent, so a record the client got an answer for is on disk even if the process is killed the next
instant. After each Parquet write the segments it covered are deleted. A process holds an
exclusive ``flock`` on ``<instance>.lock`` for its life; the kernel releases it when the process
dies, so any process of the project using the same folder (the restarted server, another worker,
another server on a shared volume) can tell a dead instance's spool from a live one: at start and
every ``recover_interval`` seconds it takes the lock of dead instances, writes their spooled
records to Parquet (skipping any already in a Parquet file) and deletes the spool.

**Instance and idempotency.** Every record carries ``instance`` (host, pid and start time of the
process). A request id seen again by the same instance (a retried request: client-supplied
``X-Request-Id``) is not logged again (``append`` returns None; the last ``dedup_window`` ids are
remembered), and recovery skips records whose (request_id, kind) is already in a Parquet file of
that scene and day written since the spool's first record, whichever instance wrote it.

**File format.** One Parquet row per served record (a batch request gives one row per record,
numbered by ``row``), with typed columns: ts (ms), request_id, instance, scene, version, arm, kind
(live|shadow), row, latency_ms, features_ms, model_ms, fallback, error, models (JSON), then one
column per field, ``inputs.<name>``, ``features.<name>``, ``outputs.<name>`` (int64, double,
bool or string; a field whose values mix types is stored as JSON text), and ``live_outputs`` (JSON)
for shadow records. Files written before this format (one row per request, ``inputs``/``features``
/``outputs`` as JSON text) are still read by ``read_prediction_log`` and by monitoring.

Feature logging: with a ``feature_logger(scene, records)`` callback (the engine wires
``StoreFeatures.log_served`` when it serves from a workspace feature store), the records of each
write that carry served features are also handed to the feature store's log, from this background
thread, never from the request path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import io
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from shipyard.artifacts import ArtifactStore

log = logging.getLogger(__name__)

PREFIX = "prediction_logs"
# the record's keys (what the engine submits and read_prediction_log returns per request)
COLUMNS = ("ts", "request_id", "scene", "version", "arm", "kind", "inputs", "features", "outputs", "models",
           "latency_ms", "features_ms", "model_ms", "fallback", "error")
JSON_COLUMNS = ("inputs", "features", "outputs", "models")
SOURCES = ("inputs", "features", "outputs")
# file metadata key marking the typed layout
FORMAT_KEY = b"shipyard.prediction_log"
FORMAT = b"2"
DAY_MS = 86_400_000
# records per call of the feature logger: the feature log's own file size (it writes every 1,000
# vectors), so the GIL is given up between files without making more of them
FEATURE_CHUNK = 1_000
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# how long a request waits for its group commit before answering anyway (a stuck disk must not
# hang the server; such answers are counted in ``PredictionLog.late``)
SPOOL_WAIT_S = 2.0


def new_instance_id() -> str:
    """Host, process id and start time (ms): unique per process start, readable in a log row."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{int(time.time() * 1000)}"


class Ticket:
    """A group commit of the spool: done once its records are written and fsync'd."""

    __slots__ = ("_done", "_lock", "_waiters", "ok")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[Any, Any]] = []
        self.ok = False

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float = SPOOL_WAIT_S) -> bool:
        return self._done.wait(timeout)

    async def wait_async(self, timeout: float = SPOOL_WAIT_S) -> bool:
        if self._done.is_set():
            return True
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return True
            self._waiters.append((loop, future))
        # a timer handle, not asyncio.wait_for (which wraps the wait in a task per request)
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def finish(self, ok: bool) -> None:
        with self._lock:
            self.ok = ok
            self._done.set()
            waiters, self._waiters = self._waiters, []
        by_loop: dict[Any, list[Any]] = {}
        for loop, future in waiters:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():  # one wake-up per event loop, not per request
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _resolve(futures: list[Any]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(True)


def _expire(future: Any) -> None:
    if not future.done():
        future.set_result(False)


class Spool:
    """This instance's append-only spool: group-committed JSON lines, one segment per Parquet write."""

    def __init__(self, folder: str | Path, instance: str, *, interval: float = 0.002, batch: int = 512,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.instance = instance
        self.interval = interval
        self.batch = batch
        self.on_commit = on_commit
        self.commits = 0
        self.records = 0
        self.errors = 0
        self._lock_fd = os.open(self.folder / f"{instance}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # held until this process ends (the kernel drops it)
        self._segment = 0
        self._fd = self._open(0)
        self._sealed: list[Path] = []
        self._pending: list[dict[str, Any]] = []
        self._ticket = Ticket()
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="shipyard-prediction-spool", daemon=True)
        self._thread.start()

    def _path(self, segment: int) -> Path:
        return self.folder / f"{self.instance}.{segment:06d}.jsonl"

    def _open(self, segment: int) -> int:
        return os.open(self._path(segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)

    def append(self, record: dict[str, Any]) -> Ticket:
        with self._cond:
            self._pending.append(record)
            ticket = self._ticket
            if len(self._pending) == 1 or len(self._pending) >= self.batch:
                self._cond.notify()
        return ticket

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                if len(self._pending) < self.batch and not self._closing:
                    # gather the requests arriving meanwhile into this commit
                    self._cond.wait(self.interval)
                records, self._pending = self._pending, []
                ticket, self._ticket = self._ticket, Ticket()
            ok = self._commit(records)
            ticket.finish(ok)

    def _commit(self, records: list[dict[str, Any]]) -> bool:
        dumps, opts = orjson.dumps, _JSON_OPTS
        lines = []
        for rec in records:
            try:
                lines.append(dumps(rec, option=opts))
            except TypeError:  # a value orjson cannot encode: the memory path still has the record
                self.errors += 1
                log.exception("prediction log: could not spool a record of %s", rec.get("scene"))
        data = b"\n".join(lines) + b"\n" if lines else b""
        try:
            with self._io:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fdatasync(self._fd)
        except OSError:
            self.errors += len(records)
            log.exception("prediction log: could not spool %d records", len(records))
            return False
        self.commits += 1
        self.records += len(lines)
        if self.on_commit is not None:
            self.on_commit(len(lines))
        return True

    def seal(self) -> list[Path]:
        """Start a new segment; the segments before it (whose records all reached memory before
        they were written) are returned, to delete once the Parquet write that follows succeeds."""
        with self._io:
            os.close(self._fd)
            self._sealed.append(self._path(self._segment))
            self._segment += 1
            self._fd = self._open(self._segment)
            sealed, self._sealed = self._sealed, []
        return sealed

    def keep(self, paths: list[Path]) -> None:
        """Segments whose Parquet write failed: kept for the recovery of a later process."""
        with self._io:
            self._sealed = [*paths, *self._sealed]

    def close(self, *, delete: bool) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(10)
        with self._io:
            os.close(self._fd)
            if delete and not self._sealed:
                for path in self.folder.glob(f"{self.instance}.*.jsonl"):
                    path.unlink(missing_ok=True)
                (self.folder / f"{self.instance}.lock").unlink(missing_ok=True)
            os.close(self._lock_fd)


class PredictionLog:
    def __init__(self, artifacts: Any, *, sample_rate: float = 1.0, max_queue: int = 10_000,
                 batch_size: int = 20_000, flush_interval: float = 10.0, on_drop: Any = None,
                 feature_logger: Any = None, encode_interval: float = 0.5, chunk_size: int = 64,
                 spool_dir: str | Path | None = None, spool_interval: float = 0.002, spool_batch: int = 512,
                 recover_interval: float = 30.0, dedup_window: int = 100_000, instance: str | None = None,
                 on_spooled: Callable[[int], None] | None = None) -> None:
        self.artifacts = artifacts
        self.sample_rate = float(sample_rate)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.encode_interval = min(encode_interval, flush_interval)
        self.chunk_size = chunk_size
        self.instance = instance or new_instance_id()
        self.dropped = 0
        self.written = 0
        self.duplicates = 0
        self.recovered = 0
        self.late = 0  # answers sent before their record's group commit finished (SPOOL_WAIT_S)
        self.on_drop = on_drop
        self.feature_logger = feature_logger
        self.spool_dir = Path(spool_dir) if spool_dir else None
        self.spool_interval = spool_interval
        self.spool_batch = spool_batch
        self.on_spooled = on_spooled
        self.recover_interval = recover_interval
        self.dedup_window = dedup_window
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._spool: Spool | None = None
        self._next_recovery = 0.0
        self._incoming: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._waiters: list[threading.Event] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def durable(self) -> bool:
        return self.spool_dir is not None

    def sampled(self, rate: float | None = None) -> bool:
        rate = self.sample_rate if rate is None else rate
        return rate >= 1.0 or (rate > 0 and random.random() < rate)

    def start(self) -> None:
        """Start the writer and the spool; spools of dead instances are written first (before this
        returns, so a server recovers them before it answers a retry of one of their requests)."""
        if self._thread is None:
            if self.spool_dir is not None:
                try:
                    self.recover()
                except Exception:
                    log.exception("prediction log: recovering spools failed")
                self._next_recovery = time.monotonic() + self.recover_interval
            self._ensure_thread()

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one record; False when it was dropped (queue full) or already logged (same request id)."""
        return self.append(record) is not None

    def append(self, record: dict[str, Any]) -> Ticket | bool | None:
        """Queue one record. Returns None when it is not logged (dropped, or a retried request id
        this instance logged already), else a :class:`Ticket` to wait on when spooling, else True."""
        if self._thread is None:
            self._ensure_thread()
        if len(self._incoming) >= self.max_queue:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return None
        rid = record.get("request_id")
        if rid:
            key = (rid, record.get("kind") or "live")
            with self._seen_lock:
                if key in self._seen:
                    self.duplicates += 1
                    return None
                self._seen[key] = None
                if len(self._seen) > self.dedup_window:
                    self._seen.popitem(last=False)
        record["instance"] = self.instance
        self._incoming.append(record)  # atomic under the GIL; the writer polls, nothing to signal
        spool = self._spool
        return spool.append(record) if spool is not None else True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._closing = False
                if self.spool_dir is not None and self._spool is None:
                    self._spool = Spool(self.spool_dir, self.instance, interval=self.spool_interval,
                                        batch=self.spool_batch, on_commit=self.on_spooled)
                self._thread = threading.Thread(target=self._loop, name="shipyard-prediction-log", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        buffer = _Buffer()
        deadline = time.monotonic() + self.flush_interval
        while True:
            if self.spool_dir is not None and time.monotonic() >= self._next_recovery:
                try:
                    self.recover()
                except Exception:
                    log.exception("prediction log: recovering spools failed")
                self._next_recovery = time.monotonic() + self.recover_interval
            self._wake.wait(self.encode_interval)
            self._wake.clear()
            with self._lock:  # taken before draining: they wait for everything submitted before them
                waiters, self._waiters = self._waiters, []
                closing = self._closing
            write = waiters or closing or buffer.rows >= self.batch_size or time.monotonic() >= deadline
            spool = self._spool
            # seal before the last drain: every record of a sealed segment is then in the buffer
            sealed = spool.seal() if write and spool is not None else []
            self._drain(buffer)
            if write:
                ok = False
                try:
                    ok = self._write(buffer)
                except Exception:  # the writer thread must outlive any one batch
                    log.exception("prediction log: could not write %d records", buffer.rows)
                if spool is not None:
                    if ok:
                        for path in sealed:
                            path.unlink(missing_ok=True)
                    else:
                        spool.keep(sealed)
                buffer = _Buffer()
                deadline = time.monotonic() + self.flush_interval
            for event in waiters:
                event.set()
            if closing:
                if spool is not None:
                    spool.close(delete=True)
                    self._spool = None
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

    def _write(self, buffer: _Buffer, instance: str | None = None) -> bool:
        """Write the buffer's files; True when every file was stored."""
        import pyarrow.parquet as pq

        ok = True
        for (scene, day), tables in buffer.tables.items():
            table = _concat(tables)
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            path = (f"{PREFIX}/scene={_safe(scene)}/date={day}/part-{int(time.time() * 1000)}-"
                    f"{_safe(instance or self.instance)}-{uuid.uuid4().hex[:8]}.parquet")
            try:
                self.artifacts.put_bytes(path, sink.getvalue())
                self.written += buffer.counts[(scene, day)]
            except Exception:  # a storage outage must not kill the writer thread
                ok = False
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
        return ok

    # -- recovery -----------------------------------------------------------------------------------
    def recover(self) -> int:
        """Write the spools of dead instances in ``spool_dir`` to Parquet; returns the records written."""
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return 0
        total = 0
        for lock in sorted(self.spool_dir.glob("*.lock")):
            instance = lock.name[:-len(".lock")]
            if instance == self.instance:
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process recovered it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                total += self._recover_instance(instance)
            finally:
                os.close(fd)
        self.recovered += total
        return total

    def _recover_instance(self, instance: str) -> int:
        assert self.spool_dir is not None
        segments = sorted(self.spool_dir.glob(f"{instance}.*.jsonl"))
        records: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for path in segments:
            for line in path.read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # the torn last line of a commit that never finished (never acknowledged)
                key = (rec.get("request_id") or "", rec.get("kind") or "live")
                if key[0] and key in seen:
                    continue
                seen.add(key)
                records.append(rec)
        logged = self._already_logged(records)
        with self._seen_lock:
            # not in a Parquet file, nor waiting in this instance's memory (a retry that reached it)
            fresh = [r for r in records if (key := (r.get("request_id") or "", r.get("kind") or "live"))
                     not in logged and key not in self._seen]
            for r in fresh:  # a retry of one of them arriving later is then logged no more
                if r.get("request_id"):
                    self._seen[(r["request_id"], r.get("kind") or "live")] = None
            while len(self._seen) > self.dedup_window:
                self._seen.popitem(last=False)
        ok = True
        if fresh:
            buffer = _Buffer()
            for start in range(0, len(fresh), 1_000):
                buffer.add(fresh[start:start + 1_000], keep_raw=self.feature_logger is not None)
            ok = self._write(buffer, instance)
        if ok:
            for path in segments:
                path.unlink(missing_ok=True)
            (self.spool_dir / f"{instance}.lock").unlink(missing_ok=True)
            if fresh:
                log.warning("prediction log: recovered %d records spooled by dead instance %s (%d already "
                            "written)", len(fresh), instance, len(records) - len(fresh))
        return len(fresh) if ok else 0

    def _already_logged(self, records: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """(request_id, kind) of ``records`` already in Parquet files of their scenes and days
        written since the earliest of them (by this instance before it died, or by another
        server a retry reached)."""
        import pyarrow.parquet as pq

        first: dict[tuple[str, str], int] = {}
        for rec in records:
            key = (rec["scene"], _day(int(rec["ts"])))
            first[key] = min(first.get(key, rec["ts"]), rec["ts"])
        found: set[tuple[str, str]] = set()
        for (scene, day), since in first.items():
            for path in self.artifacts.list(f"{PREFIX}/scene={_safe(scene)}/date={day}"):
                name = path.rsplit("/", 1)[-1]
                try:
                    written = int(name.split("-", 2)[1])
                except (IndexError, ValueError):
                    written = since
                if not name.endswith(".parquet") or written < since - 1_000:
                    continue
                try:
                    table = pq.read_table(io.BytesIO(self.artifacts.get_bytes(path)), columns=["request_id", "kind"])
                except Exception:
                    continue
                found.update(zip(table.column("request_id").to_pylist(), table.column("kind").to_pylist(),
                                 strict=True))
        return found

    # -- flush and close ----------------------------------------------------------------------------
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
        """Write everything submitted so far and stop the writer (and the spool, deleted once written)."""
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


def _day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts // DAY_MS * 86_400, tz=dt.UTC).strftime("%Y-%m-%d")


class _Buffer:
    """Encoded records waiting for the next write: Arrow tables per (scene, day)."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], list[Any]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.raw: dict[str, list[dict[str, Any]]] = {}
        self.rows = 0

    def add(self, records: list[dict[str, Any]], keep_raw: bool) -> None:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rec in records:
            groups.setdefault((rec["scene"], _day(rec["ts"])), []).append(rec)
        encoded = [(key, typed_table(rows), len(rows)) for key, rows in groups.items()]  # all or nothing
        for key, table, n in encoded:
            self.tables.setdefault(key, []).append(table)
            self.counts[key] = self.counts.get(key, 0) + n
            if keep_raw:
                served = [r for r in groups[key] if r.get("features") is not None]
                if served:
                    self.raw.setdefault(key[0], []).extend(served)
        self.rows += len(records)


# -- typed encoding --------------------------------------------------------------------------------
_META = (("ts", "int64"), ("request_id", "string"), ("instance", "string"), ("scene", "string"),
         ("version", "int64"), ("arm", "string"), ("kind", "string"), ("row", "int32"),
         ("latency_ms", "float64"), ("features_ms", "float64"), ("model_ms", "float64"), ("fallback", "bool"),
         ("error", "string"), ("models", "json"), ("live_outputs", "json"))


def _records_of(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def typed_table(records: list[dict[str, Any]]) -> pa.Table:
    """One Arrow table from log records: a row per served record, a typed column per field."""
    import pyarrow as pa

    meta: dict[str, list[Any]] = {name: [] for name, _ in _META}
    fields: dict[str, list[Any]] = {}
    n = 0
    for rec in records:
        per = {s: _records_of(rec.get(s)) for s in SOURCES}
        k = max(1, *(len(v) for v in per.values()))
        for j in range(k):
            for name, _ in _META:
                meta[name].append(j if name == "row" else rec.get(name))
            for source, items in per.items():
                item = items[j] if j < len(items) else None
                if not isinstance(item, dict):
                    continue
                for key, value in item.items():
                    column = f"{source}.{key}"
                    values = fields.get(column)
                    if values is None:
                        values = fields[column] = [None] * n
                    values.append(value)
            n += 1
            for values in fields.values():
                if len(values) < n:
                    values.append(None)
    arrays, names = [], []
    for name, kind in _META:
        values = meta[name]
        if name == "live_outputs" and all(v is None for v in values):
            continue
        if kind == "json":
            arrays.append(pa.array([None if v is None else orjson.dumps(v, option=_JSON_OPTS).decode()
                                    for v in values], type=pa.string()))
        elif kind == "bool":
            arrays.append(pa.array([bool(v) for v in values], type=pa.bool_()))
        else:
            arrays.append(pa.array(values, type=getattr(pa, kind)()))
        names.append(name)
    for column in sorted(fields, key=lambda c: (SOURCES.index(c.split(".", 1)[0]), c)):
        arrays.append(_typed_array(fields[column]))
        names.append(column)
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({FORMAT_KEY: FORMAT})


def _typed_array(values: list[Any]) -> pa.Array:
    """int64, float64, bool or string when every value is one of those; else JSON text."""
    import pyarrow as pa

    kinds = set()
    for v in values:
        if v is not None:
            t = type(v)
            kinds.add(t)
    if not kinds:
        return pa.array(values, type=pa.float64())
    if kinds <= {int}:
        try:
            return pa.array(values, type=pa.int64())
        except OverflowError:
            pass
    if kinds <= {int, float}:
        return pa.array(values, type=pa.float64())
    if kinds == {bool}:
        return pa.array(values, type=pa.bool_())
    if kinds == {str}:
        return pa.array(values, type=pa.string())
    try:  # numpy scalars and the like: numbers when they are numbers
        import numpy as np

        if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
               for v in values if v is not None):
            return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    except (TypeError, ValueError):
        pass
    return pa.array([None if v is None else orjson.dumps(v, option=_JSON_OPTS).decode() for v in values],
                    type=pa.string())


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table from chunks whose fields may differ: missing columns are null; a column typed
    differently in two chunks is widened (int to double) or becomes JSON text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(tables) == 1:
        return tables[0]
    types: dict[str, set[Any]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    target: dict[str, Any] = {}
    for name, found in types.items():
        if len(found) == 1:
            target[name] = next(iter(found))
        elif found <= {pa.int64(), pa.float64()}:
            target[name] = pa.float64()
        else:
            target[name] = pa.string()
    fixed = []
    for t in tables:
        cols = []
        for name, typ in target.items():
            if name not in t.column_names:
                cols.append(pa.nulls(t.num_rows, typ))
                continue
            col = t.column(name)
            if col.type != typ:
                col = pc.cast(col, typ) if typ != pa.string() or col.type != pa.bool_() else \
                    pa.array([None if v is None else ("true" if v else "false") for v in col.to_pylist()],
                             type=pa.string())
            cols.append(col)
        fixed.append(pa.Table.from_arrays(cols, names=list(target)))
    return pa.concat_tables(fixed).replace_schema_metadata({FORMAT_KEY: FORMAT})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def is_typed(schema: Any) -> bool:
    """Whether an Arrow schema is the typed layout (one row per served record)."""
    meta = schema.metadata or {}
    return meta.get(FORMAT_KEY) == FORMAT or ("row" in schema.names and "outputs" not in schema.names)


@functools.cache
def _legacy_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("ts", pa.int64()), ("request_id", pa.string()), ("scene", pa.string()), ("version", pa.int64()),
        ("arm", pa.string()), ("kind", pa.string()), ("inputs", pa.string()), ("features", pa.string()),
        ("outputs", pa.string()), ("models", pa.string()), ("latency_ms", pa.float64()),
        ("features_ms", pa.float64()), ("model_ms", pa.float64()), ("fallback", pa.bool_()), ("error", pa.string()),
    ])


def legacy_table(records: list[dict[str, Any]]) -> pa.Table:
    """The layout written before typed columns (JSON text per request); kept for tests and benchmarks."""
    import pyarrow as pa

    arrays = []
    for field in _legacy_schema():
        values = [r.get(field.name) for r in records]
        if field.name in JSON_COLUMNS:
            values = [None if v is None else orjson.dumps(v, option=_JSON_OPTS).decode() for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=_legacy_schema())


def _requests(table: pa.Table) -> list[dict[str, Any]]:
    """Typed rows back to one record per request: fields regrouped by ``row``; a null field reads
    back as absent, and a source with no field in any of the request's rows as None."""
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    per_source = {s: [c for c in table.column_names if c.startswith(s + ".")] for s in SOURCES}
    meta = [name for name, _ in _META if name in cols and name != "row"]
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for i in range(table.num_rows):
        if current is None or cols["row"][i] == 0 or cols["request_id"][i] != current["request_id"]:
            current = {name: cols[name][i] for name in meta}
            for name in ("models", "live_outputs"):
                if current.get(name) is not None:
                    current[name] = orjson.loads(current[name])
            for source in SOURCES:
                current[source] = []
            out.append(current)
        for source, columns in per_source.items():
            current[source].append({c.split(".", 1)[1]: cols[c][i] for c in columns if cols[c][i] is not None})
    for rec in out:
        for source in SOURCES:
            if not any(rec[source]):
                rec[source] = None
    return out


def read_prediction_log(artifacts: ArtifactStore, scene: str, start: str | dt.date | None = None,
                        end: str | dt.date | None = None, *, decode: bool = True) -> pd.DataFrame:
    """Records of ``scene`` between dates ``start`` and ``end`` (inclusive) as a DataFrame, one
    row per request (old and typed files alike).

    With ``decode`` the inputs, features, outputs and models come back as Python objects (lists of
    dicts), else as JSON text.
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
        if not lo <= day <= hi:
            continue
        table = pq.read_table(io.BytesIO(artifacts.get_bytes(path)))
        if is_typed(table.schema):
            frame = pd.DataFrame(_requests(table))
            if not decode:
                for column in JSON_COLUMNS:
                    frame[column] = [None if v is None else orjson.dumps(v).decode() for v in frame[column]]
        else:
            frame = table.to_pandas()
            if decode:
                for column in JSON_COLUMNS:
                    frame[column] = [orjson.loads(v) if isinstance(v, str) else None for v in frame[column]]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
