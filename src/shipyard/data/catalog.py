"""``ws.data``: data sources and versioned datasets of one project.

    ws.secrets.put("warehouse_pw", "...", actor="alice")
    ws.data.add_source("warehouse", "sql", {"url": "postgresql+psycopg://etl@db:5432/dwh",
                                             "secrets": {"password": "warehouse_pw"}}, actor="alice")
    ws.data.test_source("warehouse").ok
    ws.data.create_dataset("loans", "warehouse", {"query": "SELECT * FROM loans"}, actor="alice")
    result = ws.data.refresh("loans", actor="alice")          # version 1: Parquet + schema + profile
    ws.data.diff("loans")                                     # previous vs latest: schema, rows, PSI
    df = ws.data.read("loans")                                # the latest version as a DataFrame
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.artifacts import ArtifactStore
from shipyard.data.datasets import (
    DEFAULT_CHUNK_ROWS,
    DatasetDiff,
    DatasetVersion,
    DatasetVersions,
    RefreshResult,
)
from shipyard.data.file_source import check_source_path
from shipyard.data.source_kinds import open_source, validate_spec
from shipyard.data.sources import (
    ConnectionTest,
    DataSource,
    Progress,
    SourceRecord,
    check_name,
)
from shipyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from shipyard.secrets import SecretStore
from shipyard.store import MetadataStore, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import data_sources, datasets

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DATASET_KEYS = {"query", "table", "path", "format", "delimiter", "column_types", "sheet", "profile"}


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    source: str
    spec: dict[str, Any]
    description: str
    latest_version: int
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_dataset_spec(kind: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise InvalidInput("a dataset spec must be a mapping such as {'query': 'SELECT ...'}", {"field": "spec"})
    unknown = set(spec) - DATASET_KEYS
    if unknown:
        raise InvalidInput(f"dataset spec: unknown key(s) {sorted(unknown)}; use {sorted(DATASET_KEYS)}",
                           {"field": sorted(unknown)[0]})
    wanted = ("path",) if kind == "file" else ("query", "table")
    given = [k for k in wanted if spec.get(k)]
    if len(given) != 1:
        raise InvalidInput(f"a dataset on a {kind} source needs exactly one of {list(wanted)}",
                           {"field": wanted[0]})
    if kind == "file":
        check_source_path(str(spec["path"]))
    profile = spec.get("profile", {})
    if not isinstance(profile, Mapping | bool):
        raise InvalidInput("profile must be false or a mapping like {'target': 'bad'}", {"field": "profile"})
    return dict(spec)


class DataCatalog:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, secrets: SecretStore, base_dir: Path,
                 scratch_dir: Path | None = None) -> None:
        self.store = store
        self.artifacts = artifacts
        self.secrets = secrets
        self.base_dir = Path(base_dir)
        self.versions = DatasetVersions(store, artifacts, scratch_dir)

    # -- sources ---------------------------------------------------------------------------------
    def add_source(self, name: str, kind: str, spec: Mapping[str, Any], actor: str, description: str = "",
                   *, replace: bool = False) -> SourceRecord:
        check_name(name, "source")
        clean = validate_spec(kind, spec)
        for secret in clean.get("secrets", {}).values():
            if not self.secrets.exists(secret):
                raise InvalidInput(f"secret {secret!r} does not exist; create it with `shipyard secrets set {secret}`",
                                   {"field": "secrets", "secret": secret})
        if kind == "file" and clean["root"] and "://" not in clean["root"]:
            clean["root"] = str((self.base_dir / os.path.expanduser(clean["root"])).resolve())
        ts = now_ms()
        with self.store.begin() as conn:
            exists = conn.execute(sa.select(data_sources.c.name).where(data_sources.c.name == name)).first()
            if exists and not replace:
                raise AlreadyExists(f"source {name!r} already exists; pass replace=True (--replace) to change it",
                                    {"field": "name"})
            if exists:
                conn.execute(data_sources.update().where(data_sources.c.name == name).values(
                    kind=kind, spec=clean, description=description, updated_at=ts, updated_by=actor))
            else:
                conn.execute(data_sources.insert().values(
                    name=name, kind=kind, spec=clean, description=description, created_at=ts, created_by=actor,
                    updated_at=ts, updated_by=actor))
            record_event(conn, actor, "data.source_saved", f"source:{name}", {"kind": kind})
        return self.get_source(name)

    def get_source(self, name: str) -> SourceRecord:
        with self.store.read() as conn:
            row = conn.execute(sa.select(data_sources).where(data_sources.c.name == name)).first()
        if row is None:
            raise NotFound(f"source {name!r} does not exist; add it with `shipyard data sources add`",
                           {"field": "source", "name": name})
        return SourceRecord(**row._mapping)

    def list_sources(self) -> list[SourceRecord]:
        with self.store.read() as conn:
            return [SourceRecord(**r._mapping) for r in conn.execute(sa.select(data_sources).order_by(data_sources.c.name))]

    def delete_source(self, name: str, actor: str) -> None:
        with self.store.begin() as conn:
            using = conn.execute(sa.select(datasets.c.name).where(datasets.c.source == name)).scalars().all()
            if using:
                raise Conflict(f"source {name!r} is used by dataset(s) {list(using)}; delete those first",
                               {"field": "source", "datasets": list(using)})
            if conn.execute(data_sources.delete().where(data_sources.c.name == name)).rowcount == 0:
                raise NotFound(f"source {name!r} does not exist", {"field": "source"})
            record_event(conn, actor, "data.source_deleted", f"source:{name}")

    def open(self, name: str) -> DataSource:
        record = self.get_source(name)
        return open_source(record.kind, record.spec, self.secrets)

    def test_source(self, name: str) -> ConnectionTest:
        source = self.open(name)
        try:
            return source.test()
        finally:
            source.close()

    def preview(self, name: str, what: Mapping[str, Any], limit: int = 20) -> pa.Table:
        """The first ``limit`` rows of ``what`` (a dataset spec) on source ``name``."""
        import pyarrow as pa

        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}", {"field": "limit"})
        record = self.get_source(name)
        spec = _check_dataset_spec(record.kind, what)
        source = open_source(record.kind, record.spec, self.secrets)
        try:
            chunks = []
            got = 0
            # read to the end: the sources stop at the limit, and a half-read cursor would be left open
            for chunk in source.read_batches(spec, min(limit, DEFAULT_CHUNK_ROWS), limit=limit):
                if got < limit or not chunks:
                    chunks.append(chunk.slice(0, limit - got))
                    got += chunks[-1].num_rows
            return pa.concat_tables(chunks, promote_options="permissive")
        finally:
            source.close()

    # -- datasets --------------------------------------------------------------------------------
    def create_dataset(self, name: str, source: str, spec: Mapping[str, Any], actor: str, description: str = "",
                       *, replace: bool = False) -> DatasetRecord:
        check_name(name, "dataset")
        record = self.get_source(source)
        clean = _check_dataset_spec(record.kind, spec)
        ts = now_ms()
        with self.store.begin() as conn:
            exists = conn.execute(sa.select(datasets.c.name).where(datasets.c.name == name)).first()
            if exists and not replace:
                raise AlreadyExists(f"dataset {name!r} already exists; pass replace=True (--replace) to change its "
                                    "spec (versions are kept)", {"field": "name"})
            if exists:
                conn.execute(datasets.update().where(datasets.c.name == name).values(
                    source=source, spec=clean, description=description, updated_at=ts, updated_by=actor))
            else:
                conn.execute(datasets.insert().values(
                    name=name, source=source, spec=clean, description=description, latest_version=0,
                    created_at=ts, created_by=actor, updated_at=ts, updated_by=actor))
            record_event(conn, actor, "dataset.saved", f"dataset:{name}", {"source": source})
        return self.get_dataset(name)

    def get_dataset(self, name: str) -> DatasetRecord:
        with self.store.read() as conn:
            row = conn.execute(sa.select(datasets).where(datasets.c.name == name)).first()
        if row is None:
            raise NotFound(f"dataset {name!r} does not exist; create it with `shipyard datasets create`",
                           {"field": "dataset", "name": name})
        return DatasetRecord(**row._mapping)

    def list_datasets(self) -> list[DatasetRecord]:
        with self.store.read() as conn:
            return [DatasetRecord(**r._mapping) for r in conn.execute(sa.select(datasets).order_by(datasets.c.name))]

    def refresh(self, name: str, actor: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                progress: Progress | None = None, force: bool = False) -> RefreshResult:
        """Read the dataset from its source into a new immutable version (none when nothing changed)."""
        record = self.get_dataset(name)
        spec = dict(record.spec)
        profile = spec.pop("profile", {})
        source = self.open(record.source)
        try:
            return self.versions.write_version(
                name, source, spec, actor, chunk_rows=chunk_rows, progress=progress, force=force,
                profile_options={"enabled": False} if profile is False else dict(profile or {}))
        finally:
            source.close()

    def list_versions(self, name: str) -> list[DatasetVersion]:
        self.get_dataset(name)
        return self.versions.list(name)

    def version(self, name: str, version: int | str | None = None, field: str = "version") -> DatasetVersion:
        self.get_dataset(name)
        return self.versions.get(name, version, field)

    def read(self, name: str, version: int | str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        return self.versions.read(self.version(name, version), columns)

    def diff(self, name: str, a: int | str | None = None, b: int | str | None = None) -> DatasetDiff:
        """Compare versions ``a`` and ``b`` (default: the one before the latest and the latest)."""
        newer = self.version(name, b, "b")
        if a is None:
            if newer.version < 2:
                raise InvalidInput(f"dataset {name!r} has one version; refresh it again or give two versions",
                                   {"field": "a"})
            a = newer.version - 1
        return self.versions.diff(self.version(name, a, "a"), newer)

    def record_read(self, name: str, version: int, reader_kind: str, reader_id: str, actor: str) -> None:
        """Lineage: note that ``reader_kind:reader_id`` (a run, model version, feature view...) read a version."""
        self.version(name, version)
        self.versions.record_read(name, version, reader_kind, reader_id, actor)

    def lineage(self, name: str) -> dict[str, Any]:
        """Every version of ``name`` and who read it, grouped by kind of reader."""
        versions = self.list_versions(name)
        reads = self.versions.reads(name)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for read in reads:
            grouped.setdefault(read["reader_kind"], []).append(
                {"version": read["version"], "id": read["reader_id"], "at": read["created_at"]})
        return {"dataset": name, "versions": [v.version for v in versions], "readers": grouped}
