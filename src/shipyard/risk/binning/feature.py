"""One variable's bins: fitting (numeric and categorical), applying, and the JSON form.

Bin layout of a fitted variable (the index returned by :meth:`FeatureBins.bin_index`):

``0 .. R-1``
    regular bins. Numeric: ``R = len(cuts) + 1`` left-closed intervals
    ``(-inf, c1), [c1, c2), ..., [ck, +inf)`` that cover the whole real line (``±inf`` seen at
    transform time fall into the outer bins). Categorical: one bin per group of categories.
``R .. R+S-1``
    one bin per declared special value, in the order declared.
``R+S``
    the missing-value bin (NaN/None), present even when no value was missing at fit time.
``R+S+1`` (categorical only)
    the unseen-category bin: categories not seen at fit time. It holds no fit rows, so its WOE
    is 0 (neutral evidence) by the empty-bin rule of :mod:`shipyard.risk.woe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.risk.binning import methods
from shipyard.risk.binning.optimal import optimal
from shipyard.risk.woe import woe_iv


@dataclass
class BinningParams:
    method: str = "optimal"
    max_bins: int = 10
    min_bin_share: float = 0.05
    max_prebins: int = 100
    monotonic: str | None = "auto"
    chi_threshold: float = 3.841
    rare_share: float = 0.01


@dataclass
class FeatureBins:
    name: str
    kind: str  # "numeric" | "categorical"
    cuts: list[float] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    special_values: list[Any] = field(default_factory=list)
    method: str = "manual"
    bad: np.ndarray = field(default_factory=lambda: np.zeros(0))
    good: np.ndarray = field(default_factory=lambda: np.zeros(0))
    woe: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iv_bins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # rare categories that share a bin with others: {"category", "share", "bin", "reason"} each
    merged: list[dict[str, Any]] = field(default_factory=list)
    iv_unmerged: float | None = None  # IV with one bin per category, when some were merged
    _lookup: pd.Index | None = field(default=None, repr=False, compare=False)
    _lookup_bins: np.ndarray | None = field(default=None, repr=False, compare=False)
    _lookup_dict: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _cuts_arr: np.ndarray | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ layout
    @property
    def n_regular(self) -> int:
        return len(self.cuts) + 1 if self.kind == "numeric" else len(self.groups)

    @property
    def missing_bin(self) -> int:
        return self.n_regular + len(self.special_values)

    @property
    def n_bins(self) -> int:
        return self.missing_bin + (2 if self.kind == "categorical" else 1)

    @property
    def iv(self) -> float:
        return float(np.sum(self.iv_bins))

    def labels(self) -> list[str]:
        out: list[str] = []
        if self.kind == "numeric":
            edges = [-np.inf, *self.cuts, np.inf]
            out = [f"[{edges[i]:.6g}, {edges[i + 1]:.6g})" for i in range(len(edges) - 1)]
        else:
            out = [",".join(g) for g in self.groups]
        out += [f"special: {v}" for v in self.special_values]
        out.append("missing")
        if self.kind == "categorical":
            out.append("unseen")
        return out

    # ------------------------------------------------------------------ apply
    def _prepare(self) -> None:
        if self.kind == "numeric":
            self._cuts_arr = np.asarray(self.cuts, dtype=np.float64)
        else:
            keys: list[str] = []
            bins: list[int] = []
            for b, grp in enumerate(self.groups):
                keys.extend(grp)
                bins.extend([b] * len(grp))
            for k, v in enumerate(self.special_values):
                keys.append(str(v))
                bins.append(self.n_regular + k)
            self._lookup = pd.Index(keys, dtype=object)
            self._lookup_dict = dict(zip(keys, bins, strict=True))
            self._lookup_bins = np.asarray(bins + [self.missing_bin + 1], dtype=np.int64)

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin index of every value (numeric: float array with NaN for missing; categorical: object
        array). Vectorised: ``searchsorted`` for numeric, one hash lookup for categorical."""
        if self._cuts_arr is None and self._lookup is None:
            self._prepare()
        if self.kind == "numeric":
            x = values
            cuts = self._cuts_arr
            if len(cuts) <= 64:
                # number of cuts <= x, by one comparison per cut: many times faster than a binary
                # search over unsorted data when there are few cuts (NaN compares False)
                idx = np.zeros(len(x), dtype=np.int16)
                for c in cuts:
                    idx += x >= c
            else:
                idx = np.searchsorted(cuts, x, side="right")
            for k, v in enumerate(self.special_values):
                idx[x == v] = self.n_regular + k
            idx[np.isnan(x)] = self.missing_bin
            return idx
        if len(values) <= SMALL_BATCH:
            # a few rows (online scoring): plain dict lookups beat building a pandas index
            unseen = self.missing_bin + 1
            table = self._lookup_dict
            return np.fromiter(
                (self.missing_bin if _is_missing(v) else table.get(v if isinstance(v, str) else str(v), unseen)
                 for v in values), dtype=np.int64, count=len(values))
        miss = pd.isna(values)
        pos = self._lookup.get_indexer(_as_str(values))
        idx = self._lookup_bins[pos]  # -1 picks the trailing "unseen" entry
        idx[miss] = self.missing_bin
        return idx

    def set_counts(self, bad: np.ndarray, good: np.ndarray, sign: str, smoothing: float,
                   total_bad: float, total_good: float) -> None:
        self.bad = np.asarray(bad, dtype=np.float64)
        self.good = np.asarray(good, dtype=np.float64)
        self.woe, self.iv_bins = woe_iv(self.bad, self.good, total_bad, total_good, sign, smoothing)  # type: ignore[arg-type]

    def refit_counts(self, values: np.ndarray, y: np.ndarray, sign: str, smoothing: float,
                     total_bad: float, total_good: float) -> None:
        idx = self.bin_index(values)
        nb = self.n_bins
        n = np.bincount(idx, minlength=nb).astype(np.float64)
        self.bad = np.bincount(idx, weights=y, minlength=nb)
        self.good = n - self.bad
        self.woe, self.iv_bins = woe_iv(self.bad, self.good, total_bad, total_good, sign, smoothing)  # type: ignore[arg-type]

    def note_merged(self, values: np.ndarray, y: np.ndarray, n_total: int, min_bin_share: float,
                    rare_share: float, sign: str, smoothing: float, total_bad: float, total_good: float) -> None:
        """Record the categories too rare for a bin of their own that share one with others.

        ``values``/``y``: the regular (not missing, not special) values as text and their targets.
        A category below ``min_bin_share`` of all rows cannot be a bin of its own; one below
        ``rare_share`` was pooled before grouping. ``iv_unmerged`` is the IV with one bin per
        category (the special and missing bins as fitted), so the cost of merging can be read off."""
        self.merged, self.iv_unmerged = [], None
        if self.kind != "categorical" or len(values) == 0:
            return
        codes, names = pd.factorize(values, sort=True)
        n = np.bincount(codes, minlength=len(names)).astype(np.float64)
        b = np.bincount(codes, weights=y, minlength=len(names))
        share = n / n_total
        labels = self.labels()
        group_of = {c: g for g, grp in enumerate(self.groups) for c in grp}
        for i, name in enumerate(str(v) for v in names):
            g = group_of.get(name)
            if g is None or len(self.groups[g]) < 2 or share[i] >= max(min_bin_share, rare_share):
                continue
            self.merged.append({"category": name, "share": float(share[i]), "bin": labels[g],
                                "reason": "rare_share" if share[i] < rare_share else "min_bin_share"})
        if self.merged:
            r = self.n_regular
            _, iv = woe_iv(np.concatenate([b, self.bad[r:]]), np.concatenate([n - b, self.good[r:]]),
                           total_bad, total_good, sign, smoothing)  # type: ignore[arg-type]
            self.iv_unmerged = float(iv.sum())

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        labels = self.labels()
        kinds = (["regular"] * self.n_regular + ["special"] * len(self.special_values) + ["missing"]
                 + (["unseen"] if self.kind == "categorical" else []))
        bins = [
            {"label": labels[i], "kind": kinds[i], "count": int(self.bad[i] + self.good[i]),
             "bad": int(self.bad[i]), "good": int(self.good[i]), "woe": float(self.woe[i]),
             "iv": float(self.iv_bins[i])}
            for i in range(self.n_bins)
        ]
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "method": self.method}
        if self.kind == "numeric":
            d["cuts"] = [float(c) for c in self.cuts]
            d["special_values"] = [float(v) for v in self.special_values]
        else:
            d["groups"] = [list(g) for g in self.groups]
            d["special_values"] = [str(v) for v in self.special_values]
        d["iv"] = self.iv
        if self.merged:
            d["merged"] = {"iv_unmerged": self.iv_unmerged, "categories": [dict(m) for m in self.merged]}
        d["bins"] = bins
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureBins:
        try:
            bins = d["bins"]
            fb = cls(
                name=str(d["name"]), kind=str(d["kind"]), method=str(d.get("method", "manual")),
                cuts=[float(c) for c in d.get("cuts", [])],
                groups=[[str(v) for v in g] for g in d.get("groups", [])],
                special_values=list(d.get("special_values", [])),
                bad=np.array([b["bad"] for b in bins], dtype=np.float64),
                good=np.array([b["good"] for b in bins], dtype=np.float64),
                woe=np.array([b["woe"] for b in bins], dtype=np.float64),
                iv_bins=np.array([b["iv"] for b in bins], dtype=np.float64),
            )
            merged = d.get("merged") or {}
            fb.merged = [dict(m) for m in merged.get("categories", [])]
            fb.iv_unmerged = None if merged.get("iv_unmerged") is None else float(merged["iv_unmerged"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"binning spec for feature {d.get('name')!r} is malformed: {exc}",
                               {"field": "features"}) from exc
        if fb.kind not in ("numeric", "categorical") or len(bins) != fb.n_bins:
            raise InvalidInput(
                f"binning spec for feature {fb.name!r}: kind must be numeric/categorical and 'bins' "
                f"must list {fb.n_bins} bins", {"field": "features", "feature": fb.name})
        return fb


#: Up to this many rows, categorical bins are looked up row by row instead of through a pandas index.
SMALL_BATCH = 32


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT


def _as_str(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([v if isinstance(v, str) else str(v) for v in values], dtype=object)
    return values.astype(str).astype(object)


# ---------------------------------------------------------------------- pre-binning
def counts_sorted(xs: np.ndarray, xb: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bad, good) counts of the bins ``(-inf, c1), [c1, c2), ..., [ck, inf)`` from the sorted values
    ``xs`` and the sorted values of the bad rows ``xb`` (a few binary searches, no pass over rows)."""
    at = np.concatenate([[0], np.searchsorted(xs, cuts, side="left"), [len(xs)]])
    atb = np.concatenate([[0], np.searchsorted(xb, cuts, side="left"), [len(xb)]])
    bad = np.diff(atb).astype(np.float64)
    return bad, np.diff(at).astype(np.float64) - bad


def prebin_numeric(xs: np.ndarray, xb: np.ndarray, max_prebins: int):
    """Candidate cut points and (bad, good) counts of up to ``max_prebins`` pre-bins, from the sorted
    values ``xs`` and sorted bad-row values ``xb``.

    Few distinct values: one pre-bin per value, cuts at midpoints. Otherwise: equal-frequency
    quantiles (data values; ties collapse)."""
    change = xs[1:] != xs[:-1]
    if np.count_nonzero(change) < max_prebins:
        distinct = xs[np.concatenate([[True], change])]
        mid = (distinct[:-1] + distinct[1:]) / 2.0
        edges = np.where(mid > distinct[:-1], mid, distinct[1:])
    else:
        pos = (np.arange(1, max_prebins) * len(xs)) // max_prebins
        edges = np.unique(xs[pos])
        edges = edges[edges > xs[0]]
    bad, good = counts_sorted(xs, xb, edges)
    return edges, bad, good


def select_boundaries(bad: np.ndarray, good: np.ndarray, p: BinningParams, n_total: int,
                      total_bad: float, total_good: float, categorical: bool = False) -> list[int]:
    """Run the chosen table method; returns boundary positions into the pre-bin table."""
    min_n = p.min_bin_share * n_total
    m = p.method
    if m == "tree":
        return methods.tree(bad, good, p.max_bins, min_n)
    if m == "chimerge":
        return methods.chimerge(bad, good, p.max_bins, min_n, p.chi_threshold)
    if m == "mdlp":
        return methods.mdlp(bad, good, min_n, p.max_bins)
    if m == "caim":
        return methods.caim(bad, good, p.max_bins, min_n)
    if m == "monotonic":
        direction = "ascending" if categorical else (p.monotonic or "auto")
        return methods.monotonic(bad, good, direction, p.max_bins, min_n)
    # optimal (also used for categorical variables with equal-width/equal-frequency methods)
    trend = None if categorical else p.monotonic
    return optimal(bad, good, p.max_bins, min_n, trend, total_bad, total_good)


def fit_numeric_cuts(xs: np.ndarray, xb: np.ndarray, p: BinningParams, n_total: int,
                     total_bad: float, total_good: float) -> list[float]:
    """Cut points for the regular (non-missing, non-special) values of one variable, given sorted
    (``xs``) and sorted bad-row (``xb``) values."""
    if len(xs) == 0:
        return []
    if p.method == "equal_width":
        lo, hi = float(xs[0]), float(xs[-1])
        if lo == hi:
            return []
        return [float(c) for c in np.unique(np.linspace(lo, hi, p.max_bins + 1)[1:-1])]
    if p.method == "equal_freq":
        pos = (np.arange(1, p.max_bins) * len(xs)) // p.max_bins
        edges = np.unique(xs[pos])
        return [float(c) for c in edges[edges > xs[0]]]
    edges, bad, good = prebin_numeric(xs, xb, p.max_prebins)
    if len(edges) == 0:
        return []
    bounds = select_boundaries(bad, good, p, n_total, total_bad, total_good)
    return [float(edges[b - 1]) for b in bounds]


def fit_categorical_groups(v: np.ndarray, y: np.ndarray, p: BinningParams, n_total: int,
                           total_bad: float, total_good: float) -> list[list[str]]:
    """Groups of categories: rare categories (share < ``rare_share``) pooled, the rest ordered by
    bad rate (ties by name), then adjacent categories grouped by the chosen method."""
    if len(v) == 0:
        return []
    codes, uniques = pd.factorize(v, sort=True)
    names = np.asarray(uniques, dtype=object)
    n = np.bincount(codes, minlength=len(names)).astype(np.float64)
    b = np.bincount(codes, weights=y, minlength=len(names))
    rare = n < p.rare_share * n_total
    units: list[list[str]] = [[str(names[i])] for i in np.flatnonzero(~rare)]
    ub = list(b[~rare])
    un = list(n[~rare])
    if rare.any():
        units.append([str(s) for s in names[rare]])
        ub.append(float(b[rare].sum()))
        un.append(float(n[rare].sum()))
    ub_a, un_a = np.array(ub), np.array(un)
    rate = ub_a / un_a
    order = sorted(range(len(units)), key=lambda i: (rate[i], units[i][0]))
    units = [units[i] for i in order]
    ub_a, un_a = ub_a[order], un_a[order]
    if len(units) == 1:
        return units
    bounds = select_boundaries(ub_a, un_a - ub_a, p, n_total, total_bad, total_good, categorical=True)
    edges = [0, *bounds, len(units)]
    return [[c for u in units[edges[i]:edges[i + 1]] for c in u] for i in range(len(edges) - 1)]
