"""Reading a scene's prediction log file by file, one served record per row.

Typed files (the current layout) already have one row per served record and a typed column per
field (``inputs.<name>``, ``features.<name>``, ``outputs.<name>``): they are read as they are,
columns cast to the wanted type with ``TRY_CAST`` (a value of the wrong type becomes null).

In files of the older layout a row is one request; its ``inputs``, ``features`` and ``outputs`` are JSON lists with one
object per record. DuckDB's ``from_json`` decodes them (vectorised C++, a value of the wrong type
becomes null instead of failing) and ``unnest`` gives one row per record with the columns
``ts, request_id, row, version, arm, fallback, latency_ms`` followed by the inputs, features and
outputs fields. Features override inputs of the same name; an output whose name is already taken
is called ``output.<name>``. Only live traffic is read (shadow calls are mirrored copies).

A file that cannot be read (truncated, not Parquet, wrong columns) is skipped with a warning that
names it; the caller reports the warnings.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa

from shipyard.artifacts import ArtifactStore
from shipyard.serving.prediction_log import PREFIX, is_typed

log = logging.getLogger(__name__)

SOURCES = ("inputs", "features", "outputs")
META = ("ts", "request_id", "row", "version", "arm", "fallback", "latency_ms")
_SAMPLE = 64


def scene_dir(scene: str) -> str:
    # the prediction log's folder name for a scene: characters outside [A-Za-z0-9-_.] become "_"
    return f"{PREFIX}/scene=" + "".join(c if c.isalnum() or c in "-_." else "_" for c in scene)


def day_files(artifacts: ArtifactStore, scene: str, day: str) -> list[str]:
    prefix = f"{scene_dir(scene)}/date={day}"
    return sorted(p for p in artifacts.list(prefix) if p.endswith(".parquet"))


def log_days(artifacts: ArtifactStore, scene: str) -> list[str]:
    days = set()
    for p in artifacts.list(scene_dir(scene)):
        if "date=" in p:
            days.add(p.split("date=", 1)[1].split("/", 1)[0])
    return sorted(days)


@dataclass
class Fields:
    """The fields to decode from each JSON source, with their DuckDB types (DOUBLE or VARCHAR)."""

    inputs: dict[str, str]
    features: dict[str, str]
    outputs: dict[str, str]

    def columns(self) -> list[tuple[str, str, str]]:
        """(source, field, column name) in output order."""
        out: list[tuple[str, str, str]] = []
        taken: set[str] = set(META)
        for name in self.features:
            out.append(("features", name, name))
            taken.add(name)
        for name in self.inputs:
            if name not in taken:
                out.append(("inputs", name, name))
                taken.add(name)
        for name in self.outputs:
            column = name if name not in taken else f"output.{name}"
            out.append(("outputs", name, column))
            taken.add(column)
        return out

    def typed(self, types: dict[str, str]) -> Fields:
        """The same fields with the types in ``types`` (e.g. a baseline's numeric/categorical kinds)."""
        def fix(d: dict[str, str]) -> dict[str, str]:
            return {k: types.get(k, t) for k, t in d.items()}

        return Fields(fix(self.inputs), fix(self.features), fix(self.outputs))


_NUMERIC = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER",
            "BOOLEAN", "DECIMAL")


def typed_layout(columns: list[str]) -> bool:
    """Whether a relation's columns are the typed layout (one row per served record)."""
    return "row" in columns and not any(c in columns for c in SOURCES)


def discover_typed(columns: list[tuple[str, str]]) -> Fields:
    """Fields of a typed file from its (column, DuckDB type) pairs: numbers and booleans DOUBLE."""
    found: dict[str, dict[str, str]] = {s: {} for s in SOURCES}
    for name, typ in columns:
        source, dot, field_name = name.partition(".")
        if dot and source in found:
            found[source][field_name] = "DOUBLE" if typ.upper().startswith(_NUMERIC) else "VARCHAR"
    return Fields(found["inputs"], found["features"], found["outputs"])


_ARROW_NUMERIC = ("int", "uint", "double", "float", "bool", "decimal")


