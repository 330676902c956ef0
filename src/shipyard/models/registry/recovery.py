"""Crash recovery of model versions left ``pending`` or ``validating`` by a process that died.

Registration takes a lease on the version (``model_version``, key ``name/version``) in the
transaction that stores it, validation renews it under its attempt id, and recording the outcome
drops it (see ``shipyard.store.leases``). When the lease's owner is gone, ``VersionRecovery``
starts the validation again — the stored files were committed with the row, so nothing is lost —
up to ``max_resumes`` times; a version whose validations keep dying is then marked ``abandoned``
(``validate()`` can still try it again by hand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import NotFound
from shipyard.models.registry.records import IN_PROGRESS
from shipyard.store.leases import Lease
from shipyard.store.schema import model_versions

if TYPE_CHECKING:
    from shipyard.models.registry.core import ModelRegistry

VERSION_JOB = "model_version"


def lease_key(name: str, version: int) -> str:
    return f"{name}/{int(version)}"


class VersionRecovery:
    """The ``RecoverableKind`` of model versions (``shipyard.store.leases.recover``)."""

    kind = VERSION_JOB

    def __init__(self, registry: ModelRegistry, max_resumes: int = 2) -> None:
        self.registry = registry
        self.max_resumes = max_resumes

    def open_keys(self, conn: Connection) -> list[str]:
        rows = conn.execute(sa.select(model_versions.c.name, model_versions.c.version).where(
            model_versions.c.status.in_(IN_PROGRESS), model_versions.c.lifecycle == "active"))
        return [lease_key(r.name, r.version) for r in rows]

    def recover(self, key: str, lease: Lease, reason: str) -> str:
        name, _, number = key.rpartition("/")
        version = int(number)
        try:
            mv = self.registry.get_version(name, version)
        except NotFound:
            self.registry.abandon_validation(name, version, reason)  # drops the lease of a deleted version
            return "finished"
        if mv.status not in IN_PROGRESS:
            self.registry.abandon_validation(name, version, reason)  # only drops the lease
            return "finished"
        if lease.recoveries > self.max_resumes:
            self.registry.abandon_validation(
                name, version, f"abandoned: validation was started {lease.recoveries} times and its process "
                               f"died each time (last: {reason}); fix the cause and run validate({name!r}, {version})")
            return "abandoned"
        self.registry.start_validation(name, version, actor="shipyard", recovered=f"{mv.status} version: {reason}")
        return "resumed"
