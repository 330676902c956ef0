"""Run artifacts: files under ``runs/<run_id>/artifacts/<path>`` in the artifact store, each with
a row in the ``artifacts`` table (owner_kind='run') holding its sha256 and size. Downloads are
checked against the recorded sha256.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from shipyard.artifacts import ArtifactInfo, safe_relpath
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.store import now_ms
from shipyard.store.database import upsert
from shipyard.store.schema import artifacts as artifacts_table
from shipyard.store.schema import runs
from shipyard.tracking.entities import RunArtifact, RunReport

if TYPE_CHECKING:
    from shipyard.tracking.core import Tracking

OWNER = "run"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/artifacts"


def _join(*parts: str | None) -> str:
    return safe_relpath("/".join(p for p in parts if p))


def _record(tracking: Tracking, run_id: str, rel: str, info: ArtifactInfo) -> RunArtifact:
    insert = upsert(tracking.store.dialect)
    stmt = insert(artifacts_table).values(
        owner_kind=OWNER, owner_id=run_id, path=rel, uri=info.uri, sha256=info.sha256, size=info.size,
        created_at=now_ms(),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["owner_kind", "owner_id", "path"],
        set_={"uri": stmt.excluded.uri, "sha256": stmt.excluded.sha256, "size": stmt.excluded.size,
              "created_at": stmt.excluded.created_at},
    )
    with tracking.store.begin() as conn:
        tracking._require_run(conn, run_id)
        conn.execute(stmt)
    return RunArtifact(rel, info.size, info.sha256, info.uri)


def _check_run(tracking: Tracking, run_id: str) -> None:
    with tracking.store.read() as conn:
        tracking._require_run(conn, run_id)


def check_target(tracking: Tracking, run_id: str, rel: str) -> None:
    """The run exists and ``rel`` can be a file: no artifact is a folder above it or a file below it."""
    parents = [posixpath.dirname(rel)]
    while parents[-1]:
        parents.append(posixpath.dirname(parents[-1]))
    col = artifacts_table.c.path
    query = sa.select(col).where(
        artifacts_table.c.owner_kind == OWNER, artifacts_table.c.owner_id == run_id,
        sa.or_(col.in_([p for p in parents if p]), col.startswith(rel + "/", autoescape=True)),
    ).limit(1)
    with tracking.store.read() as conn:
        tracking._require_run(conn, run_id)
        clash = conn.execute(query).scalar()
    if clash is not None:
        kind = "a file" if len(clash) < len(rel) else "a folder holding"
        raise Conflict(f"run {run_id!r} has {kind} artifact {clash!r}, so {rel!r} cannot be a file; pick another "
                       "artifact path", {"field": "path", "path": rel, "existing": clash})


def log_file(tracking: Tracking, run_id: str, local_path: str | Path, artifact_path: str | None) -> RunArtifact:
    """Store one file as ``<artifact_path>/<file name>``."""
    source = Path(local_path)
    if not source.is_file():
        raise NotFound(f"local file {source} does not exist; pass the path of a file", {"field": "local_path"})
    rel = _join(artifact_path, source.name)
    check_target(tracking, run_id, rel)
    info = tracking.artifacts.put_file(f"{run_prefix(run_id)}/{rel}", source)
    return _record(tracking, run_id, rel, info)


def log_as(tracking: Tracking, run_id: str, local_path: str | Path, artifact_file: str) -> RunArtifact:
    """Store one local file at ``artifact_file`` (a path relative to the run's artifacts)."""
    source = Path(local_path)
    if not source.is_file():
        raise NotFound(f"local file {source} does not exist; pass the path of a file", {"field": "local_path"})
    rel = _join(artifact_file)
    check_target(tracking, run_id, rel)
    info = tracking.artifacts.put_file(f"{run_prefix(run_id)}/{rel}", source)
    return _record(tracking, run_id, rel, info)


def log_dir(tracking: Tracking, run_id: str, local_dir: str | Path, artifact_path: str | None) -> list[RunArtifact]:
    """Store every file under ``local_dir`` below ``artifact_path``, keeping relative paths."""
    folder = Path(local_dir)
    if not folder.is_dir():
        raise NotFound(f"local folder {folder} does not exist; pass the path of a folder", {"field": "local_dir"})
    _check_run(tracking, run_id)
    out = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = _join(artifact_path, file.relative_to(folder).as_posix())
        check_target(tracking, run_id, rel)
        info = tracking.artifacts.put_file(f"{run_prefix(run_id)}/{rel}", file)
        out.append(_record(tracking, run_id, rel, info))
    return out


def log_bytes(tracking: Tracking, run_id: str, data: bytes, artifact_file: str) -> RunArtifact:
    rel = _join(artifact_file)
    check_target(tracking, run_id, rel)
    info = tracking.artifacts.put_bytes(f"{run_prefix(run_id)}/{rel}", data)
    return _record(tracking, run_id, rel, info)


def list_artifacts(tracking: Tracking, run_id: str, path: str | None = None) -> list[RunArtifact]:
    """Files recorded for the run, optionally only those at or under ``path``."""
    query = sa.select(artifacts_table).where(artifacts_table.c.owner_kind == OWNER, artifacts_table.c.owner_id == run_id)
    with tracking.store.read() as conn:
        tracking._require_run(conn, run_id)
        rows = conn.execute(query.order_by(artifacts_table.c.path)).all()
    prefix = _join(path) if path else None
    return [
        RunArtifact(r.path, r.size, r.sha256, r.uri)
        for r in rows
        if prefix is None or r.path == prefix or r.path.startswith(prefix + "/")
    ]


def read(tracking: Tracking, run_id: str, path: str) -> bytes:
    rel = _join(path)
    matches = [a for a in list_artifacts(tracking, run_id, rel) if a.path == rel]
    if not matches:
        raise NotFound(f"run {run_id!r} has no artifact {rel!r}; list them with list_artifacts()", {"path": rel})
    return tracking.artifacts.get_bytes(f"{run_prefix(run_id)}/{rel}", expected_sha256=matches[0].sha256)


def download(tracking: Tracking, run_id: str, path: str, dst: str | Path) -> Path:
    """Copy a file (to ``dst/<name>``) or a folder (its contents into ``dst``); returns the local path."""
    rel = _join(path)
    found = list_artifacts(tracking, run_id, rel)
    if not found:
        raise NotFound(f"run {run_id!r} has no artifact {rel!r}; list them with list_artifacts()", {"path": rel})
    target_root = Path(dst)
    if len(found) == 1 and found[0].path == rel:
        target = target_root / posixpath.basename(rel)
        targets = [(found[0], target)]
        result = target
    else:
        targets = [(a, target_root / a.path[len(rel) + 1 :]) for a in found]
        result = target_root
    for artifact, target in targets:
        data = tracking.artifacts.get_bytes(f"{run_prefix(run_id)}/{artifact.path}", expected_sha256=artifact.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return result


REPORT_SUFFIXES = (".html", ".htm")
MAX_REPORTS = 1000


def list_reports(tracking: Tracking, limit: int = 100) -> list[RunReport]:
    """HTML artifacts of active runs, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_REPORTS:
        raise InvalidInput(f"limit must be between 1 and {MAX_REPORTS}, got {limit!r}", {"field": "limit"})
    lowered = sa.func.lower(artifacts_table.c.path)
    query = (
        sa.select(artifacts_table.c.owner_id, runs.c.name, runs.c.experiment_id, artifacts_table.c.path,
                  artifacts_table.c.size, artifacts_table.c.created_at)
        .join(runs, runs.c.id == artifacts_table.c.owner_id)
        .where(artifacts_table.c.owner_kind == OWNER, runs.c.lifecycle == "active",
               sa.or_(*(lowered.like(f"%{s}") for s in REPORT_SUFFIXES)))
        .order_by(artifacts_table.c.created_at.desc(), artifacts_table.c.id.desc())
        .limit(limit)
    )
    with tracking.store.read() as conn:
        return [RunReport(*row) for row in conn.execute(query)]
