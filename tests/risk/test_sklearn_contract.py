"""``Binner`` is a scikit-learn transformer: scikit-learn's own estimator checks pass, except the
ones listed in ``NOT_APPLICABLE`` with the reason each does not apply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from shipyard.errors import SchemaMismatch
from shipyard.risk.binning import Binner

from .conftest import synthetic

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")

NOT_APPLICABLE: dict[str, str] = {
    "check_estimators_dtypes": (
        "builds its binary target as the labels {1, 2}; the risk toolkit reads 0/1 and named pairs "
        "(good/bad, Y/N, yes/no, True/False) and asks for bad= for any other pair instead of guessing "
        "which class is bad. The same input dtypes with a 0/1 target: test_input_dtypes_like_sklearn_checks."
    ),
}


@parametrize_with_checks(
    [Binner(), Binner(method="tree", max_bins=4, output="index"), Binner(method="equal_freq", max_bins=3)],
    expected_failed_checks=lambda estimator: NOT_APPLICABLE,
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_tags_declare_a_binary_target_and_missing_values() -> None:
    tags = get_tags(Binner())
    assert tags.input_tags.allow_nan and tags.input_tags.string
    assert tags.target_tags.required
    assert tags.classifier_tags is not None and tags.classifier_tags.multi_class is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_input_dtypes_like_sklearn_checks(dtype) -> None:
    rng = np.random.default_rng(0)
    X = (3 * rng.uniform(size=(40, 5))).astype(dtype)
    y = (X[:, 0] > 1.4).astype(int)
    b = Binner(max_bins=3, min_bin_share=0.1).fit(X, y)
    out = b.transform(X)
    assert out.shape == (40, 5) and out.dtype == np.float64
    ref = Binner(max_bins=3, min_bin_share=0.1).fit(X.astype(np.float64), y).transform(X.astype(np.float64))
    np.testing.assert_array_equal(out, ref)


def test_transform_with_other_columns_than_fit_raises() -> None:
    X, y = synthetic(400)
    b = Binner(max_bins=4).fit(X, y)
    extra = X.assign(extra=1.0)
    with pytest.raises(SchemaMismatch, match="X has 5 features, but Binner is expecting 4 features") as e:
        b.transform(extra.to_numpy())
    assert isinstance(e.value, ValueError) and "x0, x1, x2, cat" in e.value.message
    with pytest.raises(SchemaMismatch, match="Feature names unseen at fit time"):
        b.transform(extra)
    with pytest.raises(SchemaMismatch, match="Feature names must be in the same order"):
        b.transform(X[["x1", "x0", "x2", "cat"]])
    with pytest.raises(SchemaMismatch, match="Feature names seen at fit time, yet now missing"):
        b.transform(X.drop(columns=["x2"]))
    # the same columns as an array (positions) give the same numbers as the frame
    np.testing.assert_array_equal(b.transform(X.to_numpy(dtype=object)), b.transform(X))


def test_columns_subset_still_takes_every_fit_column() -> None:
    X, y = synthetic(400)
    b = Binner(max_bins=4, columns=["x0", "cat"]).fit(X, y)
    assert list(b.feature_names_in_) == list(X.columns) and b.n_features_in_ == 4
    assert list(b.get_feature_names_out()) == ["x0", "cat"]
    assert b.transform(X).shape == (400, 2)
    with pytest.raises(SchemaMismatch, match="X has 2 features, but Binner is expecting 4"):
        b.transform(X[["x0", "cat"]].to_numpy(dtype=object))
    again = Binner.from_spec(b.to_spec())
    np.testing.assert_array_equal(again.transform(X), b.transform(X))


def test_inside_a_pipeline_with_clone() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    X, y = synthetic(2000)
    pipe = make_pipeline(Binner(max_bins=5), LogisticRegression())
    fitted = clone(pipe).fit(X, y)
    woe = Binner(max_bins=5).fit(X, y).transform(X)
    ref = LogisticRegression().fit(woe, y).predict_proba(woe)[:, 1]
    np.testing.assert_allclose(fitted.predict_proba(X)[:, 1], ref)
    assert roc_auc_score(y, ref) > 0.6
    assert isinstance(pd.DataFrame(fitted[:-1].set_output(transform="pandas").transform(X)), pd.DataFrame)


def test_spec_round_trip_keeps_the_input_contract() -> None:
    import warnings

    X, y = synthetic(300)
    named = Binner(max_bins=3).fit(X, y)
    assert list(Binner.from_spec(named.to_spec()).feature_names_in_) == list(X.columns)
    arr = X[["x0", "x1", "x2"]].to_numpy()
    unnamed = Binner(max_bins=3).fit(arr, y)
    again = Binner.from_spec(unnamed.to_spec())
    assert not hasattr(again, "feature_names_in_") and again.n_features_in_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an array again: no feature-name warning
        np.testing.assert_array_equal(again.transform(arr), unnamed.transform(arr))
    with pytest.raises(SchemaMismatch, match="X has 2 features, but Binner is expecting 3"):
        again.transform(arr[:, :2])
