"""The audit log: who did what, when, from where, with what outcome, before and after.

Rows are only ever inserted (database triggers refuse UPDATE and DELETE), and each row carries the
sha256 of its own content and of the row before it, so ``verify`` finds a row changed or removed
behind the database's back. Writers are serialised (SQLite's write lock; an advisory lock on
PostgreSQL) so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from shipyard.store import MetadataStore, now_ms
from shipyard.store.schema import audit_log

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 424243
_HASHED = ("ts", "project", "actor", "action", "resource", "subject", "route", "outcome", "status", "client",
           "request_id", "details", "prev_sha256")


@dataclass
class AuditEntry:
    project: str
    actor: str
    action: str
    resource: str
    subject: str
    outcome: str = "ok"
    status: int = 200
    route: str = ""
    client: str = ""
    request_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    ts: int = 0


@dataclass(frozen=True)
class AuditRecord:
    id: int
    ts: int
    project: str
    actor: str
    action: str
    resource: str
    subject: str
    route: str
    outcome: str
    status: int
    client: str
    request_id: str
    details: dict[str, Any]
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(values: dict[str, Any]) -> str:
    doc = json.dumps({k: values[k] for k in _HASHED}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


class AuditLog:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def record(self, entry: AuditEntry) -> int:
        values = asdict(entry)
        values["ts"] = entry.ts or now_ms()
        # JSON round trip so the hash covers exactly what the database will hand back
        values["details"] = json.loads(json.dumps(entry.details, default=str))
        with self.store.begin() as conn:
            if self.store.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
            prev = conn.execute(sa.select(audit_log.c.sha256).order_by(audit_log.c.id.desc()).limit(1)).scalar()
            values["prev_sha256"] = prev or GENESIS
            values["sha256"] = _digest(values)
            result = conn.execute(audit_log.insert().values(**values))
            return int(result.inserted_primary_key[0])

    def list(self, *, project: str | None = None, actor: str | None = None, resource: str | None = None,
             action: str | None = None, since: int | None = None, until: int | None = None,
             limit: int = 200, before_id: int | None = None) -> list[AuditRecord]:
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        for column, value in ((audit_log.c.project, project), (audit_log.c.actor, actor),
                              (audit_log.c.resource, resource), (audit_log.c.action, action)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(audit_log.c.ts >= since)
        if until is not None:
            query = query.where(audit_log.c.ts < until)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        with self.store.read() as conn:
            return [self._record(r) for r in conn.execute(query).mappings()]

    def verify(self) -> tuple[int, int | None]:
        """(rows checked, id of the first row whose hash or link is wrong — None when intact)."""
        prev = GENESIS
        checked = 0
        with self.store.read() as conn:
            for row in conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).mappings():
                values = dict(row)
                if values["prev_sha256"] != prev or _digest(values) != values["sha256"]:
                    return checked, int(values["id"])
                prev = values["sha256"]
                checked += 1
        return checked, None

    @staticmethod
    def _record(row: Any) -> AuditRecord:
        return AuditRecord(id=row["id"], ts=row["ts"], project=row["project"], actor=row["actor"],
                           action=row["action"], resource=row["resource"], subject=row["subject"],
                           route=row["route"], outcome=row["outcome"], status=row["status"], client=row["client"],
                           request_id=row["request_id"], details=dict(row["details"] or {}), sha256=row["sha256"])