def discover(table: pa.Table) -> Fields:
    """Field names and types: from the schema of a typed table, else from a sample of the JSON
    rows (numbers and booleans DOUBLE, the rest VARCHAR)."""
    if is_typed(table.schema):
        return discover_typed([(f.name, "DOUBLE" if str(f.type).startswith(_ARROW_NUMERIC) else "VARCHAR")
                               for f in table.schema])
    found: dict[str, dict[str, str]] = {s: {} for s in SOURCES}
    for source in SOURCES:
        if source not in table.column_names:
            continue
        votes: dict[str, list[int]] = {}  # field -> [numbers, strings]
        seen = 0
        for value in table.column(source).to_pylist():
            if value is None:
                continue
            try:
                records = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            for rec in records if isinstance(records, list) else [records]:
                if not isinstance(rec, dict):
                    continue
                for k, v in rec.items():
                    vote = votes.setdefault(k, [0, 0])
                    if isinstance(v, int | float):
                        vote[0] += 1
                    elif v is not None:
                        vote[1] += 1
            seen += 1
            if seen >= _SAMPLE:
                break
        # mostly numbers: a stray string in a numeric field becomes a missing value, not a category
        found[source] = {k: "DOUBLE" if n >= s_ else "VARCHAR" for k, (n, s_) in votes.items()}
    return Fields(found["inputs"], found["features"], found["outputs"])


def _struct(fields: dict[str, str]) -> str:
    inner = ", ".join(f"{orjson.dumps(k).decode()}: {orjson.dumps(t).decode()}" for k, t in fields.items())
    return "[{" + inner + "}]"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def flat_sql(columns: list[str], fields: Fields, relation: str = "log") -> str:
    """SELECT giving one row per served record of ``relation`` (a prediction-log file)."""
    if typed_layout(columns):
        return _typed_sql(columns, fields, relation)
    where = "WHERE kind = 'live'" if "kind" in columns else ""
    unnests = []
    for source, alias in (("inputs", "i"), ("features", "f"), ("outputs", "o")):
        spec = getattr(fields, source)
        if spec and source in columns:
            literal = "'" + _struct(spec).replace("'", "''") + "'"
            unnests.append((alias, f"from_json({source}, {literal})"))
    inner = ", ".join(f"unnest({expr}) AS {alias}" for alias, expr in unnests)
    # the record's index inside its request (a batch request has several)
    gen = "unnest(range(CAST(json_array_length(outputs) AS BIGINT))) AS row" if "outputs" in columns else "0 AS row"
    meta = [c if c in columns else f"NULL AS {c}" for c in ("ts", "request_id", "version", "arm")]
    meta += ["fallback" if "fallback" in columns else "false AS fallback",
             "latency_ms" if "latency_ms" in columns else "CAST(NULL AS DOUBLE) AS latency_ms"]
    sub = f"SELECT {', '.join([*meta, gen, *([inner] if inner else [])])} FROM {relation} {where}"
    cols = []
    alias_of = {"inputs": "i", "features": "f", "outputs": "o"}
    present = {a for a, _ in unnests}
    for source, name, column in fields.columns():
        a = alias_of[source]
        if a in present:
            cols.append(f"{a}.{_quote(name)} AS {_quote(column)}")
        else:
            cols.append(f"CAST(NULL AS {getattr(fields, source)[name]}) AS {_quote(column)}")
    outer = ", ".join(["ts", "request_id", "CAST(row AS INTEGER) AS row", "version", "arm", "fallback",
                       "latency_ms", *cols])
    return f"SELECT {outer} FROM ({sub})"


def _typed_sql(columns: list[str], fields: Fields, relation: str) -> str:
    where = "WHERE kind = 'live'" if "kind" in columns else ""
    meta = [c if c in columns else f"NULL AS {c}" for c in ("ts", "request_id", "version", "arm")]
    meta += ["CAST(row AS INTEGER) AS row", "fallback" if "fallback" in columns else "false AS fallback",
             "latency_ms" if "latency_ms" in columns else "CAST(NULL AS DOUBLE) AS latency_ms"]
    cols = []
    for source, name, column in fields.columns():
        wanted = getattr(fields, source)[name]
        physical = f"{source}.{name}"
        expr = f"TRY_CAST({_quote(physical)} AS {wanted})" if physical in columns else f"CAST(NULL AS {wanted})"
        cols.append(f"{expr} AS {_quote(column)}")
    return f"SELECT {', '.join([*meta, *cols])} FROM {relation} {where}"


