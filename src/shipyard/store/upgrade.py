"""``shipyard db upgrade|current``: every metadata database of a server, brought to this revision.

A server's databases are its own (``metadata_url``, which also holds users, tokens and the audit
log) and one per hosted project: a PostgreSQL schema ``project_<name>`` in the same database, or a
SQLite file under ``<project>/projects/<name>/.shipyard/``. They are found where they live, not
through the project list, so a project whose schema exists is upgraded whatever else is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shipyard.config import DEFAULT_PROJECT, PROJECT_NAME, Settings, project_settings, redact_url
from shipyard.store.database import MetadataStore, SchemaStatus

PROJECT_SCHEMA_PREFIX = "project_"


@dataclass(frozen=True)
class DatabaseStatus:
    project: str
    where: str  # the redacted URL, with the schema of a hosted project on PostgreSQL
    before: SchemaStatus
    after: SchemaStatus | None = None  # set by upgrade

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"project": self.project, "where": self.where, **self.before.to_dict()}
        if self.after is not None:
            out = {**out, "upgraded_from": self.before.current, "current": self.after.current,
                   "state": self.after.state}
        return out


def hosted_projects(root: Settings) -> list[str]:
    """Names of the hosted projects that have a metadata database or schema next to ``root``'s."""
    if root.metadata_url.startswith("sqlite"):
        folder = root.project_dir / "projects"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if PROJECT_NAME.match(p.name) and (p / ".shipyard" / "shipyard.db").is_file())
    store = MetadataStore(root.metadata_url, migrate=False)
    try:
        with store.read() as conn:
            rows = conn.execute(sa.text("SELECT schema_name FROM information_schema.schemata")).scalars().all()
    finally:
        store.dispose()
    names = [r[len(PROJECT_SCHEMA_PREFIX):] for r in rows if r.startswith(PROJECT_SCHEMA_PREFIX)]
    return sorted(n for n in names if PROJECT_NAME.match(n) and n != DEFAULT_PROJECT)


def _databases(root: Settings) -> list[Settings]:
    return [root] + [project_settings(root, name) for name in hosted_projects(root)]


def _where(settings: Settings) -> str:
    where = redact_url(settings.metadata_url)
    return f"{where} (schema {settings.metadata_schema})" if settings.metadata_schema else where


def database_status(root: Settings) -> list[DatabaseStatus]:
    """The schema revision of the server's database and of each hosted project's (changes nothing)."""
    out = []
    for settings in _databases(root):
        # the schemas were found existing, so opening one creates nothing
        store = MetadataStore(settings.metadata_url, migrate=False, schema=settings.metadata_schema)
        try:
            out.append(DatabaseStatus(settings.project, _where(settings), store.status()))
        finally:
            store.dispose()
    return out


def upgrade_databases(root: Settings) -> list[DatabaseStatus]:
    """Upgrade the server's database, then each hosted project's, to this Shipyard's head revision.

    Safe to run while servers run on the old revision only when the release notes say the
    migrations are additive; otherwise stop them first. Several runs at once wait for each other
    (an advisory lock on PostgreSQL, a file lock on SQLite)."""
    out = []
    for settings in _databases(root):
        store = MetadataStore(settings.metadata_url, migrate=False, schema=settings.metadata_schema)
        try:
            before = store.status()
            store.upgrade()
            out.append(DatabaseStatus(settings.project, _where(settings), before, store.status()))
        finally:
            store.dispose()
    return out
