"""Turn a feature view into a DuckDB relation with canonical columns.

Every view, whatever its source, reads as: its join keys (cast to their declared types),
``__event_ts`` and ``__created_ts`` (TIMESTAMP, UTC wall time), and its typed feature columns,
followed by the rows pushed to its offline log. Engines and ``read_offline`` build on this.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from shipyard.errors import InvalidInput
from shipyard.features.definitions import FeatureView
from shipyard.features.sources import DatasetSource, DuckDBSource, FileSource, PushSource, Source, SqlSource
from shipyard.features.types import DUCKDB_TYPES

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore

EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
_TZ_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")


_ROOT: tuple[int, duckdb.DuckDBPyConnection] | None = None
_ROOT_LOCK = threading.Lock()


def _close_root() -> None:
    """Close the process's database at exit: left open, DuckDB's bindings report its objects as
    leaked when the interpreter shuts down."""
    global _ROOT
    root, _ROOT = _ROOT, None
    if root is not None and root[0] == os.getpid():
        root[1].close()


atexit.register(_close_root)


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose session time zone is UTC; close it after use.

    Without ``threads`` it is a cursor on one in-memory database per process: opening a database
    costs 25-30 ms here and a cursor well under one. A cursor's registered tables and settings are
    its own. A thread limit is a database-wide setting, so ``threads`` gets a database of its own.
    """
    # With the ICU extension DuckDB's session zone is the machine's zone; the casts between
    # TIMESTAMP and TIMESTAMPTZ below and the zone of returned timestamps need UTC.
    if threads:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET threads={int(threads)}")
        return con
    global _ROOT
    root = _ROOT
    if root is None or root[0] != os.getpid():  # a forked child opens its own
        with _ROOT_LOCK:
            root = _ROOT
            if root is None or root[0] != os.getpid():
                con = duckdb.connect()
                con.execute("SET GLOBAL TimeZone = 'UTC'")
                root = _ROOT = (os.getpid(), con)
    with _ROOT_LOCK:  # a connection object is not for concurrent use, even to make cursors
        cursor = root[1].cursor()
    cursor.execute("SET TimeZone = 'UTC'")  # in case a cursor before changed the session default
    return cursor


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class ViewRelation:
    """The SQL of a view's canonical relation on one connection, and what we learnt reading it."""

    view: FeatureView
    sql: str
    timestamp_tz_aware: bool
    has_rows_source: bool


