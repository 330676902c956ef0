"""Materialization: the latest offline value per entity, written into the online store.

``materialize(deps, start, end)`` takes from each view's offline rows with start <= event time < end
the newest row per entity key (the created timestamp breaks ties) — chosen inside the offline scan
(``FeatureStore.read_offline_latest``), so only one row per entity is loaded — and writes them to
the online store in batches. Every run is recorded in the metadata store with the rows read and
written and the distribution of what was written (see ``monitoring``).

``materialize_incremental(deps, end)`` continues each view from its watermark — the end of its
last successful run (``end - ttl``, or everything without a TTL, the first time) — and also picks
up rows that arrived since that run with an older event time (a late file, a backfill, a late push):

* Every run records the files that feed the view — the files its ``FileSource`` paths match and its
  offline-log files — with their sizes and modification times, listed before the scan.
* The next incremental run treats a new or changed file as an arrival. It then starts at the oldest
  event time in the arrived files (read from those files alone) when that is before the watermark,
  but never before ``end - ttl``: an older row would be expired online anyway.
* When the oldest arrived event time cannot be read from the files alone (SQL or a transform on
  top of the files, a remote offline log) the run starts at ``end - ttl``; so does every run of a
  view whose rows are not all files (an SQL source), since arrivals there cannot be seen, and the
  first run after runs that recorded no files.

Online writes are conditional on event time, so a late row reaches the online store exactly when it
is newer than what the store holds for its entity, and a re-read row never replaces a newer one.

What a run uses is handed in as ``MaterializeDeps`` (``FeatureStore.materialize`` wires it): the
views and their offline rows, the online store, the metadata store, the artifact store, the acting
user and the lease time.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from shipyard.errors import InvalidInput, NotFound
from shipyard.features.monitoring import column_stats
from shipyard.features.offline.scan import connect
from shipyard.features.paths import OFFLINE_LOG_PREFIX
from shipyard.store import leases, now_ms
from shipyard.store.schema import feature_materializations as runs

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore
    from shipyard.features.definitions import FeatureView, OnDemandFeatureView
    from shipyard.features.online import OnlineStore
    from shipyard.store import MetadataStore
    from shipyard.workspace import Workspace


log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


class MaterializedViews(Protocol):
    """The applied feature views and their offline rows (``FeatureStore``). One may also offer
    ``read_offline_latest`` (the newest row per entity, chosen inside the scan) and
    ``record_dataset_reads`` (lineage of the dataset versions a run read)."""

    def get_view(self, name: str, version: int | None = None) -> FeatureView | OnDemandFeatureView: ...

    def list_views(self) -> list[FeatureView | OnDemandFeatureView]: ...

    def read_offline(self, view_name: str, start: Any = None, end: Any = None) -> pa.Table: ...


@dataclass(frozen=True)
class MaterializeDeps:
    """What materialization uses; ``FeatureStore.materialize`` wires it from its workspace."""

    views: MaterializedViews
    online: OnlineStore
    metadata: MetadataStore  # the runs, their leases and the watermarks
    artifacts: ArtifactStore  # the offline log, and the files each run saw
    user: str  # who the runs are recorded as
    lease_ttl_s: float = leases.DEFAULT_TTL_S


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaterializeResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("start", "end", "max_event_ts"):
            if isinstance(values.get(key), str):
                values[key] = dt.datetime.fromisoformat(values[key])
        return cls(**values)


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
    con = connect()
    try:
        con.register("offline_rows", table)
        sql = (f"SELECT * FROM offline_rows WHERE {' AND '.join(where)} "
               f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1")
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()


MATERIALIZATION_JOB = "feature_materialization"


def _record_start(deps: MaterializeDeps, view: Any, start: dt.datetime | None, end: dt.datetime,
                  mode: str) -> int | None:
    """The run's record, ``running``, with a lease heartbeated until ``_record_end`` (crash recovery)."""
    ttl = float(deps.lease_ttl_s)
    try:
        with deps.metadata.begin() as conn:
            res = conn.execute(runs.insert().values(
                view=view.name, view_version=int(getattr(view, "version", 0) or 0), start_ts=_ms(start),
                end_ts=_ms(end), rows=0, status="running", details={"mode": mode}, started_at=now_ms(),
                actor=deps.user))
            run_id = int(res.inserted_primary_key[0])
            leases.acquire(conn, MATERIALIZATION_JOB, str(run_id), ttl_s=ttl)
    except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - schema not migrated
        log.warning("could not record materialization of %s: %s", view.name, exc)
        return None
    leases.keep(deps.metadata, MATERIALIZATION_JOB, str(run_id), ttl)
    return run_id


