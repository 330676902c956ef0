"""Named secrets encrypted at rest with Fernet.

    store = ws.secrets
    store.put("warehouse_password", "s3cr3t", actor="alice")
    store.get("warehouse_password")            # 's3cr3t'
    store.secret("warehouse_password")         # SecretValue(name='warehouse_password', value='***')
    store.list()                               # names and metadata, never values

Values are encrypted with the project's key (:mod:`shipyard.secrets.keys`) before they reach the
database. ``list`` and every error name a secret but never show its value; audit events record who
set or deleted which name, and when.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from sqlalchemy.engine import Connection

from shipyard.errors import ConfigError, IntegrityError, InvalidInput, NotFound
from shipyard.secrets.keys import KeyRing, add_new_key, keep_only_primary, load_keyring
from shipyard.store import MetadataStore, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import secrets as secrets_table

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
MAX_VALUE_BYTES = 64 * 1024


class SecretValue:
    """A secret in memory: ``reveal()`` gives the text; ``repr``/``str`` never do, nor does pickling."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "") -> None:
        self._value = value
        self.name = name

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, value='***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __reduce__(self) -> NoReturn:
        # keeps a secret from travelling to another process inside a pickled object
        raise TypeError(f"SecretValue {self.name!r} cannot be pickled; pass the secret's name instead")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    revision: int
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RotationReport:
    secrets: int
    retired_keys: int
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_secret_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"{field} {name!r} is not a valid secret name; use a letter followed by up to 127 letters, digits, "
            "'_', '-' or '.'",
            {"field": field},
        )
    return name


def _check_value(name: str, value: Any) -> str:
    if isinstance(value, SecretValue):
        value = value.reveal()
    if not isinstance(value, str):
        raise InvalidInput(f"secret {name!r}: the value must be text, got {type(value).__name__}",
                           {"field": "value"})
    if not value:
        raise InvalidInput(f"secret {name!r}: the value is empty; give a non-empty value", {"field": "value"})
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidInput(f"secret {name!r}: the value is longer than {MAX_VALUE_BYTES} bytes",
                           {"field": "value"})
    return value


