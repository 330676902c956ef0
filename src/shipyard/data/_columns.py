"""Column-wise statistics for the data-quality profile (NumPy / Arrow, no row loops).

Each numeric column is sorted once; quantiles, distinct count, top values, IQR outliers and the
histogram are all read off the sorted array. String columns go through Arrow's dictionary encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.risk.woe import woe_iv

_CHUNK = 65536
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass
class ColumnProfile:
    """Everything the profile knows about one column (see ``docs/risk-metrics.md`` for definitions)."""

    name: str
    dtype: str
    kind: str  # numeric | boolean | categorical | text | datetime
    n: int
    missing: int
    distinct: int
    stats: dict[str, Any] = field(default_factory=dict)
    top_values: list[dict[str, Any]] = field(default_factory=list)
    histogram: dict[str, list[float]] | None = None
    flags: list[str] = field(default_factory=list)
    target: dict[str, Any] | None = None  # {"iv": float, "bins": [...]} with a binary target

    @property
    def missing_rate(self) -> float:
        return self.missing / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "n": self.n,
            "missing": self.missing,
            "missing_rate": self.missing_rate,
            "distinct": self.distinct,
            "stats": self.stats,
            "top_values": self.top_values,
            "histogram": self.histogram,
            "flags": self.flags,
            "target": self.target,
        }


_FLOAT_NAMES = {"halffloat": "float16", "float": "float32", "double": "float64"}


def plain_type(t: pa.DataType) -> str:
    """The type name a report shows: ``string`` for every Arrow string layout (``large_string`` is
    how pandas' text columns arrive), ``float64`` rather than ``double``, ``timestamp``/``date``
    without the storage unit, so the same data reads alike from any source."""
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_floating(t):
        return _FLOAT_NAMES.get(str(t), str(t))
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_timestamp(t):
        return f"timestamp ({t.tz})" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_duration(t):
        return "duration"
    return str(t).replace("large_string", "string").replace("large_list", "list")


def _quantile_sorted(xs: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles of an already sorted array (same as ``np.quantile``)."""
    pos = (len(xs) - 1) * qs
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(xs) - 1)
    frac = pos - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def woe_iv_table(bad: np.ndarray, total: np.ndarray, labels: list[Any], n_bad: int, n_good: int
                 ) -> dict[str, Any]:
    """Per-bin count, bad rate, WOE and IV term by :func:`shipyard.risk.woe.woe_iv` (the one WOE/IV
    definition, shared with the binning toolkit); bins without rows are left out of the list."""
    bad = bad.astype(float)
    good = total.astype(float) - bad
    woe, ivs = woe_iv(bad, good, float(n_bad), float(n_good))
    keep = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, bad / np.maximum(total, 1), np.nan)
    bins = [
        {"bin": labels[i], "count": int(total[i]), "bad": int(bad[i]), "bad_rate": float(rate[i]),
         "woe": float(woe[i]), "iv": float(ivs[i])}
        for i in np.flatnonzero(keep)
    ]
    return {"iv": float(ivs.sum()), "bins": bins}


def numeric_profile(
    name: str,
    x: np.ndarray,
    *,
    dtype: str,
    kind: str = "numeric",
    y: np.ndarray | None = None,
    target_bins: int = 10,
    hist_bins: int = 20,
    top_k: int = 10,
) -> ColumnProfile:
    """Profile a float array (NaN = missing; ±inf counted separately and left out of the moments)."""
    n = len(x)
    na = np.isnan(x)
    inf = np.isinf(x)
    n_missing, n_inf = int(na.sum()), int(inf.sum())
    finite = x[~(na | inf)] if (n_missing or n_inf) else x
    xs = np.sort(finite, kind="quicksort")
    m = len(xs)
    prof = ColumnProfile(name, dtype, kind, n, n_missing, 0)
    if m == 0:
        prof.distinct = int(len(np.unique(x[inf]))) if n_inf else 0
        prof.stats = {"infinite": n_inf}
        return prof
    change = np.flatnonzero(xs[1:] != xs[:-1]) + 1
    starts = np.concatenate([[0], change])
    run = np.diff(np.concatenate([starts, [m]]))
    prof.distinct = len(starts) + len(np.unique(x[inf]))
    qv = _quantile_sorted(xs, np.asarray(QUANTILES))
    q1, q3 = qv[2], qv[4]
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    outliers = int(np.searchsorted(xs, lo_fence, "left") + (m - np.searchsorted(xs, hi_fence, "right")))
    mean = float(finite.mean())
    std = float(finite.std(ddof=1)) if m > 1 else float("nan")
    prof.stats = {
        "min": float(xs[0]),
        "max": float(xs[-1]),
        "mean": mean,
        "std": std,
        **{f"p{int(round(q * 100))}": float(v) for q, v in zip(QUANTILES, qv, strict=True)},
        "iqr": float(iqr),
        "zeros": int(np.searchsorted(xs, 0.0, "right") - np.searchsorted(xs, 0.0, "left")),
        "negatives": int(np.searchsorted(xs, 0.0, "left")),
        "infinite": n_inf,
        "outliers_iqr": outliers,
        "outlier_rate": outliers / n,
        "outlier_fences": [float(lo_fence), float(hi_fence)],
    }
    k = min(top_k, len(run))
    top = np.argpartition(-run, k - 1)[:k] if len(run) > k else np.arange(len(run))
    top = top[np.lexsort((xs[starts[top]], -run[top]))]
    prof.top_values = [{"value": float(xs[starts[i]]), "count": int(run[i]), "share": float(run[i] / n)}
                       for i in top]
    edges = np.linspace(xs[0], xs[-1], hist_bins + 1) if xs[-1] > xs[0] else np.array([xs[0], xs[0] + 1.0])
    cum = np.searchsorted(xs, edges[1:-1], "right")
    counts = np.diff(np.concatenate([[0], cum, [m]]))
    prof.histogram = {"edges": edges.tolist(), "counts": counts.astype(int).tolist()}
    if y is not None:
        prof.target = numeric_target(x, xs, na, y, target_bins)
    return prof


