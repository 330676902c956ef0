"""Point-in-time joins in DuckDB: one ASOF LEFT JOIN per view, reading Parquet directly.

Each view is narrowed to the requested columns and to the time window the entity rows can see
(latest row timestamp, earliest minus TTL) before the join; views with a created timestamp are first
reduced to one row per (keys, event timestamp), the one created last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from shipyard.errors import InvalidInput
from shipyard.features.offline.engine import ROW, TS, ViewRequest
from shipyard.features.offline.scan import CREATED_TS, EVENT_TS, Scanner, connect, quote

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, artifacts: ArtifactStore | None, log_prefix: str = "features/offline",
                 threads: int | None = None) -> None:
        self.artifacts = artifacts
        self.log_prefix = log_prefix
        self.threads = threads

    def point_in_time_join(self, entity: pa.Table, requests: list[ViewRequest]) -> pa.Table:
        con = connect(self.threads)
        try:
            con.execute("SET preserve_insertion_order = false")
            con.register("__entity", entity)
            bounds = con.execute(
                f"SELECT CAST(min({TS}) AS VARCHAR), CAST(max({TS}) AS VARCHAR) FROM __entity").fetchone()
            scanner = Scanner(con, self.artifacts, self.log_prefix)
            ctes, joins, selects = [], [], [f"e.{ROW}"]
            for i, req in enumerate(requests):
                rel = scanner.view_relation(req.view)
                ctes.append(f"v{i} AS ({_view_sql(req, rel.sql, i, bounds)})")
                keys = " AND ".join(f"e.{quote(k)} = v{i}.{quote(k)}" for k in req.view.join_keys)
                joins.append(f"ASOF LEFT JOIN v{i} ON {keys} AND e.{TS} >= v{i}.__vts")
                ttl = req.view.ttl
                for feature, out in zip(req.features, req.output_names, strict=True):
                    col = f"v{i}.{quote(feature)}"
                    if ttl is not None:
                        micros = int(round(ttl.total_seconds() * 1_000_000))
                        col = f"CASE WHEN v{i}.__vts >= e.{TS} - to_microseconds({micros}) THEN {col} END"
                    selects.append(f"{col} AS {quote(out)}")
            sql = f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM __entity e {' '.join(joins)}"
            try:
                return _in_row_order(con.sql(sql).to_arrow_table())
            except duckdb.Error as exc:
                names = ", ".join(r.view.name for r in requests)
                raise InvalidInput(f"point-in-time join over views {names} failed in DuckDB: "
                                   f"{str(exc).splitlines()[0]}", {"views": names}) from None
        finally:
            con.close()


def _in_row_order(table: pa.Table) -> pa.Table:
    """Put rows back in entity order; ``__row`` is a permutation of 0..n-1, so one scatter does it."""
    rows = table.column(ROW).to_numpy()
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = np.arange(len(rows), dtype=np.int64)
    return table.take(pa.array(order))


def _view_sql(req: ViewRequest, rel: str, i: int, bounds: tuple[str | None, str | None] | None) -> str:
    view = req.view
    keys = [quote(k) for k in view.join_keys]
    feats = [quote(f) for f in req.features]
    where = []
    if bounds and bounds[1] is not None:
        where.append(f"{EVENT_TS} <= TIMESTAMP '{bounds[1]}'")
        if view.ttl is not None and bounds[0] is not None:
            micros = int(round(view.ttl.total_seconds() * 1_000_000))
            where.append(f"{EVENT_TS} >= TIMESTAMP '{bounds[0]}' - to_microseconds({micros})")
    filt = f" WHERE {' AND '.join(where)}" if where else ""
    if not view.created_timestamp_field:
        return f"SELECT {', '.join([*keys, f'{EVENT_TS} AS __vts', *feats])} FROM {rel}{filt}"
    packed = ", ".join(f"{quote('f' + str(j))} := {f}" for j, f in enumerate(feats))
    latest = f"arg_max(struct_pack({packed}), COALESCE({CREATED_TS}, TIMESTAMP '0001-01-01'))"
    unpack = ", ".join(f"__s.{quote('f' + str(j))} AS {f}" for j, f in enumerate(feats))
    return (f"SELECT {', '.join(keys)}, __vts, {unpack} FROM (SELECT {', '.join(keys)}, {EVENT_TS} AS __vts, "
            f"{latest} AS __s FROM {rel}{filt} GROUP BY ALL)")
