"""Request decoding edge cases: CSV line endings and malformed CSV, the model matrix's value checks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from shipyard.errors import InvalidInput, SchemaMismatch
from shipyard.serving.codec import csv_records
from shipyard.serving.engine import ServedModel


def test_csv_accepts_cr_crlf_and_lf_line_endings():
    for sep in (b"\r", b"\r\n", b"\n"):
        body = sep.join([b"a,b", b"1.5,x", b'2,"y' + sep + b'z"', b""])
        assert csv_records(body, {"a": "double", "b": "string"}) == [
            {"a": 1.5, "b": "x"}, {"a": 2.0, "b": "y" + sep.decode() + "z"}]


def test_malformed_csv_is_invalid_input_not_a_crash():
    with pytest.raises(InvalidInput, match="malformed CSV"):
        csv_records(b"a,b\n" + b"x" * 200_000 + b",1\n", None)  # over the csv module's field limit


def _served(names: list[str], required: list[str]) -> ServedModel:
    inputs = [SimpleNamespace(name=n, required=n in required, type="double") for n in names]
    model = SimpleNamespace(input_names=names, signature=SimpleNamespace(inputs=inputs), has_fast_path=True)
    return ServedModel("m", "champion", 1, model)


def test_matrix_takes_finite_floats_ints_and_optional_nulls():
    served = _served(["a", "b", "c"], required=["a", "b"])
    out = served.matrix([{"a": 0.1, "b": 2.5, "c": -3.0}, [1, 2.0, None], {"a": 1e308, "b": 1e308, "c": 1.0}])
    assert out[0].tolist() == [0.1, 2.5, -3.0]
    assert out[1, :2].tolist() == [1.0, 2.0] and math.isnan(out[1, 2])
    assert out[2].tolist() == [1e308, 1e308, 1.0]  # the sum overflows; each value is still finite


@pytest.mark.parametrize("value, message", [(math.inf, "numbers must be finite"), (math.nan, "numbers must be finite"),
                                            (True, "must be a number"), ("1.5", "must be a number")])
def test_matrix_rejects_bad_values_by_field(value, message):
    served = _served(["a", "b"], required=["a", "b"])
    with pytest.raises(SchemaMismatch, match=message) as info:
        served.matrix([{"a": 1.0, "b": value}])
    assert info.value.details["field"] == "b"
    assert np.isfinite(served.matrix([{"a": 1.0, "b": 2.0}])).all()
