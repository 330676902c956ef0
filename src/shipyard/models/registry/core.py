"""The model registry: registered models, immutable versions, integrity-checked loading.

A version is registered in one transaction that holds the model's lock (a row lock on PostgreSQL,
the database write lock on SQLite) while its files are copied to ``models/<name>/<version>/``, so
version numbers are 1..n with no gaps or duplicates across processes, and a failure leaves neither a
row nor files. Deleted versions keep their row (``lifecycle='deleted'``) so numbers are never reused.
The release workflow (validation, approval, aliases, rollback) lives in ``release.py``.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.artifacts import sha256_dir
from shipyard.errors import AlreadyExists, Conflict, IntegrityError, InvalidInput, NotFound
from shipyard.models.registry import names, queries
from shipyard.models.registry.records import (
    PENDING,
    STATUSES,
    VALIDATED,
    AliasMove,
    ModelVersion,
    RegisteredModel,
)
from shipyard.models.registry.recovery import VERSION_JOB, VersionRecovery, lease_key
from shipyard.models.registry.release import ReleaseWorkflow
from shipyard.models.registry.sources import inspect_model_dir, resolve_source
from shipyard.models.trust import refuse_pickles
from shipyard.store import leases, now_ms
from shipyard.store.events import list_events, record_event
from shipyard.store.schema import artifacts as artifacts_table
from shipyard.store.schema import model_aliases, model_versions, registered_models

if TYPE_CHECKING:
    from shipyard.models.environment import ModelEnvironment
    from shipyard.models.loaded import LoadedModel
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

LIVE = queries.LIVE
DELETED = "deleted"
OWNER_KIND = "model_version"


def _artifact_prefix(name: str, version: int) -> str:
    return f"models/{name}/{version}"


def _check_mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be a mapping of name to value, got {type(value).__name__}", {"field": field})
    return {str(k): v for k, v in value.items()}


def _check_metrics(value: Any) -> dict[str, float]:
    out = {}
    for key, number in _check_mapping(value, "metrics").items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise InvalidInput(
                f"metric {key!r} has value {number!r}; metrics must be finite numbers",
                {"field": f"metrics.{key}"},
            )
        out[key] = float(number)
    return out


def _check_lineage(value: Any) -> dict[str, Any]:
    lineage = _check_mapping(value, "lineage")
    known = {"dataset_version", "feature_views", "feature_service"}
    unknown = sorted(set(lineage) - known)
    if unknown:
        raise InvalidInput(
            f"lineage key(s) {unknown} are not known; use {sorted(known)}",
            {"field": "lineage", "unknown": unknown},
        )
    views = lineage.get("feature_views")
    if views is not None and (not isinstance(views, (list, tuple)) or not all(isinstance(v, str) for v in views)):
        raise InvalidInput("lineage.feature_views must be a list of feature view names", {"field": "lineage.feature_views"})
    if "feature_views" in lineage:
        lineage["feature_views"] = list(views or [])
    return lineage


class ModelRegistry:
    """``ws.registry``: register, validate, approve, alias, roll back and load model versions.

    Composed of the version catalogue (this class: models, versions, verified files and loading) and
    the release workflow (``self.release``, see ``release.py``), whose steps are offered here too.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._cache: dict[tuple[str, int], tuple[str, LoadedModel]] = {}
        self._cache_lock = threading.Lock()
        self.release = ReleaseWorkflow(ws, self)

    # -- the release workflow (validation, approval, aliases, rollback) -------------------------
    def start_validation(self, name: str, version: int | str, *, actor: str | None = None,
                         recovered: str | None = None) -> str:
        """Mark the version ``validating`` and run the checks; the attempt id (see ``ReleaseWorkflow``)."""
        return self.release.start_validation(name, version, actor=actor, recovered=recovered)

    def validate(self, name: str, version: int | str, *, wait: bool | None = None, timeout: float = 300.0,
                 actor: str | None = None) -> ModelVersion:
        """Run validation again (e.g. after a failure caused by the environment)."""
        return self.release.validate(name, version, wait=wait, timeout=timeout, actor=actor)

    def wait_for_validation(self, name: str, version: int | str, timeout: float = 300.0) -> ModelVersion:
        """Block until the version is validated or failed; Conflict when ``timeout`` seconds pass."""
        return self.release.wait_for_validation(name, version, timeout)

    def abandon_validation(self, name: str, version: int, reason: str) -> bool:
        """Mark a version left pending/validating ``abandoned`` and drop its lease (crash recovery
        gave up); False when it is no longer in progress."""
        return self.release.abandon_validation(name, version, reason)

    def record_stress_test(self, name: str, version: int | str, result: Mapping[str, Any], *,
                           actor: str | None = None) -> ModelVersion:
        """Store a release check's figures (e.g. serving's stress test) on the version, audited."""
        return self.release.record_stress_test(name, version, result, actor=actor)

    def approve(self, name: str, version: int | str, comment: str = "", *, actor: str | None = None) -> ModelVersion:
        """Approve a validated version as the acting reviewer, who must not be its registrant."""
        return self.release.approve(name, version, comment, actor=actor)

    def reject(self, name: str, version: int | str, comment: str = "", *, actor: str | None = None) -> ModelVersion:
        """Reject a version: it can no longer be approved or take an alias (unless forced)."""
        return self.release.reject(name, version, comment, actor=actor)

    def set_alias(self, name: str, alias: str, version: int | str, force: bool = False, *,
                  actor: str | None = None) -> ModelVersion:
        """Point ``alias`` at ``version`` (validated, and approved when the model requires it, unless forced)."""
        return self.release.set_alias(name, alias, version, force, actor=actor)

    def get_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at."""
        return self.release.get_alias(name, alias)

    def list_aliases(self, name: str) -> dict[str, int]:
        """The model's aliases and the version each points at."""
        return self.release.list_aliases(name)

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        """Remove an alias (its history is kept)."""
        self.release.delete_alias(name, alias, actor=actor)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or one alias), oldest first."""
        return self.release.alias_history(name, alias)

    def rollback(self, name: str, alias: str, *, actor: str | None = None) -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before its current one."""
        return self.release.rollback(name, alias, actor=actor)

    # -- models --------------------------------------------------------------------------------
    def create_model(
        self,
        name: str,
        description: str = "",
        requires_approval: bool = True,
        tags: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> RegisteredModel:
        names.check_model_name(name)
        tag_map = _check_mapping(tags, "tags")
        user = actor or self.ws.user
        with self.ws.store.begin() as conn:
            if conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first():
                raise AlreadyExists(
                    f"model {name!r} already exists; register a new version of it or pick another name",
                    {"field": "name", "name": name},
                )
            self._insert_model(conn, name, description, requires_approval, tag_map, user)
        return self.get_model(name)

    def _insert_model(
        self, conn: Connection, name: str, description: str, requires_approval: bool, tags: dict[str, Any], user: str
    ) -> None:
        ts = now_ms()
        conn.execute(
            registered_models.insert().values(
                name=name,
                description=description or "",
                requires_approval=bool(requires_approval),
                tags=tags,
                created_at=ts,
                updated_at=ts,
                created_by=user,
            )
        )
        record_event(conn, user, "model.created", names.subject(name),
                     {"requires_approval": bool(requires_approval), "description": description or ""})

    def _ensure_model(self, name: str, user: str) -> None:
        with self.ws.store.read() as conn:
            if conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first():
                return
        try:
            with self.ws.store.begin() as conn:
                if not conn.execute(
                    sa.select(registered_models.c.name).where(registered_models.c.name == name)
                ).first():
                    self._insert_model(conn, name, "", True, {}, user)
        except sa.exc.IntegrityError:
            pass  # created by a concurrent registration

    def get_model(self, name: str) -> RegisteredModel:
        names.check_model_name(name)
        with self.ws.store.read() as conn:
            row = conn.execute(sa.select(registered_models).where(registered_models.c.name == name)).first()
            if row is None:
                raise queries.model_not_found(conn, name)
            return self._model_record(conn, row._mapping)

    def get(self, name: str) -> RegisteredModel:
        """The same as ``get_model``."""
        return self.get_model(name)

    def list_models(self) -> list[RegisteredModel]:
        with self.ws.store.read() as conn:
            rows = conn.execute(sa.select(registered_models).order_by(registered_models.c.name)).all()
            return [self._model_record(conn, row._mapping) for row in rows]

    def _model_record(self, conn: Connection, row: Mapping[str, Any]) -> RegisteredModel:
        latest = conn.execute(
            sa.select(sa.func.max(model_versions.c.version)).where(
                model_versions.c.name == row["name"], model_versions.c.lifecycle == LIVE
            )
        ).scalar()
        aliases = dict(
            conn.execute(
                sa.select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.name == row["name"])
                .order_by(model_aliases.c.alias)
            ).all()
        )
        return RegisteredModel(
            name=row["name"],
            description=row["description"],
            requires_approval=bool(row["requires_approval"]),
            tags=dict(row["tags"] or {}),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            created_by=row["created_by"],
            latest_version=latest,
            aliases=aliases,
        )

    # -- registration --------------------------------------------------------------------------
    def register(
        self,
        path_or_run_artifact: str | Path,
        name: str,
        run_id: str | None = None,
        lineage: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        await_validation: bool = False,
        *,
        actor: str | None = None,
        validation_timeout: float = 300.0,
    ) -> ModelVersion:
        """Copy a model folder (or ``runs:/RUN/PATH``) in as the next version and start validation."""
        names.check_model_name(name)
        lineage_map = _check_lineage(lineage)
        tag_map = _check_mapping(tags, "tags")
        metric_map = _check_metrics(metrics)
        user = actor or self.ws.user
        if self.ws.settings.validation_subprocess:
            from shipyard.models.validator import shared_worker

            shared_worker().start()  # its imports overlap the copy below
        with resolve_source(self.ws, path_or_run_artifact, run_id) as (folder, source_run):
            flavor, signature = inspect_model_dir(folder)
            refuse_pickles(folder, self.ws.settings.allow_pickle_models)
            local_sha, local_size = sha256_dir(folder)
            if local_size == 0 and not any(folder.iterdir()):
                raise InvalidInput(f"model folder {str(folder)!r} is empty", {"field": "path"})
            self._ensure_model(name, user)
            version = self._store_version(
                name, folder, local_sha, flavor, signature, source_run, lineage_map, tag_map, metric_map, user
            )
        log.info("registered model %s version %d (%s, sha256 %s)", name, version, flavor, local_sha[:12])
        try:
            self.start_validation(name, version, actor=user)
        except BaseException:
            # stop heartbeating: the version stays pending and crash recovery validates it later
            leases.forget(self.ws.store, VERSION_JOB, lease_key(name, version))
            raise
        if await_validation:
            return self.wait_for_validation(name, version, timeout=validation_timeout)
        return self.get_version(name, version)

    def _store_version(
        self,
        name: str,
        folder: Path,
        local_sha: str,
        flavor: str,
        signature: dict[str, Any] | None,
        source_run: str | None,
        lineage: dict[str, Any],
        tags: dict[str, Any],
        metrics: dict[str, float],
        user: str,
    ) -> int:
        store = self.ws.artifacts
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            version = (
                conn.execute(sa.select(sa.func.max(model_versions.c.version)).where(model_versions.c.name == name)).scalar()
                or 0
            ) + 1
            prefix = _artifact_prefix(name, version)
            try:
                store.delete(prefix)  # leftovers of an attempt that crashed before committing
                whole, files = store.put_dir(prefix, folder)
                if whole.sha256 != local_sha:
                    raise IntegrityError(
                        f"model folder {str(folder)!r} changed while it was being copied; register it again "
                        "once nothing writes to it",
                        {"path": str(folder)},
                    )
                ts = now_ms()
                conn.execute(
                    model_versions.insert().values(
                        name=name, version=version, source_run_id=source_run, artifact_uri=whole.uri,
                        sha256=whole.sha256, size=whole.size, flavor=flavor, signature=signature,
                        metrics=metrics, tags=tags, lineage=lineage, status=PENDING, status_reason="",
                        validation={}, created_by=user, created_at=ts, lifecycle=LIVE,
                    )
                )
                if files:
                    conn.execute(
                        artifacts_table.insert(),
                        [
                            {"owner_kind": OWNER_KIND, "owner_id": f"{name}/{version}", "path": f.path,
                             "uri": f.uri, "sha256": f.sha256, "size": f.size, "created_at": ts}
                            for f in files
                        ],
                    )
                conn.execute(registered_models.update().where(registered_models.c.name == name).values(updated_at=ts))
                record_event(conn, user, "model.version_registered", names.subject(name, str(version)), {
                    "version": version, "sha256": whole.sha256, "size": whole.size, "flavor": flavor,
                    "source_run_id": source_run, "files": len(files),
                })
                # pending until validation starts: a crash before then leaves a lease that goes stale
                leases.acquire(conn, VERSION_JOB, lease_key(name, version), ttl_s=self.ws.settings.lease_ttl_s)
            except BaseException:
                # Still holding the model lock: nobody else can be writing under this prefix.
                try:
                    store.delete(prefix)
                except Exception:  # noqa: BLE001 - keep the original error
                    log.warning("could not remove partial upload %s", prefix, exc_info=True)
                raise
        leases.keep(self.ws.store, VERSION_JOB, lease_key(name, version), self.ws.settings.lease_ttl_s)
        return version

    # -- versions ------------------------------------------------------------------------------
    def get_version(self, name: str, version_or_alias: int | str) -> ModelVersion:
        names.check_model_name(name)
        ref = names.parse_ref(version_or_alias)
        with self.ws.store.read() as conn:
            row = queries.version_row(conn, name, ref)
            return self._version_record(conn, row)

    def list_versions(self, name: str, status: str | None = None) -> list[ModelVersion]:
        names.check_model_name(name)
        with self.ws.store.read() as conn:
            if not conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first():
                raise queries.model_not_found(conn, name)
            query = (
                sa.select(model_versions)
                .where(model_versions.c.name == name, model_versions.c.lifecycle == LIVE)
                .order_by(model_versions.c.version)
            )
            if status:
                query = query.where(model_versions.c.status == status)
            aliases = queries.aliases_by_version(conn, name)
            return [self._version_record(conn, row._mapping, aliases) for row in conn.execute(query)]

    def search_versions(self, *, status: str | None = None, awaiting_approval: bool = False, limit: int = 100,
                        offset: int = 0) -> tuple[list[ModelVersion], int]:
        """Live versions of every model, newest first, and how many match in all. ``awaiting_approval``
        keeps validated versions nobody approved yet of models that require approval."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status {status!r} is not a version status; use one of {', '.join(STATUSES)}",
                               {"field": "status"})
        for field, value, low, high in (("limit", limit, 1, 1000), ("offset", offset, 0, 2**31)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(f"{field} must be an integer in [{low}, {high}], got {value!r}", {"field": field})
        where = [model_versions.c.lifecycle == LIVE]
        if status is not None:
            where.append(model_versions.c.status == status)
        if awaiting_approval:
            gated = sa.select(registered_models.c.name).where(registered_models.c.requires_approval.is_(True))
            where += [model_versions.c.status == VALIDATED, model_versions.c.approved_by.is_(None),
                      model_versions.c.name.in_(gated)]
        query = (sa.select(model_versions).where(*where)
                 .order_by(model_versions.c.created_at.desc(), model_versions.c.name, model_versions.c.version.desc())
                 .limit(limit).offset(offset))
        with self.ws.store.read() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(model_versions).where(*where)).scalar_one())
            rows = [r._mapping for r in conn.execute(query)]
            aliases: dict[str, dict[int, list[str]]] = {}
            names_found = sorted({r["name"] for r in rows})
            if names_found:
                for name, alias, version in conn.execute(
                    sa.select(model_aliases.c.name, model_aliases.c.alias, model_aliases.c.version)
                    .where(model_aliases.c.name.in_(names_found)).order_by(model_aliases.c.alias)
                ):
                    aliases.setdefault(name, {}).setdefault(version, []).append(alias)
            return [self._version_record(conn, r, aliases.get(r["name"], {})) for r in rows], total

    def _version_record(
        self, conn: Connection, row: Mapping[str, Any], aliases: dict[int, list[str]] | None = None
    ) -> ModelVersion:
        if aliases is None:
            aliases = queries.aliases_by_version(conn, row["name"])
        return ModelVersion(
            name=row["name"],
            version=row["version"],
            status=row["status"],
            status_reason=row["status_reason"] or "",
            flavor=row["flavor"],
            sha256=row["sha256"],
            size=row["size"],
            artifact_path=_artifact_prefix(row["name"], row["version"]),
            artifact_uri=row["artifact_uri"],
            source_run_id=row["source_run_id"],
            signature=row["signature"],
            metrics=dict(row["metrics"] or {}),
            tags=dict(row["tags"] or {}),
            lineage=dict(row["lineage"] or {}),
            validation=dict(row["validation"] or {}),
            approved_by=row["approved_by"],
            approved_at=row["approved_at"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            aliases=aliases.get(row["version"], []),
        )

    def delete_version(self, name: str, version: int | str, *, actor: str | None = None) -> None:
        """Delete a version's files; refused while an alias points at it. Its number is not reused."""
        names.check_model_name(name)
        number = names.check_version(version)
        user = actor or self.ws.user
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            row = queries.version_row(conn, name, number, lock=True)
            pointing = [a for (a,) in conn.execute(
                sa.select(model_aliases.c.alias)
                .where(model_aliases.c.name == name, model_aliases.c.version == number)
                .order_by(model_aliases.c.alias)
            )]
            if pointing:
                raise Conflict(
                    f"model {name!r} version {number} cannot be deleted: alias {', '.join(map(repr, pointing))} "
                    "points at it; move the alias to another version (set_alias) or delete the alias first",
                    {"name": name, "version": number, "aliases": pointing},
                )
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(lifecycle=DELETED)
            )
            conn.execute(
                artifacts_table.delete().where(
                    artifacts_table.c.owner_kind == OWNER_KIND, artifacts_table.c.owner_id == f"{name}/{number}"
                )
            )
            record_event(conn, user, "model.version_deleted", names.subject(name, str(number)),
                         {"version": number, "sha256": row["sha256"]})
        self._forget(name, number)
        self.ws.artifacts.delete(_artifact_prefix(name, number))

    def history(self, name: str, limit: int = 200) -> list[dict[str, Any]]:
        """The model's audit events, newest first."""
        names.check_model_name(name)
        return list_events(self.ws.store, names.subject(name), limit=limit)

    # -- integrity, download and load ----------------------------------------------------------
    def verify(self, name: str, version_or_alias: int | str) -> ModelVersion:
        """Check the stored files against the recorded sha256; NotFound/IntegrityError otherwise."""
        mv = self.get_version(name, version_or_alias)
        self._verify_stored(mv)
        return mv

    def _recorded_files(self, mv: ModelVersion) -> list[str]:
        with self.ws.store.read() as conn:
            return [p for (p,) in conn.execute(
                sa.select(artifacts_table.c.path)
                .where(artifacts_table.c.owner_kind == OWNER_KIND, artifacts_table.c.owner_id == f"{mv.name}/{mv.version}")
                .order_by(artifacts_table.c.path)
            )]

    def _verify_stored(self, mv: ModelVersion) -> None:
        present = set(self.ws.artifacts.list(mv.artifact_path))
        for path in self._recorded_files(mv):
            if path not in present:
                raise NotFound(
                    f"file {path!r} of model {mv.name!r} version {mv.version} is missing from the artifact "
                    f"store {self.ws.artifacts.root!r}; restore it from backup, or delete the version and "
                    "register the model again",
                    {"name": mv.name, "version": mv.version, "path": path},
                )
        self.ws.artifacts.verify_dir(mv.artifact_path, mv.sha256)

    def download(self, name: str, version_or_alias: int | str, dst: str | Path) -> Path:
        """Copy a version's model folder into ``dst`` (which must be empty) after checking its sha256."""
        mv = self.get_version(name, version_or_alias)
        target = Path(dst)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InvalidInput(
                f"download target {str(target)!r} is not an empty folder; give a new or empty folder",
                {"field": "dst"},
            )
        self._fetch_verified(mv, target)
        return target

    def _fetch_verified(self, mv: ModelVersion, target: Path) -> None:
        recorded = self._recorded_files(mv)
        present = set(self.ws.artifacts.list(mv.artifact_path))
        missing = [p for p in recorded if p not in present]
        if missing:
            self._verify_stored(mv)  # raises NotFound naming the file
        self.ws.artifacts.download(mv.artifact_path, target)
        actual, _ = sha256_dir(target)
        if actual != mv.sha256:
            shutil.rmtree(target, ignore_errors=True)
            raise IntegrityError(
                f"model {mv.name!r} version {mv.version} does not match its recorded sha256 (files were "
                "changed, added or removed in the artifact store); restore them or register the model again",
                {"name": mv.name, "version": mv.version, "expected_sha256": mv.sha256, "actual_sha256": actual},
            )

    def local_model_dir(self, mv: ModelVersion) -> Path:
        """A verified local folder holding the version's files (in place for a local store)."""
        if self.ws.artifacts.is_local:
            self._verify_stored(mv)
            return self.ws.artifacts.local_path(mv.artifact_path)
        cache = self.ws.settings.state_dir / "cache" / "models" / mv.name / f"{mv.version}-{mv.sha256[:16]}"
        if cache.is_dir() and sha256_dir(cache)[0] == mv.sha256:
            return cache
        shutil.rmtree(cache, ignore_errors=True)
        partial = cache.with_name(cache.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        self._fetch_verified(mv, partial)
        partial.rename(cache)
        return cache

    def load(self, name: str, version_or_alias: int | str = names.LATEST) -> LoadedModel:
        """Load a version (number, alias or 'latest') after its sha256 matched; cached per version."""
        mv = self.get_version(name, version_or_alias)
        key = (mv.name, mv.version)
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == mv.sha256:
            return hit[1]
        model = self._load_verified(mv)
        with self._cache_lock:
            self._cache[key] = (mv.sha256, model)
        return model

    def load_for_serving(self, name: str, version_or_alias: int | str) -> LoadedModel:
        """What a server serves: ``load``, or a proxy to a worker in the version's own environment
        when the version is marked so (``serve_env: own`` tag, ``own_env_models`` setting). The
        caller owns the proxy (``close()`` stops its worker); it is not cached here."""
        from shipyard.models.registry.environments import load_in_environment, serves_in_own_environment

        mv = self.get_version(name, version_or_alias)
        if not serves_in_own_environment(self.ws.settings, mv):
            return self.load(name, mv.version)
        return load_in_environment(self.ws.settings, mv, self.local_model_dir(mv))

    def build_environment(self, name: str, version_or_alias: int | str, *, builder: str | None = None,
                          rebuild: bool = False) -> ModelEnvironment:
        """Build (or reuse) the Python environment of a version from its recorded requirements."""
        from shipyard.models.registry.environments import build_version_environment

        mv = self.get_version(name, version_or_alias)
        return build_version_environment(self.ws.settings, mv, self.local_model_dir(mv), builder=builder,
                                         rebuild=rebuild)

    def _load_verified(self, mv: ModelVersion) -> LoadedModel:
        from shipyard.models.loaded import model_failure
        from shipyard.models.package import load_model

        folder = self.local_model_dir(mv)  # sha256 checked before anything is unpickled
        try:
            refuse_pickles(folder, self.ws.settings.allow_pickle_models)
            return load_model(folder, trusted=True)
        except Exception as exc:  # noqa: BLE001 - unpickling and load hooks run the model's own code
            failure = model_failure(exc, mv.name, mv.version, "could not be loaded")
            if failure is exc:
                raise
            raise failure from exc

    def recovery(self) -> VersionRecovery:
        """The crash-recovery kind of model versions: resumes validations whose process died."""
        return VersionRecovery(self)

    def _forget(self, name: str, version: int | None = None) -> None:
        with self._cache_lock:
            for key in [k for k in self._cache if k[0] == name and (version is None or k[1] == version)]:
                del self._cache[key]

