"""The feature registry: immutable versions of every definition in the metadata store.

``apply`` writes a whole plan in one transaction: every new version, every current-version pointer,
the apply record and the audit event commit together or not at all.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.errors import Conflict, NotFound
from shipyard.features.definitions import Definition, from_spec
from shipyard.store import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import feature_applies, feature_object_versions, feature_objects

if TYPE_CHECKING:
    from shipyard.features.plan import ApplyPlan
    from shipyard.store import MetadataStore

_LABEL = {
    "entity": "entity",
    "feature_view": "feature view",
    "on_demand_feature_view": "on-demand feature view",
    "feature_service": "feature service",
}


class FeatureRegistry:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._cache: dict[tuple[str, str, int], Definition] = {}

    # -- reads ---------------------------------------------------------------------------------
    def current_specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(kind, name) -> {"version", "spec", "spec_hash"} for every live object."""
        query = (
            sa.select(feature_objects.c.kind, feature_objects.c.name, feature_objects.c.version,
                      feature_object_versions.c.spec, feature_object_versions.c.spec_hash)
            .join(feature_object_versions, sa.and_(
                feature_object_versions.c.kind == feature_objects.c.kind,
                feature_object_versions.c.name == feature_objects.c.name,
                feature_object_versions.c.version == feature_objects.c.version))
            .where(feature_objects.c.deleted.is_(False))
        )
        with self.store.read() as conn:
            return {(r.kind, r.name): {"version": r.version, "spec": r.spec, "spec_hash": r.spec_hash}
                    for r in conn.execute(query)}

    def current_version(self, kind: str, name: str) -> int | None:
        with self.store.read() as conn:
            row = conn.execute(
                sa.select(feature_objects.c.version, feature_objects.c.deleted)
                .where(feature_objects.c.kind == kind, feature_objects.c.name == name)
            ).first()
        if row is None or row.deleted:
            return None
        return int(row.version)

    def get(self, kind: str, name: str, version: int | None = None) -> Definition:
        label = _LABEL.get(kind, kind)
        if version is None:
            version = self.current_version(kind, name)
            if version is None:
                known = ", ".join(self.names(kind)) or "none applied yet"
                raise NotFound(
                    f"{label} {name!r} is not registered (known: {known}); define it under features/ and run "
                    "'shipyard features apply'",
                    {"kind": kind, "name": name},
                )
        key = (kind, name, int(version))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self.store.read() as conn:
            row = conn.execute(
                sa.select(feature_object_versions.c.spec).where(
                    feature_object_versions.c.kind == kind, feature_object_versions.c.name == name,
                    feature_object_versions.c.version == int(version))
            ).first()
        if row is None:
            raise NotFound(f"{label} {name!r} has no version {version}", {"kind": kind, "name": name,
                                                                          "version": version})
        obj = from_spec(kind, row.spec, int(version))
        self._cache[key] = obj
        return obj

    def names(self, kind: str) -> list[str]:
        with self.store.read() as conn:
            return [r.name for r in conn.execute(
                sa.select(feature_objects.c.name)
                .where(feature_objects.c.kind == kind, feature_objects.c.deleted.is_(False))
                .order_by(feature_objects.c.name))]

    def list(self, kind: str) -> list[Definition]:
        return [from_spec(kind, item["spec"], item["version"])
                for (k, _name), item in sorted(self.current_specs().items()) if k == kind]

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(feature_object_versions.c.version, feature_object_versions.c.spec_hash,
                          feature_object_versions.c.created_at, feature_object_versions.c.created_by,
                          feature_object_versions.c.apply_id)
                .where(feature_object_versions.c.kind == kind, feature_object_versions.c.name == name)
                .order_by(feature_object_versions.c.version))
            return [dict(r._mapping) for r in rows]

    # -- writes --------------------------------------------------------------------------------
    def apply(self, plan: ApplyPlan, actor: str, repo_path: str = "") -> str:
        """Record ``plan`` atomically; returns the apply id. Raises Conflict if the registry moved."""
        apply_id = uuid.uuid4().hex
        ts = now_ms()
        with self.store.begin() as conn:
            for change in plan.changes:
                if change.action == "unchanged":
                    continue
                row = conn.execute(
                    sa.select(feature_objects.c.version, feature_objects.c.deleted, feature_objects.c.spec_hash)
                    .where(feature_objects.c.kind == change.kind, feature_objects.c.name == change.name)
                ).first()
                current = None if row is None or row.deleted else int(row.version)
                if current != change.old_version:
                    raise Conflict(
                        f"{_LABEL[change.kind]} {change.name!r} changed in the registry since the plan was made "
                        f"(now version {current}, planned against {change.old_version}); run plan again",
                        {"kind": change.kind, "name": change.name},
                    )
                if change.action == "removed":
                    conn.execute(feature_objects.update().where(
                        feature_objects.c.kind == change.kind, feature_objects.c.name == change.name
                    ).values(deleted=True, updated_at=ts, updated_by=actor))
                    continue
                assert change.definition is not None
                last = conn.execute(
                    sa.select(sa.func.max(feature_object_versions.c.version)).where(
                        feature_object_versions.c.kind == change.kind, feature_object_versions.c.name == change.name)
                ).scalar()
                version = int(last or 0) + 1
                loc = change.definition.location
                conn.execute(feature_object_versions.insert().values(
                    kind=change.kind, name=change.name, version=version, spec=change.new_spec,
                    spec_hash=change.new_hash, source_file=loc.file, source_line=loc.line, apply_id=apply_id,
                    created_at=ts, created_by=actor))
                if row is None:
                    conn.execute(feature_objects.insert().values(
                        kind=change.kind, name=change.name, version=version, spec_hash=change.new_hash,
                        deleted=False, created_at=ts, updated_at=ts, updated_by=actor))
                else:
                    conn.execute(feature_objects.update().where(
                        feature_objects.c.kind == change.kind, feature_objects.c.name == change.name
                    ).values(version=version, spec_hash=change.new_hash, deleted=False, updated_at=ts,
                             updated_by=actor))
                change.new_version = version
            summary = plan.summary()
            conn.execute(feature_applies.insert().values(id=apply_id, repo_path=repo_path, summary=summary,
                                                         created_at=ts, created_by=actor))
            record_event(conn, actor, "features.apply", f"features/apply/{apply_id}", summary)
        return apply_id
