from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import SchemaMismatch
from shipyard.models import ColSpec, Signature


@pytest.fixture()
def sig() -> Signature:
    return Signature.from_columns({"age": "double", "n_loans": "long", "city": "string"})


def test_record_to_ordered_array(sig: Signature) -> None:
    out = sig.validate({"city": "Oslo", "n_loans": 2, "age": 41.5})
    assert out.dtype == object
    assert out.tolist() == [[41.5, 2, "Oslo"]]


def test_numeric_record_gives_float_array_and_none_is_nan() -> None:
    sig = Signature.from_columns(["a", "b"])
    out = sig.validate([{"a": 1, "b": None}, {"b": 2.5, "a": -3}])
    assert out.dtype == np.float64
    assert np.isnan(out[0, 1])
    assert out[0, 0] == 1.0 and out[1].tolist() == [-3.0, 2.5]


def test_missing_extra_and_wrong_type_fields_are_named(sig: Signature) -> None:
    with pytest.raises(SchemaMismatch, match="missing field 'city'") as e:
        sig.validate({"age": 1.0, "n_loans": 1})
    assert e.value.details["field"] == "city"
    with pytest.raises(SchemaMismatch, match="unexpected field 'zip'"):
        sig.validate({"age": 1.0, "n_loans": 1, "city": "x", "zip": "0150"})
    assert sig.validate({"age": 1.0, "n_loans": 1, "city": "x", "zip": 1}, allow_extra=True).shape == (1, 3)
    with pytest.raises(SchemaMismatch, match="'age'.*expects double, got str") as e:
        sig.validate({"age": "41", "n_loans": 1, "city": "x"})
    assert e.value.details == {"field": "age", "record": 0, "problem": "type", "expected": "double", "got": "str"}
    with pytest.raises(SchemaMismatch, match="'n_loans'.*expects long"):
        sig.validate({"age": 1.0, "n_loans": 1.5, "city": "x"})
    with pytest.raises(SchemaMismatch, match="expects double, got bool"):
        sig.validate({"age": True, "n_loans": 1, "city": "x"})


def test_no_string_to_date_conversion() -> None:
    sig = Signature((ColSpec("applied", "datetime"),))
    assert sig.validate({"applied": dt.datetime(2024, 1, 2)})[0, 0] == dt.datetime(2024, 1, 2)
    with pytest.raises(SchemaMismatch, match="never converted to dates"):
        sig.validate({"applied": "2024-01-02"})


def test_frame_and_array_validation() -> None:
    sig = Signature.from_columns(["a", "b"])
    frame = pd.DataFrame({"b": [1.0, 2.0], "a": [3, 4]})
    assert sig.validate(frame).tolist() == [[3.0, 1.0], [4.0, 2.0]]
    with pytest.raises(SchemaMismatch, match="column 'b' has dtype"):
        sig.validate(pd.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(SchemaMismatch, match="missing column 'b'"):
        sig.validate(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(SchemaMismatch, match="unexpected column 'c'"):
        sig.validate(pd.DataFrame({"a": [1.0], "b": [1.0], "c": [0.0]}))
    assert sig.validate(np.array([5, 6])).tolist() == [[5.0, 6.0]]
    with pytest.raises(SchemaMismatch, match=r"shape \(1, 3\)"):
        sig.validate(np.ones((1, 3)))


def test_mlflow_json_round_trip(sig: Signature) -> None:
    doc = sig.to_mlmodel()
    assert doc["inputs"].startswith('[{"type": "double", "name": "age", "required": true}')
    assert Signature.from_mlmodel(doc) == sig


def test_infer_from_frame() -> None:
    frame = pd.DataFrame({"x": [1.0], "k": np.array([2], dtype=np.int64), "s": ["a"], "f": [True]})
    sig = Signature.infer(frame)
    assert [(s.name, s.type) for s in sig.inputs] == [("x", "double"), ("k", "long"), ("s", "string"), ("f", "boolean")]
