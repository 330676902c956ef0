"""Reading runs back: one run, metric history, search and side-by-side comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.errors import InvalidInput, NotFound
from shipyard.store import MetadataStore
from shipyard.store.schema import run_latest_metrics, run_metrics, run_params, run_tags, runs
from shipyard.tracking.entities import Metric, RunInfo, RunRecord
from shipyard.tracking.search import compile_filter, parse_filter, parse_order_by

if TYPE_CHECKING:
    import pandas as pd

MAX_RESULTS_LIMIT = 50_000
_IN_CHUNK = 500
_INFO_FIELDS = tuple(RunInfo.__dataclass_fields__)


def _info(row: Any) -> RunInfo:
    data = row._mapping
    return RunInfo(**{name: data[name] for name in _INFO_FIELDS})


def _records(conn: Connection, rows: Sequence[Any]) -> list[RunRecord]:
    """Attach params, tags and latest metrics to run rows, a few queries per 500 runs."""
    infos = [_info(row) for row in rows]
    params: dict[str, dict[str, str]] = {i.id: {} for i in infos}
    tags: dict[str, dict[str, str]] = {i.id: {} for i in infos}
    metrics: dict[str, dict[str, float]] = {i.id: {} for i in infos}
    ids = [i.id for i in infos]
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        for table, target in ((run_params, params), (run_tags, tags), (run_latest_metrics, metrics)):
            query = sa.select(table.c.run_id, table.c.key, table.c.value).where(table.c.run_id.in_(chunk))
            for run_id, key, value in conn.execute(query.order_by(table.c.key)):
                target[run_id][key] = value
    return [RunRecord(info, params[info.id], tags[info.id], metrics[info.id]) for info in infos]


def get_run(store: MetadataStore, run_id: str) -> RunRecord:
    with store.read() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist; check the id with `shipyard runs list`", {"run_id": run_id})
        return _records(conn, [row])[0]


PREFIX_CANDIDATES = 10


def resolve_run_id(store: MetadataStore, text: str) -> str:
    """The run id ``text`` names: the id itself, or the one id starting with it."""
    text = text.strip()
    if not text:
        raise InvalidInput("the run id is empty; give a run id or its first characters", {"field": "run_id"})
    with store.read() as conn:
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == text)).first() is not None:
            return text
        found = conn.execute(
            sa.select(runs.c.id, runs.c.name).where(runs.c.id.startswith(text, autoescape=True))
            .order_by(runs.c.id).limit(PREFIX_CANDIDATES + 1)
        ).all()
    if not found:
        raise NotFound(f"run {text!r} does not exist, and no run id starts with it; check the id with "
                       "`shipyard runs list`", {"run_id": text})
    if len(found) == 1:
        return str(found[0].id)
    shown = found[:PREFIX_CANDIDATES]
    listed = ", ".join(f"{r.id} ({r.name})" if r.name else str(r.id) for r in shown)
    more = " and more" if len(found) > PREFIX_CANDIDATES else ""
    raise InvalidInput(
        f"run id prefix {text!r} is ambiguous: it matches {listed}{more}; give more characters",
        {"field": "run_id", "candidates": [str(r.id) for r in shown]},
    )


def metric_history(store: MetadataStore, run_id: str, key: str) -> list[Metric]:
    query = (
        sa.select(run_metrics.c.key, run_metrics.c.value, run_metrics.c.step, run_metrics.c.timestamp)
        .where(run_metrics.c.run_id == run_id, run_metrics.c.key == key)
        .order_by(run_metrics.c.step, run_metrics.c.timestamp, run_metrics.c.id)
    )
    with store.read() as conn:
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise NotFound(f"run {run_id!r} does not exist; check the id with `shipyard runs list`", {"run_id": run_id})
        return [Metric(*row) for row in conn.execute(query)]


def search_runs(
    store: MetadataStore,
    experiment_ids: list[int],
    filter_text: str | None,
    order_by: list[str] | None,
    max_results: int,
    offset: int = 0,
    include_deleted: bool = False,
) -> list[RunRecord]:
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise InvalidInput(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results!r}", {"field": "max_results"})
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be a non-negative integer, got {offset!r}", {"field": "offset"})
    query = sa.select(runs)
    if experiment_ids:
        query = query.where(runs.c.experiment_id.in_(experiment_ids))
    if not include_deleted:
        query = query.where(runs.c.lifecycle == "active")
    condition = compile_filter(parse_filter(filter_text), store.dialect)
    if condition is not None:
        query = query.where(condition)
    ordering: list[Any] = []
    for i, (entity, key, descending) in enumerate(parse_order_by(order_by)):
        if entity == "attributes":
            column = runs.c[key]
        else:
            table = {"metrics": run_latest_metrics, "params": run_params, "tags": run_tags}[entity]
            alias = table.alias(f"order_{i}")
            query = query.outerjoin(alias, sa.and_(alias.c.run_id == runs.c.id, alias.c.key == key))
            column = alias.c.value
        # Runs without the value sort last in either direction.
        ordering += [sa.case((column.is_(None), 1), else_=0), column.desc() if descending else column.asc()]
    ordering += [runs.c.start_time.desc(), runs.c.id.asc()]
    query = query.order_by(*ordering).limit(max_results).offset(offset)
    with store.read() as conn:
        return _records(conn, conn.execute(query).all())


def compare_runs(store: MetadataStore, run_ids: list[str]) -> pd.DataFrame:
    """One column per run; rows are the run's name and status, then ``params.*`` and ``metrics.*``."""
    import pandas as pd

    if not run_ids:
        raise InvalidInput("compare_runs needs at least one run id", {"field": "run_ids"})
    with store.read() as conn:
        rows = conn.execute(sa.select(runs).where(runs.c.id.in_(list(run_ids)))).all()
        found = {r.id: r for r in _records(conn, rows)}
    missing = [rid for rid in run_ids if rid not in found]
    if missing:
        raise NotFound(f"runs {missing} do not exist; check the ids with `shipyard runs list`", {"run_ids": missing})
    ordered = [found[rid] for rid in run_ids]
    param_keys = sorted({k for r in ordered for k in r.params})
    metric_keys = sorted({k for r in ordered for k in r.metrics})
    index = ["name", "status"] + [f"params.{k}" for k in param_keys] + [f"metrics.{k}" for k in metric_keys]
    columns: dict[str, list[Any]] = {}
    for record in ordered:
        values: list[Any] = [record.info.name, record.info.status]
        values += [record.params.get(k) for k in param_keys]
        values += [record.metrics.get(k) for k in metric_keys]
        columns[record.id] = values
    return pd.DataFrame(columns, index=index, dtype=object)