class Scanner:
    """Builds view relations on one DuckDB connection, registering in-memory tables as needed."""

    def __init__(self, con: duckdb.DuckDBPyConnection, artifacts: ArtifactStore | None = None,
                 log_prefix: str = "features/offline") -> None:
        self.con = con
        self.artifacts = artifacts
        self.log_prefix = log_prefix
        self._n = 0

    def _register(self, data: Any) -> str:
        self._n += 1
        name = f"__shipyard_rel_{self._n}"
        self.con.register(name, data)
        return name

    # -- sources -------------------------------------------------------------------------------
    def source_sql(self, source: Source, view: str) -> str | None:
        if isinstance(source, FileSource):
            path = source.path
            if not any(ch in path for ch in "*?[") and not path.lower().endswith((".parquet", ".csv", ".gz", ".tsv", ".pq")) \
                    and "://" not in path:
                path = path.rstrip("/") + ("/**/*.parquet" if source.format == "parquet" else "/*.csv")
            if source.format == "csv":
                return f"read_csv({literal(path)}, {source.duckdb_csv_args()})"
            return f"read_parquet({literal(path)}, union_by_name=true)"
        if isinstance(source, DatasetSource):
            if not source.path:
                raise InvalidInput(f"feature view {view!r}: dataset {source.ref} has no version to read; create and "
                                   f"refresh it ('shipyard datasets refresh {source.dataset}') or pin a version "
                                   "that exists", {"view": view, "field": "source"})
            return f"read_parquet({literal(source.path)})"
        if isinstance(source, SqlSource):
            return self._register(_run_sql_source(source, view))
        if isinstance(source, DuckDBSource):
            ctes = []
            for alias, inner in source.sources.items():
                inner_sql = self.source_sql(inner, view)
                if inner_sql is None:
                    raise InvalidInput(f"feature view {view!r}: DuckDBSource alias {alias!r} is a push source "
                                       "without history; use its batch source", {"view": view, "field": "source"})
                ctes.append(f"{quote(alias)} AS (SELECT * FROM {inner_sql})")
            with_clause = ("WITH " + ", ".join(ctes) + " ") if ctes else ""
            return f"({with_clause}{source.sql})"
        if isinstance(source, PushSource):
            return self.source_sql(source.batch_source, view) if source.batch_source else None
        raise InvalidInput(f"feature view {view!r}: unsupported source {source!r}", {"view": view})

    def log_files(self, view: str) -> list[str]:
        if self.artifacts is None:
            return []
        from shipyard.features.compaction import live_log_files

        # compaction leaves replaced files behind for a while; the resolved list skips them
        return live_log_files(self.artifacts, f"{self.log_prefix}/{view}")

    def _log_sql(self, view: FeatureView) -> str | None:
        files = self.log_files(view.name)
        if not files or self.artifacts is None:
            return None
        if self.artifacts.is_local:
            paths = ", ".join(literal(str(self.artifacts.local_path(p))) for p in files)
            return f"read_parquet([{paths}], union_by_name=true)"
        import io

        import pyarrow.parquet as pq

        tables = [pq.read_table(io.BytesIO(self.artifacts.get_bytes(p))) for p in files]
        return self._register(pa.concat_tables(tables, promote_options="default"))

    # -- views ---------------------------------------------------------------------------------
    def view_relation(self, view: FeatureView) -> ViewRelation:
        """The canonical relation of ``view``; raises InvalidInput naming the view on bad definitions."""
        base = self._source_relation(view)
        parts: list[str] = []
        aware = True
        if base is not None:
            rel, columns = base
            aware = self._check_columns(view, columns)
            parts.append(self._canonical_select(view, rel, columns))
        log = self._log_sql(view)
        if log is not None:
            columns = self._describe(log, view)
            parts.append(self._canonical_select(view, log, columns))
        if not parts:
            key_cols = ", ".join(f"CAST(NULL AS {DUCKDB_TYPES.get(view.key_types.get(k, 'string'))}) AS {quote(k)}"
                                 for k in view.join_keys)
            feats = ", ".join(f"CAST(NULL AS {DUCKDB_TYPES[f.dtype]}) AS {quote(f.name)}" for f in view.fields)
            sql = (f"(SELECT {key_cols}, CAST(NULL AS TIMESTAMP) AS {EVENT_TS}, CAST(NULL AS TIMESTAMP) AS {CREATED_TS},"
                   f" {feats} WHERE false)")
            return ViewRelation(view, sql, True, False)
        sql = parts[0] if len(parts) == 1 else "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts) + ")"
        return ViewRelation(view, sql, aware, base is not None)

    def source_timestamps_aware(self, view: FeatureView) -> bool | None:
        """Whether the event times of the view's own source are time-zone aware (None when it has
        no source of rows). Checks the definition too; reads none of the offline-log files."""
        base = self._source_relation(view)
        return None if base is None else self._check_columns(view, base[1])

    def _source_relation(self, view: FeatureView) -> tuple[str, dict[str, str]] | None:
        """The view's source with its SQL or Python transformation applied, and its column types."""
        base = self.source_sql(view.source, view.name)
        if base is None:
            return None
        rel = f"(SELECT * FROM {base})"
        if view.sql:
            rel = f"(WITH source AS (SELECT * FROM {base}) {view.sql})"
        fn = view.transform_function()
        if fn is not None:
            frame = self._run(f"SELECT * FROM {rel}", view).df()
            try:
                out = fn(frame)
            except Exception as exc:  # noqa: BLE001 - user code: report it with the view name
                raise InvalidInput(f"feature view {view.name!r}: transform raised {type(exc).__name__}: {exc}",
                                   {"view": view.name, "field": "transform"}) from exc
            rel = self._register(out)
        return rel, self._describe(rel, view)

    def _run(self, sql: str, view: FeatureView) -> duckdb.DuckDBPyRelation:
        try:
            return self.con.sql(sql)
        except duckdb.Error as exc:
            raise _sql_error(view, exc) from None

    def _describe(self, rel: str, view: FeatureView) -> dict[str, str]:
        try:
            result = self.con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
        except duckdb.Error as exc:
            raise _sql_error(view, exc) from None
        return {row[0]: str(row[1]).upper() for row in result}

    def _check_columns(self, view: FeatureView, columns: dict[str, str]) -> bool:
        where = f"feature view {view.name!r}"
        have = ", ".join(columns) or "(none)"
        if view.timestamp_field not in columns:
            raise InvalidInput(
                f"{where}: its source has no timestamp column {view.timestamp_field!r} (columns: {have}); "
                "set timestamp_field= to the event-time column",
                {"view": view.name, "field": view.timestamp_field, "location": str(view.location)},
            )
        if view.created_timestamp_field and view.created_timestamp_field not in columns:
            raise InvalidInput(
                f"{where}: its source has no created timestamp column {view.created_timestamp_field!r} "
                f"(columns: {have}); fix created_timestamp_field= or remove it",
                {"view": view.name, "field": view.created_timestamp_field, "location": str(view.location)},
            )
        for key in view.join_keys:
            if key not in columns:
                raise InvalidInput(
                    f"{where}: its source has no join key column {key!r} (columns: {have}); add it to the source "
                    "or fix the entity's join_keys",
                    {"view": view.name, "field": key, "location": str(view.location)},
                )
        for f in view.fields:
            if f.name not in columns:
                raise InvalidInput(
                    f"{where}: its source has no column for feature {f.name!r} (columns: {have}); add it to the "
                    "source or SQL, or remove the field",
                    {"view": view.name, "field": f.name, "location": str(view.location)},
                )
        return columns[view.timestamp_field] in _TZ_TYPES

    def _canonical_select(self, view: FeatureView, rel: str, columns: dict[str, str]) -> str:
        def ts_expr(col: str) -> str:
            # An instant becomes UTC wall time through its epoch microseconds: plain arithmetic,
            # where a TIMESTAMPTZ -> TIMESTAMP cast goes through the time-zone calendar row by row
            # (several times slower on large views) and depends on the session zone.
            kind = columns.get(col, "")
            if kind in _TZ_TYPES:
                return f"make_timestamp(epoch_us({quote(col)}))"
            if kind.startswith("TIMESTAMP"):
                return f"CAST({quote(col)} AS TIMESTAMP)"
            return f"make_timestamp(epoch_us(CAST({quote(col)} AS TIMESTAMPTZ)))"

        items = []
        for key in view.join_keys:
            dtype = view.key_types.get(key)
            items.append(f"CAST({quote(key)} AS {DUCKDB_TYPES[dtype]}) AS {quote(key)}" if dtype else quote(key))
        items.append(f"{ts_expr(view.timestamp_field)} AS {EVENT_TS}")
        if view.created_timestamp_field and view.created_timestamp_field in columns:
            items.append(f"{ts_expr(view.created_timestamp_field)} AS {CREATED_TS}")
        else:
            items.append(f"CAST(NULL AS TIMESTAMP) AS {CREATED_TS}")
        for f in view.fields:
            if f.dtype == "timestamp":
                items.append(f"CAST({quote(f.name)} AS TIMESTAMPTZ) AS {quote(f.name)}")
            elif columns.get(f.name) == DUCKDB_TYPES[f.dtype]:
                items.append(quote(f.name))
            else:
                items.append(f"CAST({quote(f.name)} AS {DUCKDB_TYPES[f.dtype]}) AS {quote(f.name)}")
        return f"(SELECT {', '.join(items)} FROM {rel})"


def _sql_error(view: FeatureView, exc: Exception) -> InvalidInput:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InvalidInput(
        f"feature view {view.name!r} ({view.location}): its source or SQL failed in DuckDB: {text}; fix the "
        "query, the file path or the column names",
        {"view": view.name, "field": "sql" if view.sql else "source", "error": text, "location": str(view.location)},
    )


def _run_sql_source(source: SqlSource, view: str) -> pa.Table:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(source.url)
    except Exception as exc:  # noqa: BLE001 - bad URL or missing driver
        raise InvalidInput(f"feature view {view!r}: SqlSource url {source.url!r} is not usable: {exc}",
                           {"view": view, "field": "url"}) from None
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(source.query))
            names = list(result.keys())
            rows = result.fetchall()
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInput(
            f"feature view {view!r}: SqlSource query failed: {str(exc).splitlines()[0]}; fix the query",
            {"view": view, "field": "query"},
        ) from None
    finally:
        engine.dispose()
    columns = list(zip(*rows, strict=False)) if rows else [[] for _ in names]
    return pa.table({name: pa.array(list(col)) for name, col in zip(names, columns, strict=False)})
