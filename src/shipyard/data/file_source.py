"""File sources: CSV, Parquet and Excel under a local folder or an S3 prefix (through fsspec).

Spec::

    {"root": "/data/landing" | "s3://bucket/prefix",
     "storage_options": {"endpoint_url": "http://127.0.0.1:9000"},   # fsspec options, no credentials
     "secrets": {"key": "s3_key_id", "secret": "s3_secret_key"}}      # fsspec options from secrets

A dataset on it names ``{"path": "loans/2024-*.parquet", "format": "parquet"}`` (format guessed from
the extension; a glob reads every match in name order), plus ``delimiter`` and ``column_types`` for
CSV and ``sheet`` for Excel. Parquet is read one row group batch at a time and CSV block by block,
so a file larger than memory streams; Excel has no streaming reader and is read whole.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from shipyard.arrow_util import table_from_pandas
from shipyard.data.sources import ConnectionTest, Masker, check_secret_refs, timed_test
from shipyard.errors import InvalidInput, NotFound, StoreUnavailable, require
from shipyard.secrets import SecretValue

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".xlsx": "excel", ".xlsm": "excel"}
CSV_BLOCK_BYTES = 16 << 20


def validate(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - {"root", "storage_options", "secrets"}
    if unknown:
        raise InvalidInput(f"file source: unknown option(s) {sorted(unknown)}; use root, storage_options, secrets",
                           {"field": sorted(unknown)[0]})
    root = str(spec.get("root") or "")
    options = spec.get("storage_options") or {}
    if not isinstance(options, Mapping):
        raise InvalidInput("storage_options must be a mapping of fsspec options", {"field": "storage_options"})
    for key in ("key", "secret", "password", "token", "aws_secret_access_key"):
        if key in options:
            raise InvalidInput(
                f"storage_options.{key} would store a credential in the source; put it in a secret and name it "
                f"under secrets: {{'{key}': 'SECRET_NAME'}}",
                {"field": f"storage_options.{key}"},
            )
    return {"root": root.rstrip("/"), "storage_options": dict(options), "secrets": check_secret_refs(spec, None)}


def guess_format(path: str, given: str | None) -> str:
    if given:
        if given not in ("csv", "parquet", "excel"):
            raise InvalidInput(f"format {given!r} is not known; use csv, parquet or excel", {"field": "format"})
        return given
    suffix = posixpath.splitext(path.removesuffix(".gz"))[1].lower()
    if suffix not in FORMATS:
        raise InvalidInput(f"cannot tell the format of {path!r} from its extension; give format: csv, parquet or "
                           "excel", {"field": "format"})
    return FORMATS[suffix]


def check_source_path(path: str, root: str = "") -> str:
    """A dataset's or preview's path: relative to the file source's root, never leaving it. Checked
    when a dataset is saved and again when it is read."""
    if not path:
        raise InvalidInput("the dataset needs a path relative to the source root", {"field": "path"})
    if "://" in path:
        raise InvalidInput(f"path {path!r} must be relative to the source root {root!r}", {"field": "path"})
    if ".." in path.replace("\\", "/").split("/"):
        raise InvalidInput(f"path {path!r} may not contain '..'; give a path below the source root",
                           {"field": "path"})
    return path


class FileDataSource:
    def __init__(self, spec: Mapping[str, Any], secrets: dict[str, SecretValue], mask: Masker) -> None:
        self.root = str(spec.get("root") or "")
        self.mask = mask
        self.remote = "://" in self.root and not self.root.startswith("file://")
        options = dict(spec.get("storage_options") or {})
        options.update({k: v.reveal() for k, v in secrets.items()})
        protocol = self.root.split("://", 1)[0] if self.remote else "file"
        if protocol == "s3":
            require("s3fs", "s3")
        import fsspec

        try:
            self.fs = fsspec.filesystem(protocol, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise InvalidInput(f"file source root {self.root!r}: {mask(str(exc))}", {"field": "root"}) from None

    # -- addressing ------------------------------------------------------------------------------
    def _full(self, path: str) -> str:
        check_source_path(path, self.root)
        base = self.root.split("://", 1)[1] if self.remote else self.root.removeprefix("file://")
        if not base:
            return path
        return f"{base}/{path.lstrip('/')}"

    def files(self, what: Mapping[str, Any]) -> list[str]:
        path = self._full(str(what.get("path") or ""))
        try:
            if any(ch in path for ch in "*?["):
                found = sorted(self.fs.glob(path))
            else:
                found = [path] if self.fs.isfile(path) else []
        except (OSError, ValueError) as exc:
            raise self._down(exc) from None
        if not found:
            raise NotFound(f"no file matches {what.get('path')!r} under {self.root or 'the local filesystem'}",
                           {"field": "path"})
        return found

    def _down(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"file source {self.root!r} cannot be read: {type(exc).__name__}: {self.mask(str(exc))}; check the "
            "root, the endpoint and the credentials",
            {"field": "root"},
        )

    # -- the interface ---------------------------------------------------------------------------
    def test(self) -> ConnectionTest:
        def probe() -> dict[str, Any]:
            base = self._full(".") if self.root else "."
            entries = self.fs.ls(base.rstrip("/."), detail=False) if self.root else []
            return {"entries": len(entries)}

        return timed_test(probe, self.mask, f"files at {self.root or 'the local filesystem'}")

    def count_rows(self, what: Mapping[str, Any]) -> int | None:
        files = self.files(what)
        if guess_format(files[0], what.get("format")) != "parquet":
            return None
        import pyarrow.parquet as pq

        total = 0
        for name in files:
            with self.fs.open(name, "rb") as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        return total

    def read_batches(self, what: Mapping[str, Any], chunk_rows: int, limit: int | None = None) -> Iterator[pa.Table]:
        left = limit
        for name in self.files(what):
            fmt = guess_format(name, what.get("format"))
            try:
                with self.fs.open(name, "rb") as handle:
                    if fmt == "parquet":
                        chunks = _parquet(handle, chunk_rows)
                    elif fmt == "csv":
                        chunks = _csv(handle, name, what)
                    else:
                        chunks = _excel(handle, what, chunk_rows)
                    for chunk in chunks:
                        if left is not None:
                            chunk = chunk.slice(0, left)
                            left -= chunk.num_rows
                        yield chunk
                        if left == 0:
                            return
            except (OSError, ConnectionError) as exc:
                raise self._down(exc) from None

    def close(self) -> None:
        return None


def _parquet(handle: Any, chunk_rows: int) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_rows):
        yield pa.Table.from_batches([batch])


def _csv(handle: Any, name: str, what: Mapping[str, Any]) -> Iterator[pa.Table]:
    from pyarrow import csv

    delimiter = what.get("delimiter") or ("\t" if name.endswith(".tsv") else ",")
    types = what.get("column_types") or {}
    try:
        column_types = {str(k): pa.type_for_alias(str(v)) for k, v in types.items()}
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"column_types: {exc}; use Arrow type names such as int64, double, string",
                           {"field": "column_types"}) from None
    if name.endswith(".gz"):
        import gzip

        handle = gzip.open(handle)
    reader = csv.open_csv(
        handle,
        read_options=csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=csv.ParseOptions(delimiter=delimiter),
        convert_options=csv.ConvertOptions(column_types=column_types),
    )
    try:
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"{posixpath.basename(name)}: {exc}; a later block does not fit the types read from the first; set "
            "column_types in the dataset spec (e.g. {'amount': 'double'})",
            {"field": "column_types"},
        ) from None


def _excel(handle: Any, what: Mapping[str, Any], chunk_rows: int) -> Iterator[pa.Table]:
    require("openpyxl", "excel")
    import pandas as pd

    sheet = what.get("sheet")
    frame = pd.read_excel(handle, sheet_name=sheet if sheet is not None else 0, engine="openpyxl")
    table = table_from_pandas(frame)
    for start in range(0, max(table.num_rows, 1), chunk_rows):
        yield table.slice(start, chunk_rows)
