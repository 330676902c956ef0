"""One day of a scene's served traffic: statistics gathered in one pass, columns on demand.

:func:`collect` reads the day's prediction-log files one at a time (memory stays at one file) and
fills a :class:`DayStats` — volume by version, arm and hour, fallbacks, latency histogram,
decision counts and a :class:`~shipyard.monitoring.baseline.ColumnStats` per column on the
baseline's bins. That is the "statistics middle table" row stored for the day.

Plugins receive a :class:`DayLog`: the day's statistics plus the rows themselves, read again on
first use of ``day_log["column"]`` or ``day_log.frame()`` (built-in plugins never need them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.artifacts import ArtifactStore
from shipyard.monitoring import series
from shipyard.monitoring.baseline import OTHER, UNSEEN, Baseline, ColumnStats
from shipyard.monitoring.logread import META, LogBatch, flat_sql, iter_batches, iter_day

_LOG_SCALE = series.PER_DOUBLING / math.log(2)


@dataclass
class DayStats:
    scene: str
    day: str
    rows: int = 0
    requests: int = 0
    fallbacks: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    by_arm: dict[str, int] = field(default_factory=dict)
    by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    latency: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    columns: dict[str, ColumnStats] = field(default_factory=dict)
    score: str | None = None
    decision: str | None = None
    warnings: list[str] = field(default_factory=list)
    files: int = 0

    def summary(self, approve: tuple[str, ...] = ()) -> dict[str, Any]:
        """The small part of the day's row (read by trends): volumes, rates, score moments."""
        decided = sum(self.decisions.values())
        approvals = sum(v for k, v in self.decisions.items() if k in approve) / decided if decided else None
        out: dict[str, Any] = {
            "rows": self.rows, "requests": self.requests, "fallbacks": self.fallbacks,
            "fallback_rate": self.fallbacks / self.rows if self.rows else None,
            "by_version": self.by_version, "by_arm": self.by_arm, "by_hour": self.by_hour,
            "latency_p50_ms": series.quantile(self.latency, 0.5),
            "latency_p99_ms": series.quantile(self.latency, 0.99),
            "decisions": self.decisions, "files": self.files, "warnings": self.warnings,
        }
        if self.score and self.score in self.columns:
            st = self.columns[self.score]
            out.update(score_mean=st.mean, score_std=st.std, score_missing_rate=st.missing_rate)
        out["approval_rate"] = approvals
        return out

    def detail(self) -> dict[str, Any]:
        return {"columns": {k: v.to_dict() for k, v in self.columns.items()}, "latency": self.latency}


