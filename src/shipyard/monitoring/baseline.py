"""Baselines stored as bins, and the mergeable per-column statistics compared with them.

A :class:`Baseline` keeps, per column, what drift needs and nothing else — never raw rows:

* numeric: the PSI bins (inner edges at the reference's 1/10 … 9/10 quantiles) with their counts,
  40 finer quantile bins plus six in the tails (nesting the PSI edges) with counts, for KS and Wasserstein without the
  rows — a KS from them is off by at most the largest fine-bin share, about 2.5 % — the missing
  count, mean, standard deviation (ddof 0), min and max;
* categorical: the counts of up to ``TOP_CATEGORIES`` most frequent categories (the rest are
  pooled as ``__other__``) and the missing count.

:class:`ColumnStats` is the current side: counts on the baseline's bins, moments, min/max and
category counts, filled chunk by chunk (``add``) and combined with ``merge``, so a day of the
prediction log is read once, file by file, and its statistics stored as one small row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.monitoring import stats as S

FINE_BINS = 40
TOP_CATEGORIES = 100
OTHER = "__other__"
UNSEEN = "__unseen__"
MISSING = "__missing__"


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.empty((len(frame), 0))
    return frame[columns].to_numpy(dtype=float, na_value=np.nan)


TAIL_QUANTILES = (0.001, 0.005, 0.01, 0.99, 0.995, 0.999)


@dataclass
class ColumnBaseline:
    name: str
    kind: str  # "numeric" | "categorical"
    n: int
    missing: int
    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    fine_edges: list[float] = field(default_factory=list)
    fine_counts: list[int] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnBaseline:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def coarse_of_fine(self) -> np.ndarray | None:
        """For each fine bin, the PSI bin holding it (None when the fine edges do not nest the PSI edges)."""
        fine, coarse = np.asarray(self.fine_edges, dtype=float), np.asarray(self.edges, dtype=float)
        if not np.isin(coarse, fine).all():
            return None
        upper = np.append(fine, np.inf)
        return np.searchsorted(coarse, upper, side="left")

    def bin_labels(self) -> list[str]:
        if self.kind == "categorical":
            return list(self.categories)
        full = [-np.inf, *self.edges, np.inf]
        return [f"({lo:.6g}, {hi:.6g}]" for lo, hi in zip(full[:-1], full[1:], strict=True)]


@dataclass
class Baseline:
    """Bins and counts of a reference sample, per column."""

    name: str
    columns: dict[str, ColumnBaseline]
    rows: int
    bins: int = S.DEFAULT_BINS
    source: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "reference", *, columns: list[str] | None = None,
                   bins: int = S.DEFAULT_BINS, source: dict[str, Any] | None = None) -> Baseline:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInput("a baseline is built from a DataFrame (or a file read into one)", {"field": "reference"})
        if len(frame) == 0:
            raise InvalidInput("the reference has no rows; a baseline needs data", {"field": "reference"})
        if bins < 1:
            raise InvalidInput(f"bins must be at least 1, got {bins}", {"field": "bins"})
        names = list(columns) if columns is not None else [str(c) for c in frame.columns]
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InvalidInput(f"column(s) {missing} are not in the reference; its columns are "
                               f"{[str(c) for c in frame.columns][:20]}", {"field": "columns"})
        numeric = [c for c in names if is_numeric(frame[c])]
        out: dict[str, ColumnBaseline] = {}
        values = numeric_matrix(frame, numeric)
        # one quantile call per column for the PSI, fine and tail edges; the fine edges include the
        # PSI edges, so PSI counts are sums of fine counts
        q_coarse = np.linspace(0, 1, bins + 1)[1:-1]
        q_fine = np.linspace(0, 1, FINE_BINS + 1)[1:-1]
        qs = np.concatenate([q_coarse, q_fine, TAIL_QUANTILES])
        coarse, fine = [], []
        for q in S.column_quantiles(values, qs):
            c = np.unique(q[: len(q_coarse)]) if q.size else q
            coarse.append(c)
            fine.append(np.unique(q) if q.size else q)
        for j, name_ in enumerate(numeric):
            col = values[:, j]
            fine_counts, n_missing = S.bin_counts(col, fine[j])
            mapping = np.searchsorted(coarse[j], np.append(fine[j], np.inf), side="left")
            counts = np.bincount(mapping, weights=fine_counts, minlength=len(coarse[j]) + 1).astype(np.int64)
            present = col[~np.isnan(col)]
            out[name_] = ColumnBaseline(
                name_, "numeric", len(col), n_missing, coarse[j].tolist(), counts.tolist(),
                fine_edges=fine[j].tolist(), fine_counts=fine_counts.tolist(),
                mean=float(present.mean()) if present.size else None,
                std=float(present.std()) if present.size else None,
                min=float(present.min()) if present.size else None,
                max=float(present.max()) if present.size else None)
        for name_ in names:
            if name_ in out:
                continue
            col = frame[name_]
            n_missing = int(col.isna().sum())
            vc = col.dropna().astype(str).value_counts()
            top = vc.iloc[:TOP_CATEGORIES]
            cats, counts_ = top.index.tolist(), top.to_numpy(np.int64).tolist()
            rest = int(vc.iloc[TOP_CATEGORIES:].sum())
            if rest:
                cats, counts_ = [*cats, OTHER], [*counts_, rest]
            out[name_] = ColumnBaseline(name_, "categorical", len(col), n_missing, counts=counts_, categories=cats)
        ordered = {c: out[c] for c in names}
        return cls(name, ordered, len(frame), bins, dict(source or {}), int(time.time() * 1000))

    def bins_frame(self) -> pd.DataFrame:
        """One row per (column, bin): the reference's bins and shares (what plugins get as ``bins``)."""
        rows = []
        for col in self.columns.values():
            total = col.n or 1
            labels = col.bin_labels()
            full = [-np.inf, *col.edges, np.inf] if col.kind == "numeric" else None
            for i, label in enumerate(labels):
                rows.append({"column": col.name, "kind": col.kind, "bin": label,
                             "lower": full[i] if full else None, "upper": full[i + 1] if full else None,
                             "expected_count": col.counts[i], "expected_pct": col.counts[i] / total})
            if col.missing:
                rows.append({"column": col.name, "kind": col.kind, "bin": MISSING, "lower": None, "upper": None,
                             "expected_count": col.missing, "expected_pct": col.missing / total})
        return pd.DataFrame(rows, columns=["column", "kind", "bin", "lower", "upper", "expected_count",
                                           "expected_pct"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bins": self.bins, "source": self.source,
                "created_at": self.created_at, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        cols = [ColumnBaseline.from_dict(c) for c in data.get("columns", [])]
        return cls(data["name"], {c.name: c for c in cols}, int(data.get("rows", 0)), int(data.get("bins", 10)),
                   dict(data.get("source") or {}), int(data.get("created_at") or 0))


@dataclass
class ColumnStats:
    """Mergeable statistics of one column on the current side (a file, a day)."""

    name: str
    kind: str
    n: int = 0
    missing: int = 0
    counts: list[int] | None = None       # on the baseline's PSI bins (+ unseen for categoricals)
    fine_counts: list[int] | None = None  # on the baseline's fine bins
    total: float = 0.0
    total_sq: float = 0.0
    min: float | None = None
    max: float | None = None
    top: dict[str, int] = field(default_factory=dict)  # categoricals: most frequent values

    @classmethod
    def empty(cls, name: str, base: ColumnBaseline | None, kind: str = "numeric") -> ColumnStats:
        kind = base.kind if base is not None else kind
        st = cls(name, kind)
        if base is not None:
            if kind == "numeric":
                st.counts = [0] * (len(base.edges) + 1)
                st.fine_counts = [0] * (len(base.fine_edges) + 1)
            else:
                st.counts = [0] * (len(base.categories) + 1)
        return st

    def add_numeric(self, col: np.ndarray, base: ColumnBaseline | None) -> None:
        nan = np.isnan(col)
        n_missing = int(nan.sum())
        present = col[~nan] if n_missing else col
        self.n += len(col)
        self.missing += n_missing
        if present.size:
            self.total += float(present.sum())
            self.total_sq += float(np.dot(present, present))
            lo, hi = float(present.min()), float(present.max())
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
        if base is not None and self.counts is not None and self.fine_counts is not None:
            f = np.bincount(np.searchsorted(np.asarray(base.fine_edges), present, side="left"),
                            minlength=len(self.fine_counts))
            mapping = base.coarse_of_fine()
            c = np.bincount(mapping, weights=f, minlength=len(self.counts)).astype(np.int64) if mapping is not None \
                else np.bincount(np.searchsorted(np.asarray(base.edges), present, side="left"), minlength=len(self.counts))
            self.counts = (np.asarray(self.counts) + c).tolist()
            self.fine_counts = (np.asarray(self.fine_counts) + f).tolist()

    def add_categorical(self, col: pd.Series, base: ColumnBaseline | None) -> None:
        self.n += len(col)
        na = col.isna()
        self.missing += int(na.sum())
        vc = col[~na].astype(str).value_counts()
        for key, count in vc.items():
            self.top[str(key)] = self.top.get(str(key), 0) + int(count)
        if len(self.top) > 4 * TOP_CATEGORIES:
            self.top = dict(sorted(self.top.items(), key=lambda kv: -kv[1])[:TOP_CATEGORIES])
        if base is not None and self.counts is not None:
            self.counts = categorical_counts(base, vc, self.counts)

    def merge(self, other: ColumnStats) -> ColumnStats:
        out = ColumnStats(self.name, self.kind, self.n + other.n, self.missing + other.missing)
        out.counts = _add_lists(self.counts, other.counts)
        out.fine_counts = _add_lists(self.fine_counts, other.fine_counts)
        out.total, out.total_sq = self.total + other.total, self.total_sq + other.total_sq
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        out.min, out.max = (min(mins) if mins else None), (max(maxs) if maxs else None)
        out.top = dict(self.top)
        for k, v in other.top.items():
            out.top[k] = out.top.get(k, 0) + v
        return out

    @property
    def present(self) -> int:
        return self.n - self.missing

    @property
    def mean(self) -> float | None:
        return self.total / self.present if self.present else None

    @property
    def std(self) -> float | None:
        if not self.present:
            return None
        m = self.total / self.present
        return float(np.sqrt(max(self.total_sq / self.present - m * m, 0.0)))

    @property
    def missing_rate(self) -> float | None:
        return self.missing / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnStats:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def categorical_counts(base: ColumnBaseline, value_counts: pd.Series, into: list[int]) -> list[int]:
    """Add value counts to counts aligned to the baseline's categories (+ one unseen slot)."""
    index = {c: i for i, c in enumerate(base.categories)}
    other = index.get(OTHER)
    out = list(into)
    for key, count in value_counts.items():
        i = index.get(str(key))
        if i is None:
            i = other if other is not None else len(base.categories)
        out[i] += int(count)
    return out


def _add_lists(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    if a is None:
        return list(b) if b is not None else None
    if b is None:
        return list(a)
    return (np.asarray(a) + np.asarray(b)).tolist()


def compare(base: ColumnBaseline, cur: ColumnStats, eps: float = S.PSI_EPSILON) -> dict[str, Any]:
    """Drift of one column's current statistics against its baseline (from bins only)."""
    out: dict[str, Any] = {"column": base.name, "kind": base.kind, "n_ref": base.n, "n_cur": cur.n,
                           "missing_ref": base.missing / base.n if base.n else None,
                           "missing_cur": cur.missing_rate}
    if cur.n == 0 or cur.counts is None:
        return {**out, "psi": None, "js": None, "ks": None, "wasserstein": None}
    e, a = np.asarray(base.counts, dtype=float), np.asarray(cur.counts, dtype=float)
    if base.kind == "categorical":
        e = np.append(e, 0.0)  # the unseen slot
        if a[-1] == 0:
            e, a = e[:-1], a[:-1]
    else:
        a = a[: len(e)]
    if base.missing or cur.missing:
        e, a = np.append(e, base.missing), np.append(a, cur.missing)
    out["psi"] = float(S.psi_from_counts(e, a, eps))
    out["js"] = float(S.js_from_counts(e, a))
    if base.kind == "numeric" and cur.fine_counts is not None and cur.present and base.min is not None:
        ks, wd = S.binned_ks_wasserstein(np.asarray(base.fine_edges), np.asarray(base.fine_counts),
                                         np.asarray(cur.fine_counts), min(base.min, cur.min or base.min),
                                         max(base.max or 0.0, cur.max or base.max or 0.0))
        out["ks"] = ks
        out["wasserstein"] = float(S.wasserstein_norm(wd, base.std or 0.0))
    else:
        out["ks"] = out["wasserstein"] = None
    if base.kind == "categorical":
        stat, p, dof = S.chi2_contingency(e[: len(base.categories)] if len(e) else e,
                                          a[: len(base.categories)] if len(a) else a)
        out.update(chi2=stat, chi2_pvalue=p, chi2_dof=dof)
    return out
