"""Binning algorithms that work on a small count table of ordered pre-bins.

Every function takes per-pre-bin ``bad`` and ``good`` counts (ordered: by value for numeric
variables, by bad rate for categorical ones) and returns the sorted *boundary positions*: a
boundary ``p`` (``1 <= p < m``) means a cut between pre-bin ``p - 1`` and pre-bin ``p``.
Working on at most a few hundred pre-bins keeps every method fast regardless of the row count.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from shipyard.risk.woe import iv_terms


def _cum(bad: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cb = np.concatenate([[0.0], np.cumsum(bad, dtype=np.float64)])
    cg = np.concatenate([[0.0], np.cumsum(good, dtype=np.float64)])
    return cb, cg


def _split_candidates(cb: np.ndarray, cg: np.ndarray, s: int, e: int):
    p = np.arange(s + 1, e)
    lb, lg = cb[p] - cb[s], cg[p] - cg[s]
    rb, rg = cb[e] - cb[p], cg[e] - cg[p]
    return p, lb, lg, rb, rg


# --------------------------------------------------------------------------- CART (gini, best first)
def tree(bad: np.ndarray, good: np.ndarray, max_bins: int, min_n: float) -> list[int]:
    """Best-first CART on gini impurity: split the leaf with the largest impurity decrease until
    ``max_bins`` leaves exist or no split with both children ``>= min_n`` rows improves purity."""
    cb, cg = _cum(bad, good)
    m = len(bad)

    def best(s: int, e: int) -> tuple[float, int]:
        if e - s < 2:
            return 0.0, -1
        p, lb, lg, rb, rg = _split_candidates(cb, cg, s, e)
        ln, rn = lb + lg, rb + rg
        b, g = cb[e] - cb[s], cg[e] - cg[s]
        parent = 2.0 * b * g / (b + g)
        with np.errstate(divide="ignore", invalid="ignore"):
            child = np.where(ln > 0, 2.0 * lb * lg / ln, 0.0) + np.where(rn > 0, 2.0 * rb * rg / rn, 0.0)
        gain = np.where((ln >= min_n) & (rn >= min_n) & (ln > 0) & (rn > 0), parent - child, -np.inf)
        k = int(np.argmax(gain))
        return float(gain[k]), int(p[k])

    cuts: list[int] = []
    heap: list[tuple[float, int, int, int]] = []
    g0, p0 = best(0, m)
    heapq.heappush(heap, (-g0, 0, m, p0))
    leaves = 1
    while heap and leaves < max_bins:
        neg, s, e, p = heapq.heappop(heap)
        if p < 0 or -neg <= 1e-12:
            continue
        cuts.append(p)
        leaves += 1
        for a, z in ((s, p), (p, e)):
            gg, pp = best(a, z)
            heapq.heappush(heap, (-gg, a, z, pp))
    return sorted(cuts)


# --------------------------------------------------------------------------- ChiMerge
def _chi2_adjacent(b: np.ndarray, g: np.ndarray) -> np.ndarray:
    b1, b2, g1, g2 = b[:-1], b[1:], g[:-1], g[1:]
    n1, n2 = b1 + g1, b2 + g2
    n = n1 + n2
    cb, cg = b1 + b2, g1 + g2
    out = np.zeros(len(b1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for obs, row, col in ((b1, n1, cb), (g1, n1, cg), (b2, n2, cb), (g2, n2, cg)):
            exp = row * col / n
            out += np.where(exp > 0, (obs - exp) ** 2 / exp, 0.0)
    return out


def chimerge(bad: np.ndarray, good: np.ndarray, max_bins: int, min_n: float, threshold: float) -> list[int]:
    """Bottom-up ChiMerge: merge the adjacent pair with the smallest chi-square statistic while it is
    below ``threshold`` (3.841 = 95% for one degree of freedom) or more than ``max_bins`` bins remain;
    bins smaller than ``min_n`` are merged first, into the neighbour they are least different from."""
    b = np.asarray(bad, dtype=np.float64).copy()
    g = np.asarray(good, dtype=np.float64).copy()
    bounds = np.arange(1, len(b))
    while len(b) > 1:
        chi = _chi2_adjacent(b, g)
        n = b + g
        if n.min() < min_n:
            i = int(np.argmin(n))
            if i == 0:
                j = 0
            elif i == len(b) - 1:
                j = i - 1
            else:
                j = i - 1 if chi[i - 1] <= chi[i] else i
        elif len(b) > max_bins or chi.min() < threshold:
            j = int(np.argmin(chi))
        else:
            break
        b[j] += b[j + 1]
        g[j] += g[j + 1]
        b = np.delete(b, j + 1)
        g = np.delete(g, j + 1)
        bounds = np.delete(bounds, j)
    return [int(v) for v in bounds]


# --------------------------------------------------------------------------- MDLP
def _entropy(b: np.ndarray | float, g: np.ndarray | float) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    n = b + g
    with np.errstate(divide="ignore", invalid="ignore"):
        pb, pg = b / n, g / n
        h = -(np.where(pb > 0, pb * np.log2(pb), 0.0) + np.where(pg > 0, pg * np.log2(pg), 0.0))
    return np.where(n > 0, h, 0.0)


def mdlp(bad: np.ndarray, good: np.ndarray, min_n: float = 0.0, max_bins: int | None = None) -> list[int]:
    """Fayyad–Irani MDLP: recursively take the cut with the lowest class entropy and keep it only
    if its information gain exceeds ``(log2(N-1) + delta) / N`` with
    ``delta = log2(3**k - 2) - (k*Ent(S) - k1*Ent(S1) - k2*Ent(S2))``."""
    cb, cg = _cum(bad, good)
    cuts: list[int] = []

    def rec(s: int, e: int) -> None:
        if e - s < 2:
            return
        p, lb, lg, rb, rg = _split_candidates(cb, cg, s, e)
        ln, rn = lb + lg, rb + rg
        b, g = cb[e] - cb[s], cg[e] - cg[s]
        n = b + g
        valid = (ln >= max(min_n, 1)) & (rn >= max(min_n, 1))
        if not valid.any():
            return
        el, er = _entropy(lb, lg), _entropy(rb, rg)
        split_ent = np.where(valid, (ln * el + rn * er) / n, np.inf)
        k = int(np.argmin(split_ent))
        ent = float(_entropy(b, g))
        gain = ent - float(split_ent[k])
        ks = int(b > 0) + int(g > 0)
        k1 = int(lb[k] > 0) + int(lg[k] > 0)
        k2 = int(rb[k] > 0) + int(rg[k] > 0)
        delta = math.log2(3**ks - 2) - (ks * ent - k1 * float(el[k]) - k2 * float(er[k]))
        if gain > (math.log2(n - 1) + delta) / n:
            cuts.append(int(p[k]))
            rec(s, int(p[k]))
            rec(int(p[k]), e)

    rec(0, len(bad))
    cuts.sort()
    if max_bins is not None and len(cuts) + 1 > max_bins:
        cuts = chimerge_bounds(bad, good, cuts, max_bins)
    return cuts


def chimerge_bounds(bad: np.ndarray, good: np.ndarray, cuts: list[int], max_bins: int) -> list[int]:
    """Reduce a boundary list to ``max_bins`` bins by merging the most similar neighbours (chi-square)."""
    cb, cg = _cum(bad, good)
    edges = np.array([0, *cuts, len(bad)])
    b, g = np.diff(cb[edges]), np.diff(cg[edges])
    sub = chimerge(b, g, max_bins, 0.0, 0.0)
    return [int(edges[i]) for i in sub]


# --------------------------------------------------------------------------- CAIM
def caim(bad: np.ndarray, good: np.ndarray, max_bins: int, min_n: float = 0.0) -> list[int]:
    """CAIM (Kurgan & Cios): greedily add the boundary that maximises
    ``CAIM = (1/n) * sum_r max_r**2 / M_r``; stop when it no longer improves once there are at
    least as many intervals as classes (2), or at ``max_bins``."""
    cb, cg = _cum(bad, good)
    m = len(bad)

    def term(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        b, g = cb[e] - cb[s], cg[e] - cg[s]
        n = b + g
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, np.maximum(b, g) ** 2 / n, 0.0)

    bounds: list[int] = []
    total = float(term(np.array([0]), np.array([m]))[0])
    global_caim = 0.0
    while len(bounds) + 1 < max_bins:
        edges = np.array([0, *bounds, m])
        cand = np.setdiff1d(np.arange(1, m), edges)
        if len(cand) == 0:
            break
        pos = np.searchsorted(edges, cand)
        s, e = edges[pos - 1], edges[pos]
        ns = (cb[cand] - cb[s]) + (cg[cand] - cg[s])
        ne = (cb[e] - cb[cand]) + (cg[e] - cg[cand])
        new_total = total - term(s, e) + term(s, cand) + term(cand, e)
        k = len(bounds) + 2
        score = np.where((ns >= max(min_n, 1)) & (ne >= max(min_n, 1)), new_total / k, -np.inf)
        i = int(np.argmax(score))
        if not np.isfinite(score[i]):
            break
        if score[i] > global_caim or len(bounds) + 1 < 2:
            global_caim = float(score[i])
            total = float(new_total[i])
            bounds = sorted([*bounds, int(cand[i])])
        else:
            break
    return bounds


# --------------------------------------------------------------------------- monotonic
def _iv_of(b: np.ndarray, g: np.ndarray, tb: float, tg: float) -> float:
    t = iv_terms(b, g, tb, tg)
    return float(np.where(np.isfinite(t), t, 0.0).sum())


def _monotone(bad, good, ascending: bool, max_bins: int, min_n: float) -> tuple[list[int], float]:
    # pool adjacent violators on bad rate (strict: equal rates are pooled too)
    sb: list[float] = []
    sg: list[float] = []
    se: list[int] = []
    for i, (b, g) in enumerate(zip(bad.tolist(), good.tolist(), strict=True)):
        sb.append(b)
        sg.append(g)
        se.append(i + 1)
        while len(sb) > 1:
            r1 = sb[-2] / (sb[-2] + sg[-2])
            r2 = sb[-1] / (sb[-1] + sg[-1])
            if (r1 < r2) if ascending else (r1 > r2):
                break
            lb, lg = sb.pop(), sg.pop()
            sb[-1] += lb
            sg[-1] += lg
            se.pop(-2)
    b, g, ends = np.array(sb), np.array(sg), list(se)
    tb, tg = float(np.sum(bad)), float(np.sum(good))

    def merge(j: int) -> None:
        nonlocal b, g
        b[j] += b[j + 1]
        g[j] += g[j + 1]
        b, g = np.delete(b, j + 1), np.delete(g, j + 1)
        ends.pop(j)

    while len(b) > 1 and (b + g).min() < min_n:
        i = int(np.argmin(b + g))
        r = b / (b + g)
        if i == 0:
            merge(0)
        elif i == len(b) - 1:
            merge(i - 1)
        else:
            merge(i - 1 if abs(r[i] - r[i - 1]) <= abs(r[i + 1] - r[i]) else i)
    while len(b) > max_bins:
        t = iv_terms(b, g, tb, tg)
        t = np.where(np.isfinite(t), t, 0.0)
        mt = iv_terms(b[:-1] + b[1:], g[:-1] + g[1:], tb, tg)
        mt = np.where(np.isfinite(mt), mt, 0.0)
        merge(int(np.argmin(t[:-1] + t[1:] - mt)))
    return ends[:-1], _iv_of(b, g, tb, tg)


def monotonic(bad: np.ndarray, good: np.ndarray, direction: str, max_bins: int, min_n: float) -> list[int]:
    """Bad rate forced monotone by pooling adjacent violators, then bins below ``min_n`` merged into
    their closest neighbour and the cheapest (least IV lost) merges applied down to ``max_bins``.
    ``direction`` is ``ascending``, ``descending`` or ``auto`` (the one with the larger IV)."""
    bad = np.asarray(bad, dtype=np.float64)
    good = np.asarray(good, dtype=np.float64)
    if direction == "ascending":
        return _monotone(bad, good, True, max_bins, min_n)[0]
    if direction == "descending":
        return _monotone(bad, good, False, max_bins, min_n)[0]
    up = _monotone(bad, good, True, max_bins, min_n)
    down = _monotone(bad, good, False, max_bins, min_n)
    return up[0] if up[1] >= down[1] else down[0]
