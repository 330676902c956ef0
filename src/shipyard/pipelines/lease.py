"""The scheduler lease: one row naming the active scheduler, with an expiry and a fencing token.

A scheduler becomes active by taking the row when it is free or expired; the token grows by one at
every change of holder. The holder renews well before expiry. Every write that starts work
(recording a slot, starting a run) happens in a transaction that first locks the lease row and
checks that this scheduler still holds it with its token (:meth:`SchedulerLease.fence`), so a scheduler that
lost the lease — paused, partitioned, or too slow to renew — can no longer start anything, even if it
does not know yet. On SQLite the transaction's ``BEGIN IMMEDIATE`` serialises this; on PostgreSQL the
row lock does.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.store import MetadataStore, now_ms
from shipyard.store.schema import scheduler_lease

LEASE_NAME = "scheduler"


@dataclass(frozen=True)
class LeaseState:
    holder: str
    token: int
    acquired_at: int
    renewed_at: int
    expires_at: int


class LostLease(Exception):
    """This scheduler no longer holds the lease (raised inside a fenced transaction, which rolls back)."""


class SchedulerLease:
    def __init__(self, store: MetadataStore, holder: str, duration_s: float, name: str = LEASE_NAME) -> None:
        self.store = store
        self.holder = holder
        self.duration_ms = int(duration_s * 1000)
        self.name = name
        self.token: int | None = None

    def _row(self, conn: Connection) -> LeaseState | None:
        row = conn.execute(sa.select(scheduler_lease).where(scheduler_lease.c.name == self.name)
                           .with_for_update()).first()
        if row is None:
            return None
        return LeaseState(row.holder, int(row.token), int(row.acquired_at), int(row.renewed_at),
                          int(row.expires_at))

    def fence(self, conn: Connection) -> int:
        """Inside a transaction: the token, if this scheduler still holds an unexpired lease; else LostLease."""
        state = self._row(conn)
        if (state is None or self.token is None or state.holder != self.holder or state.token != self.token
                or state.expires_at <= now_ms()):
            self.token = None
            raise LostLease(self.name)
        return state.token

    def acquire_or_renew(self, on_takeover: object = None) -> int | None:
        """Hold the lease: renew it, or take it when free or expired. Returns the token, or None.

        ``on_takeover(conn, token)`` runs in the same transaction when the lease changes hands.
        """
        ts = now_ms()
        try:
            with self.store.begin() as conn:
                state = self._row(conn)
                if state is None:
                    conn.execute(scheduler_lease.insert().values(
                        name=self.name, holder=self.holder, token=1, acquired_at=ts, renewed_at=ts,
                        expires_at=ts + self.duration_ms))
                    token = 1
                    if callable(on_takeover):
                        on_takeover(conn, token)
                elif state.holder == self.holder and state.token == self.token and state.expires_at > ts:
                    conn.execute(scheduler_lease.update().where(scheduler_lease.c.name == self.name).values(
                        renewed_at=ts, expires_at=ts + self.duration_ms))
                    token = state.token
                elif state.expires_at <= ts:
                    token = state.token + 1
                    conn.execute(scheduler_lease.update().where(scheduler_lease.c.name == self.name).values(
                        holder=self.holder, token=token, acquired_at=ts, renewed_at=ts,
                        expires_at=ts + self.duration_ms))
                    if callable(on_takeover):
                        on_takeover(conn, token)
                else:
                    self.token = None
                    return None
        except sa.exc.IntegrityError:
            self.token = None  # another scheduler inserted the first row at the same moment
            return None
        self.token = token
        return token

    def release(self) -> None:
        """Give the lease up (a clean stop), so another scheduler need not wait for it to expire."""
        if self.token is None:
            return
        with self.store.begin() as conn:
            conn.execute(scheduler_lease.update().where(
                scheduler_lease.c.name == self.name, scheduler_lease.c.holder == self.holder,
                scheduler_lease.c.token == self.token).values(expires_at=now_ms()))
        self.token = None

    def state(self) -> LeaseState | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(scheduler_lease).where(scheduler_lease.c.name == self.name)).first()
        if row is None:
            return None
        return LeaseState(row.holder, int(row.token), int(row.acquired_at), int(row.renewed_at), int(row.expires_at))
