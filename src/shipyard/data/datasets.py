"""Versioned datasets: immutable Parquet versions with schema, row count, content hash and profile.

A refresh reads the dataset's source in chunks into local Parquet part files, unifies their schemas
(a column that is all-null in the first chunk takes the type of a later one), writes one Parquet file,
hashes it, profiles it, uploads it to ``datasets/<name>/data/<sha256>.parquet`` and only then inserts
the version row, in one transaction that also advances ``latest_version``. A refresh that fails
anywhere leaves no version and no new file. When the content hash equals the latest version's, no
version is added unless ``force`` is given.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from shipyard.arrow_util import decimals_as_floats
from shipyard.artifacts import ArtifactStore, sha256_file
from shipyard.errors import InvalidInput, NotFound
from shipyard.store import MetadataStore, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import dataset_reads, dataset_versions, datasets

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.data.sources import DataSource, Progress

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 100_000
#: the largest version number (the metadata databases keep it in a 32-bit INTEGER column)
MAX_VERSION = 2**31 - 1
DRIFT_SAMPLE_ROWS = 200_000
ROW_GROUP_ROWS = 131_072
READER_KINDS = ("run", "pipeline_run", "model_version", "feature_view", "job")
# PSI rule of thumb (docs/data.md): < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "significant"))
# a column has drifted between two versions at a significant PSI (monitoring's drift threshold too)
DRIFTED_LEVEL = "significant"
# bump when the per-column drift of a diff is computed differently: stored results are then recomputed
DRIFT_FORMAT = 1
# module-level aliases: inside DatasetVersions, ``list`` names its method
_Names = list[str]
_DriftRows = list[dict[str, Any]]


@dataclass(frozen=True)
class DatasetVersion:
    dataset: str
    version: int
    path: str  # artifact path, relative to the artifact root
    sha256: str
    size: int
    rows: int
    schema: list[dict[str, str]]
    profile: dict[str, Any]
    profile_path: str
    duration_ms: int
    created_at: int
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.schema]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefreshResult:
    version: DatasetVersion
    created: bool  # False when the content equalled the latest version's and nothing was added
    rows_read: int
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.to_dict(), "created": self.created, "rows_read": self.rows_read,
                "elapsed_s": self.elapsed_s}


@dataclass(frozen=True)
class DatasetDiff:
    dataset: str
    a: int
    b: int
    rows_a: int
    rows_b: int
    added: list[dict[str, str]]
    removed: list[dict[str, str]]
    type_changed: list[dict[str, str]]
    drift: list[dict[str, Any]] = field(default_factory=list)
    # decimal columns whose precision or scale changed: not a retype. A PostgreSQL NUMERIC without a
    # declared precision is typed from the values read, so a refresh with one more digit changes it.
    precision_changed: list[dict[str, str]] = field(default_factory=list)

    @property
    def row_delta(self) -> int:
        return self.rows_b - self.rows_a

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["row_delta"] = self.row_delta
        return out


def _version(row: Any) -> DatasetVersion:
    data = dict(row._mapping)
    data["schema"] = list(data.get("schema") or [])
    data["profile"] = dict(data.get("profile") or {})
    return DatasetVersion(**data)


def schema_of(table_schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in table_schema]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _plain_type(t: pa.DataType) -> pa.DataType:
    """One spelling per kind of column, whichever source produced it (pandas writes large_string)."""
    if pa.types.is_null(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def write_parquet(parts: list[Path], target: Path) -> tuple[pa.Schema, int]:
    """Join chunk files into one Parquet file under their unified schema; returns (schema, rows)."""
    schemas = [pq.read_schema(p) for p in parts]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"the source returned chunks whose column types cannot be joined: {exc}; cast the "
                           "columns in the query or set column_types", {"field": "query"}) from None
    schema = pa.schema([f.with_type(_plain_type(f.type)) for f in schema])
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        # fixed-size row groups: the file, and so its hash, depends on the rows, not on how they were read
        for part in parts:
            table = _conform(pq.read_table(part), schema)
            rows += table.num_rows
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                joined = pa.concat_tables(pending).combine_chunks()
                full = (joined.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
                for start in range(0, full, ROW_GROUP_ROWS):
                    writer.write_table(joined.slice(start, ROW_GROUP_ROWS))
                pending = [joined.slice(full)]
                pending_rows = joined.num_rows - full
        if pending_rows or rows == 0:
            writer.write_table(pa.concat_tables(pending).combine_chunks())
    return schema, rows


def read_chunks_to_parquet(source: DataSource, what: dict[str, Any], folder: Path, chunk_rows: int,
                           progress: Progress | None) -> tuple[Path, pa.Schema, int]:
    total = source.count_rows(what) if progress is not None else None
    parts: list[Path] = []
    done = 0
    for chunk in source.read_batches(what, chunk_rows):
        part = folder / f"part-{len(parts):06d}.parquet"
        pq.write_table(chunk, part)
        parts.append(part)
        done += chunk.num_rows
        if progress is not None:
            progress(done, total)
    if not parts:
        raise InvalidInput("the source returned no data at all (not even column names)", {"field": "path"})
    target = folder / "data.parquet"
    schema, rows = write_parquet(parts, target)
    for part in parts:
        part.unlink()
    return target, schema, rows


SCRATCH_PREFIX = "refresh-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class DatasetVersions:
    """Versions of datasets: write (refresh), read, diff and lineage."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, scratch_dir: Path | None = None) -> None:
        self.store = store
        self.artifacts = artifacts
        # refreshes write their chunks here (default: the system's temporary folder); a folder left
        # by a refresh whose process was killed is removed by the next refresh
        self.scratch_dir = scratch_dir

    # -- writing ---------------------------------------------------------------------------------
    def _scratch(self) -> Path | None:
        """The scratch folder, without the folders of refreshes whose process is gone."""
        if self.scratch_dir is None:
            return None
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        for folder in self.scratch_dir.glob(f"{SCRATCH_PREFIX}*-*"):
            pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        return self.scratch_dir

    def write_version(self, name: str, source: DataSource, what: dict[str, Any], actor: str, *,
                      chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: Progress | None = None,
                      force: bool = False, profile_options: dict[str, Any] | None = None) -> RefreshResult:
        if chunk_rows < 1:
            raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}", {"field": "chunk_rows"})
        start = time.perf_counter()
        created_paths: list[str] = []
        with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=self._scratch()) as tmp:
            local, schema, rows = read_chunks_to_parquet(source, what, Path(tmp), chunk_rows, progress)
            digest, size = sha256_file(local)
            latest = self.latest(name)
            if latest is not None and latest.sha256 == digest and not force:
                return RefreshResult(latest, False, rows, time.perf_counter() - start)
            summary, profile_path = self._profile(name, digest, local, profile_options, created_paths)
            path = f"datasets/{name}/data/{digest}.parquet"
            try:
                if not self.artifacts.exists(path):
                    self.artifacts.put_file(path, local)
                    created_paths.append(path)
                version = self._insert(name, path, digest, size, rows, schema_of(schema), summary, profile_path,
                                       int((time.perf_counter() - start) * 1000), actor)
            except BaseException:
                for created in created_paths:
                    try:
                        self.artifacts.delete(created)
                    except Exception:  # noqa: BLE001 - keep the original error
                        log.warning("could not remove %s after a failed refresh", created, exc_info=True)
                raise
        log.info("dataset %s version %d: %d rows, sha256 %s", name, version.version, rows, digest[:12])
        return RefreshResult(version, True, rows, time.perf_counter() - start)

    def _profile(self, name: str, digest: str, local: Path, options: dict[str, Any] | None,
                 created: list[str]) -> tuple[dict[str, Any], str]:
        options = dict(options or {})
        if options.pop("enabled", True) is False:
            return {}, ""
        from shipyard.data.profile import profile

        prof = profile(pq.read_table(local), target=options.get("target"), bad=options.get("bad_value"))
        overview = prof.overview()
        flagged = {c.name: list(c.flags) for c in prof.columns.values() if c.flags}
        summary = {"overview": overview, "flags": flagged}
        if prof.target:
            summary["iv"] = {r.column: float(r.iv) for r in prof.iv_table().itertuples()}
        stem = f"datasets/{name}/profiles/{digest}"
        for suffix, text in ((".json", prof.to_json()), (".html", prof.to_html())):
            if not self.artifacts.exists(stem + suffix):
                self.artifacts.put_bytes(stem + suffix, text.encode())
                created.append(stem + suffix)
        return _json_safe(summary), stem

    def _insert(self, name: str, path: str, digest: str, size: int, rows: int, schema: list[dict[str, str]],
                profile: dict[str, Any], profile_path: str, duration_ms: int, actor: str) -> DatasetVersion:
        with self.store.begin() as conn:
            current = conn.execute(
                sa.select(datasets.c.latest_version).where(datasets.c.name == name).with_for_update()
            ).first()
            if current is None:
                raise NotFound(f"dataset {name!r} does not exist", {"field": "dataset"})
            version = int(current.latest_version) + 1
            ts = now_ms()
            values = {"dataset": name, "version": version, "path": path, "sha256": digest, "size": size,
                      "rows": rows, "schema": schema, "profile": profile, "profile_path": profile_path,
                      "duration_ms": duration_ms, "created_at": ts, "created_by": actor}
            conn.execute(dataset_versions.insert().values(**values))
            conn.execute(datasets.update().where(datasets.c.name == name).values(latest_version=version,
                                                                                  updated_at=ts))
            record_event(conn, actor, "dataset.version_created", f"dataset:{name}",
                         {"version": version, "rows": rows, "sha256": digest})
        return DatasetVersion(**values)

    # -- reading ---------------------------------------------------------------------------------
    def latest(self, name: str) -> DatasetVersion | None:
        query = (sa.select(dataset_versions).where(dataset_versions.c.dataset == name)
                 .order_by(dataset_versions.c.version.desc()).limit(1))
        with self.store.read() as conn:
            row = conn.execute(query).first()
        return _version(row) if row is not None else None

    def get(self, name: str, version: int | str | None = None, field: str = "version") -> DatasetVersion:
        """Version ``version`` (a number or 'latest') of ``name``; ``field`` names it in errors."""
        if version in (None, "latest"):
            found = self.latest(name)
            if found is None:
                raise NotFound(f"dataset {name!r} has no version yet; run `shipyard datasets refresh {name}`",
                               {"field": field, "dataset": name})
            return found
        try:
            number = int(version)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidInput(f"{field} {version!r} is not a number or 'latest'", {"field": field}) from None
        if not 1 <= number <= MAX_VERSION:
            raise InvalidInput(f"{field} {number} is out of range: a version is 1 to {MAX_VERSION} or 'latest'",
                               {"field": field, "min": 1, "max": MAX_VERSION})
        with self.store.read() as conn:
            row = conn.execute(sa.select(dataset_versions).where(
                dataset_versions.c.dataset == name, dataset_versions.c.version == number)).first()
        if row is None:
            raise NotFound(f"dataset {name!r} has no version {number}; list them with "
                           f"`shipyard datasets versions {name}`", {"field": field, "dataset": name})
        return _version(row)

    def list(self, name: str) -> list[DatasetVersion]:
        query = (sa.select(dataset_versions).where(dataset_versions.c.dataset == name)
                 .order_by(dataset_versions.c.version))
        with self.store.read() as conn:
            return [_version(r) for r in conn.execute(query)]

    def read_table(self, version: DatasetVersion, columns: list[str] | None = None) -> pa.Table:
        data = self.artifacts.get_bytes(version.path, expected_sha256=version.sha256)
        return pq.read_table(io.BytesIO(data), columns=columns)

    def read(self, version: DatasetVersion, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_table(version, columns).to_pandas()

    def profile_document(self, version: DatasetVersion, kind: str = "json") -> bytes:
        if not version.profile_path:
            raise NotFound(f"dataset version {version.ref} was refreshed without a profile", {"field": "profile"})
        if kind not in ("json", "html"):
            raise InvalidInput(f"profile kind {kind!r}: use json or html", {"field": "kind"})
        return self.artifacts.get_bytes(f"{version.profile_path}.{kind}")

    # -- comparing -------------------------------------------------------------------------------
    def diff(self, a: DatasetVersion, b: DatasetVersion, bins: int = 10) -> DatasetDiff:
        types_a = {c["name"]: c["type"] for c in a.schema}
        types_b = {c["name"]: c["type"] for c in b.schema}
        added = [{"name": n, "type": t} for n, t in types_b.items() if n not in types_a]
        removed = [{"name": n, "type": t} for n, t in types_a.items() if n not in types_b]
        changed = [{"name": n, "from": types_a[n], "to": types_b[n]} for n in types_a
                   if n in types_b and types_a[n] != types_b[n]]
        resized = [c for c in changed if _is_decimal(c["from"]) and _is_decimal(c["to"])]
        for c in resized:
            c["change"] = "widened" if _widens(c["from"], c["to"]) else "narrowed"
        changed = [c for c in changed if c not in resized]
        common = [n for n in types_a if n in types_b]
        return DatasetDiff(a.dataset, a.version, b.version, a.rows, b.rows, added, removed, changed,
                           self._drift(a, b, common, bins), resized)

    def _drift(self, a: DatasetVersion, b: DatasetVersion, common: _Names, bins: int) -> _DriftRows:
        """PSI of every common column of ``b`` against ``a``. Versions never change (their path is their
        content hash), so the result of a pair is stored beside the data and read back the next time:
        the dataset page shows a comparison on every visit without reading both versions again."""
        stored = f"datasets/{a.dataset}/drift/v{DRIFT_FORMAT}/{a.sha256}-{b.sha256}-{bins}.json"
        if self.artifacts.exists(stored):
            return list(json.loads(self.artifacts.get_bytes(stored)))
        from shipyard.risk.metrics import psi

        # decimals compare as numbers (deciles of the reference), as monitoring's drift does
        frame_a = _sample(decimals_as_floats(self.read(a, common)))
        frame_b = _sample(decimals_as_floats(self.read(b, common)))
        drift = []
        for column in common:
            entry: dict[str, Any] = {"column": column}
            try:
                value = psi(frame_a[column], frame_b[column], bins)
                level = next(lvl for limit, lvl in PSI_LEVELS if value < limit)
                entry.update(psi=value, level=level, drifted=level == DRIFTED_LEVEL)
            except Exception as exc:  # noqa: BLE001 - an unsupported column gets a note, not a failed diff
                entry.update(psi=None, level="n/a", drifted=None, note=str(getattr(exc, "message", exc)))
            drift.append(entry)
        drift.sort(key=lambda d: -(d["psi"] if d["psi"] is not None else -1.0))
        self.artifacts.put_bytes(stored, json.dumps(drift).encode())
        return drift

    # -- lineage ---------------------------------------------------------------------------------
    def record_read(self, name: str, version: int, reader_kind: str, reader_id: str, actor: str) -> None:
        if reader_kind not in READER_KINDS:
            raise InvalidInput(f"reader_kind {reader_kind!r} is not known; use one of {list(READER_KINDS)}",
                               {"field": "reader_kind"})
        edge = ((dataset_reads.c.dataset == name) & (dataset_reads.c.version == int(version))
                & (dataset_reads.c.reader_kind == reader_kind) & (dataset_reads.c.reader_id == str(reader_id)))
        with self.store.begin() as conn:
            # one edge per reader and version: a view materialized every minute is listed once
            if conn.execute(sa.select(dataset_reads.c.id).where(edge).limit(1)).first() is None:
                conn.execute(dataset_reads.insert().values(dataset=name, version=int(version),
                                                           reader_kind=reader_kind, reader_id=str(reader_id),
                                                           created_at=now_ms(), actor=actor))

    def reads(self, name: str) -> list[dict[str, Any]]:
        query = (sa.select(dataset_reads).where(dataset_reads.c.dataset == name)
                 .order_by(dataset_reads.c.id))
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


_DECIMAL = re.compile(r"^decimal(?:32|64|128|256)\((\d+), (-?\d+)\)$")


def _is_decimal(type_name: str) -> bool:
    return _DECIMAL.match(type_name) is not None


def _widens(old: str, new: str) -> bool:
    """Every value of decimal type ``old`` fits ``new`` (no fewer integer digits, no fewer decimals)."""
    p0, s0 = map(int, _DECIMAL.match(old).groups())  # type: ignore[union-attr]
    p1, s1 = map(int, _DECIMAL.match(new).groups())  # type: ignore[union-attr]
    return s1 >= s0 and p1 - s1 >= p0 - s0


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= DRIFT_SAMPLE_ROWS:
        return frame
    return frame.sample(DRIFT_SAMPLE_ROWS, random_state=0)


def _json_safe(value: Any) -> Any:
    """Profile summaries go into a JSON column: plain floats, no NaN."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