def flatten(table: pa.Table, fields: Fields) -> pa.Table:
    """One row per served record: metadata columns, then the decoded fields."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("log", table)
        return con.sql(flat_sql(table.column_names, fields)).to_arrow_table()
    finally:
        con.close()


def read_file(artifacts: ArtifactStore, path: str) -> pa.Table:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(artifacts.get_bytes(path)))
    _check_columns(table.column_names)
    return table


def _check_columns(columns: list[str]) -> None:
    missing = [c for c in ("ts", "request_id", "version", "arm") if c not in columns]
    if missing:
        raise ValueError(f"not a prediction-log file: no column(s) {missing}")


# files read in one query: small files (a server writes one every few seconds) cost one query
# per batch, not one each
BATCH_FILES = 256
BATCH_BYTES = 256 << 20


class LogBatch:
    """Log files opened in one DuckDB connection as the relation ``log`` (read in place when local).

    Fields are discovered from the first rows of the first and the last file, so fields a newer
    scene version added during the day are seen.
    """

    def __init__(self, artifacts: ArtifactStore, paths: list[str]) -> None:
        import duckdb
        import pyarrow.parquet as pq

        self.paths = list(paths)
        self.con = duckdb.connect()
        try:
            if artifacts.is_local:
                _one_layout([pq.read_schema(artifacts.local_path(p)) for p in self.paths])
                files = ", ".join("'" + str(artifacts.local_path(p)).replace("'", "''") + "'" for p in self.paths)
                self.con.execute(f"CREATE VIEW log AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
                samples = ["read_parquet('" + str(artifacts.local_path(p)).replace("'", "''") + "')"
                           for p in dict.fromkeys([self.paths[0], self.paths[-1]])]
            else:
                tables = [read_file(artifacts, p) for p in self.paths]
                _one_layout([t.schema for t in tables])
                self.con.register("log", pa.concat_tables(tables, promote_options="permissive"))
                samples = ["log"]
            described = [(r[0], str(r[1])) for r in self.con.execute("DESCRIBE log").fetchall()]
            self.columns = [name for name, _ in described]
            _check_columns(self.columns)
            if typed_layout(self.columns):
                self.fields = discover_typed(described)
                return
            sources = [c for c in SOURCES if c in self.columns]
            fields = Fields({}, {}, {})
            for relation in samples if sources else []:
                found = discover(self.con.sql(f"SELECT {', '.join(sources)} FROM {relation} LIMIT {_SAMPLE}")
                                 .to_arrow_table())
                fields = Fields({**found.inputs, **fields.inputs}, {**found.features, **fields.features},
                                {**found.outputs, **fields.outputs})
            self.fields = fields
        except Exception:
            self.con.close()
            raise

    @property
    def path(self) -> str:
        return self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} files)"

    def close(self) -> None:
        self.con.close()


def _one_layout(schemas: list[pa.Schema]) -> None:
    # a batch is read as one relation: files of the two layouts go file by file (iter_batches)
    if len({is_typed(s) for s in schemas}) > 1:
        raise ValueError("typed and JSON-layout prediction-log files in one batch")


def _batches(artifacts: ArtifactStore, paths: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    size = 0
    for p in paths:
        n = artifacts.local_path(p).stat().st_size if artifacts.is_local else BATCH_BYTES // 16
        if not out or len(out[-1]) >= BATCH_FILES or size + n > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(p)
        size += n
    return out


def iter_batches(artifacts: ArtifactStore, scene: str, day: str, *, warn: Callable[[str], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Iterator[LogBatch]:
    """The day's log files in batches, opened; a batch that cannot be opened is retried file by file
    and an unreadable file is skipped with a warning naming it."""
    paths = day_files(artifacts, scene, day)
    done = 0
    for group in _batches(artifacts, paths):
        try:
            handles = [LogBatch(artifacts, group)]
        except Exception as exc:
            if len(group) == 1:
                _skip(group[0], exc, warn)
                handles = []
            else:
                handles = []
                for p in group:
                    try:
                        handles.append(LogBatch(artifacts, [p]))
                    except Exception as one:  # a corrupt file costs that file, never the report
                        _skip(p, one, warn)
        for handle in handles:
            try:
                yield handle
            finally:
                handle.close()
        done += len(group)
        if progress is not None:
            progress(done, len(paths))


def _skip(path: str, exc: BaseException, warn: Callable[[str], None] | None) -> None:
    message = f"skipped unreadable prediction-log file {path}: {type(exc).__name__}: {str(exc)[:200]}"
    log.warning(message)
    if warn is not None:
        warn(message)


def iter_day(artifacts: ArtifactStore, scene: str, day: str, fields: Fields | None = None, *,
             types: dict[str, str] | None = None, warn: Callable[[str], None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Iterator[pa.Table]:
    """Flattened tables of the day, one per log file; unreadable files are skipped with a warning.

    ``fields`` fixes what is decoded; without it each file's fields are discovered, with the types
    in ``types`` taking precedence.
    """
    paths = day_files(artifacts, scene, day)
    for i, path in enumerate(paths):
        try:
            table = read_file(artifacts, path)
            use = fields if fields is not None else discover(table).typed(types or {})
            flat = flatten(table, use)
        except Exception as exc:  # a corrupt file costs that file, never the report
            _skip(path, exc, warn)
            continue
        finally:
            if progress is not None:
                progress(i + 1, len(paths))
        yield flat