def _record_end(deps: MaterializeDeps, run_id: int | None, status: str, rows: int, details: dict[str, Any]) -> None:
    if run_id is None:
        return
    try:
        with deps.metadata.begin() as conn:
            # a run recovery marked abandoned while it was in fact alive (a stall longer than the
            # lease) records its real end all the same
            conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status.in_(("running", "abandoned")))
                         .values(status=status, rows=rows, details=details, finished_at=now_ms()))
            leases.release(conn, MATERIALIZATION_JOB, str(run_id))
    finally:
        leases.forget(deps.metadata, MATERIALIZATION_JOB, str(run_id))


class MaterializationRecovery:
    """Crash recovery of materialization runs (a ``RecoverableKind``, see ``shipyard.store.leases``): a run
    left ``running`` by a process that died is marked ``abandoned``. Nothing is resumed: online
    writes are conditional on event time, so the next run (``materialize-incremental`` starts from
    the last *successful* run) writes whatever the abandoned one did not."""

    kind = MATERIALIZATION_JOB

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def open_keys(self, conn: Any) -> list[str]:
        return [str(r.id) for r in conn.execute(sa.select(runs.c.id).where(runs.c.status == "running"))]

    def recover(self, key: str, lease: leases.Lease, reason: str) -> str:
        with self.ws.store.begin() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == int(key))).first()
            leases.release(conn, MATERIALIZATION_JOB, key)
            if row is None or row.status != "running":
                return "finished"
            details = {**dict(row.details or {}), "error": f"abandoned: {reason}"}
            conn.execute(runs.update().where(runs.c.id == int(key), runs.c.status == "running").values(
                status="abandoned", details=details, finished_at=now_ms()))
        log.warning("materialization run %s of %s abandoned: %s", key, row.view, reason)
        return "abandoned"


def materialize_view(
    deps: MaterializeDeps,
    view_name: str,
    start: Any,
    end: Any,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
    mode: str = "window",
    files: Any = None,
) -> MaterializeResult:
    """Materialize one feature view over [start, end).

    ``files`` is the view's ``arrival_files`` listed before deciding the window (incremental runs);
    by default they are listed here, before the scan, and recorded with the run."""
    store = deps.views  # the views and their offline rows
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
    if files is None:
        files = arrival_files(deps.artifacts, view)
    run_id = _record_start(deps, view, start_ts, end_ts, mode)
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
        online = deps.online
        names = [f.name for f in view.fields]
        for offset in range(0, total, batch_size):
            written = online.write_table(view.name, latest.slice(offset, batch_size), view.join_keys,
                                         view.timestamp_field, names, version=result.version, overwrite_equal=True)
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
        _record_end(deps, run_id, "failed", result.rows_written,
                    {"mode": mode, "error": f"{type(exc).__name__}: {exc}", "rows_read": result.rows_read})
        raise
    result.seconds = time.perf_counter() - began
    _record_end(deps, run_id, "succeeded", result.rows_written, {
        "mode": mode, "rows_read": result.rows_read, "entities": latest.num_rows, "unchanged": result.unchanged,
        "seconds": round(result.seconds, 6), "max_event_ts": _ms(result.max_event_ts), "stats": result.stats,
    })
    _write_state(deps, view.name, run_id, files)
    record = getattr(store, "record_dataset_reads", None)
    if record is not None:  # lineage: the dataset versions this run read name the view
        record([view])
    log.info("materialized %s: %d rows read, %d written in %.2fs", view.name, result.rows_read,
             result.rows_written, result.seconds)
    return result


