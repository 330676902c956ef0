"""Compaction of a feature view's offline log: many small pushed Parquet files into a few large ones.

Every push appends one small file (``part-*.parquet``) under ``features/offline/<view>/``. A
compaction reads a run of small files and writes their rows, unchanged, into one file
``compact-<id>.parquet``. Which inputs it replaces is recorded in a sidecar ``compact-<id>.json``
written *before* the merged file; writing the merged file is the commit (local writes are a rename,
S3 objects appear whole). Readers resolve the log with ``live_log_files``:

- a ``compact-*.parquet`` file replaces the files its sidecar lists, so they are skipped while
  they still exist (a crash after the commit and before the deletes duplicates nothing);
- a sidecar without its merged file is an unfinished compaction and is ignored (a crash before the
  commit loses nothing: the inputs are still live);
- compacted files are taken newest first; one covered by a newer compacted file is skipped, and one
  whose inputs overlap a newer one's (two compactions that ran at once) is skipped as well, so no
  row is read twice.

Replaced files are deleted only once their replacement is older than ``grace_seconds``: a reader
that listed the log just before the commit can still open them. The guarantee therefore holds for
reads and compactions that finish within the grace period. Rows are never rewritten or
deduplicated: the offline log holds the same rows before and after, so (entity, event time)
idempotency of pushes is untouched.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore

log = logging.getLogger(__name__)

COMPACTED_PREFIX = "compact-"
DEFAULT_TARGET_ROWS = 1_000_000
DEFAULT_GRACE_SECONDS = 600.0

# Sidecars never change once written, so a process keeps the ones it has read.
_SIDECAR_CACHE: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_CACHE_SIZE = 4096
_cache_lock = threading.Lock()


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def is_compacted(path: str) -> bool:
    return _basename(path).startswith(COMPACTED_PREFIX)


def _sidecar_of(path: str) -> str:
    return path[: -len(".parquet")] + ".json"


def _created_ms(path: str) -> int:
    """Milliseconds encoded in a compacted file's name (``compact-<ms>-<random>``)."""
    try:
        return int(_basename(path)[len(COMPACTED_PREFIX):].split("-", 1)[0])
    except ValueError:
        return 0


def read_sidecar(artifacts: ArtifactStore, path: str) -> dict[str, Any] | None:
    """The sidecar of compacted file ``path`` (``None`` if it is missing)."""
    key = (artifacts.root, path)
    with _cache_lock:
        if key in _SIDECAR_CACHE:
            return _SIDECAR_CACHE[key]
    try:
        data = json.loads(artifacts.get_bytes(_sidecar_of(path)))
    except NotFound:
        return None
    with _cache_lock:
        _SIDECAR_CACHE[key] = data
        while len(_SIDECAR_CACHE) > _CACHE_SIZE:
            _SIDECAR_CACHE.popitem(last=False)
    return data


@dataclass
class LogState:
    """One listing of a view's log, resolved into what a reader reads and what may be deleted."""

    folder: str
    live: list[str] = field(default_factory=list)
    # replaced file -> creation time (ms) of the compacted file that made it redundant
    replaced: dict[str, int] = field(default_factory=dict)
    orphan_sidecars: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows of live compacted files (from sidecars)
    covers: dict[str, list[str]] = field(default_factory=dict)  # inputs of live compacted files


def resolve_log(artifacts: ArtifactStore, folder: str, names: list[str] | None = None) -> LogState:
    """Resolve the files under ``folder`` (listed now unless ``names`` is given)."""
    if names is None:
        names = artifacts.list(folder)
    state = LogState(folder)
    parquet = [p for p in names if p.endswith(".parquet")]
    compacted = sorted((p for p in parquet if is_compacted(p)), key=_basename, reverse=True)
    present = set(names)
    state.orphan_sidecars = [p for p in names if is_compacted(p) and p.endswith(".json")
                             and p[: -len(".json")] + ".parquet" not in present]
    skipped: dict[str, int] = {}
    claimed: dict[str, int] = {}  # inputs of accepted compacted files -> their creation time
    unreadable: set[str] = set()
    for path in compacted:  # newest first
        if path in skipped:
            continue
        sidecar = read_sidecar(artifacts, path)
        if sidecar is None:
            # being deleted as replaced (the file goes first, then its sidecar), or its sidecar was
            # lost: either way what it holds cannot be told apart from live files, so it is not read
            log.warning("compacted file %s has no sidecar; it is not read", path)
            unreadable.add(path)
            continue
        inputs = [f"{folder}/{name}" for name in sidecar.get("covers", [])]
        clash = next((claimed[p] for p in inputs if p in claimed), None)
        if clash is not None:
            skipped[path] = clash  # a concurrent compaction merged the same files first
            continue
        made = _created_ms(path)
        for p in inputs:
            claimed[p] = made
            skipped.setdefault(p, made)
        state.rows[path] = int(sidecar.get("rows", 0))
        state.covers[path] = inputs
    state.live = sorted(p for p in parquet if p not in skipped and p not in unreadable)
    state.replaced = {p: ms for p, ms in skipped.items() if p in present}
    return state


def live_log_files(artifacts: ArtifactStore, folder: str) -> list[str]:
    """The Parquet files of a view's log a reader must read: each row exactly once."""
    return resolve_log(artifacts, folder).live


@dataclass
class CompactionResult:
    view: str
    files_before: int = 0  # live files before
    files_after: int = 0  # live files after
    rows_merged: int = 0
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "files_before": self.files_before, "files_after": self.files_after,
                "rows_merged": self.rows_merged, "written": list(self.written), "deleted": len(self.deleted)}


