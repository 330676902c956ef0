"""Each binning method against an independent reference on small data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from shipyard.risk import Binner
from shipyard.risk.binning import methods
from shipyard.risk.binning.optimal import optimal
from shipyard.risk.woe import iv_terms


def _small(seed: int, n: int = 60, k: int = 15):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, k, n).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x - k / 2) / 3))).astype(int)
    return x, y


# ------------------------------------------------------------------ MDLP: naive recursive reference
def _ent(ys: list[int]) -> float:
    n = len(ys)
    out = 0.0
    for c in set(ys):
        p = ys.count(c) / n
        out -= p * math.log2(p)
    return out


def _naive_mdlp(pairs: list[tuple[float, int]]) -> list[float]:
    pairs = sorted(pairs)
    xs = [p[0] for p in pairs]
    ys = [p[1] for p in pairs]
    n = len(ys)
    best = None
    for i in range(1, n):
        if xs[i] == xs[i - 1]:
            continue
        e = (i * _ent(ys[:i]) + (n - i) * _ent(ys[i:])) / n
        if best is None or e < best[0] - 1e-15:
            best = (e, i)
    if best is None:
        return []
    e, i = best
    ent = _ent(ys)
    k, k1, k2 = len(set(ys)), len(set(ys[:i])), len(set(ys[i:]))
    delta = math.log2(3**k - 2) - (k * ent - k1 * _ent(ys[:i]) - k2 * _ent(ys[i:]))
    if ent - e <= (math.log2(n - 1) + delta) / n:
        return []
    cut = (xs[i - 1] + xs[i]) / 2
    return _naive_mdlp(pairs[:i]) + [cut] + _naive_mdlp(pairs[i:])


@pytest.mark.parametrize("seed", range(8))
def test_mdlp_matches_naive_recursive(seed):
    x, y = _small(seed, n=80, k=12)
    b = Binner(method="mdlp", min_bin_share=0.0, max_bins=100).fit(pd.DataFrame({"x": x}), y)
    assert b.bins_["x"].cuts == pytest.approx(_naive_mdlp(list(zip(x.tolist(), y.tolist(), strict=True))))


def test_mdlp_hand_case():
    # perfectly separated at 3.5: gain = 1 bit > (log2(7) + log2(7) - 2) / 8 -> one cut
    x = np.array([1, 2, 3, 3, 4, 5, 6, 6], dtype=float)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    b = Binner(method="mdlp", min_bin_share=0.0).fit(pd.DataFrame({"x": x}), y)
    assert b.bins_["x"].cuts == [3.5]
    # too few rows to justify a cut: 0,1 alternating
    b2 = Binner(method="mdlp", min_bin_share=0.0).fit(pd.DataFrame({"x": [1.0, 2, 3, 4]}), [0, 1, 0, 1])
    assert b2.bins_["x"].cuts == []


# ------------------------------------------------------------------ CART vs scikit-learn
@pytest.mark.parametrize("seed", range(6))
def test_tree_matches_sklearn_best_first(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=400), 1)  # < 100 distinct values: pre-bins are the values
    y = (rng.random(400) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
    b = Binner(method="tree", max_bins=6, min_bin_share=0.05, max_prebins=200).fit(pd.DataFrame({"x": x}), y)
    dt = DecisionTreeClassifier(max_leaf_nodes=6, min_samples_leaf=20, random_state=0).fit(x[:, None], y)
    thr = sorted(t for t in dt.tree_.threshold if t != -2)
    assert b.bins_["x"].cuts == pytest.approx(thr, abs=1e-6)  # sklearn stores float32


# ------------------------------------------------------------------ optimal vs brute force
def _brute(bad, good, max_bins, min_n, trend):
    m = len(bad)
    best = -np.inf
    for k in range(max_bins):
        for cuts in itertools.combinations(range(1, m), k):
            e = [0, *cuts, m]
            b, g = np.add.reduceat(bad, e[:-1]), np.add.reduceat(good, e[:-1])
            if ((b + g) < min_n).any() or (b == 0).any() or (g == 0).any():
                continue
            r = np.diff(b / (b + g))
            if (trend == "ascending" and not (r > 0).all()) or (trend == "descending" and not (r < 0).all()):
                continue
            best = max(best, iv_terms(b, g, bad.sum(), good.sum()).sum())
    return best


def test_optimal_dp_equals_brute_force():
    rng = np.random.default_rng(3)
    for t in range(120):
        m = int(rng.integers(2, 9))
        bad = rng.integers(0, 20, m).astype(float)
        good = rng.integers(1, 40, m).astype(float)
        bad[0] = max(bad[0], 1)
        mb, mn = int(rng.integers(1, 6)), float(rng.integers(0, 30))
        trend = [None, "ascending", "descending"][t % 3]
        want = _brute(bad, good, mb, mn, trend)
        cuts = optimal(bad, good, mb, mn, trend)
        e = [0, *cuts, m]
        b, g = np.add.reduceat(bad, e[:-1]), np.add.reduceat(good, e[:-1])
        if np.isfinite(want):
            assert iv_terms(b, g, bad.sum(), good.sum()).sum() == pytest.approx(want, abs=1e-12)
            assert len(cuts) + 1 <= mb


# ------------------------------------------------------------------ ChiMerge, CAIM, monotonic, equal width/freq
def test_chimerge_statistic_matches_scipy():
    from scipy.stats import chi2_contingency

    b = np.array([10.0, 30.0, 5.0])
    g = np.array([90.0, 70.0, 95.0])
    ours = methods._chi2_adjacent(b, g)
    for i in range(2):
        ref = chi2_contingency(np.array([[b[i], g[i]], [b[i + 1], g[i + 1]]]), correction=False)[0]
        assert ours[i] == pytest.approx(ref, rel=1e-12)


def test_chimerge_stops_at_threshold():
    # two clearly different halves, identical pre-bins inside each half
    bad = np.array([5, 5, 5, 50, 50, 50.0])
    good = np.array([95, 95, 95, 50, 50, 50.0])
    assert methods.chimerge(bad, good, max_bins=10, min_n=0, threshold=3.841) == [3]
    assert methods.chimerge(bad, good, max_bins=1, min_n=0, threshold=3.841) == []


def test_caim_hand_case():
    bad = np.array([0, 0, 10, 10.0])
    good = np.array([10, 10, 0, 0.0])
    # one cut at 2 gives CAIM = (20 + 20) / 2 / ... -> max_r^2 / M_r = 20 each, mean 20 > any other
    assert methods.caim(bad, good, max_bins=10) == [2]


def test_monotonic_binning_is_monotone_and_respects_limits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(x**2) + 1))).astype(int)  # U-shaped: needs pooling
    for direction in ("ascending", "descending", "auto"):
        b = Binner(method="monotonic", monotonic=direction, max_bins=5).fit(pd.DataFrame({"x": x}), y)
        fb = b.bins_["x"]
        r = fb.bad[: fb.n_regular] / (fb.bad + fb.good)[: fb.n_regular]
        d = np.diff(r)
        assert (d > 0).all() or (d < 0).all() or len(r) == 1
        assert fb.n_regular <= 5
        assert ((fb.bad + fb.good)[: fb.n_regular] >= 0.05 * 5000).all()


def test_equal_width_and_freq_cuts():
    x = np.arange(100, dtype=float)
    y = (x % 3 == 0).astype(int)
    bw = Binner(method="equal_width", max_bins=4).fit(pd.DataFrame({"x": x}), y)
    assert bw.bins_["x"].cuts == pytest.approx([24.75, 49.5, 74.25])
    bf = Binner(method="equal_freq", max_bins=4).fit(pd.DataFrame({"x": x}), y)
    assert bf.bins_["x"].cuts == [25.0, 50.0, 75.0]
    assert (bf.bins_["x"].bad + bf.bins_["x"].good)[:4].tolist() == [25, 25, 25, 25]


def test_optimal_iv_not_below_other_methods(german):
    X, y = german
    num = X[["duration_in_month", "credit_amount", "age_in_years"]]
    opt = Binner(method="optimal", monotonic=None, max_bins=6).fit(num, y)
    for m in ("tree", "chimerge", "monotonic", "equal_freq"):
        other = Binner(method=m, max_bins=6).fit(num, y)
        for c in num.columns:
            o = other.bins_[c]
            if ((o.bad + o.good)[: o.n_regular] >= 50).all() and (o.bad[: o.n_regular] > 0).all():
                assert opt.bins_[c].iv >= o.iv - 1e-12, (m, c)
