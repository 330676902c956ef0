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


@pytest.mark.parametrize("params", [{"objective": "binary"}, {"objective": "multiclass", "num_class": 3},
                                    {"objective": "regression"}])
def test_single_rows_take_the_c_entry_point_with_the_same_numbers(params, monkeypatch):
    import threading

    from lightgbm.basic import _InnerPredictor

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 8))
    y = {"binary": (X[:, 0] > 0).astype(int), "regression": X[:, 1] * 2.0,
         "multiclass": (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)}[params["objective"]]
    booster = lgb.train({**params, "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 30)
    expected = [booster.predict(X[i:i + 1], num_threads=1) for i in range(len(X))]
    expected_f32 = booster.predict(X[:1].astype(np.float32), num_threads=1)
    loaded = build_loaded(booster, booster, None, tuple(booster.feature_name()), "lightgbm")

    def refuse(*_a, **_k):
        raise AssertionError("a single row went through the Python predictors")

    monkeypatch.setattr(lgb.Booster, "predict", refuse)
    monkeypatch.setattr(_InnerPredictor, "predict", refuse)
    mismatches = []

    def score(offset: int) -> None:
        for i in range(offset, len(X), 4):  # four threads, each with its own prepared configuration
            got = loaded.predict_array(X[i:i + 1])
            if got.shape != expected[i].shape or not np.array_equal(got, expected[i]):
                mismatches.append(i)

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
    # float32 and non-contiguous rows are converted, not misread
    assert np.array_equal(loaded.predict_array(X[:1].astype(np.float32)), expected_f32)
    assert np.array_equal(loaded.predict_array(np.asfortranarray(X[:3])[1:2, :]), expected[1])