def _online_views(deps: MaterializeDeps, views: Sequence[str] | None) -> list[str]:
    if views:
        return list(views)
    return [v.name for v in deps.views.list_views() if hasattr(v, "timestamp_field") and getattr(v, "online", True)]


def default_parallel(views: int) -> int:
    """Views materialized at once by default: one per core, at most four."""
    return max(1, min(views, os.cpu_count() or 1, 4))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    # Kept for the life of the process: online stores hold a connection per thread, so fresh
    # threads on every run would leave connections behind.
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="materialize")
        return pool


def _each_view(names: list[str], run: Callable[[str], MaterializeResult],
               parallel: int | None) -> list[MaterializeResult]:
    """``run`` for every view, ``parallel`` at a time (the scan and the online writes of one view
    overlap another's: DuckDB and the store's I/O release the GIL). Results keep the order of
    ``names``. Every view runs even when another fails; the first failure is raised at the end."""
    workers = default_parallel(len(names)) if parallel is None else max(1, int(parallel))
    if workers == 1 or len(names) <= 1:
        return [run(name) for name in names]
    pool = _pool(min(workers, len(names)))
    futures = [pool.submit(run, name) for name in names]
    wait(futures)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]


def _serialized(progress: Progress | None) -> Progress | None:
    if progress is None:
        return None
    lock = threading.Lock()

    def report(view: str, done: int, total: int) -> None:
        with lock:
            progress(view, done, total)

    return report


def materialize(
    deps: MaterializeDeps,
    start: Any,
    end: Any,
    views: Sequence[str] | None = None,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
    parallel: int | None = None,
) -> list[MaterializeResult]:
    """Materialize ``views`` (default: every online feature view) over [start, end), ``parallel``
    views at a time (default: one per core, at most four)."""
    report = _serialized(progress)
    return _each_view(_online_views(deps, views),
                      lambda name: materialize_view(deps, name, start, end, batch_size=batch_size, progress=report),
                      parallel)


def watermark(metadata: MetadataStore, view: str) -> dt.datetime | None:
    """End of the view's last successful materialization, or None."""
    with metadata.read() as conn:
        found = conn.execute(sa.select(sa.func.max(runs.c.end_ts)).where(
            runs.c.view == view, runs.c.status == "succeeded")).scalar()
    return None if found is None else dt.datetime.fromtimestamp(found / 1000, tz=dt.UTC)


# -- arrivals: the files seen by the run that set the watermark ---------------------------------
STATE_PREFIX = "features/materialize-state"
_FILE_SUFFIXES = (".parquet", ".csv", ".gz", ".tsv", ".pq")


def _watermark_run(metadata: MetadataStore, view: str) -> tuple[int, dt.datetime] | None:
    """(id, end) of the successful run that set the view's watermark (the latest end; the newest
    such run on ties): the files it recorded are the ones the watermark vouches for."""
    with metadata.read() as conn:
        found = conn.execute(sa.select(runs.c.id, runs.c.end_ts).where(
            runs.c.view == view, runs.c.status == "succeeded", runs.c.end_ts.is_not(None)).order_by(
            runs.c.end_ts.desc(), runs.c.id.desc()).limit(1)).first()
    return None if found is None else (int(found[0]), dt.datetime.fromtimestamp(found[1] / 1000, tz=dt.UTC))


