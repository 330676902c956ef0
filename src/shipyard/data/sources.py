"""Data sources: where datasets are read from, with credentials referenced by secret name.

Three kinds, one small interface (:class:`DataSource`), one module each:

- ``file`` (:mod:`.file_source`): CSV, Parquet or Excel under a local folder or an ``s3://`` prefix;
- ``sql`` (:mod:`.sql_source`): any SQLAlchemy URL (PostgreSQL, MariaDB/MySQL, ...), password by secret;
- ``spark`` (:mod:`.spark_source`): Spark/Hive tables or Spark SQL in a local or configured session.

A source's spec never holds a credential: ``secrets`` maps a connection option to the *name* of a
secret (``{"password": "warehouse_pw"}``), resolved only when the source is opened. Errors raised
while a source is open have every resolved secret value masked. ``source_kinds`` opens one by kind.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.secrets import SecretStore, SecretValue, check_secret_name

KINDS = ("file", "sql", "spark")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
# rows done, rows in total (None when the source cannot tell cheaply)
Progress = Callable[[int, int | None], None]


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"{what} name {name!r} is not valid; use a letter followed by up to 127 letters, digits, '_', '-' or '.'",
            {"field": "name"},
        )
    return name


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool
    message: str
    latency_ms: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SourceRecord:
    """A stored source: its spec holds secret names, never values."""

    name: str
    kind: str
    spec: dict[str, Any]
    description: str
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataSource(Protocol):
    """An opened source. ``what`` is a dataset spec: ``{"query"}``, ``{"table"}`` or ``{"path"}``.

    ``read_batches`` yields Arrow tables of about ``chunk_rows`` rows; with ``limit`` the source may stop
    (or ask the server to stop) after that many rows.
    """

    def test(self) -> ConnectionTest: ...

    def count_rows(self, what: Mapping[str, Any]) -> int | None: ...

    def read_batches(self, what: Mapping[str, Any], chunk_rows: int, limit: int | None = None
                     ) -> Iterator[pa.Table]: ...

    def close(self) -> None: ...


class Masker:
    """Replaces resolved secret values in any text that could leave the process."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str) -> None:
        if value:
            self._values.append(value)
            # drivers may echo a URL-encoded password
            from urllib.parse import quote

            self._values.append(quote(value, safe=""))

    def __call__(self, text: str) -> str:
        for value in sorted(set(self._values), key=len, reverse=True):
            text = text.replace(value, "***")
        return text


def check_secret_refs(spec: Mapping[str, Any], secrets: SecretStore | None) -> dict[str, str]:
    refs = spec.get("secrets") or {}
    if not isinstance(refs, Mapping):
        raise InvalidInput("secrets must map an option name to a secret name, e.g. {'password': 'db_pw'}",
                           {"field": "secrets"})
    out: dict[str, str] = {}
    for option, name in refs.items():
        check_secret_name(name, f"secrets.{option}")
        if secrets is not None and not secrets.exists(name):
            raise InvalidInput(
                f"secrets.{option} names secret {name!r}, which does not exist; create it with "
                f"`shipyard secrets set {name}`",
                {"field": f"secrets.{option}", "secret": name},
            )
        out[str(option)] = name
    return out


def resolve_secrets(spec: Mapping[str, Any], secrets: SecretStore | None, mask: Masker) -> dict[str, SecretValue]:
    refs = check_secret_refs(spec, None)
    if refs and secrets is None:
        raise InvalidInput("this source needs secrets but no secret store was given", {"field": "secrets"})
    values: dict[str, SecretValue] = {}
    for option, name in refs.items():
        value = secrets.secret(name)  # type: ignore[union-attr]
        mask.add(value.reveal())
        values[option] = value
    return values


def timed_test(probe: Callable[[], dict[str, Any]], mask: Masker, describe: str) -> ConnectionTest:
    """Run ``probe``; a failure becomes ``ok=False`` with a masked message instead of an exception."""
    start = time.perf_counter()
    try:
        details = probe()
    except ShipyardError as exc:
        return ConnectionTest(False, mask(exc.message), (time.perf_counter() - start) * 1000)
    except Exception as exc:  # noqa: BLE001 - any driver error is a failed test, reported as text
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        message = f"cannot reach {describe}: {type(exc).__name__}: {mask(text[0] if text else '')}"
        return ConnectionTest(False, message, (time.perf_counter() - start) * 1000)
    return ConnectionTest(True, f"connected to {describe}", (time.perf_counter() - start) * 1000, details)
