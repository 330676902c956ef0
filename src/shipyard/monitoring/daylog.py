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
import pyarrow as pa

from shipyard.artifacts import ArtifactStore
from shipyard.monitoring import series
from shipyard.monitoring.baseline import Baseline, ColumnStats
from shipyard.monitoring.logread import META, iter_day

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


def _latency_hist(ms: np.ndarray) -> dict[str, int]:
    ms = ms[~np.isnan(ms)]
    if not ms.size:
        return {}
    idx = np.ceil((np.log(np.maximum(ms, series.BASE_MS)) - math.log(series.BASE_MS)) * _LOG_SCALE - 1e-9)
    idx = np.clip(idx, 0, series.N_BUCKETS - 1).astype(np.int64)
    counts = np.bincount(idx, minlength=series.N_BUCKETS)
    return {str(i): int(c) for i, c in enumerate(counts) if c}


def collect(artifacts: ArtifactStore, scene: str, day: str, baseline: Baseline | None, *,
            score: str | None = None, decision: str | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[DayStats, list[str]]:
    """One pass over the day's log: the day's statistics and the column names seen."""
    stats = DayStats(scene, day, score=score, decision=decision)
    seen: list[str] = []
    for table in iter_day(artifacts, scene, day, types=_types(baseline), warn=stats.warnings.append,
                          progress=progress):
        stats.files += 1
        add_table(stats, table, baseline)
        for name in table.column_names:
            if name not in META and name not in seen:
                seen.append(name)
    for name in baseline.columns if baseline is not None else []:
        # a baseline column the log never had is all missing, not silently left out
        if name not in stats.columns:
            st = ColumnStats.empty(name, baseline.columns[name])
            st.n = st.missing = stats.rows
            stats.columns[name] = st
    return stats, seen


def _types(baseline: Baseline | None) -> dict[str, str]:
    if baseline is None:
        return {}
    return {c.name: "DOUBLE" if c.kind == "numeric" else "VARCHAR" for c in baseline.columns.values()}


def add_table(stats: DayStats, table: pa.Table, baseline: Baseline | None) -> None:
    n = table.num_rows
    if n == 0:
        return
    stats.rows += n
    rows = table.column("row").to_numpy(zero_copy_only=False)
    stats.requests += int((rows == 0).sum())
    fb = table.column("fallback").to_numpy(zero_copy_only=False)
    stats.fallbacks += int(np.nansum(fb.astype(float)))
    for key, target in (("version", stats.by_version), ("arm", stats.by_arm)):
        vc = pd.Series(table.column(key).to_numpy(zero_copy_only=False)).value_counts()
        for k, v in vc.items():
            target[str(k)] = target.get(str(k), 0) + int(v)
    ts = table.column("ts").to_numpy(zero_copy_only=False)
    hours = np.bincount(((ts // 3_600_000) % 24).astype(np.int64), minlength=24)
    stats.by_hour = (np.asarray(stats.by_hour) + hours).tolist()
    lat = table.column("latency_ms").to_numpy(zero_copy_only=False).astype(float)
    series.merge_hist(stats.latency, _latency_hist(lat[rows == 0]))
    for name in table.column_names:
        if name in META:
            continue
        column = table.column(name)
        base = baseline.columns.get(name) if baseline is not None else None
        numeric = pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
        kind = base.kind if base is not None else ("numeric" if numeric else "categorical")
        st = stats.columns.get(name)
        if st is None:
            st = stats.columns[name] = ColumnStats.empty(name, base, kind)
        if kind == "numeric":
            values = column.to_numpy(zero_copy_only=False).astype(float) if numeric else \
                pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=float)
            st.add_numeric(values, base)
        else:
            st.add_categorical(column.to_pandas().astype("object"), base)
        if name == stats.decision:
            vc = column.to_pandas().dropna().astype(str).value_counts()
            for k, v in vc.items():
                stats.decisions[str(k)] = stats.decisions.get(str(k), 0) + int(v)


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