def bin_index(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the right-closed bin ``(e[k-1], e[k]]`` holding each x (= ``searchsorted(edges, x,
    "left")``); for a few edges, counting ``x > e`` is several times faster than a binary search."""
    if len(edges) > 32:
        return np.searchsorted(edges, x, "left")
    idx = np.zeros(len(x), dtype=np.intp)
    for e in edges:
        idx += x > e
    return idx


def numeric_target(x: np.ndarray, xs: np.ndarray, na: np.ndarray, y: np.ndarray, nbins: int
                    ) -> dict[str, Any]:
    """Quantile binning for target rate and IV: inner edges at the k/nbins quantiles (duplicates
    dropped), right-closed bins, plus a ``missing`` bin when there are missing values (infinities
    fall in the outer bins)."""
    edges = np.unique(_quantile_sorted(xs, np.arange(1, nbins) / nbins))
    idx = bin_index(edges, x)
    nb = len(edges) + 1
    idx = np.where(na, nb, idx)
    total = np.bincount(idx, minlength=nb + 1)
    bad = np.bincount(idx, weights=y, minlength=nb + 1)
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    labels: list[Any] = [f"({full[i]:.6g}, {full[i + 1]:.6g}]" for i in range(nb)] + ["missing"]
    n_bad = int(y.sum())
    out = woe_iv_table(bad, total, labels, n_bad, len(y) - n_bad)
    out["edges"] = edges.tolist()
    return out


def categorical_profile(
    name: str,
    arr: pa.ChunkedArray | pa.Array,
    *,
    dtype: str,
    y: np.ndarray | None = None,
    top_k: int = 10,
    target_categories: int = 20,
) -> ColumnProfile:
    """Profile a string-like Arrow column via dictionary encoding (nulls = missing)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
            or pa.types.is_dictionary(arr.type)):
        arr = pc.cast(arr, pa.string())
    enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    n = len(enc)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    valid = np.asarray(enc.is_valid())
    n_missing = int(n - valid.sum())
    dictionary = enc.dictionary.to_pylist()
    nd = len(dictionary)
    codes = np.where(valid, np.nan_to_num(idx, nan=0), nd).astype(np.int64)
    counts = np.bincount(codes, minlength=nd + 1)[:nd]
    present = counts > 0
    prof = ColumnProfile(name, dtype, "categorical", n, n_missing, int(present.sum()))
    order = np.lexsort((np.array([str(d) for d in dictionary], dtype=object).astype(str), -counts))
    order = order[present[order]]
    prof.top_values = [{"value": dictionary[i], "count": int(counts[i]), "share": float(counts[i] / n)}
                       for i in order[:top_k]]
    lengths = pc.utf8_length(enc.dictionary).to_numpy(zero_copy_only=False) if nd else np.zeros(0)
    if nd:
        w = counts.astype(float)
        prof.stats = {
            "min_length": int(lengths[present].min()),
            "max_length": int(lengths[present].max()),
            "mean_length": float((lengths * w).sum() / max(w.sum(), 1)),
            "empty_strings": int(counts[np.flatnonzero(lengths == 0)].sum()),
        }
    if y is not None:
        keep = order[:target_categories]
        group = np.full(nd + 1, len(keep), dtype=np.int64)  # others
        group[keep] = np.arange(len(keep))
        group[nd] = len(keep) + 1  # missing
        g = group[codes]
        total = np.bincount(g, minlength=len(keep) + 2)
        bad = np.bincount(g, weights=y, minlength=len(keep) + 2)
        labels = [dictionary[i] for i in keep] + ["other", "missing"]
        n_bad = int(y.sum())
        prof.target = woe_iv_table(bad, total, labels, n_bad, len(y) - n_bad)
    return prof