def _source_file_paths(source: Any) -> list[str] | None:
    """The file patterns a source reads, or None when it reads something other than files."""
    from shipyard.features.sources import DatasetSource, DuckDBSource, FileSource, PushSource

    if isinstance(source, DatasetSource):
        # the version's file: a new version is a new file, so incremental runs see it as arrived
        return [source.path] if source.path else None
    if isinstance(source, FileSource):
        path = source.path
        if not any(ch in path for ch in "*?[") and "://" not in path and not path.lower().endswith(_FILE_SUFFIXES):
            # a folder: the same expansion the offline scan uses
            path = path.rstrip("/") + ("/**/*.parquet" if source.format == "parquet" else "/*.csv")
        return [path]
    if isinstance(source, PushSource):
        return [] if source.batch_source is None else _source_file_paths(source.batch_source)
    if isinstance(source, DuckDBSource):
        found: list[str] = []
        for inner in source.sources.values():
            paths = _source_file_paths(inner)
            if paths is None:
                return None
            found.extend(paths)
        return found
    return None


def _glob_files(pattern: str) -> dict[str, str]:
    if "://" not in pattern:
        out = {}
        for path in glob.glob(pattern, recursive=True):
            if os.path.isfile(path):
                info = os.stat(path)
                out[path] = f"{info.st_size}:{info.st_mtime_ns}"
        return out
    import fsspec

    fs, _root = fsspec.core.url_to_fs(pattern)
    found = fs.glob(pattern, detail=True)
    return {path: f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag')}"
            for path, info in found.items() if info.get("type", "file") == "file"}


def arrival_files(artifacts: ArtifactStore, view: Any) -> dict[str, str] | None:
    """Every file that feeds ``view`` (source files and offline-log files) with its size and
    modification time; None when some of its rows come from elsewhere, so arrivals cannot be seen."""
    patterns = _source_file_paths(getattr(view, "source", None))
    if patterns is None:
        return None

    try:
        files: dict[str, str] = {}
        for pattern in patterns:
            files.update(_glob_files(pattern))
        # offline-log files are written once under unique names: the name identifies the content
        for path in artifacts.list(f"{OFFLINE_LOG_PREFIX}/{view.name}"):
            if path.endswith(".parquet"):
                files["log:" + path] = "log"
    except (OSError, ValueError, ImportError) as exc:
        log.warning("cannot list the files of feature view %s (%s); incremental runs re-read its TTL window",
                    view.name, exc)
        return None
    return files


def _oldest_event(artifacts: ArtifactStore, view: Any, paths: list[str]) -> dt.datetime | None:
    """Oldest event time among the rows of ``paths``; None when it cannot be read from the files alone."""
    if getattr(view, "sql", None) or (hasattr(view, "transform_function") and view.transform_function() is not None):
        return None
    from shipyard.features.sources import FileSource, PushSource

    source = view.source.batch_source if isinstance(view.source, PushSource) else view.source
    parquet, csv = [], []
    for path in paths:
        if path.startswith("log:"):
            if not artifacts.is_local:
                return None
            parquet.append(str(artifacts.local_path(path[4:])))
        elif isinstance(source, FileSource):
            (csv if source.format == "csv" else parquet).append(path)
        else:
            return None
    ts = _quote(view.timestamp_field)
    parts = []
    csv_args = source.duckdb_csv_args() if isinstance(source, FileSource) else "header=true"
    for files, reader in ((parquet, "read_parquet({}, union_by_name=true)"), (csv, f"read_csv({{}}, {csv_args})")):
        if files:
            listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
            parts.append(f"SELECT min(epoch_us(CAST({ts} AS TIMESTAMPTZ))) AS m FROM {reader.format(listed)}")
    con = connect()
    try:
        found = con.execute(f"SELECT min(m) FROM ({' UNION ALL '.join(parts)})").fetchone()[0]
    except duckdb.Error as exc:
        log.warning("cannot read the oldest event time of new files of %s (%s); re-reading its TTL window",
                    view.name, exc)
        return None
    finally:
        con.close()
    return None if found is None else dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=found)


def _state_path(view: str) -> str:
    return f"{STATE_PREFIX}/{view}.json"


