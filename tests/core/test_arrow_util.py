"""table_from_pandas gives pyarrow's own table without reading Series.values of tz-aware columns."""

from __future__ import annotations

import datetime as dt
import warnings

import pandas as pd
import pyarrow as pa
import pytest

from shipyard.arrow_util import table_from_pandas


def _reference(frame: pd.DataFrame) -> pa.Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.mark.parametrize("rows", [0, 3, 500])  # 500 rows: pyarrow's threaded path
def test_same_table_as_pyarrow_and_no_warning(rows: int) -> None:
    frame = pd.DataFrame({
        "id": range(rows),
        "utc": pd.date_range("2024-01-01", periods=rows, tz="UTC", freq="h"),
        "name": ["x"] * rows,
        "paris": pd.date_range("2024-03-31", periods=rows, tz="Europe/Paris", freq="h"),
        "fixed": pd.date_range("2024-01-01", periods=rows, freq="h", tz=dt.timezone(dt.timedelta(hours=-5))),
        "naive": pd.date_range("2024-01-01", periods=rows, freq="h"),
    }, index=pd.RangeIndex(10, 10 + rows))
    if rows:
        frame.loc[11, "utc"] = pd.NaT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = table_from_pandas(frame)
        only_aware = table_from_pandas(frame[["paris", "utc"]])
    reference = _reference(frame)
    assert table.equals(reference, check_metadata=True)
    assert only_aware.equals(_reference(frame[["paris", "utc"]]), check_metadata=True)
    back = table.to_pandas()
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))