def datetime_profile(name: str, arr: pa.ChunkedArray, *, dtype: str) -> ColumnProfile:
    """Missing, distinct, min and max of a temporal column."""
    n = len(arr)
    missing = arr.null_count
    prof = ColumnProfile(name, dtype, "datetime", n, missing, int(pc.count_distinct(arr).as_py()))
    if missing < n:
        mm = pc.min_max(arr)
        prof.stats = {"min": str(mm["min"].as_py()), "max": str(mm["max"].as_py())}
    return prof


def pairwise_corr(columns: list[np.ndarray]) -> np.ndarray:
    """See :func:`_pairwise_corr`; BLAS runs single-threaded here (threaded OpenBLAS is many times
    slower on these tall-and-thin products, especially on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return _pairwise_corr(columns)
    with threadpool_limits(limits=1, user_api="blas"):
        return _pairwise_corr(columns)


def _pairwise_corr(columns: list[np.ndarray]) -> np.ndarray:
    """Pearson correlation with pairwise-complete observations (like ``DataFrame.corr()``).

    NaN marks a missing value; each pair uses the rows where both columns are present. Columns are
    mean-centred with missing values zeroed, so one matrix product gives all cross sums; the
    per-pair sums and counts that missing values change come from thin products with the masks of
    the columns that have any missing value.
    """
    p = len(columns)
    if p == 0:
        return np.zeros((0, 0))
    n_rows = len(columns[0])
    Z = np.empty((p, n_rows))
    miss_cols: list[int] = []
    masks: list[np.ndarray] = []
    for i, x in enumerate(columns):
        na = np.isnan(x)
        if na.any():
            miss_cols.append(i)
            masks.append(~na)
            mu = x[~na].mean() if (~na).any() else 0.0
            np.subtract(x, mu, out=Z[i])
            Z[i][na] = 0.0
        else:
            np.subtract(x, x.mean(), out=Z[i])
    # Products are accumulated over row blocks: one BLAS call on a (p × millions) matrix is far
    # slower with threaded OpenBLAS than the same flops in cache-sized blocks.
    sxy = np.zeros((p, p))
    for a in range(0, n_rows, _CHUNK):
        blk = Z[:, a:a + _CHUNK]
        sxy += blk @ blk.T
    colsum = Z.sum(axis=1)
    colsq = np.diag(sxy).copy()
    cnt = np.full(p, float(n_rows))
    sx = np.repeat(colsum[:, None], p, axis=1)  # sx[i, j] = Σ z_i over rows where j is present
    sxx = np.repeat(colsq[:, None], p, axis=1)
    n = np.full((p, p), float(n_rows))
    if miss_cols:
        mc = np.asarray(miss_cols)
        k = len(mc)
        s1, s2, nn = np.empty((p, k)), np.empty((p, k)), np.zeros((k, k))
        for j, m in enumerate(masks):
            absent = np.flatnonzero(~m)
            if len(absent) <= n_rows // 2:  # subtract the few rows where column j is missing
                sub = Z[:, absent]
                s1[:, j] = colsum - sub.sum(axis=1)
                s2[:, j] = colsq - np.einsum("ij,ij->i", sub, sub)
            else:
                sub = Z[:, np.flatnonzero(m)]
                s1[:, j] = sub.sum(axis=1)
                s2[:, j] = np.einsum("ij,ij->i", sub, sub)
        for a in range(0, n_rows, _CHUNK):
            mb = np.vstack([m[a:a + _CHUNK] for m in masks]).astype(np.float64)
            nn += mb @ mb.T
        cnt[mc] = np.diag(nn)
        sx[:, mc] = s1
        sxx[:, mc] = s2
        n[:, mc] = cnt[mc][None, :]
        n[mc, :] = cnt[mc][:, None]
        n[np.ix_(mc, mc)] = nn
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sx.T / n
        vi = sxx - sx * sx / n
        corr = cov / np.sqrt(vi * vi.T)
    corr = np.clip(corr, -1.0, 1.0)
    corr[n < 2] = np.nan
    return corr