def compact_log(artifacts: ArtifactStore, folder: str, view: str, *, timestamp_field: str | None = None,
                target_rows: int = DEFAULT_TARGET_ROWS, grace_seconds: float = DEFAULT_GRACE_SECONDS
                ) -> CompactionResult:
    """Merge the small live files under ``folder`` into files of up to ``target_rows`` rows.

    Files that already hold ``target_rows`` rows or more are left alone; only files with the same
    schema are merged together (a view's log changes schema when the view changes). Replaced files
    whose replacement is older than ``grace_seconds`` are deleted (0 deletes this run's inputs at
    once; only safe when nothing reads the log meanwhile).
    """
    if isinstance(target_rows, bool) or not isinstance(target_rows, int) or target_rows < 2:
        raise InvalidInput(f"target_rows must be an integer of at least 2, got {target_rows!r}",
                           {"field": "target_rows"})
    if grace_seconds < 0:
        raise InvalidInput(f"grace_seconds must be 0 or more, got {grace_seconds!r}", {"field": "grace_seconds"})
    result = CompactionResult(view)
    state = resolve_log(artifacts, folder)
    result.files_before = len(state.live)
    result.deleted += delete_replaced(artifacts, state, grace_seconds)
    for group in _groups(artifacts, state, target_rows):
        written = _merge(artifacts, folder, group, state, timestamp_field)
        if written:
            result.written.append(written[0])
            result.rows_merged += written[1]
    if result.written:
        state = resolve_log(artifacts, folder)
        result.deleted += delete_replaced(artifacts, state, grace_seconds)
    result.files_after = len(resolve_log(artifacts, folder).live)
    return result


def delete_replaced(artifacts: ArtifactStore, state: LogState, grace_seconds: float) -> list[str]:
    """Delete replaced files and unfinished sidecars older than the grace period; returns their paths."""
    cutoff = time.time() * 1000 - grace_seconds * 1000
    deleted = []
    for path, made in sorted(state.replaced.items()):
        if made > cutoff:
            continue
        artifacts.delete(path)  # a compacted file goes before its sidecar, never the other way round
        deleted.append(path)
        if is_compacted(path):
            artifacts.delete(_sidecar_of(path))
            deleted.append(_sidecar_of(path))
    for path in state.orphan_sidecars:
        if _created_ms(path) <= cutoff:
            artifacts.delete(path)
            deleted.append(path)
    return deleted


@dataclass
class _Input:
    path: str
    rows: int
    table: pa.Table | None = None  # kept when reading the row count meant reading the file


def _read(artifacts: ArtifactStore, path: str) -> pa.Table:
    if artifacts.is_local:
        return pq.read_table(artifacts.local_path(path))
    return pq.read_table(io.BytesIO(artifacts.get_bytes(path)))


def _inspect(artifacts: ArtifactStore, path: str) -> tuple[_Input, pa.Schema]:
    if artifacts.is_local:  # the footer is enough; the rows are read when the run is merged
        meta = pq.read_metadata(artifacts.local_path(path))
        return _Input(path, meta.num_rows), meta.schema.to_arrow_schema()
    table = _read(artifacts, path)  # one download serves both the count and the merge
    return _Input(path, table.num_rows, table), table.schema


def _groups(artifacts: ArtifactStore, state: LogState, target_rows: int) -> list[list[_Input]]:
    """Runs of small files (oldest first) with one schema, each of at most ``target_rows`` rows."""
    by_schema: dict[str, list[_Input]] = {}
    for path in state.live:
        if state.rows.get(path, 0) >= target_rows:
            continue
        item, schema = _inspect(artifacts, path)
        if item.rows >= target_rows:
            continue
        by_schema.setdefault(schema.remove_metadata().to_string(), []).append(item)
    groups: list[list[_Input]] = []
    for inputs in by_schema.values():
        current: list[_Input] = []
        total = 0
        for item in inputs:
            if current and total + item.rows > target_rows:
                groups.append(current)
                current, total = [], 0
            current.append(item)
            total += item.rows
        groups.append(current)
    return [g for g in groups if len(g) >= 2]


def _merge(artifacts: ArtifactStore, folder: str, group: list[_Input], state: LogState,
           timestamp_field: str | None) -> tuple[str, int] | None:
    """Write one merged file for ``group``; ``None`` if a concurrent compaction took its inputs first."""
    table = pa.concat_tables([item.table if item.table is not None else _read(artifacts, item.path)
                              for item in group])
    if timestamp_field and timestamp_field in table.column_names:
        # event-time order gives each row group a narrow time range, which scans with a time filter skip
        table = table.sort_by([(timestamp_field, "ascending")])
    inputs = {item.path for item in group}
    covers = set(inputs)
    for item in group:  # a merged input's own inputs may still exist (within the grace period)
        covers.update(state.covers.get(item.path, []))
    latest = resolve_log(artifacts, folder)
    if not inputs <= set(latest.live):
        log.info("compaction of %s skipped a run of %d files: another compaction replaced them", folder, len(inputs))
        return None
    name = f"{folder}/{COMPACTED_PREFIX}{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}.parquet"
    prefix = folder + "/"
    sidecar = {"format": 1, "rows": table.num_rows,
               "covers": sorted(p[len(prefix):] for p in covers if p.startswith(prefix))}
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    artifacts.put_bytes(_sidecar_of(name), json.dumps(sidecar).encode())
    artifacts.put_bytes(name, buffer.getvalue())  # the commit: from here readers skip the inputs
    return name, table.num_rows
