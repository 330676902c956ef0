"""SQL sources: any database SQLAlchemy reaches (PostgreSQL via psycopg, MariaDB/MySQL via PyMySQL, ...).

Spec::

    {"url": "postgresql+psycopg://etl@db.internal:5432/warehouse",   # no password in the URL
     "secrets": {"password": "warehouse_pw"},                        # the URL's password, by secret name
     "connect_args": {"connect_timeout": 5}}

Other names under ``secrets`` become driver connect arguments. A dataset names ``{"query": "SELECT ..."}``
or ``{"table": "schema.table"}``. Rows are streamed with a server-side cursor and turned into Arrow
one chunk at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from shipyard.data.sources import ConnectionTest, Masker, check_secret_refs, timed_test
from shipyard.errors import InvalidInput, MissingDependency, StoreUnavailable
from shipyard.secrets import SecretValue

DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "mysqldb": "mysql"}
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
DEFAULT_CONNECT_TIMEOUT_S = 10


def _parse_url(url: Any) -> sa.URL:
    try:
        return sa.make_url(str(url))
    except sa.exc.ArgumentError:
        raise InvalidInput(
            f"url {url!r} is not a database URL; use e.g. postgresql+psycopg://user@host:5432/db or "
            "mysql+pymysql://user@host:3306/db",
            {"field": "url"},
        ) from None


def validate(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - {"url", "secrets", "connect_args"}
    if unknown:
        raise InvalidInput(f"sql source: unknown option(s) {sorted(unknown)}; use url, secrets, connect_args",
                           {"field": sorted(unknown)[0]})
    url = _parse_url(spec.get("url") or "")
    if url.password:
        raise InvalidInput(
            "url holds a password, which would be stored in the source; remove it from the URL, store it with "
            "`shipyard secrets set NAME` and give secrets: {'password': 'NAME'}",
            {"field": "url"},
        )
    connect_args = spec.get("connect_args") or {}
    if not isinstance(connect_args, Mapping):
        raise InvalidInput("connect_args must be a mapping of driver options", {"field": "connect_args"})
    return {"url": url.render_as_string(hide_password=False), "secrets": check_secret_refs(spec, None),
            "connect_args": dict(connect_args)}


def _relation(what: Mapping[str, Any]) -> str:
    query, table = what.get("query"), what.get("table")
    if bool(query) == bool(table):
        raise InvalidInput("a SQL dataset needs exactly one of query or table", {"field": "query"})
    if table:
        if not TABLE_RE.match(str(table)):
            raise InvalidInput(f"table {table!r} is not a plain [schema.]table name; use query for anything else",
                               {"field": "table"})
        return f"SELECT * FROM {table}"
    return str(query).strip().rstrip(";")


class SqlDataSource:
    def __init__(self, spec: Mapping[str, Any], secrets: dict[str, SecretValue], mask: Masker) -> None:
        self.mask = mask
        url = _parse_url(spec.get("url") or "")
        connect_args = dict(spec.get("connect_args") or {})
        for option, value in secrets.items():
            if option == "password":
                url = url.set(password=value.reveal())
            else:
                connect_args[option] = value.reveal()
        self.describe = url.render_as_string(hide_password=True)
        backend = url.get_backend_name()
        if backend == "postgresql":
            connect_args.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
        elif backend in ("mysql", "mariadb"):
            connect_args.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
        try:
            self.engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        except ImportError as exc:
            driver = url.get_driver_name()
            extra = DRIVER_EXTRAS.get(driver, "")
            hint = f"pip install 'shipyard-ml[{extra}]'" if extra else f"install the {driver!r} driver"
            raise MissingDependency(f"{self.describe}: the database driver is missing ({exc}); {hint}",
                                    {"extra": extra}) from None

    def _down(self, exc: BaseException) -> StoreUnavailable:
        text = self.mask(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
        return StoreUnavailable(
            f"database {self.describe} is unavailable: {text[0] if text else type(exc).__name__}; check that it "
            "runs, the URL and the credentials",
            {"field": "url"},
        )

    def _bad_query(self, exc: BaseException) -> InvalidInput:
        text = self.mask(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
        return InvalidInput(f"the query failed on {self.describe}: {text[0] if text else exc}; fix the query",
                            {"field": "query"})

    def test(self) -> ConnectionTest:
        def probe() -> dict[str, Any]:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar()
                version = conn.dialect.server_version_info
            return {"dialect": self.engine.dialect.name,
                    "server_version": ".".join(str(v) for v in version or ())}

        return timed_test(probe, self.mask, self.describe)

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise self._down(exc) from None

    def _failed(self, exc: sa.exc.DBAPIError) -> Exception:
        return self._down(exc) if exc.connection_invalidated else self._bad_query(exc)

    def count_rows(self, what: Mapping[str, Any]) -> int | None:
        query = sa.select(sa.func.count()).select_from(sa.text(f"({_relation(what)}) shipyard_count"))
        with self._connect() as conn:
            try:
                return int(conn.execute(query).scalar_one())
            except sa.exc.DBAPIError as exc:
                raise self._failed(exc) from None

    def read_batches(self, what: Mapping[str, Any], chunk_rows: int, limit: int | None = None) -> Iterator[pa.Table]:
        sql: Any = sa.text(_relation(what))
        if limit is not None:  # the dialect writes its own LIMIT / TOP / FETCH FIRST
            sql = sa.select(sa.text("*")).select_from(sa.text(f"({_relation(what)}) shipyard_preview")).limit(limit)
        with self._connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(sql)
                columns = list(result.keys())
                empty = True
                while rows := result.fetchmany(chunk_rows):
                    empty = False
                    yield pa.table({name: pa.array([row[i] for row in rows]) for i, name in enumerate(columns)})
                if empty:
                    yield pa.table({name: pa.array([], pa.null()) for name in columns})
            except sa.exc.DBAPIError as exc:
                raise self._failed(exc) from None

    def close(self) -> None:
        self.engine.dispose()
