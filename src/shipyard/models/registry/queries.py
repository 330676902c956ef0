"""The model registry's row-level steps, run inside the caller's transaction.

Registration (``core.py``) and the release workflow (``release.py``) both lock a model and read a
version row in the same way; these functions are that shared part, so neither component needs the
other to provide it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import NotFound
from shipyard.models.registry import names
from shipyard.store.schema import model_aliases, model_versions, registered_models

LIVE = "active"


def lock_model(conn: Connection, name: str) -> Mapping[str, Any]:
    """Serialize changes to one model: row lock on PostgreSQL (SQLite already holds the write lock)."""
    row = conn.execute(
        sa.select(registered_models).where(registered_models.c.name == name).with_for_update()
    ).first()
    if row is None:
        raise model_not_found(conn, name)
    return row._mapping


def version_row(conn: Connection, name: str, ref: int | str, *, lock: bool = False) -> Mapping[str, Any]:
    if ref == names.LATEST:
        version = conn.execute(
            sa.select(sa.func.max(model_versions.c.version)).where(
                model_versions.c.name == name, model_versions.c.lifecycle == LIVE
            )
        ).scalar()
        if version is None:
            raise NotFound(f"model {name!r} has no versions yet; register one first", {"name": name})
    elif isinstance(ref, str):
        version = conn.execute(
            sa.select(model_aliases.c.version).where(model_aliases.c.name == name, model_aliases.c.alias == ref)
        ).scalar()
        if version is None:
            if not conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first():
                raise model_not_found(conn, name)
            known = sorted(aliases_by_version(conn, name).items())
            raise NotFound(
                f"model {name!r} has no alias {ref!r}; its aliases: "
                f"{[a for _, aliases in known for a in aliases] or 'none'} (set one with `shipyard models alias` or registry.set_alias)",
                {"name": name, "alias": ref},
            )
    else:
        version = ref
    query = sa.select(model_versions).where(
        model_versions.c.name == name, model_versions.c.version == version, model_versions.c.lifecycle == LIVE
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        if not conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first():
            raise model_not_found(conn, name)
        live = [r[0] for r in conn.execute(
            sa.select(model_versions.c.version)
            .where(model_versions.c.name == name, model_versions.c.lifecycle == LIVE)
            .order_by(model_versions.c.version)
        )]
        raise NotFound(
            f"model {name!r} has no version {version}; its versions: {live or 'none'}",
            {"name": name, "version": version},
        )
    return row._mapping


def aliases_by_version(conn: Connection, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in conn.execute(
        sa.select(model_aliases.c.alias, model_aliases.c.version)
        .where(model_aliases.c.name == name)
        .order_by(model_aliases.c.alias)
    ):
        out.setdefault(version, []).append(alias)
    return out


def model_not_found(conn: Connection, name: str) -> NotFound:
    known = [r[0] for r in conn.execute(sa.select(registered_models.c.name).order_by(registered_models.c.name).limit(20))]
    return NotFound(
        f"model {name!r} is not registered; known models: {known or 'none'} "
        "(register a version with registry.register(path, name))",
        {"name": name},
    )
