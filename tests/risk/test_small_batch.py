"""Scoring a few rows (the online path) gives exactly what scoring them in a large batch gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shipyard.risk.binning import Binner


def test_row_by_row_equals_batch_for_numeric_and_categorical() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    X = pd.DataFrame({
        "amount": rng.lognormal(8, 1, n),
        "age": rng.integers(18, 80, n).astype(float),
        "purpose": rng.choice(["car", "tv", "education", "business", "rare"], n, p=[.3, .3, .2, .19, .01]),
    })
    X.loc[::50, "amount"] = np.nan
    X.loc[::70, "purpose"] = None
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["age"].fillna(40) - 45) / 10))).astype(int)
    binner = Binner(method="optimal", max_bins=5).fit(X, y)

    probe = pd.DataFrame({
        "amount": [np.nan, 100.0, 5000.0, "3000", None, 1e9],
        "age": [18, 45.5, np.nan, 80, 30, 60],
        "purpose": ["car", "never seen", None, "education", "rare", np.nan],
    })
    big = pd.concat([probe] * 10, ignore_index=True)  # above the small-batch threshold
    expected = binner.transform_arrays({c: big[c].to_numpy(dtype=object) for c in big.columns})[: len(probe)]
    for i in range(len(probe)):
        one = binner.transform_arrays({c: probe[c].to_numpy(dtype=object)[i : i + 1] for c in probe.columns})
        np.testing.assert_array_equal(one[0], expected[i])
