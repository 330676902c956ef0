"""Engine creation, migrations under a lock, transactions with clear errors."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from shipyard.errors import ConfigError, MissingDependency, StoreUnavailable

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# What brings a database's schema to this Shipyard's revision when processes do not do it themselves.
UPGRADE_COMMAND = "shipyard db upgrade"
# SQLite waits this long for another writer before giving up with StoreUnavailable.
DEFAULT_BUSY_TIMEOUT_S = 30.0


def now_ms() -> int:
    return int(time.time() * 1000)


def upsert(dialect: str) -> Callable[[sa.Table], sqlite.Insert | postgresql.Insert]:
    """The dialect's INSERT with ``on_conflict_do_update`` (SQLite and PostgreSQL share the API)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def _sqlite_path(url: sa.URL) -> Path | None:
    if url.database and url.database != ":memory:":
        return Path(url.database)
    return None


def _private_sqlite_file(path: Path) -> None:
    """Create a missing SQLite file readable by its owner only (0600; SQLite gives its -wal and -shm
    files the same mode), in a folder made 0700 when this creates it: the metadata holds users,
    token hashes, the audit log and encrypted secrets, none of them for other local accounts."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name == ".shipyard":
            os.chmod(path.parent, 0o700)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process created it meanwhile
            pass


def create_engine_for(url: str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, schema: str = "") -> Engine:
    """An engine for ``url``; on PostgreSQL, ``schema`` puts every table of this store in that schema."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"metadata_url {url!r} is not a database URL; use sqlite:///path/shipyard.db or "
            "postgresql+psycopg://user@host:5432/db",
            {"field": "metadata_url"},
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(parsed)
        if path is not None:
            _private_sqlite_file(path)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            # The default pool keeps one connection per thread, which suits WAL readers.
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions; take the write lock at BEGIN so two writers never
            # deadlock upgrading a read lock.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
        try:
            return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                    connect_args=connect_args)
        except ImportError:
            raise MissingDependency(
                "PostgreSQL needs the psycopg driver; install it with: pip install 'shipyard-ml[postgres]'",
                {"extra": "postgres"},
            ) from None
    raise ConfigError(
        f"metadata_url backend {backend!r} is not supported; use sqlite:/// or postgresql+psycopg://",
        {"field": "metadata_url"},
    )


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this Shipyard's migrations."""

    current: str | None  # None: no Shipyard tables yet
    head: str
    known: bool  # False when ``current`` is a revision this Shipyard does not have (a newer one's)

    @property
    def state(self) -> str:
        if self.current == self.head:
            return "current"
        if self.current is None:
            return "empty"
        return "behind" if self.known else "ahead"

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "head": self.head, "state": self.state}


class MetadataStore:
    """The metadata database. ``begin()`` yields a connection inside one transaction.

    ``migrate=True`` upgrades the schema on construction; with ``False`` call ``upgrade()`` or
    ``require_current()`` yourself.
    """

    def __init__(self, url: str, *, migrate: bool = True, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
                 schema: str = ""):
        self.url = url
        self.schema = schema
        self.engine = create_engine_for(url, busy_timeout_s, schema)
        self.dialect = self.engine.dialect.name
        if schema and self.dialect == "postgresql":
            self._create_schema(schema)
        self._migrated = False
        self._lock = threading.Lock()
        if migrate:
            self.upgrade()

    # -- transactions --------------------------------------------------------------------------
    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise _unavailable(exc) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise _unavailable(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    def _create_schema(self, schema: str) -> None:
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"metadata schema {schema!r} is not a valid name", {"field": "metadata_schema"})
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except OperationalError as exc:
            raise _unavailable(exc) from exc

    def __repr__(self) -> str:
        from shipyard.config import redact_url

        return f"MetadataStore({redact_url(self.url)!r})"

    # -- migrations ----------------------------------------------------------------------------
    def _alembic_config(self, conn: Connection | None = None) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        if conn is not None:
            cfg.attributes["connection"] = conn
        return cfg

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def status(self) -> SchemaStatus:
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(self._alembic_config())
        try:
            current = self.current_revision()
        except OperationalError as exc:
            raise _unavailable(exc) from exc
        known = current is None or any(rev.revision == current for rev in scripts.walk_revisions())
        head = scripts.get_current_head()
        assert head is not None
        return SchemaStatus(current, head, known)

    def require_current(self) -> None:
        """Refuse a schema this process may not upgrade (``auto_migrate`` off): one that is behind
        names the command that upgrades it; an empty database is created, as nothing uses it yet."""
        status = self.status()
        where = f" (schema {self.schema})" if self.schema else ""
        if status.state == "current":
            self._migrated = True
            return
        if status.state == "empty":
            self.upgrade()
            return
        if status.state == "behind":
            raise ConfigError(
                f"the metadata database{where} is at schema revision {status.current} and this Shipyard needs "
                f"{status.head}; run `{UPGRADE_COMMAND}` once (same metadata_url) before starting servers, "
                "or set auto_migrate: true to let each process upgrade it",
                {"field": "auto_migrate", "current": status.current, "head": status.head,
                 "command": UPGRADE_COMMAND},
            )
        raise ConfigError(
            f"the metadata database{where} is at schema revision {status.current}, which this Shipyard does not "
            f"know (its newest is {status.head}): a newer Shipyard upgraded it; run that version here",
            {"field": "metadata_url", "current": status.current, "head": status.head},
        )

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision``; safe when several processes start at once."""
        with self._lock:
            if self._migrated and revision == "head":
                return
            try:
                if revision == "head" and self.current_revision() == self.head_revision():
                    self._migrated = True
                    return
                with self._migration_lock():
                    self._run_upgrade(revision)
            except OperationalError as exc:
                raise _unavailable(exc) from exc
            self._migrated = revision == "head"

    def _run_upgrade(self, revision: str) -> None:
        from alembic import command

        if self.dialect == "sqlite":
            # SQLite DDL runs outside our BEGIN IMMEDIATE hook; use a plain connection.
            with self.engine.connect() as conn:
                conn.commit()
                command.upgrade(self._alembic_config(conn), revision)
                conn.commit()
        else:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(424242)")
                command.upgrade(self._alembic_config(conn), revision)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect != "sqlite":
            yield  # PostgreSQL uses an advisory lock inside the migration transaction
            return
        path = _sqlite_path(self.engine.url)
        if path is None:
            yield
            return
        lock_path = path.with_name(path.name + ".migrate.lock")
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _unavailable(exc: DBAPIError) -> StoreUnavailable:
    text = str(exc.orig) if getattr(exc, "orig", None) else str(exc)
    if "locked" in text or "busy" in text:
        return StoreUnavailable(
            "the metadata database is locked by another process and stayed locked past the busy "
            "timeout; retry, or find the process holding it (a long transaction or a crashed writer)",
            {"reason": text},
        )
    return StoreUnavailable(
        f"the metadata database is unavailable: {text}; check metadata_url and that the server runs",
        {"reason": text},
    )
