"""Data sources a feature view reads from.

- ``FileSource``: a Parquet or CSV file, folder or glob (local path or URL).
- ``SqlSource``: a query against any SQLAlchemy URL.
- ``DuckDBSource``: DuckDB SQL over other sources, each visible under its alias.
- ``PushSource``: rows pushed by ``store.push`` or a stream consumer; kept in the view's offline log,
  optionally on top of a batch source holding history.
- ``RequestSource``: values that arrive with an online request (inputs to on-demand views).
- ``DatasetSource``: a versioned dataset (``shipyard datasets``), its latest version or a pinned one.
  The feature store reads it as that version's Parquet file and records the read in the dataset's
  lineage when the view is materialized or joined into a training set.

Sources are plain values: they are stored inside the feature view's spec and compared by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.features.types import Field

FILE_FORMATS = ("parquet", "csv")
# CSV reader options a FileSource accepts, with the name each engine knows them by (DuckDB, Spark)
CSV_OPTIONS = {"delimiter": ("delim", "sep"), "header": ("header", "header"), "quote": ("quote", "quote"),
               "escape": ("escape", "escape"), "null_value": ("nullstr", "nullValue")}


class Source:
    """Base of every source; ``to_spec``/``source_from_spec`` round-trip it through the registry."""

    kind = "source"

    def to_spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolve(self, base: Path) -> Source:
        """A copy whose relative paths are made absolute against ``base`` (the project folder)."""
        return self


@dataclass(frozen=True)
class FileSource(Source):
    path: str
    format: str = ""
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    kind = "file"

    def __post_init__(self) -> None:
        if not self.path:
            raise InvalidInput("FileSource needs a path to a Parquet or CSV file", {"field": "path"})
        fmt = (self.format or _guess_format(str(self.path))).lower()
        if fmt not in FILE_FORMATS:
            raise InvalidInput(
                f"FileSource {self.path!r}: unknown format {fmt!r}; use format='parquet' or format='csv'",
                {"field": "format"},
            )
        object.__setattr__(self, "format", fmt)
        object.__setattr__(self, "path", str(self.path))
        _check_file_options(self.path, fmt, self.options)

    def duckdb_csv_args(self) -> str:
        """``read_csv`` arguments for this source's options (header and type detection by default)."""
        args = {"header": True, "auto_detect": True}
        args.update({CSV_OPTIONS[k][0]: v for k, v in self.options.items()})
        return ", ".join(f"{k}={_sql_value(v)}" for k, v in args.items())

    def spark_csv_options(self) -> dict[str, str]:
        options = {"header": "true", "inferSchema": "true"}
        options.update({CSV_OPTIONS[k][1]: str(v).lower() if isinstance(v, bool) else str(v)
                        for k, v in self.options.items()})
        return options

    def resolve(self, base: Path) -> FileSource:
        if "://" in self.path or Path(self.path).is_absolute():
            return self
        return FileSource(str((base / self.path).resolve()), self.format, self.name, dict(self.options))

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "path": self.path, "format": self.format, "name": self.name,
                "options": dict(self.options)}


@dataclass(frozen=True)
class SqlSource(Source):
    query: str
    url: str
    name: str = ""
    kind = "sql"

    def __post_init__(self) -> None:
        if not self.query or not self.url:
            raise InvalidInput("SqlSource needs query= and url= (a SQLAlchemy database URL)", {"field": "query"})

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "query": self.query, "url": self.url, "name": self.name}


@dataclass(frozen=True)
class DuckDBSource(Source):
    sql: str
    sources: dict[str, Source] = field(default_factory=dict)
    name: str = ""
    kind = "duckdb"

    def __post_init__(self) -> None:
        if not self.sql:
            raise InvalidInput("DuckDBSource needs sql= (DuckDB SQL over its sources' aliases)", {"field": "sql"})
        for alias in self.sources:
            if not alias.isidentifier():
                raise InvalidInput(f"DuckDBSource alias {alias!r} must be an identifier", {"field": "sources"})

    def resolve(self, base: Path) -> DuckDBSource:
        return DuckDBSource(self.sql, {a: s.resolve(base) for a, s in self.sources.items()}, self.name)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "sql": self.sql, "name": self.name,
                "sources": {alias: src.to_spec() for alias, src in sorted(self.sources.items())}}


