"""The release workflow: validation, approval, aliases and rollback.

Every change takes the model's lock first (then the version's), checks the state it depends on, and
writes its audit event in the same transaction, so concurrent callers serialize and the history is
the order in which changes committed. An alias's history is a stack: ``set`` pushes a version,
``rollback`` pops back to the one below, ``delete`` empties it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.config import HOSTED_PROJECTS_DIR
from shipyard.errors import Conflict, Forbidden, NotFound, ShipyardError
from shipyard.models.registry import names, queries
from shipyard.models.registry.records import (
    ABANDONED,
    FINISHED,
    IN_PROGRESS,
    REJECTED,
    VALIDATED,
    VALIDATING,
    AliasMove,
    ModelVersion,
    RegisteredModel,
)
from shipyard.models.registry.recovery import VERSION_JOB, lease_key
from shipyard.models.validation import ValidationJob, ValidationResult, check_package
from shipyard.store import leases, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import model_alias_history, model_aliases, model_versions

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)


class VersionFiles(Protocol):
    """What the release workflow reads from the registry: version records and their verified files."""

    def get_version(self, name: str, version_or_alias: int | str) -> ModelVersion: ...

    def local_model_dir(self, mv: ModelVersion) -> Path: ...


class ReleaseWorkflow:
    """Release steps of a model registry: validation, approval, aliases and rollback.

    A part of :class:`~shipyard.models.registry.ModelRegistry` (``registry.release``), which also
    offers each step as its own method. It writes through ``ws.store`` and reads versions and their
    files through ``versions``.
    """

    def __init__(self, ws: Workspace, versions: VersionFiles) -> None:
        self.ws = ws
        self.versions = versions
        self._validators: dict[tuple[str, int], Future[ValidationResult]] = {}
        self._validators_lock = threading.Lock()

    # -- validation ----------------------------------------------------------------------------
    def start_validation(self, name: str, version: int | str, *, actor: str | None = None,
                         recovered: str | None = None) -> str:
        """Mark the version ``validating`` and run the checks (in a separate process by default).

        Returns the attempt id; a later attempt supersedes an earlier one still running. The
        attempt holds the version's lease (this process's, or the validation process's once it
        started); ``recovered`` is why crash recovery resumes it (recorded with the event).
        """
        names.check_model_name(name)
        number = names.check_version(version)
        user = actor or self.ws.user
        attempt = uuid.uuid4().hex
        in_subprocess = self.ws.settings.validation_subprocess
        key, ttl = lease_key(name, number), self.ws.settings.lease_ttl_s
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            row = queries.version_row(conn, name, number, lock=True)
            if row["status"] == REJECTED:
                raise Conflict(
                    f"model {name!r} version {number} was rejected ({row['status_reason']}); a rejected "
                    "version is not validated again — register a new version",
                    {"name": name, "version": number, "status": REJECTED},
                )
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(
                    status=VALIDATING,
                    status_reason="",
                    validation={"attempt": attempt, "started_at": now_ms(),
                                "mode": "subprocess" if in_subprocess else "in-process"},
                )
            )
            record_event(conn, user, "model.validation_started", names.subject(name, str(number)),
                         {"version": number, "attempt": attempt, **({"recovered": recovered} if recovered else {})})
            leases.acquire(conn, VERSION_JOB, key, ttl_s=ttl, token=attempt)
        # This process holds the attempt's lease until the outcome is recorded, whether the checks run
        # here or in the validation process (which only checks and reports back): if this process
        # dies first, the lease shows it and recovery starts the validation again.
        leases.keep(self.ws.store, VERSION_JOB, key, ttl)
        try:
            job = self._validation_job(name, number)
        except ShipyardError as exc:
            self._record_validation(name, number, attempt, ok=False, reason=exc.message, report={"error": exc.code})
            return attempt
        if in_subprocess:
            from shipyard.models.validator import shared_worker

            def record(result: ValidationResult) -> None:
                self._record_validation(name, number, attempt, ok=result.ok, reason=result.reason,
                                        report=result.report)

            future = shared_worker().submit(job, then=record)
            with self._validators_lock:
                self._reap()
                self._validators[(name, number)] = future
        else:
            result = check_package(job)
            self._record_validation(name, number, attempt, ok=result.ok, reason=result.reason, report=result.report)
        return attempt

    def _validation_job(self, name: str, version: int) -> ValidationJob:
        """What the checks get: a local folder of the stored files and the sha256 recorded at upload
        (the checks verify their own copy against it), never the stores or their credentials."""
        mv = self.versions.get_version(name, version)
        if self.ws.artifacts.is_local:
            folder = self.ws.artifacts.local_path(mv.artifact_path)
        else:
            folder = self.versions.local_model_dir(mv)  # downloaded to the cache, checked on the way
        logs = self.ws.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        settings = self.ws.settings
        return ValidationJob(folder=str(folder), sha256=mv.sha256, tolerance=settings.validation_tolerance,
                             timing_calls=settings.validation_timing_calls,
                             allow_pickle=settings.allow_pickle_models, label=f"model {name} version {version}",
                             log=str(logs / f"validation-{name}-{version}.log"),
                             unconfined_code=settings.allow_unconfined_validation or not settings.validation_subprocess,
                             private=private_paths(settings))

    def validate(self, name: str, version: int | str, *, wait: bool | None = None, timeout: float = 300.0,
                 actor: str | None = None) -> ModelVersion:
        """Run validation again (e.g. after a failure caused by the environment)."""
        number = names.check_version(version)
        self.start_validation(name, number, actor=actor)
        if wait is None or wait:
            return self.wait_for_validation(name, number, timeout=timeout)
        return self.versions.get_version(name, number)

    def wait_for_validation(self, name: str, version: int | str, timeout: float = 300.0) -> ModelVersion:
        """Block until the version is validated or failed; Conflict when ``timeout`` seconds pass."""
        number = names.check_version(version)
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            mv = self.versions.get_version(name, number)
            if mv.status in FINISHED:
                return mv
            with self._validators_lock:
                future = self._validators.get((name, number))
            if future is not None and future.done():
                mv = self.versions.get_version(name, number)  # the outcome is recorded before the future completes
                if mv.status in FINISHED:
                    return mv
                attempt = mv.validation.get("attempt", "")
                self._record_validation(
                    name, number, attempt, ok=False,
                    reason="the validation finished but its outcome could not be recorded; see "
                           f"{self.ws.settings.state_dir / 'logs'} and run validate() again",
                    report={"error": "unrecorded"},
                )
                return self.versions.get_version(name, number)
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"model {name!r} version {number} is still {mv.status} after {timeout:g} s; wait longer "
                    f"(wait_for_validation) or run validate({name!r}, {number}) again if its process died",
                    {"name": name, "version": number, "status": mv.status},
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _reap(self) -> None:
        for key in [k for k, f in self._validators.items() if f.done()]:
            del self._validators[key]

    def _record_validation(self, name: str, version: int, attempt: str, *, ok: bool, reason: str,
                           report: dict[str, Any]) -> bool:
        """Write a validation outcome unless a newer attempt (or a rejection) superseded it."""
        status = VALIDATED if ok else "failed"
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            try:
                row = queries.version_row(conn, name, version, lock=True)
            except NotFound:
                return False  # deleted meanwhile
            current = dict(row["validation"] or {})
            if current.get("attempt") != attempt or row["status"] == REJECTED:
                log.info("validation attempt %s of %s/%d was superseded", attempt, name, version)
                return False
            finished = {**current, **report, "attempt": attempt, "finished_at": now_ms(), "status": status}
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(status=status, status_reason=reason, validation=finished)
            )
            record_event(conn, "shipyard", "model.version_validated" if ok else "model.validation_failed",
                         names.subject(name, str(version)),
                         {"version": version, "attempt": attempt, "reason": reason,
                          "latency_ms": report.get("latency_ms")})
            leases.release(conn, VERSION_JOB, lease_key(name, version), token=attempt)
        leases.forget(self.ws.store, VERSION_JOB, lease_key(name, version))
        return True

    def abandon_validation(self, name: str, version: int, reason: str) -> bool:
        """Mark a version left pending/validating ``abandoned`` and drop its lease (crash recovery
        gave up); False when it is no longer in progress."""
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            try:
                row = queries.version_row(conn, name, version, lock=True)
            except NotFound:
                leases.release(conn, VERSION_JOB, lease_key(name, version))
                return False
            leases.release(conn, VERSION_JOB, lease_key(name, version))
            if row["status"] not in IN_PROGRESS:
                return False
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(status=ABANDONED, status_reason=reason)
            )
            record_event(conn, "shipyard", "model.validation_abandoned", names.subject(name, str(version)),
                         {"version": version, "reason": reason})
        return True

    def record_stress_test(self, name: str, version: int | str, result: Mapping[str, Any], *,
                           actor: str | None = None) -> ModelVersion:
        """Store a release check's figures (e.g. serving's stress test) on the version, audited."""
        names.check_model_name(name)
        number = names.check_version(version)
        user = actor or self.ws.user
        figures = {**dict(result), "recorded_at": now_ms()}
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            row = queries.version_row(conn, name, number, lock=True)
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(validation={**dict(row["validation"] or {}), "stress_test": figures})
            )
            record_event(conn, user, "model.stress_tested", names.subject(name, str(number)),
                         {"version": number, **figures})
        return self.versions.get_version(name, number)

    # -- review --------------------------------------------------------------------------------
    def _reviewer(self) -> str:
        """The authenticated reviewer acting through this workspace (see ``approve``)."""
        from shipyard.auth.permissions import Action, Resource
        from shipyard.auth.principal import ACTING

        principal = ACTING.get() or self.ws.principal
        if principal.kind == "local":
            raise Forbidden(
                "approving or rejecting a version needs an authenticated reviewer: open the workspace with the "
                "reviewer's token (sy.connect(token=...), SHIPYARD_TOKEN, or 'shipyard login')",
                {"reviewer": principal.name})
        if not principal.allows(self.ws.settings.project, Resource.MODELS, Action.APPROVE):
            raise Forbidden(
                f"{principal.name!r} may not approve models in project {self.ws.settings.project!r}: that needs "
                "the reviewer or admin role", {"reviewer": principal.name, "permission": "models:approve"})
        return principal.name

    def approve(self, name: str, version: int | str, comment: str = "", *, actor: str | None = None) -> ModelVersion:
        """Approve a validated version as the acting reviewer, who must not be its registrant.

        The reviewer is who is authenticated — the caller of a server request, or the token this
        workspace was opened with — never a name passed in: an unauthenticated local user cannot
        approve, and a token's user needs the reviewer (or admin) role in the project.
        """
        names.check_model_name(name)
        number = names.check_version(version)
        who = actor or self._reviewer()
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            row = queries.version_row(conn, name, number, lock=True)
            if who == row["created_by"]:
                raise Forbidden(
                    f"{who!r} registered model {name!r} version {number} and cannot also approve it; a "
                    "different reviewer approves it (signed in with their own token)",
                    {"name": name, "version": number, "reviewer": who, "registrant": row["created_by"]},
                )
            if row["status"] != VALIDATED:
                raise Conflict(
                    f"model {name!r} version {number} is {row['status']}"
                    f"{' (' + row['status_reason'] + ')' if row['status_reason'] else ''}; only validated "
                    f"versions can be approved — wait for validation or run validate({name!r}, {number})",
                    {"name": name, "version": number, "status": row["status"]},
                )
            if row["approved_by"]:
                raise Conflict(
                    f"model {name!r} version {number} was already approved by {row['approved_by']!r}",
                    {"name": name, "version": number, "approved_by": row["approved_by"]},
                )
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(approved_by=who, approved_at=now_ms())
            )
            record_event(conn, who, "model.version_approved", names.subject(name, str(number)),
                         {"version": number, "comment": comment})
        return self.versions.get_version(name, number)

    def reject(self, name: str, version: int | str, comment: str = "", *, actor: str | None = None) -> ModelVersion:
        """Reject a version: it can no longer be approved or take an alias (unless forced)."""
        names.check_model_name(name)
        number = names.check_version(version)
        who = actor or self._reviewer()
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            queries.version_row(conn, name, number, lock=True)
            pointing = self._aliases_at(conn, name, number)
            if pointing:
                raise Conflict(
                    f"model {name!r} version {number} is served by alias {', '.join(map(repr, pointing))}; "
                    "move or roll back the alias before rejecting the version",
                    {"name": name, "version": number, "aliases": pointing},
                )
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(status=REJECTED, status_reason=f"rejected by {who}" + (f": {comment}" if comment else ""),
                        approved_by=None, approved_at=None)
            )
            record_event(conn, who, "model.version_rejected", names.subject(name, str(number)),
                         {"version": number, "comment": comment})
        return self.versions.get_version(name, number)

    # -- aliases -------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int | str, force: bool = False, *,
                  actor: str | None = None) -> ModelVersion:
        """Point ``alias`` at ``version``: it must be validated (and approved when the model
        requires approval) unless ``force=True``, which is recorded."""
        names.check_model_name(name)
        names.check_alias(alias)
        number = names.check_version(version)
        user = actor or self.ws.user
        with self.ws.store.begin() as conn:
            model = queries.lock_model(conn, name)
            row = queries.version_row(conn, name, number, lock=True)
            if not force:
                self._check_releasable(model, row, alias)
            previous = _alias_version(conn, name, alias)
            if previous != number or force:  # re-pointing at the same version is a no-op
                self._move(conn, name, alias, number, previous, user, action="set", forced=bool(force))
                record_event(conn, user, "model.alias_set", names.subject(name, "@" + alias),
                             {"alias": alias, "version": number, "previous": previous, "forced": bool(force)})
        return self.versions.get_version(name, number)

    def _check_releasable(self, model: Mapping[str, Any], row: Mapping[str, Any], alias: str) -> None:
        name, number = row["name"], row["version"]
        if row["status"] != VALIDATED:
            why = f" ({row['status_reason']})" if row["status_reason"] else ""
            raise Conflict(
                f"cannot point alias {alias!r} at model {name!r} version {number}: it is {row['status']}{why}; "
                f"only validated versions take an alias — run validate({name!r}, {number}) or pass force=True "
                "(recorded as forced)",
                {"name": name, "version": number, "alias": alias, "status": row["status"]},
            )
        if model["requires_approval"] and not row["approved_by"]:
            raise Conflict(
                f"cannot point alias {alias!r} at model {name!r} version {number}: model {name!r} requires "
                f"approval and version {number} is not approved; have a reviewer other than "
                f"{row['created_by']!r} run approve({name!r}, {number}) or pass force=True (recorded as forced)",
                {"name": name, "version": number, "alias": alias, "requires_approval": True},
            )

    def _move(self, conn: Connection, name: str, alias: str, version: int, previous: int | None, user: str, *,
              action: str, forced: bool) -> None:
        ts = now_ms()
        if previous is None:
            conn.execute(model_aliases.insert().values(name=name, alias=alias, version=version, updated_at=ts,
                                                       updated_by=user))
        else:
            conn.execute(
                model_aliases.update()
                .where(model_aliases.c.name == name, model_aliases.c.alias == alias)
                .values(version=version, updated_at=ts, updated_by=user)
            )
        conn.execute(model_alias_history.insert().values(name=name, alias=alias, version=version, moved_at=ts,
                                                         moved_by=user, action=action, forced=forced))

    def _aliases_at(self, conn: Connection, name: str, version: int) -> list[str]:
        return [a for (a,) in conn.execute(
            sa.select(model_aliases.c.alias)
            .where(model_aliases.c.name == name, model_aliases.c.version == version)
            .order_by(model_aliases.c.alias)
        )]

    def get_alias(self, name: str, alias: str) -> ModelVersion:
        names.check_alias(alias)
        return self.versions.get_version(name, alias)

    def list_aliases(self, name: str) -> dict[str, int]:
        names.check_model_name(name)
        with self.ws.store.read() as conn:
            return dict(conn.execute(
                sa.select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.name == name)
                .order_by(model_aliases.c.alias)
            ).all())

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        names.check_model_name(name)
        names.check_alias(alias)
        user = actor or self.ws.user
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            current = _alias_version(conn, name, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", {"name": name, "alias": alias})
            conn.execute(model_aliases.delete().where(model_aliases.c.name == name, model_aliases.c.alias == alias))
            conn.execute(model_alias_history.insert().values(name=name, alias=alias, version=current, moved_at=now_ms(),
                                                             moved_by=user, action="delete", forced=False))
            record_event(conn, user, "model.alias_deleted", names.subject(name, "@" + alias),
                         {"alias": alias, "version": current})

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or one alias), oldest first."""
        names.check_model_name(name)
        query = sa.select(model_alias_history).where(model_alias_history.c.name == name)
        if alias is not None:
            query = query.where(model_alias_history.c.alias == names.check_alias(alias))
        with self.ws.store.read() as conn:
            rows = conn.execute(query.order_by(model_alias_history.c.id)).all()
        return [
            AliasMove(name=r.name, alias=r.alias, version=r.version, action=r.action, forced=bool(r.forced),
                      moved_at=r.moved_at, moved_by=r.moved_by)
            for r in rows
        ]

    def rollback(self, name: str, alias: str, *, actor: str | None = None) -> ModelVersion:
        """Move ``alias`` back to the version it pointed at before its current one."""
        names.check_model_name(name)
        names.check_alias(alias)
        user = actor or self.ws.user
        with self.ws.store.begin() as conn:
            queries.lock_model(conn, name)
            current = _alias_version(conn, name, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r} to roll back", {"name": name, "alias": alias})
            stack: list[int] = []
            for action, version in conn.execute(
                sa.select(model_alias_history.c.action, model_alias_history.c.version)
                .where(model_alias_history.c.name == name, model_alias_history.c.alias == alias)
                .order_by(model_alias_history.c.id)
            ):
                if action == "set":
                    stack.append(version)
                elif action == "rollback" and stack:
                    stack.pop()
                elif action == "delete":
                    stack.clear()
            if len(stack) < 2:
                raise Conflict(
                    f"alias {alias!r} of model {name!r} has no earlier version to roll back to (it points at "
                    f"version {current}); set it explicitly with `shipyard models alias` or registry.set_alias",
                    {"name": name, "alias": alias, "version": current},
                )
            target = stack[-2]
            try:
                queries.version_row(conn, name, target, lock=True)
            except NotFound:
                raise Conflict(
                    f"alias {alias!r} of model {name!r} would roll back to version {target}, which was deleted; "
                    "set the alias explicitly with `shipyard models alias` or registry.set_alias",
                    {"name": name, "alias": alias, "version": target},
                ) from None
            self._move(conn, name, alias, target, current, user, action="rollback", forced=False)
            record_event(conn, user, "model.alias_rolled_back", names.subject(name, "@" + alias),
                         {"alias": alias, "version": target, "previous": current})
        return self.versions.get_version(name, target)