def collect(artifacts: ArtifactStore, scene: str, day: str, baseline: Baseline | None, *,
            score: str | None = None, decision: str | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[DayStats, list[str]]:
    """One pass over the day's log: the day's statistics and the column names seen.

    Each file is decoded and aggregated inside DuckDB in one query (counts, sums, min/max and
    ``histogram`` on the baseline's fine edges per column), so no row reaches Python.
    """
    stats = DayStats(scene, day, score=score, decision=decision)
    seen: list[str] = []
    types = _types(baseline)
    for handle in iter_batches(artifacts, scene, day, warn=stats.warnings.append, progress=progress):
        for part, fields, plan, row in _aggregate(artifacts, handle, types, baseline, decision, stats.warnings):
            stats.files += len(part)
            _add_row(stats, row, plan)
            for _source, _name, column in fields.columns():
                if column not in seen:
                    seen.append(column)
    for name in baseline.columns if baseline is not None else []:
        # a baseline column the log never had is all missing, not silently left out
        if name not in stats.columns:
            st = ColumnStats.empty(name, baseline.columns[name])
            st.n = st.missing = stats.rows
            stats.columns[name] = st
    for st in stats.columns.values():
        # a column absent from some files is missing for their rows too
        if st.n < stats.rows:
            st.missing += stats.rows - st.n
            st.n = stats.rows
    return stats, seen


def _aggregate(artifacts: ArtifactStore, handle: LogBatch, types: dict[str, str], baseline: Baseline | None,
               decision: str | None, warnings: list[str]) -> list[tuple[list[str], Any, Plan, Any]]:
    """The aggregate row of a batch; when reading fails part-way, each file on its own."""
    fields = handle.fields.typed(types)
    plan = _plan(fields, baseline, decision)
    try:
        return [(handle.paths, fields, plan,
                 handle.con.execute(_aggregate_sql(handle.columns, fields, plan, decision)).fetchone())]
    except Exception as exc:  # a file damaged inside (its footer was fine) fails the query
        if len(handle.paths) == 1:
            warnings.append(f"skipped unreadable prediction-log file {handle.path}: "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
            return []
    out = []
    for path in handle.paths:
        try:
            single = LogBatch(artifacts, [path])
        except Exception as exc:
            warnings.append(f"skipped unreadable prediction-log file {path}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        try:
            out.extend(_aggregate(artifacts, single, types, baseline, decision, warnings))
        finally:
            single.close()
    return out


def _types(baseline: Baseline | None) -> dict[str, str]:
    if baseline is None:
        return {}
    return {c.name: "DOUBLE" if c.kind == "numeric" else "VARCHAR" for c in baseline.columns.values()}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


Plan = list[tuple[str, str, Any]]  # (column, kind, its ColumnBaseline or None)


def _plan(fields: Any, baseline: Baseline | None, decision: str | None) -> Plan:
    """(column, kind, baseline column) for every decoded field; kind from the baseline, else the type."""
    out: Plan = []
    for source, name, column in fields.columns():
        base = baseline.columns.get(column) if baseline is not None else None
        kind = base.kind if base is not None else \
            ("numeric" if getattr(fields, source)[name] == "DOUBLE" else "categorical")
        out.append((column, kind, base))
    return out


def _num_list(values: list[float]) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]::DOUBLE[]"


def _aggregate_sql(columns: list[str], fields: Any, plan: Plan, decision: str | None) -> str:
    lat = ("CAST(least(96, greatest(0, ceil((ln(greatest(latency_ms, 0.01)) - ln(0.01)) * 4 / ln(2) - 1e-9)))"
           " AS INTEGER)")
    exprs = ["count(*)", "count(*) FILTER (WHERE row = 0)", "count(*) FILTER (WHERE fallback)",
             "histogram(CAST(version AS VARCHAR))", "histogram(CAST(arm AS VARCHAR))",
             "histogram(CAST(floor(ts / 3600000) % 24 AS INTEGER))",
             f"histogram({lat}) FILTER (WHERE row = 0 AND latency_ms IS NOT NULL)",
             f"histogram(CAST({_q(decision)} AS VARCHAR))" if decision and any(c == decision for c, _, _ in plan)
             else "NULL"]
    for column, kind, base in plan:
        c = _q(column)
        if kind == "numeric":
            exprs += [f"count({c})", f"sum({c})", f"sum({c} * {c})", f"min({c})", f"max({c})"]
            if base is not None and base.fine_edges:
                exprs.append(f"histogram({c}, {_num_list(base.fine_edges)})")
            else:
                exprs.append("NULL")
            if base is not None and base.edges and base.coarse_of_fine() is None:
                exprs.append(f"histogram({c}, {_num_list(base.edges)})")
            else:
                exprs.append("NULL")
        else:
            exprs.append(f"count({c})")
            if base is not None:
                known = [k for k in base.categories if k != OTHER]
                inside = ", ".join(_lit(k) for k in known) or "NULL"
                exprs.append(f"histogram(CASE WHEN CAST({c} AS VARCHAR) IN ({inside}) THEN CAST({c} AS VARCHAR) "
                             f"ELSE {_lit(UNSEEN)} END) FILTER (WHERE {c} IS NOT NULL)")
            else:
                exprs.append("NULL")
    return f"SELECT {', '.join(exprs)} FROM ({flat_sql(columns, fields)})"


def _add_row(stats: DayStats, row: Any, plan: Plan) -> None:
    it = iter(row)
    n, requests, fallbacks = int(next(it) or 0), int(next(it) or 0), int(next(it) or 0)
    by_version, by_arm, by_hour, latency, decisions = (next(it) or {} for _ in range(5))
    stats.rows += n
    stats.requests += requests
    stats.fallbacks += fallbacks
    for target, found in ((stats.by_version, by_version), (stats.by_arm, by_arm), (stats.decisions, decisions)):
        for k, v in found.items():
            target[str(k)] = target.get(str(k), 0) + int(v)
    for h, v in by_hour.items():
        stats.by_hour[int(h)] += int(v)
    series.merge_hist(stats.latency, latency)
    for column, kind, base in plan:
        st = stats.columns.get(column)
        if st is None:
            st = stats.columns[column] = ColumnStats.empty(column, base, kind)
        present = int(next(it) or 0)
        st.n += n
        st.missing += n - present
        if kind == "numeric":
            total, total_sq, lo, hi, fine, coarse = (next(it) for _ in range(6))
            if present:
                st.total += float(total)
                st.total_sq += float(total_sq)
                st.min = float(lo) if st.min is None else min(st.min, float(lo))
                st.max = float(hi) if st.max is None else max(st.max, float(hi))
            if base is not None and st.fine_counts is not None and st.counts is not None:
                f = _aligned(fine or {}, base.fine_edges, present)
                st.fine_counts = (np.asarray(st.fine_counts) + f).tolist()
                mapping = base.coarse_of_fine()
                c = np.bincount(mapping, weights=f, minlength=len(st.counts)).astype(np.int64) \
                    if mapping is not None else _aligned(coarse or {}, base.edges, present)
                st.counts = (np.asarray(st.counts) + c).tolist()
        else:
            found = next(it) or {}
            if base is not None and st.counts is not None:
                idx = {k: i for i, k in enumerate(base.categories)}
                other = idx.get(OTHER, len(base.categories))
                counts = list(st.counts)
                for k, v in found.items():
                    counts[idx.get(k, other) if k != UNSEEN else other] += int(v)
                    if k != UNSEEN:
                        st.top[k] = st.top.get(k, 0) + int(v)
                st.counts = counts


def _aligned(found: dict[Any, Any], edges: list[float], present: int) -> np.ndarray:
    """Counts per bin from DuckDB's ``histogram(x, edges)`` map (the overflow key is +inf)."""
    if not edges:
        return np.array([present], dtype=np.int64)
    inner = [int(found.get(e, 0)) for e in edges]
    last = edges[-1]
    over = sum(int(v) for k, v in found.items() if k > last)
    return np.array([*inner, over], dtype=np.int64)


class DayLog:
    """What a plugin gets as ``day_log``: the day's statistics, and its rows when asked for."""

    def __init__(self, stats: DayStats, baseline: Baseline | None, columns: list[str],
                 reader: Callable[[list[str] | None], pd.DataFrame], labels: pd.DataFrame | None = None) -> None:
        self.stats = stats
        self.baseline = baseline
        self.columns = list(columns)
        self._reader = reader
        self._cache: dict[str, pd.Series] = {}
        self._meta: pd.DataFrame | None = None
        self.labels = labels  # matched labels of the day's requests (request_id, row, label), if any

    @property
    def scene(self) -> str:
        return self.stats.scene

    @property
    def day(self) -> str:
        return self.stats.day

    def __len__(self) -> int:
        return self.stats.rows

    @property
    def empty(self) -> bool:
        return self.stats.rows == 0

    def frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The day's rows (metadata columns plus ``columns``, or all), read from the log."""
        want = [c for c in (columns if columns is not None else self.columns)]
        missing = [c for c in want if c not in self._cache]
        if missing or self._meta is None:
            frame = self._reader(missing)
            if self._meta is None:
                self._meta = frame[[c for c in META if c in frame.columns]]
            for c in missing:
                self._cache[c] = frame[c] if c in frame.columns else pd.Series(np.nan, index=frame.index, name=c)
        meta = self._meta if self._meta is not None else pd.DataFrame()
        return pd.concat([meta, *[self._cache[c] for c in want]], axis=1)

    def __getitem__(self, column: str) -> pd.Series:
        return self.frame([column])[column]


def read_columns(artifacts: ArtifactStore, scene: str, day: str, baseline: Baseline | None,
                 columns: list[str] | None) -> pd.DataFrame:
    """The day's rows as one DataFrame, keeping only ``columns`` (and the metadata) per file."""
    frames = []
    for table in iter_day(artifacts, scene, day, types=_types(baseline)):
        keep = [c for c in table.column_names if c in META or columns is None or c in columns]
        frames.append(table.select(keep).to_pandas())
    if not frames:
        return pd.DataFrame(columns=[*META, *(columns or [])])
    return pd.concat(frames, ignore_index=True)