@dataclass(frozen=True)
class PushSource(Source):
    name: str
    batch_source: Source | None = None
    kind = "push"

    def resolve(self, base: Path) -> PushSource:
        return PushSource(self.name, self.batch_source.resolve(base) if self.batch_source else None)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name,
                "batch_source": self.batch_source.to_spec() if self.batch_source else None}


@dataclass(frozen=True)
class RequestSource(Source):
    name: str
    schema: list[Field] = field(default_factory=list)
    kind = "request"

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", list(self.schema))
        if not self.schema:
            raise InvalidInput(f"RequestSource {self.name!r} needs schema=[Field(...), ...]", {"field": "schema"})

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "schema": [f.to_spec() for f in self.schema]}


@dataclass(frozen=True)
class DatasetSource(Source):
    """A versioned dataset: ``version`` pins one, None reads the latest at each materialization or
    training set. ``path`` and ``read_version`` are filled by the feature store when it resolves the
    source for a read (they are not part of the view's spec)."""

    dataset: str
    version: int | None = None
    name: str = ""
    path: str = field(default="", compare=False)
    read_version: int | None = field(default=None, compare=False)
    kind = "dataset"

    def __post_init__(self) -> None:
        if not self.dataset or not isinstance(self.dataset, str):
            raise InvalidInput("DatasetSource needs the dataset's name (see 'shipyard datasets list')",
                               {"field": "dataset"})
        if self.version is not None and (isinstance(self.version, bool) or not isinstance(self.version, int)
                                         or self.version < 1):
            raise InvalidInput(f"DatasetSource {self.dataset!r}: version must be a version number (1, 2, ...) or "
                               f"None for the latest, got {self.version!r}", {"field": "version"})

    @property
    def ref(self) -> str:
        """``dataset@version`` as read, or as pinned (``dataset@latest`` before a read)."""
        number = self.read_version or self.version
        return f"{self.dataset}@{number if number is not None else 'latest'}"

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "dataset": self.dataset, "version": self.version, "name": self.name}


def _check_file_options(path: str, fmt: str, options: dict[str, Any]) -> None:
    if not isinstance(options, dict):
        raise InvalidInput(f"FileSource {path!r}: options must be a dict", {"field": "options"})
    if fmt != "csv" and options:
        raise InvalidInput(f"FileSource {path!r}: {fmt} files take no options (got {sorted(options)})",
                           {"field": "options"})
    for key, value in options.items():
        if key not in CSV_OPTIONS:
            raise InvalidInput(f"FileSource {path!r}: unknown CSV option {key!r}; use "
                               f"{', '.join(CSV_OPTIONS)}", {"field": f"options.{key}"})
        if key == "header" and not isinstance(value, bool):
            raise InvalidInput(f"FileSource {path!r}: option 'header' must be true or false",
                               {"field": "options.header"})
        if key != "header" and (not isinstance(value, str) or (key != "null_value" and len(value) != 1)):
            raise InvalidInput(f"FileSource {path!r}: option {key!r} must be "
                               f"{'a string' if key == 'null_value' else 'one character'}, got {value!r}",
                               {"field": f"options.{key}"})


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def _guess_format(path: str) -> str:
    lowered = path.lower()
    if lowered.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    return "parquet"


def dataset_sources(source: Source | None) -> list[DatasetSource]:
    """The versioned datasets a source reads, directly or inside a push or DuckDB source."""
    if isinstance(source, DatasetSource):
        return [source]
    if isinstance(source, PushSource):
        return dataset_sources(source.batch_source)
    if isinstance(source, DuckDBSource):
        return [found for inner in source.sources.values() for found in dataset_sources(inner)]
    return []


def source_from_spec(spec: dict[str, Any]) -> Source:
    kind = spec.get("type")
    if kind == "file":
        return FileSource(spec["path"], spec.get("format", ""), spec.get("name", ""), dict(spec.get("options", {})))
    if kind == "sql":
        return SqlSource(spec["query"], spec["url"], spec.get("name", ""))
    if kind == "duckdb":
        return DuckDBSource(spec["sql"], {a: source_from_spec(s) for a, s in spec.get("sources", {}).items()},
                            spec.get("name", ""))
    if kind == "push":
        batch = spec.get("batch_source")
        return PushSource(spec["name"], source_from_spec(batch) if batch else None)
    if kind == "request":
        return RequestSource(spec["name"], [Field.from_spec(f) for f in spec.get("schema", [])])
    if kind == "dataset":
        return DatasetSource(spec["dataset"], spec.get("version"), spec.get("name", ""))
    raise InvalidInput(f"unknown source type {kind!r}", {"field": "source"})