def serving_refusal(model: RegisteredModel, mv: ModelVersion, ref: int | str) -> Conflict | None:
    """Why ``mv`` may not be served when a caller names it by ``ref``, or None when it may.

    An alias serves whatever it points at: moving it was the release decision (checked then, or
    recorded as forced by an operator). A version number or ``latest`` names a version nobody
    released, so it serves only a ``validated`` version — never a failed, rejected, abandoned or
    unfinished one, whose code was never vouched for — and, when the model requires approval, only
    an approved one."""
    if isinstance(names.parse_ref(ref), str) and names.parse_ref(ref) != names.LATEST:
        return None
    name, number = mv.name, mv.version
    details: dict[str, Any] = {"name": name, "version": number, "status": mv.status,
                               "requires_approval": model.requires_approval, "approved": mv.approved}
    why = f" ({mv.status_reason})" if mv.status_reason else ""
    if mv.status == REJECTED:
        return Conflict(f"model {name!r} version {number} was rejected{why} and is never served; register a new "
                        "version (or call the alias that serves the released one)", details)
    if mv.status in IN_PROGRESS:
        return Conflict(f"model {name!r} version {number} is {mv.status}: it is served once validation has "
                        f"passed; wait for it (shipyard models get {name} {number})", details)
    if mv.status != VALIDATED:
        return Conflict(f"model {name!r} version {number} is {mv.status}{why}; only validated versions are served "
                        f"by number — fix the model and register a new version, or run validate({name!r}, {number}) "
                        "if the environment caused the failure", details)
    if model.requires_approval and not mv.approved:
        return Conflict(f"model {name!r} requires approval and version {number} is not approved, so it is not "
                        f"served by number; a reviewer other than {mv.created_by!r} approves it (shipyard models "
                        f"approve {name} {number}), or an operator points an alias at it", details)
    return None


def private_paths(settings: Settings) -> tuple[str, ...]:
    """What the validation process must never read: the project's ``.shipyard/`` folder (the admin's
    token, the secret key, the database), the server project's one for a hosted project, the local
    artifact root (the other models) and the user's own credentials."""
    paths = [settings.state_dir, Path.home() / ".shipyard"]
    if settings.project_dir.parent.name == HOSTED_PROJECTS_DIR:
        paths.append(settings.project_dir.parents[1] / ".shipyard")
    if settings.artifact_root and "://" not in settings.artifact_root:
        paths.append(Path(settings.artifact_root))
    if os.environ.get("SHIPYARD_CREDENTIALS"):
        paths.append(Path(os.environ["SHIPYARD_CREDENTIALS"]))
    return tuple(str(p) for p in paths)


def _alias_version(conn: Connection, name: str, alias: str) -> int | None:
    """The version ``alias`` points at now, or None."""
    return conn.execute(
        sa.select(model_aliases.c.version).where(model_aliases.c.name == name, model_aliases.c.alias == alias)
    ).scalar()
