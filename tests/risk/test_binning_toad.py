"""WOE and IV equal toad's to 1e-9 on the German credit data given the same cut points."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.risk import Binner
from shipyard.risk.woe import woe_iv

toad = pytest.importorskip("toad")


@pytest.mark.parametrize("method", ["optimal", "tree", "chimerge", "equal_freq"])
def test_woe_iv_match_toad(german, method):
    X, y = german
    b = Binner(method=method, max_bins=6).fit(X, y)
    rules = {}
    for c, fb in b.bins_.items():
        rules[c] = list(fb.cuts) if fb.kind == "numeric" else [list(g) for g in fb.groups]
    comb = toad.transform.Combiner()
    comb.load(rules, update=False)
    binned = comb.transform(X[list(rules)])
    checked = 0
    for c, fb in b.bins_.items():
        reg = fb.bad[: fb.n_regular], fb.good[: fb.n_regular]
        if (reg[0] == 0).any() or (reg[1] == 0).any():
            continue  # toad and Shipyard smooth empty cells differently (documented)
        col = binned[c].to_numpy()
        tw = toad.transform.WOETransformer().fit(binned[[c]], y)
        toad_woe = tw.export()[c]
        ours_idx = b.bins_[c].bin_index(b._column_values(fb, X[c]))
        # toad's bin numbers and ours must agree row by row
        assert np.array_equal(np.asarray(col, dtype=np.int64), ours_idx)
        for k, w in toad_woe.items():
            assert abs(fb.woe[int(k)] - w) < 1e-9, (c, k)
        toad_iv, _ = toad.stats._IV(col, y)
        assert abs(fb.iv - toad_iv) < 1e-9, c
        checked += 1
    assert checked >= 15


def test_woe_sign_option_and_iv_invariant():
    bad = np.array([10, 20, 30.0])
    good = np.array([100, 80, 40.0])
    w1, iv1 = woe_iv(bad, good)
    w2, iv2 = woe_iv(bad, good, sign="good_over_bad")
    np.testing.assert_allclose(w1, -w2)
    np.testing.assert_allclose(iv1, iv2)
    np.testing.assert_allclose(w1, np.log((bad / 60) / (good / 220)))


def test_smoothing_rules():
    bad = np.array([0.0, 5.0, 0.0, 15.0])
    good = np.array([10.0, 0.0, 0.0, 30.0])
    w, iv = woe_iv(bad, good, smoothing=0.5)
    assert w[0] == pytest.approx(np.log((0.5 / 20) / (10 / 40)), abs=1e-12)
    assert w[1] == pytest.approx(np.log((5 / 20) / (0.5 / 40)), abs=1e-12)
    assert w[2] == 0.0 and iv[2] == 0.0  # empty bin: neutral
    assert w[3] == pytest.approx(np.log((15 / 20) / (30 / 40)), abs=1e-12)
