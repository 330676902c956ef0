"""The same data profiled from a DataFrame, CSV, Parquet and Excel gives the same report; empty CSV
cells are missing values (as pandas, R, Excel, DuckDB and Arrow's own readers treat them)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipyard.data.profile import profile

pytest.importorskip("openpyxl")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 600
    text = rng.choice(["alpha", "beta", "gamma", "delta"], size=n).astype(object)
    text[rng.random(n) < 0.317] = None
    amount = np.round(rng.lognormal(7, 1, n), 2)
    amount[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "text": text,
        "amount": amount,
        "count": rng.integers(0, 9, n),
        "flag": rng.random(n) < 0.4,
        "bad": (rng.random(n) < 0.3).astype(int),
    })


def _report(source) -> dict:
    d = json.loads(profile(source, target="bad").to_json())
    d.pop("source"), d.pop("elapsed_s")
    return d


def test_same_report_from_every_source(frame, tmp_path) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    frame.to_excel(tmp_path / "d.xlsx", index=False)
    reference = _report(frame)
    for name in ("d.csv", "d.parquet", "d.xlsx"):
        assert _report(tmp_path / name) == reference, name


def test_empty_csv_cells_are_missing(frame, tmp_path) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    assert ",," in (tmp_path / "d.csv").read_text()  # the missing text cells are empty
    col = profile(tmp_path / "d.csv").columns["text"]
    ref = pd.read_csv(tmp_path / "d.csv")["text"]  # pandas' reading of the same file
    assert col.missing_rate == pytest.approx(ref.isna().mean()) and col.missing_rate > 0.25
    assert col.distinct == ref.nunique() == 4
    assert "" not in [t["value"] for t in col.top_values]
    assert col.dtype == "string"


def test_plain_type_names() -> None:
    import pyarrow as pa

    from shipyard.data._columns import plain_type

    table = pa.table({
        "s": pa.array(["a"], pa.string()), "ls": pa.array(["a"], pa.large_string()),
        "d": pa.array(["a"]).dictionary_encode(), "f": pa.array([1.0], pa.float64()),
        "f32": pa.array([1.0], pa.float32()), "i": pa.array([1], pa.int64()), "b": pa.array([True]),
        "t": pa.array([0], pa.timestamp("ns")), "tz": pa.array([0], pa.timestamp("us", tz="UTC")),
    })
    names = {c: profile(table).columns[c].dtype for c in table.column_names}
    assert names == {"s": "string", "ls": "string", "d": "string", "f": "float64", "f32": "float32",
                     "i": "int64", "b": "bool", "t": "timestamp", "tz": "timestamp (UTC)"}
    assert plain_type(pa.list_(pa.large_string())) == "list<item: string>"
