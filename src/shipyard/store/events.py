"""The audit trail: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.store.database import MetadataStore, now_ms
from shipyard.store.schema import events


def record_event(conn: Connection, actor: str, kind: str, subject: str, details: dict[str, Any] | None = None) -> None:
    conn.execute(
        events.insert().values(ts=now_ms(), actor=actor, kind=kind, subject=subject, details=details or {})
    )


def list_events(store: MetadataStore, subject_prefix: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
    if subject_prefix:
        query = query.where(events.c.subject.like(subject_prefix.replace("%", r"\%") + "%", escape="\\"))
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
