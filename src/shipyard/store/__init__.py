"""Metadata store: one SQLAlchemy schema, Alembic migrations, SQLite (WAL) or PostgreSQL."""

from shipyard.store.database import MetadataStore, now_ms
from shipyard.store.schema import metadata

__all__ = ["MetadataStore", "metadata", "now_ms"]
