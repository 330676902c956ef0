"""LightGBM single rows and small batches: the private fast paths (``lightgbm_fast``) and the public
fallback give the same numbers as Booster.predict, on the LightGBM installed."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from shipyard.models.flavors.lightgbm import SMALL_BATCH, build_loaded
from shipyard.models.flavors.lightgbm_fast import PRIVATE_VERSIONS, private_allowed


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

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 8))
    y = {"binary": (X[:, 0] > 0).astype(int), "regression": X[:, 1] * 2.0,
         "multiclass": (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)}[params["objective"]]
    booster = lgb.train({**params, "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 30)
    expected = [booster.predict(X[i:i + 1], num_threads=1) for i in range(len(X))]
    expected_f32 = booster.predict(X[:1].astype(np.float32), num_threads=1)
    loaded = build_loaded(booster, booster, None, tuple(booster.feature_name()), "lightgbm")

    def refuse(*_a, **_k):
        raise AssertionError("a single row went through Booster.predict")

    monkeypatch.setattr(lgb.Booster, "predict", refuse)  # the public path would call it
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


def _trained(objective: str) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 7))
    y = {"binary": (X[:, 0] > 0).astype(int), "regression": X[:, 1] * 2.0 + X[:, 2],
         "multiclass": (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)}[objective]
    extra = {"num_class": 3} if objective == "multiclass" else {}
    return lgb.train({"objective": objective, **extra, "verbose": -1, "num_leaves": 9}, lgb.Dataset(X, y), 25), X


@pytest.mark.parametrize("objective", ["binary", "multiclass", "regression"])
def test_private_and_public_paths_give_the_same_numbers(objective: str) -> None:
    """Both paths against Booster.predict (the reference), for one row, small batches and large."""
    booster, X = _trained(objective)
    fast = build_loaded(booster, booster, None, tuple(booster.feature_name()), "lightgbm")
    public = build_loaded(booster, booster, None, tuple(booster.feature_name()), "lightgbm", private=False)
    for rows in [X[i : i + 1] for i in range(0, 300, 7)] + [X[:5], X[10:10 + SMALL_BATCH], X]:
        want = booster.predict(rows, num_threads=1)
        got_fast, got_public = fast.predict_array(rows), public.predict_array(rows)
        assert got_fast.shape == got_public.shape == want.shape
        assert np.array_equal(got_fast, want) and np.array_equal(got_public, want)


def test_public_path_is_used_outside_the_checked_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LightGBM newer than the versions the tests checked gets Booster.predict for every call."""
    booster, X = _trained("binary")
    calls = []
    real = lgb.Booster.predict

    def counted(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lgb, "__version__", "4.99.0")
    loaded = build_loaded(booster, booster, None, tuple(booster.feature_name()), "lightgbm")
    monkeypatch.setattr(lgb.Booster, "predict", counted)
    assert np.array_equal(loaded.predict_array(X[:1]), real(booster, X[:1], num_threads=1))
    assert np.array_equal(loaded.predict_array(X[:5]), real(booster, X[:5], num_threads=1))
    assert calls == [1, 5]


def test_version_check() -> None:
    assert private_allowed("4.0.0") and private_allowed("4.7.0") and private_allowed("4.7.1rc1")
    assert not private_allowed("3.3.5") and not private_allowed("4.8.0") and not private_allowed("5.0.0")
    assert not private_allowed("nightly")


def test_the_installed_lightgbm_is_one_the_private_path_was_checked_on() -> None:
    """The tests above exercise the private path only on a version it allows: a newer LightGBM
    must be checked (run these tests with it) and PRIVATE_VERSIONS raised."""
    assert private_allowed(lgb.__version__), (
        f"LightGBM {lgb.__version__} is outside PRIVATE_VERSIONS {PRIVATE_VERSIONS}: serving uses the public "
        "Booster.predict; check the private path on it and raise the bound in lightgbm_fast.py")


@pytest.mark.parametrize("trees", [20, 1_050])
def test_single_rows_match_booster_predict_with_and_without_the_gil_held(trees: int) -> None:
    from shipyard.models.flavors.lightgbm_fast import GIL_HELD_TREES, single_row_predictor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 6))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1}, lgb.Dataset(X, y), trees)
    assert (booster.num_trees() <= GIL_HELD_TREES) == (trees < GIL_HELD_TREES)
    one = single_row_predictor(booster)
    for row in X[:20]:
        np.testing.assert_array_equal(one(row[None, :]), booster.predict(row[None, :], num_threads=1))