def _read_state(artifacts: ArtifactStore, view: str, run_id: int) -> dict[str, str] | None:
    """The files recorded by run ``run_id``; None when that run recorded none."""
    try:
        state = orjson.loads(artifacts.get_bytes(_state_path(view)))
    except (NotFound, orjson.JSONDecodeError):
        return None
    return state["files"] if state.get("run_id") == run_id else None


def _write_state(deps: MaterializeDeps, view: str, run_id: int | None, files: dict[str, str] | None) -> None:
    if run_id is None or files is None:
        return
    last = _watermark_run(deps.metadata, view)
    if last is None or last[0] != run_id:  # an older window: the watermark run's files stay on record
        return
    try:
        deps.artifacts.put_bytes(_state_path(view), orjson.dumps({"run_id": run_id, "files": files}))
    except Exception as exc:  # noqa: BLE001 - only costs the next run a re-read of the TTL window
        log.warning("could not record the files of feature view %s: %s", view, exc)


def _without_recompacted(artifacts: ArtifactStore, view: Any, arrived: list[str], before: dict[str, str]) -> list[str]:
    """``arrived`` less the compacted offline-log files whose inputs the last run had all seen:
    a compaction moves rows into a new file without adding any, so it alone triggers no re-read."""
    from shipyard.features.compaction import is_compacted, resolve_log

    compacted = [p for p in arrived if p.startswith("log:") and is_compacted(p[4:])]
    if not compacted:
        return arrived
    covers = resolve_log(artifacts, f"{OFFLINE_LOG_PREFIX}/{view.name}").covers
    moved = {p for p in compacted
             if p[4:] in covers and all(before.get("log:" + q) == "log" for q in covers[p[4:]])}
    return [p for p in arrived if p not in moved]


def incremental_start(deps: MaterializeDeps, view: Any, end: dt.datetime,
                      files: dict[str, str] | None) -> tuple[dt.datetime | None, str]:
    """Where the incremental run of ``view`` up to ``end`` starts, and why (for the log)."""
    floor = end - view.ttl if getattr(view, "ttl", None) else None
    last = _watermark_run(deps.metadata, view.name)
    if last is None:
        return floor, "first run"
    run_id, previous_end = last
    before = _read_state(deps.artifacts, view.name, run_id) if files is not None else None
    if before is None:
        late: dt.datetime | None = floor
        why = "arrivals cannot be seen"
    else:
        arrived = sorted(path for path, signature in files.items() if before.get(path) != signature)  # type: ignore[union-attr]
        arrived = _without_recompacted(deps.artifacts, view, arrived, before)
        if not arrived:
            return previous_end, "no new or changed files"
        why = f"{len(arrived)} new or changed files"
        oldest = _oldest_event(deps.artifacts, view, arrived)
        late = floor if oldest is None else oldest if floor is None else max(oldest, floor)
    if late is None:
        return None, why
    return min(previous_end, late), why


def materialize_incremental(
    deps: MaterializeDeps,
    end: Any = None,
    views: Sequence[str] | None = None,
    *,
    batch_size: int = 20_000,
    progress: Progress | None = None,
    parallel: int | None = None,
) -> list[MaterializeResult]:
    """Materialize each view from where its last incremental run ended (earlier when late rows
    arrived since; see the module docstring) up to ``end``."""
    end_ts = _utc(end, "end") if end is not None else dt.datetime.now(dt.UTC)
    report = _serialized(progress)

    def run(name: str) -> MaterializeResult:
        view = deps.views.get_view(name)
        # listed before the scan: a file landing during the run counts as new next time
        files = arrival_files(deps.artifacts, view)
        start, why = incremental_start(deps, view, end_ts, files)
        log.info("incremental materialization of %s starts at %s (%s)", name, start, why)
        if start is not None and start >= end_ts:
            return MaterializeResult(name, getattr(view, "version", None), start, end_ts)
        return materialize_view(deps, name, start, end_ts, batch_size=batch_size, progress=report,
                                mode="incremental", files=files)

    return _each_view(_online_views(deps, views), run, parallel)
