"""LightGBM small batches: a reused single-thread predictor, same numbers as Booster.predict."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from shipyard.models.flavors.lightgbm import SMALL_BATCH, build_loaded


@pytest.mark.parametrize("params", [{"objective": "binary"}, {"objective": "multiclass", "num_class": 3}])
def test_small_batches_match_booster_predict_without_calling_it(params, monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int) if params["objective"] == "multiclass" \
        else (X[:, 0] > 0).astype(int)
    booster = lgb.train({**params, "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 40)
    names = tuple(booster.feature_name())
    loaded = build_loaded(booster, booster, None, names, "lightgbm")
    rows = X[:5]
    expected_small = booster.predict(rows, num_threads=1)
    expected_large = booster.predict(X)

    def refuse(*_a, **_k):
        raise AssertionError("Booster.predict is called per small batch")

    monkeypatch.setattr(lgb.Booster, "predict", refuse)
    for n in (1, 5):
        got = loaded.predict_array(rows[:n])
        assert got.shape == expected_small[:n].shape
        assert np.array_equal(got, expected_small[:n])
    monkeypatch.undo()
    assert X.shape[0] > SMALL_BATCH
    assert np.array_equal(loaded.predict_array(X), expected_large)
