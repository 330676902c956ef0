"""Bad input: clear ShipyardError naming the field, or the documented behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import InvalidInput, SchemaMismatch
from shipyard.risk import Binner

from .conftest import synthetic


def test_non_binary_target():
    X, _ = synthetic(200)
    with pytest.raises(InvalidInput, match="binary") as e:
        Binner().fit(X, np.arange(200) % 3)
    assert e.value.details["field"] == "target"


def test_one_class_only():
    X, _ = synthetic(200)
    with pytest.raises(InvalidInput, match="only one class"):
        Binner().fit(X, np.zeros(200))


def test_string_target_needs_bad():
    X, y = synthetic(200)
    with pytest.raises(InvalidInput, match="pass bad="):
        Binner().fit(X, np.where(y == 1, "default", "paid"))
    b = Binner(bad="default").fit(X, np.where(y == 1, "default", "paid"))
    assert b.total_bad_ == y.sum()


def test_all_missing_column():
    X, y = synthetic(200)
    X["empty"] = np.nan
    with pytest.raises(InvalidInput, match="'empty' has only missing values"):
        Binner().fit(X, y)


def test_constant_column_gives_one_bin_with_zero_iv():
    X, y = synthetic(300)
    X["const"] = 7.0
    b = Binner().fit(X, y)
    fb = b.bins_["const"]
    assert fb.n_regular == 1 and fb.iv == pytest.approx(0.0, abs=1e-15)
    assert np.allclose(b.transform(X)[:, list(b.bins_).index("const")], 0.0)


def test_infinities_rejected_unless_special():
    X, y = synthetic(300)
    X.loc[3, "x1"] = np.inf
    with pytest.raises(InvalidInput, match="'x1' holds infinite values"):
        Binner().fit(X, y)
    b = Binner(special_values={"x1": [np.inf]}).fit(X, y)
    fb = b.bins_["x1"]
    assert fb.bad[fb.n_regular] + fb.good[fb.n_regular] == 1  # the special bin holds the inf row


def test_mixed_types_column():
    X, y = synthetic(300)
    X["mixed"] = pd.Series([1, "a", 2.5] * 100, dtype=object)
    with pytest.raises(InvalidInput, match="'mixed' mixes value types"):
        Binner().fit(X, y)
    b = Binner(categorical=["mixed"]).fit(X, y)  # documented way out: bin as text
    assert b.bins_["mixed"].kind == "categorical"


def test_unseen_category_gets_own_bin_with_zero_woe():
    X, y = synthetic(1000)
    b = Binner().fit(X, y)
    fb = b.bins_["cat"]
    new = X.head(3).copy()
    new["cat"] = ["never-seen", "A", None]
    j = list(b.bins_).index("cat")
    w = b.transform(new)[:, j]
    assert w[0] == 0.0
    assert w[1] == fb.woe[fb.bin_index(np.array(["A"], dtype=object))[0]]
    assert w[2] == fb.woe[fb.missing_bin]
    idx = Binner.from_spec(b.set_params(output="index").to_spec()).transform(new)[:, j]
    assert idx[0] == fb.n_bins - 1  # the unseen bin is last


def test_column_missing_at_transform():
    X, y = synthetic(300)
    b = Binner().fit(X, y)
    with pytest.raises(SchemaMismatch, match="x2"):
        b.transform(X.drop(columns=["x2"]))


def test_text_in_numeric_column_at_transform():
    X, y = synthetic(300)
    b = Binner().fit(X, y)
    bad = X.astype({"x0": object})
    bad.loc[0, "x0"] = "oops"
    with pytest.raises(SchemaMismatch, match="'x0' must be numeric"):
        b.transform(bad)


def test_bad_parameters_and_specs():
    X, y = synthetic(200)
    with pytest.raises(InvalidInput, match="method"):
        Binner(method="magic").fit(X, y)
    with pytest.raises(InvalidInput, match="woe_sign"):
        Binner(woe_sign="up").fit(X, y)
    with pytest.raises(InvalidInput, match="format"):
        Binner.from_spec({"features": []})


def test_missing_and_special_bins_and_manual_override():
    X, y = synthetic(3000)
    X.loc[X.index[:40], "x2"] = -999.0
    b = Binner(special_values={"x2": [-999.0]}).fit(X, y)
    fb = b.bins_["x2"]
    assert fb.bad[fb.n_regular] + fb.good[fb.n_regular] == 40
    assert fb.bad[fb.missing_bin] + fb.good[fb.missing_bin] == 0
    mb = b.bins_["x0"].missing_bin
    assert b.bins_["x0"].bad[mb] + b.bins_["x0"].good[mb] == X["x0"].isna().sum()
    b.set_cuts("x1", [0.5, 1.0, 2.0], X, y)
    f1 = b.bins_["x1"]
    assert f1.cuts == [0.5, 1.0, 2.0] and f1.method == "manual"
    x1 = X["x1"].to_numpy()
    assert f1.bad[1] == y[(x1 >= 0.5) & (x1 < 1.0)].sum()
    b.set_cuts("cat", [["A", "B"], ["C"]], X, y)
    groups = b.bins_["cat"].groups
    assert groups[0] == ["A", "B"] and groups[1] == ["C"] and sorted(groups[2]) == ["D", "E", "F", "G"]


def test_sklearn_api():
    from sklearn.base import clone

    X, y = synthetic(500)
    b = Binner(method="tree", max_bins=4)
    assert clone(b).get_params()["max_bins"] == 4
    assert b.fit(X, y) is b
    out = b.set_output(transform="pandas").transform(X)
    assert list(out.columns) == list(X.columns)
    assert list(b.get_feature_names_out()) == list(X.columns)
