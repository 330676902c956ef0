"""Releases in the metadata store: the ``scene_releases`` rows of canary shares and rollouts, and the
lease of the process driving a running rollout.

A release is a row in ``scene_releases``, updated at every step; a scene has at most one running
release, and the newest row is the share every server applies (``latest_canaries``, read on the
hot-swap poll). A running rollout also holds a lease in ``job_leases`` (kind ``ROLLOUT_LEASE``, key
the release id), taken in the transaction that inserts the row and dropped in the one that ends
it: exactly one process drives a rollout, and when that process dies another server takes the
lease over and continues the rollout (``rollout.RolloutRunner.adopt``). A server shutting down
frees the leases of the rollouts it drives (``free_rollout_lease``) rather than ending them: the
next server to look continues each at once, or the first to start when none runs. ``rollout_status`` and
``abort_rollout`` go through the store, so any process can watch or abort a rollout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.errors import Conflict, NotFound
from shipyard.store import leases
from shipyard.store.database import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import scene_releases, scene_versions, scenes

if TYPE_CHECKING:
    from shipyard.serving.engine import ServingEngine
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

FINISHED = ("promoted", "rolled_back", "aborted", "stopped", "abandoned")
"""Release statuses a rollout ends in; ``running`` is the only live one (``manual`` marks a share
set by hand). ``abandoned``: the process running it stopped sending heartbeats (it was killed) and
no server continued it."""

STALE_AFTER_S = 30.0
"""A running release whose heartbeat (``updated_at``) is older than this, and than three of its
step checks, is abandoned unless its lease is alive: nobody judges the arm any more."""

ROLLOUT_LEASE = "scene.rollout"
"""The ``job_leases`` kind of a running rollout (key: the release id)."""


def newest_release(conn: Any, scene: str) -> sa.Row[Any] | None:
    query = (sa.select(scene_releases).where(scene_releases.c.scene == scene)
             .order_by(scene_releases.c.id.desc()).limit(1))
    return conn.execute(query).first()


def _stale_for_ms(row: Any, now: int) -> int | None:
    """How long a running release has gone without a heartbeat past its limit; None while fresh."""
    if row.status != "running":
        return None
    every = float((row.details or {}).get("heartbeat_s") or 0.0)
    limit_ms = int(1000 * max(STALE_AFTER_S, 3 * every))
    silent = now - int(row.updated_at)
    return silent if silent > limit_ms else None


def _abandon(conn: Any, ws: Workspace, row: Any, now: int) -> bool:
    """Record a stale running release as abandoned at 0 % (in ``conn``'s transaction)."""
    reason = (f"abandoned: no heartbeat for {(now - int(row.updated_at)) / 1000:.0f} s from the server running "
              f"it (at {row.percent:g} %); the arm is back to 0 %")
    result = conn.execute(scene_releases.update().where(
        scene_releases.c.id == row.id, scene_releases.c.status == "running",
        scene_releases.c.updated_at == row.updated_at).values(
            status="abandoned", percent=0.0, reason=reason, updated_at=now))
    if result.rowcount == 0:  # it moved on meanwhile: not stale after all
        return False
    leases.release(conn, ROLLOUT_LEASE, str(row.id))
    record_event(conn, ws.user, "scene.release_abandoned", f"scene:{row.scene}",
                 {"arm": row.arm, "percent": 0.0, "reason": reason, "release": row.id})
    log.warning("release %s of scene %s: %s", row.id, row.scene, reason)
    return True


def _lease_alive(lease: leases.Lease | None, now: int) -> bool:
    """A rollout lease that some process holds: alive, or dead for less than another ttl (time for a
    server to take it over before the release is given up)."""
    if lease is None:
        return False
    if lease.owner == leases.FREE:  # freed by a server that shut down: the next server to look continues it
        return True
    return lease.dead(now) is None or now - lease.heartbeat_at < 2 * lease.ttl_ms


def lease_ttl_s(ws: Workspace) -> float:
    return float(getattr(getattr(ws, "settings", None), "lease_ttl_s", leases.DEFAULT_TTL_S) or leases.DEFAULT_TTL_S)


def abandon_stale_releases(ws: Workspace) -> list[int]:
    """Abandon every running release whose server stopped sending heartbeats; returns their ids.
    Serving processes call this on their hot-swap poll, so a rollout whose server was killed ends
    (and its arm's share drops to 0 %) without anyone having to abort it."""
    now = now_ms()
    with ws.store.read() as conn:
        rows = list(conn.execute(sa.select(scene_releases).where(scene_releases.c.status == "running")))
        held = {lease.key: lease for lease in leases.list_leases(conn, ROLLOUT_LEASE)}
    # a rollout whose lease is alive is driven (or was just taken over) by some server
    stale = [r for r in rows if _stale_for_ms(r, now) is not None and not _lease_alive(held.get(str(r.id)), now)]
    if not stale:
        return []
    done = []
    with ws.store.begin() as conn:
        for row in stale:
            if _abandon(conn, ws, row, now):
                done.append(int(row.id))
    return done


def insert_release(ws: Workspace, scene: str, arm: str, percent: float, status: str, reason: str,
                    details: dict[str, Any]) -> int:
    """A new release row; refused while the scene's newest release is still running, since the
    newest row is the share every worker applies. A running release gone stale is abandoned first."""
    now = now_ms()
    with ws.store.begin() as conn:
        # lock the scene so two processes cannot both pass the check (SQLite's BEGIN IMMEDIATE already does)
        conn.execute(sa.select(scenes.c.name).where(scenes.c.name == scene).with_for_update())
        newest = newest_release(conn, scene)
        if newest is not None and _stale_for_ms(newest, now) is not None:
            _abandon(conn, ws, newest, now)
            newest = newest_release(conn, scene)
        if newest is not None and newest.status == "running":
            raise Conflict(
                f"scene {scene!r} has a running rollout (release {newest.id}, arm {newest.arm!r} at "
                f"{newest.percent:g} %); watch it with GET /api/v1/scenes/{scene}/rollout or end it with "
                f"DELETE /api/v1/scenes/{scene}/rollout (shipyard scenes rollout-abort {scene})",
                {"scene": scene, "release": newest.id})
        result = conn.execute(scene_releases.insert().values(
            scene=scene, arm=arm, percent=percent, status=status, reason=reason, details=details,
            started_at=now, updated_at=now, actor=ws.user))
        key = result.inserted_primary_key
        assert key is not None  # a single-row insert returns its key
        release_id = int(key[0])
        if status == "running":  # this process drives it: the lease goes with the row
            leases.acquire(conn, ROLLOUT_LEASE, str(release_id), ttl_s=lease_ttl_s(ws))
        record_event(conn, ws.user, f"scene.release_{status}", f"scene:{scene}",
                     {"arm": arm, "percent": percent, "reason": reason, "release": release_id})
    if status == "running":
        leases.keep(ws.store, ROLLOUT_LEASE, str(release_id), lease_ttl_s(ws))
    return release_id


def update_release(ws: Workspace, release_id: int, scene: str, arm: str, percent: float, status: str, reason: str,
                    details: dict[str, Any] | None = None) -> bool:
    """Move a running release on; False when it is no longer running (ended by another process)."""
    values: dict[str, Any] = {"percent": percent, "status": status, "reason": reason, "updated_at": now_ms()}
    if details is not None:
        values["details"] = details
    with ws.store.begin() as conn:
        # conditional on 'running', so an abort recorded meanwhile is never overwritten
        result = conn.execute(scene_releases.update().where(
            scene_releases.c.id == release_id, scene_releases.c.status == "running").values(**values))
        if result.rowcount == 0:
            return False
        if status != "running":  # ended: nobody drives it any more
            leases.release(conn, ROLLOUT_LEASE, str(release_id))
        record_event(conn, ws.user, f"scene.release_{status}", f"scene:{scene}",
                     {"arm": arm, "percent": percent, "reason": reason, "release": release_id})
    if status != "running":
        leases.forget(ws.store, ROLLOUT_LEASE, str(release_id))
    return True


def free_rollout_lease(ws: Workspace, release_id: int) -> bool:
    """Stop driving a running release without ending it (this process shuts down): its lease is
    freed, so another server takes it over on its next look instead of after the lease's ttl.
    False when this process no longer held it."""
    key = str(release_id)
    with ws.store.begin() as conn:
        freed = leases.free(conn, ROLLOUT_LEASE, key)
    leases.forget(ws.store, ROLLOUT_LEASE, key)
    return freed


def release_view(row: Any) -> dict[str, Any]:
    details = dict(row.details or {})
    view = {"release": row.id, "scene": row.scene, "arm": row.arm, "status": row.status,
            "percent": float(row.percent), "reason": row.reason, "steps": details.get("steps", []),
            "checks": details.get("checks", []), "min_requests": details.get("min_requests"),
            "started_at": row.started_at, "updated_at": row.updated_at, "actor": row.actor}
    if row.status == "running":
        # the running server refreshes updated_at on every step check; a silent one is likely gone
        now = now_ms()
        view["heartbeat_age_s"] = round((now - int(row.updated_at)) / 1000, 3)
        view["stale"] = _stale_for_ms(row, now) is not None
    return view


def running_releases(ws: Workspace) -> list[Any]:
    """Every running release row (any scene)."""
    with ws.store.read() as conn:
        return list(conn.execute(sa.select(scene_releases).where(scene_releases.c.status == "running")))


def release_row(ws: Workspace, release_id: int) -> sa.Row[Any] | None:
    with ws.store.read() as conn:
        return conn.execute(sa.select(scene_releases).where(scene_releases.c.id == release_id)).first()


def lease_holder(ws: Workspace, release_id: int) -> str | None:
    """The process that holds the rollout's lease (``leases.this_process()`` form), None when none does."""
    with ws.store.read() as conn:
        found = leases.get(conn, ROLLOUT_LEASE, str(release_id))
    return found.owner if found is not None else None


def _scene_exists(conn: Any, scene: str) -> None:
    if conn.execute(sa.select(scenes.c.name).where(scenes.c.name == scene)).first() is None:
        raise NotFound(f"scene {scene!r} does not exist; apply it with 'shipyard scenes apply FILE'",
                       {"scene": scene})


def rollout_status(ws: Workspace, scene: str) -> dict[str, Any]:
    """The scene's newest release (status, percent, steps, checks, reason), read from the store."""
    with ws.store.read() as conn:
        _scene_exists(conn, scene)
        row = newest_release(conn, scene)
        lease = leases.get(conn, ROLLOUT_LEASE, str(row.id)) if row is not None else None
    if row is None:
        raise NotFound(f"scene {scene!r} has no release yet; start one with POST /api/v1/scenes/{scene}/rollout",
                       {"scene": scene})
    view = release_view(row)
    details = dict(row.details or {})
    view["judged_on"] = details.get("judged_on", "this server")
    view["takeover_log"] = details.get("takeover_log", [])  # when another process took it over, and why
    if lease is not None:  # which process drives it, and how often it changed hands
        view["driven_by"] = lease.owner or None
        view["takeovers"] = lease.recoveries
        if lease.owner == leases.FREE:  # its server shut down; the next server to look continues it
            view["freed_by"] = lease.details.get("freed_by")
    return view


def abort_rollout(ws: Workspace, scene: str, *, engine: ServingEngine | None = None,
                  reason: str = "") -> dict[str, Any]:
    """End the scene's running rollout at 0 %. The process running it stops on its next step check;
    ``engine`` (when it serves the scene) drops the canary at once, the others on their next poll."""
    with ws.store.read() as conn:
        _scene_exists(conn, scene)
        row = newest_release(conn, scene)
    if row is None or row.status != "running":
        state = "has no release" if row is None else f"has no running rollout (release {row.id} is {row.status})"
        raise Conflict(f"scene {scene!r} {state}; nothing to abort", {"scene": scene})
    reason = reason or f"aborted by {ws.user}"
    if not update_release(ws, row.id, scene, row.arm, 0.0, "aborted", reason):
        raise Conflict(f"release {row.id} of scene {scene!r} ended while it was being aborted; see its status",
                       {"scene": scene, "release": row.id})
    served = engine.served_scenes().get(scene) if engine is not None else None
    if served is not None and served.compiled.traffic.canary_arm == row.arm:
        served.compiled.traffic.set_canary(0.0)
    return rollout_status(ws, scene)


def latest_canaries(ws: Workspace, served: dict[str, int] | None = None) -> dict[str, tuple[str, float]]:
    """The canary share each scene's newest release row records: ``{scene: (arm, percent)}``.

    Every server worker applies these on its hot-swap poll, so a canary step, promotion or rollback
    decided in one worker reaches all of them. With ``served`` (``{scene: version}``), a finished
    release recorded before that scene version was applied is left out: applying a new version
    starts from the share its own document sets (``traffic.canary``), not from an older release's.
    A running rollout keeps governing the share across versions.
    """
    newest = sa.select(sa.func.max(scene_releases.c.id)).group_by(scene_releases.c.scene)
    query = sa.select(scene_releases.c.scene, scene_releases.c.arm, scene_releases.c.percent,
                      scene_releases.c.status, scene_releases.c.updated_at).where(scene_releases.c.id.in_(newest))
    with ws.store.read() as conn:
        rows = list(conn.execute(query))
        applied: dict[str, int] = {}
        if served:
            versions = sa.select(scene_versions.c.scene, scene_versions.c.version, scene_versions.c.created_at) \
                .where(scene_versions.c.scene.in_(list(served)))
            applied = {r.scene: int(r.created_at) for r in conn.execute(versions) if served.get(r.scene) == r.version}
    return {r.scene: (r.arm, float(r.percent)) for r in rows
            if r.status == "running" or int(r.updated_at) >= applied.get(r.scene, 0)}


def list_releases(ws: Workspace, scene: str) -> list[dict[str, Any]]:
    query = sa.select(scene_releases).where(scene_releases.c.scene == scene).order_by(scene_releases.c.id)
    with ws.store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]