class SecretStore:
    """``ws.secrets``: put, get, delete, list and key rotation for one project."""

    def __init__(self, store: MetadataStore, state_dir: Path) -> None:
        self.store = store
        self.state_dir = Path(state_dir)

    def keyring(self) -> KeyRing:
        # read on every call: another process may have rotated the key
        return load_keyring(self.state_dir)

    def _lock(self, conn: Connection, mode: str) -> None:
        """PostgreSQL: puts exclude rotation and rotation excludes everything (SQLite's BEGIN IMMEDIATE
        already serialises writers)."""
        if self.store.dialect == "postgresql":
            conn.exec_driver_sql(f"LOCK TABLE {secrets_table.name} IN {mode} MODE")

    # -- writes --------------------------------------------------------------------------------
    def put(self, name: str, value: str | SecretValue, actor: str) -> SecretInfo:
        """Create or replace a secret (each replacement bumps its revision)."""
        name = check_secret_name(name)
        text = _check_value(name, value)
        ts = now_ms()
        with self.store.begin() as conn:
            self._lock(conn, "ROW EXCLUSIVE")
            token = self.keyring().fernet.encrypt(text.encode()).decode()
            row = conn.execute(sa.select(secrets_table.c.revision).where(secrets_table.c.name == name)).first()
            if row is None:
                conn.execute(secrets_table.insert().values(
                    name=name, ciphertext=token, revision=1, created_at=ts, created_by=actor,
                    updated_at=ts, updated_by=actor))
                revision = 1
            else:
                revision = int(row.revision) + 1
                conn.execute(secrets_table.update().where(secrets_table.c.name == name).values(
                    ciphertext=token, revision=revision, updated_at=ts, updated_by=actor))
            record_event(conn, actor, "secret.set", f"secret:{name}", {"revision": revision})
        return self.info(name)

    def delete(self, name: str, actor: str) -> None:
        name = check_secret_name(name)
        with self.store.begin() as conn:
            result = conn.execute(secrets_table.delete().where(secrets_table.c.name == name))
            if result.rowcount == 0:
                raise self._not_found(name)
            record_event(conn, actor, "secret.deleted", f"secret:{name}")

    def rotate_key(self, actor: str) -> RotationReport:
        """Encrypt every secret with a new key (key file) or with the first key of SHIPYARD_SECRET_KEY.

        With a key file a fresh key is generated; the old keys are dropped from the file once every
        value is re-encrypted in one transaction. With the environment variable, put the new key in
        front (``NEW,OLD``), rotate, then remove ``OLD`` from the variable.
        """
        with self.store.begin() as conn:
            self._lock(conn, "EXCLUSIVE")
            ring = self.keyring()
            if ring.from_environment and len(ring.keys) < 2:
                raise ConfigError(
                    "the key comes from SHIPYARD_SECRET_KEY and holds one key; set SHIPYARD_SECRET_KEY=NEW_KEY,OLD_KEY "
                    "(newest first) and run rotate-key again",
                    {"field": "SHIPYARD_SECRET_KEY"},
                )
            if not ring.from_environment:
                ring = add_new_key(ring)
            fernet = ring.fernet
            rows = conn.execute(sa.select(secrets_table.c.name, secrets_table.c.ciphertext)).all()
            for row in rows:
                try:
                    rotated = fernet.rotate(row.ciphertext.encode()).decode()
                except InvalidToken:
                    raise self._undecryptable(row.name, ring) from None
                conn.execute(secrets_table.update().where(secrets_table.c.name == row.name)
                             .values(ciphertext=rotated))
            record_event(conn, actor, "secret.key_rotated", "secret:*", {"secrets": len(rows)})
        retired = len(ring.keys) - 1
        if not ring.from_environment:
            keep_only_primary(ring)
        return RotationReport(len(rows), retired, ring.origin)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, name: str) -> str:
        """The decrypted value. Prefer :meth:`secret` when the value travels through other code."""
        return self.secret(name).reveal()

    def secret(self, name: str) -> SecretValue:
        name = check_secret_name(name)
        with self.store.read() as conn:
            row = conn.execute(sa.select(secrets_table.c.ciphertext).where(secrets_table.c.name == name)).first()
        if row is None:
            raise self._not_found(name)
        ring = self.keyring()
        try:
            return SecretValue(ring.fernet.decrypt(row.ciphertext.encode()).decode(), name)
        except InvalidToken:
            raise self._undecryptable(name, ring) from None

    def exists(self, name: str) -> bool:
        with self.store.read() as conn:
            return conn.execute(sa.select(secrets_table.c.name).where(secrets_table.c.name == name)).first() is not None

    def info(self, name: str) -> SecretInfo:
        name = check_secret_name(name)
        with self.store.read() as conn:
            row = conn.execute(sa.select(*self._info_columns()).where(secrets_table.c.name == name)).first()
        if row is None:
            raise self._not_found(name)
        return SecretInfo(**row._mapping)

    def list(self) -> list[SecretInfo]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(*self._info_columns()).order_by(secrets_table.c.name)).all()
        return [SecretInfo(**row._mapping) for row in rows]

    @staticmethod
    def _info_columns() -> list[Any]:
        c = secrets_table.c
        return [c.name, c.revision, c.created_at, c.created_by, c.updated_at, c.updated_by]

    @staticmethod
    def _not_found(name: str) -> NotFound:
        return NotFound(f"secret {name!r} does not exist; create it with `shipyard secrets set {name}`",
                        {"field": "secret", "name": name})

    @staticmethod
    def _undecryptable(name: str, ring: KeyRing) -> IntegrityError:
        return IntegrityError(
            f"secret {name!r} cannot be decrypted with the key from {ring.origin}; the key was replaced or lost. "
            "Restore the previous key (put it after the current one) or set the secret again",
            {"field": "secret", "name": name},
        )
