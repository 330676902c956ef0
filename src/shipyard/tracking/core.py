"""``Tracking``: experiments and runs, and everything a run logs.

Each logging call is one transaction. ``log_batch`` writes metrics, params and tags with one
multi-row INSERT per table and upserts the latest value of each metric, so a training loop can
log thousands of points per call. Params are immutable: logging a key again with the same value
is a no-op, with a different value a ``Conflict``. Tags can be overwritten.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from shipyard.store import now_ms
from shipyard.store.database import upsert
from shipyard.store.events import record_event
from shipyard.store.schema import experiments, run_latest_metrics, run_metrics, run_params, run_tags, runs
from shipyard.tracking import artifacts as run_artifacts
from shipyard.tracking import queries
from shipyard.tracking.entities import (
    RUNNING,
    STATUSES,
    TERMINAL_STATUSES,
    Experiment,
    Metric,
    RunArtifact,
    RunInfo,
    RunRecord,
    RunReport,
)
from shipyard.tracking.run import Run, RunLogger, active_run, push_active
from shipyard.tracking.source import git_commit, source_name
from shipyard.tracking.validation import MetricRow, check_key, check_metrics, check_params, check_tags

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "default"
_IN_CHUNK = 500
_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fair", "keen", "lucid", "noble", "quick", "steady", "true")
_NOUNS = ("anchor", "brig", "cutter", "dory", "frigate", "galley", "hull", "keel", "mast", "schooner", "sloop", "yawl")


def _run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def _experiment(row: Any) -> Experiment:
    data = dict(row._mapping)
    data["tags"] = dict(data.get("tags") or {})
    return Experiment(**data)


def _latest_per_key(points: list[MetricRow]) -> dict[str, MetricRow]:
    """The point that wins per key: highest step, then timestamp, then value."""
    best: dict[str, MetricRow] = {}
    for point in points:
        held = best.get(point[0])
        if held is None or (point[2], point[3], point[1]) > (held[2], held[3], held[1]):
            best[point[0]] = point
    return best


class Tracking:
    """Run tracking for one workspace: ``ws.tracking``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store = ws.store
        self.artifacts = ws.artifacts

    @cached_property
    def _metrics_insert_sql(self) -> str:
        dialect = self.store.engine.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        quote = dialect.identifier_preparer.quote
        columns = ", ".join(quote(c) for c in ("run_id", "key", "value", "step", "timestamp"))
        return f"INSERT INTO {quote(run_metrics.name)} ({columns}) VALUES ({', '.join([mark] * 5)})"

    # -- experiments ----------------------------------------------------------------------------
    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment:
        name = check_key(name, "experiment")
        clean_tags = check_tags(tags)
        try:
            with self.store.begin() as conn:
                if conn.execute(sa.select(experiments.c.id).where(experiments.c.name == name)).first():
                    raise AlreadyExists(f"experiment {name!r} already exists; use get_experiment()", {"name": name})
                self._insert_experiment(conn, name, clean_tags)
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"experiment {name!r} already exists; use get_experiment()", {"name": name}) from None
        return self.get_experiment(name)

    def _insert_experiment(self, conn: Connection, name: str, tags: dict[str, str]) -> None:
        conn.execute(
            experiments.insert().values(
                name=name, artifact_location=self.artifacts.root, lifecycle="active", created_at=now_ms(), tags=tags
            )
        )
        record_event(conn, self.ws.user, "experiment.created", f"experiment:{name}")

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment called ``name``, created on first use (safe under concurrent callers)."""
        name = check_key(name, "experiment")
        for _ in range(3):
            found = self._find_experiment(name)
            if found is not None:
                return found
            try:
                with self.store.begin() as conn:
                    if not conn.execute(sa.select(experiments.c.id).where(experiments.c.name == name)).first():
                        self._insert_experiment(conn, name, {})
            except sa.exc.IntegrityError:
                continue  # another process created it first
        return self.get_experiment(name)

    def _find_experiment(self, name_or_id: str | int) -> Experiment | None:
        with self.store.read() as conn:
            row = None
            if isinstance(name_or_id, str):
                row = conn.execute(sa.select(experiments).where(experiments.c.name == name_or_id)).first()
            if row is None and str(name_or_id).isdigit():
                row = conn.execute(sa.select(experiments).where(experiments.c.id == int(name_or_id))).first()
        return _experiment(row) if row is not None else None

    def get_experiment(self, name_or_id: str | int) -> Experiment:
        found = self._find_experiment(name_or_id)
        if found is None:
            raise NotFound(
                f"experiment {name_or_id!r} does not exist; create it with create_experiment() or start_run(experiment=...)",
                {"experiment": str(name_or_id)},
            )
        return found

    def count_runs(self, experiment_id: int) -> int:
        query = sa.select(sa.func.count()).select_from(runs).where(
            runs.c.experiment_id == experiment_id, runs.c.lifecycle == "active"
        )
        with self.store.read() as conn:
            return int(conn.execute(query).scalar_one())

    def list_experiments(self) -> list[Experiment]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(experiments).order_by(experiments.c.id)).all()
        return [_experiment(row) for row in rows]

    # -- runs -----------------------------------------------------------------------------------
    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        name: str | None = None,
        parent: RunLogger | RunInfo | str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        commit: str | None = None,
    ) -> Run:
        """Start a run; a run started while another is active in this thread becomes its child."""
        if parent is None:
            outer = active_run()
            if isinstance(outer, Run) and outer._tracking.store.url == self.store.url:
                parent = outer.id
        info = self.create_run(
            experiment, name=name, parent_run_id=getattr(parent, "id", parent), tags=tags,
            source_name=source if source is not None else source_name(),
            source_git_commit=commit if commit is not None else git_commit(),
        )
        run = Run(self, info)
        push_active(run)
        return run

    def create_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        source_name: str | None = None,
        source_git_commit: str | None = None,
        user: str | None = None,
    ) -> RunInfo:
        """Record a RUNNING run (no active-run bookkeeping; the REST API uses this)."""
        exp = self.get_or_create_experiment(experiment)
        clean_tags = check_tags(tags)
        run_name = check_key(name, "run name") if name is not None else _run_name()
        run_id = uuid.uuid4().hex
        values = {
            "id": run_id, "experiment_id": exp.id, "name": run_name, "status": RUNNING, "start_time": now_ms(),
            "end_time": None, "parent_run_id": parent_run_id, "user": user or self.ws.user,
            "source_name": source_name, "source_git_commit": source_git_commit,
            "artifact_uri": self.artifacts.uri(run_artifacts.run_prefix(run_id)), "lifecycle": "active",
        }
        with self.store.begin() as conn:
            if parent_run_id is not None:
                self._require_run(conn, parent_run_id, "parent_run_id")
            conn.execute(runs.insert().values(**values))
            if clean_tags:
                conn.execute(run_tags.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in clean_tags.items()])
            record_event(conn, values["user"], "run.created", f"run:{run_id}", {"experiment": exp.name})
        return RunInfo(**values)

    def _require_run(self, conn: Connection, run_id: str, field: str = "run_id") -> Any:
        row = conn.execute(sa.select(runs.c.status, runs.c.lifecycle).where(runs.c.id == run_id)).first()
        if row is None or row.lifecycle != "active":
            state = "does not exist" if row is None else "is deleted"
            raise NotFound(f"run {run_id!r} {state}; check the id with `shipyard runs list`", {"field": field, "run_id": run_id})
        return row

    def end_run(self, run_id: str, status: str = "FINISHED") -> RunRecord:
        """Set a terminal status (FINISHED, FAILED or KILLED) and the end time."""
        status = str(status).upper()
        if status not in TERMINAL_STATUSES:
            raise InvalidInput(f"status {status!r} does not end a run; use one of {list(TERMINAL_STATUSES)}", {"field": "status"})
        with self.store.begin() as conn:
            row = self._require_run(conn, run_id)
            if row.status in TERMINAL_STATUSES:
                raise Conflict(f"run {run_id!r} already ended as {row.status}", {"run_id": run_id, "status": row.status})
            conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, end_time=now_ms()))
            record_event(conn, self.ws.user, "run.ended", f"run:{run_id}", {"status": status})
        return self.get_run(run_id)

    def update_run(self, run_id: str, *, name: str | None = None, status: str | None = None) -> RunRecord:
        if status is not None and str(status).upper() in TERMINAL_STATUSES:
            self.end_run(run_id, status)
        elif status is not None and str(status).upper() not in STATUSES:
            raise InvalidInput(f"status {status!r} is unknown; use one of {list(STATUSES)}", {"field": "status"})
        if name is not None:
            check_key(name, "run name")
            with self.store.begin() as conn:
                self._require_run(conn, run_id)
                conn.execute(runs.update().where(runs.c.id == run_id).values(name=name))
        return self.get_run(run_id)

    def delete_run(self, run_id: str) -> None:
        """Hide a run from searches (its rows and artifacts stay until purged)."""
        with self.store.begin() as conn:
            self._require_run(conn, run_id)
            conn.execute(runs.update().where(runs.c.id == run_id).values(lifecycle="deleted"))
            record_event(conn, self.ws.user, "run.deleted", f"run:{run_id}")

    # -- logging --------------------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log metric points ``(key, value, step, timestamp)``, params and tags in one transaction."""
        points = check_metrics(metrics)
        clean_params = check_params(params)
        clean_tags = check_tags(tags)
        if not (points or clean_params or clean_tags):
            return
        try:
            with self.store.begin() as conn:
                self._require_run(conn, run_id)
                if clean_params:
                    self._insert_params(conn, run_id, clean_params)
                if clean_tags:
                    conn.execute(self._tags_upsert, [{"run_id": run_id, "key": k, "value": v} for k, v in clean_tags.items()])
                if points:
                    # The history insert is the bulk of a batch: hand plain tuples to the driver's
                    # executemany instead of compiling one parameter set per row.
                    conn.exec_driver_sql(
                        self._metrics_insert_sql,
                        [(run_id, *p) for p in points],
                    )
                    self._upsert_latest(conn, run_id, points)
        except sa.exc.IntegrityError as exc:
            raise Conflict(
                f"another writer logged the same params to run {run_id!r} at the same time; retry the call",
                {"run_id": run_id, "reason": str(exc.orig)},
            ) from None

    def _insert_params(self, conn: Connection, run_id: str, params: dict[str, str]) -> None:
        keys = list(params)
        existing: dict[str, str] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            query = sa.select(run_params.c.key, run_params.c.value).where(
                run_params.c.run_id == run_id, run_params.c.key.in_(chunk)
            )
            existing.update({row.key: row.value for row in conn.execute(query)})
        for key, old in existing.items():
            if params[key] != old:
                raise Conflict(
                    f"param {key!r} of run {run_id!r} is already {old!r}; params cannot change once logged "
                    f"(got {params[key]!r}); log it under a new key or start a new run",
                    {"field": "param", "key": key, "old_value": old, "new_value": params[key]},
                )
        new = [{"run_id": run_id, "key": k, "value": v} for k, v in params.items() if k not in existing]
        if new:
            conn.execute(run_params.insert(), new)

    @cached_property
    def _tags_upsert(self) -> Any:
        stmt = upsert(self.store.dialect)(run_tags)
        return stmt.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": stmt.excluded.value})

    @cached_property
    def _latest_upsert(self) -> Any:
        """Insert the latest point per key, replacing a stored one only when the new one is later."""
        stmt = upsert(self.store.dialect)(run_latest_metrics)
        new, old = stmt.excluded, run_latest_metrics.c
        newer = sa.or_(
            new.step > old.step,
            sa.and_(new.step == old.step, new.timestamp > old.timestamp),
            sa.and_(new.step == old.step, new.timestamp == old.timestamp, new.value > old.value),
        )
        return stmt.on_conflict_do_update(
            index_elements=["run_id", "key"],
            set_={"value": new.value, "step": new.step, "timestamp": new.timestamp},
            where=newer,
        )

    def _upsert_latest(self, conn: Connection, run_id: str, points: list[MetricRow]) -> None:
        rows = [
            {"run_id": run_id, "key": key, "value": value, "step": step, "timestamp": ts}
            for key, value, step, ts in _latest_per_key(points).values()
        ]
        conn.execute(self._latest_upsert, rows)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=params)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tags)

    def log_metric(self, run_id: str, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        self.log_batch(run_id, metrics=[(key, value, step, timestamp)])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.log_batch(run_id, metrics=[(key, value, step) for key, value in metrics.items()])

    # -- reading --------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        return queries.get_run(self.store, run_id)

    def resolve_run_id(self, text: str) -> str:
        """The full id of the run ``text`` names: its id, or a prefix that only it starts with
        (an ambiguous prefix raises ``InvalidInput`` listing the candidates)."""
        return queries.resolve_run_id(self.store, text)

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        return queries.metric_history(self.store, run_id, key)

    def search_runs(
        self,
        experiment: str | int | list[str | int] | None = None,
        filter: str | None = None,  # noqa: A002 - the public name users type
        order_by: list[str] | str | None = None,
        max_results: int = 1000,
        offset: int = 0,
        include_deleted: bool = False,
    ) -> list[RunRecord]:
        """Runs matching ``filter`` (see ``shipyard.tracking.search``), best first by ``order_by``."""
        names = [] if experiment is None else experiment if isinstance(experiment, list) else [experiment]
        ids = [self.get_experiment(name).id for name in names]
        return queries.search_runs(
            self.store, ids, filter, [order_by] if isinstance(order_by, str) else order_by,
            max_results, offset, include_deleted,
        )

    def count_runs_matching(
        self,
        experiment: str | int | list[str | int] | None = None,
        filter: str | None = None,  # noqa: A002 - the same name as search_runs
        include_deleted: bool = False,
    ) -> int:
        """How many runs ``search_runs`` finds with these arguments and no limit."""
        names = [] if experiment is None else experiment if isinstance(experiment, list) else [experiment]
        ids = [self.get_experiment(name).id for name in names]
        return queries.count_runs(self.store, ids, filter, include_deleted)

    def metric_histories(self, run_ids: list[str], keys: list[str]) -> dict[str, dict[str, list[Metric]]]:
        """Histories of several metrics of several runs at once: ``{run_id: {key: [Metric, ...]}}``."""
        return queries.metric_histories(self.store, run_ids, keys)

    def list_reports(self, limit: int = 100) -> list[RunReport]:
        """HTML files logged to runs (model and data-quality reports), newest first."""
        return run_artifacts.list_reports(self, limit)

    def compare_runs(self, run_ids: list[str]) -> pd.DataFrame:
        return queries.compare_runs(self.store, run_ids)

    # -- artifacts ------------------------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> RunArtifact:
        return run_artifacts.log_file(self, run_id, local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> list[RunArtifact]:
        return run_artifacts.log_dir(self, run_id, local_dir, artifact_path)

    def log_file(self, run_id: str, local_path: str | Path, artifact_file: str) -> RunArtifact:
        """Store a local file under another name: ``artifact_file`` is its full path in the run."""
        return run_artifacts.log_as(self, run_id, local_path, artifact_file)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> RunArtifact:
        return run_artifacts.log_bytes(self, run_id, data, artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[RunArtifact]:
        return run_artifacts.list_artifacts(self, run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst: str | Path) -> Path:
        return run_artifacts.download(self, run_id, path, dst)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return run_artifacts.read(self, run_id, path)
