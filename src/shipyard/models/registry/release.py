"""The release workflow: validation, approval, aliases and rollback.

Every change takes the model's lock first (then the version's), checks the state it depends on, and
writes its audit event in the same transaction, so concurrent callers serialize and the history is
the order in which changes committed. An alias's history is a stack: ``set`` pushes a version,
``rollback`` pops back to the one below, ``delete`` empties it.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import Conflict, Forbidden, NotFound
from shipyard.models.registry import names
from shipyard.models.registry.records import (
    ABANDONED,
    FINISHED,
    IN_PROGRESS,
    REJECTED,
    VALIDATED,
    VALIDATING,
    AliasMove,
    ModelVersion,
)
from shipyard.models.registry.recovery import VERSION_JOB, lease_key
from shipyard.store import leases, now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import model_alias_history, model_aliases, model_versions

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)


class ReleaseWorkflow:
    """Release steps of :class:`~shipyard.models.registry.Registry` (mixed into it)."""

    ws: Workspace

    def __init__(self) -> None:
        self._validators: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._validators_lock = threading.Lock()

    # Provided by Registry.
    def _lock_model(self, conn: Connection, name: str) -> Mapping[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _version_row(self, conn: Connection, name: str, ref: int | str, *, lock: bool = False) -> Mapping[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def get_version(self, name: str, version_or_alias: int | str) -> ModelVersion:  # pragma: no cover
        raise NotImplementedError

    # -- validation ----------------------------------------------------------------------------
    def start_validation(self, name: str, version: int | str, *, actor: str | None = None,
                         recovered: str | None = None) -> str:
        """Mark the version ``validating`` and run the checks (in a separate process by default).

        Returns the attempt id; a later attempt supersedes an earlier one still running. The
        attempt holds the version's lease (this process's, or the validation process's once it
        started); ``recovered`` is why crash recovery resumes it (recorded with the event).
        """
        from shipyard.models import validation

        names.check_model_name(name)
        number = names.check_version(version)
        user = actor or self.ws.user
        attempt = uuid.uuid4().hex
        in_subprocess = self.ws.settings.validation_subprocess
        key, ttl = lease_key(name, number), self.ws.settings.lease_ttl_s
        with self.ws.store.begin() as conn:
            self._lock_model(conn, name)
            row = self._version_row(conn, name, number, lock=True)
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
        leases.keep(self.ws.store, VERSION_JOB, key, ttl)
        if in_subprocess:
            try:
                proc = validation.launch(self.ws.settings, name, number, attempt)
            except BaseException:
                leases.forget(self.ws.store, VERSION_JOB, key)  # goes stale: recovery starts it again
                raise
            # the validation process heartbeats the lease from now on
            leases.hand_over(self.ws.store, VERSION_JOB, key, token=attempt, owner=leases.owner_of(proc.pid))
            leases.forget(self.ws.store, VERSION_JOB, key)
            with self._validators_lock:
                self._reap()
                self._validators[(name, number)] = proc
        else:
            validation.run_validation(self, name, number, attempt)  # type: ignore[arg-type]
        return attempt

    def validate(self, name: str, version: int | str, *, wait: bool | None = None, timeout: float = 300.0,
                 actor: str | None = None) -> ModelVersion:
        """Run validation again (e.g. after a failure caused by the environment)."""
        number = names.check_version(version)
        self.start_validation(name, number, actor=actor)
        if wait is None or wait:
            return self.wait_for_validation(name, number, timeout=timeout)
        return self.get_version(name, number)

    def wait_for_validation(self, name: str, version: int | str, timeout: float = 300.0) -> ModelVersion:
        """Block until the version is validated or failed; Conflict when ``timeout`` seconds pass."""
        number = names.check_version(version)
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            mv = self.get_version(name, number)
            if mv.status in FINISHED:
                return mv
            with self._validators_lock:
                proc = self._validators.get((name, number))
            code = proc.poll() if proc is not None else None
            if code is not None:
                mv = self.get_version(name, number)  # it may have written its outcome just before exiting
                if mv.status in FINISHED:
                    return mv
                attempt = mv.validation.get("attempt", "")
                self._record_validation(
                    name, number, attempt, ok=False,
                    reason=f"the validation process exited with code {code} before reporting a result; "
                           f"see {self.ws.settings.state_dir / 'logs'} and run validate() again",
                    report={"exit_code": code},
                )
                return self.get_version(name, number)
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"model {name!r} version {number} is still {mv.status} after {timeout:g} s; wait longer "
                    f"(wait_for_validation) or run validate({name!r}, {number}) again if its process died",
                    {"name": name, "version": number, "status": mv.status},
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _reap(self) -> None:
        for key in [k for k, p in self._validators.items() if p.poll() is not None]:
            del self._validators[key]

    def _record_validation(self, name: str, version: int, attempt: str, *, ok: bool, reason: str,
                           report: dict[str, Any]) -> bool:
        """Write a validation outcome unless a newer attempt (or a rejection) superseded it."""
        status = VALIDATED if ok else "failed"
        with self.ws.store.begin() as conn:
            self._lock_model(conn, name)
            try:
                row = self._version_row(conn, name, version, lock=True)
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
            self._lock_model(conn, name)
            try:
                row = self._version_row(conn, name, version, lock=True)
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
            self._lock_model(conn, name)
            row = self._version_row(conn, name, number, lock=True)
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(validation={**dict(row["validation"] or {}), "stress_test": figures})
            )
            record_event(conn, user, "model.stress_tested", names.subject(name, str(number)),
                         {"version": number, **figures})
        return self.get_version(name, number)

    # -- review --------------------------------------------------------------------------------
    def approve(self, name: str, version: int | str, reviewer: str | None = None, comment: str = "") -> ModelVersion:
        """Approve a validated version; the reviewer must not be the user who registered it."""
        names.check_model_name(name)
        number = names.check_version(version)
        who = reviewer or self.ws.user
        with self.ws.store.begin() as conn:
            self._lock_model(conn, name)
            row = self._version_row(conn, name, number, lock=True)
            if who == row["created_by"]:
                raise Forbidden(
                    f"{who!r} registered model {name!r} version {number} and cannot also approve it; ask "
                    "another reviewer (approve(..., reviewer=...) or 'shipyard models approve --as USER')",
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
        return self.get_version(name, number)

    def reject(self, name: str, version: int | str, reviewer: str | None = None, comment: str = "") -> ModelVersion:
        """Reject a version: it can no longer be approved or take an alias (unless forced)."""
        names.check_model_name(name)
        number = names.check_version(version)
        who = reviewer or self.ws.user
        with self.ws.store.begin() as conn:
            self._lock_model(conn, name)
            self._version_row(conn, name, number, lock=True)
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
        return self.get_version(name, number)

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
            model = self._lock_model(conn, name)
            row = self._version_row(conn, name, number, lock=True)
            if not force:
                self._check_releasable(model, row, alias)
            previous = _alias_version(conn, name, alias)
            if previous != number or force:  # re-pointing at the same version is a no-op
                self._move(conn, name, alias, number, previous, user, action="set", forced=bool(force))
                record_event(conn, user, "model.alias_set", names.subject(name, "@" + alias),
                             {"alias": alias, "version": number, "previous": previous, "forced": bool(force)})
        return self.get_version(name, number)

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
        return self.get_version(name, alias)

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
            self._lock_model(conn, name)
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
            self._lock_model(conn, name)
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
                self._version_row(conn, name, target, lock=True)
            except NotFound:
                raise Conflict(
                    f"alias {alias!r} of model {name!r} would roll back to version {target}, which was deleted; "
                    "set the alias explicitly with `shipyard models alias` or registry.set_alias",
                    {"name": name, "alias": alias, "version": target},
                ) from None
            self._move(conn, name, alias, target, current, user, action="rollback", forced=False)
            record_event(conn, user, "model.alias_rolled_back", names.subject(name, "@" + alias),
                         {"alias": alias, "version": target, "previous": current})
        return self.get_version(name, target)


def _alias_version(conn: Connection, name: str, alias: str) -> int | None:
    """The version ``alias`` points at now, or None."""
    return conn.execute(
        sa.select(model_aliases.c.version).where(model_aliases.c.name == name, model_aliases.c.alias == alias)
    ).scalar()
