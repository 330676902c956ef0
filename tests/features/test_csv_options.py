"""CSV reader options of a FileSource: checked where the source is defined, honoured by both engines."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from shipyard.config import load_settings
from shipyard.errors import InvalidInput
from shipyard.features import FileSource
from shipyard.workspace import Workspace

VIEWS = """
from shipyard.features import Entity, FeatureView, Field, FileSource, Float64, String

user = Entity("user", join_keys=["user_id"], value_types="int64")
stats = FeatureView(
    "stats", entities=[user], fields=[Field("x", Float64), Field("city", String)],
    source=FileSource("history.csv", options={"delimiter": ";", "null_value": "NA", "quote": "'"}),
    timestamp_field="ts",
)
"""

# semicolons, NA for missing, single quotes around a value holding the delimiter
CSV = """user_id;ts;x;city
1;2024-01-01T00:00:00Z;2.5;'Paris;FR'
1;2024-01-01T05:00:00Z;NA;Lyon
2;2024-01-01T01:00:00Z;7.0;NA
"""


@pytest.mark.parametrize("options, field, text", [
    ({"sep": ","}, "options.sep", "unknown CSV option 'sep'; use delimiter, header, quote, escape, null_value"),
    ({"header": "yes"}, "options.header", "'header' must be true or false"),
    ({"delimiter": ";;"}, "options.delimiter", "'delimiter' must be one character"),
    ({"null_value": 0}, "options.null_value", "'null_value' must be a string"),
])
def test_bad_csv_options_name_the_option(options, field, text) -> None:
    with pytest.raises(InvalidInput, match=text) as info:
        FileSource("data.csv", options=options)
    assert info.value.details["field"] == field


def test_parquet_sources_take_no_options() -> None:
    with pytest.raises(InvalidInput, match="parquet files take no options"):
        FileSource("data.parquet", options={"delimiter": ";"})


@pytest.fixture
def ws(tmp_path: Path):
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "views.py").write_text(textwrap.dedent(VIEWS))
    (tmp_path / "history.csv").write_text(CSV)
    workspace = Workspace(load_settings(tmp_path, user="alice"))
    workspace.features.apply(tmp_path)
    yield workspace
    workspace.close()


ENTITY = pd.DataFrame({"user_id": [1, 1, 2], "event_timestamp": pd.to_datetime(
    ["2024-01-01T01:00:00Z", "2024-01-01T06:00:00Z", "2024-01-01T02:00:00Z"], utc=True)})


def _check(frame: pd.DataFrame) -> None:
    assert frame["x"].iloc[0] == 2.5 and pd.isna(frame["x"].iloc[1]) and frame["x"].iloc[2] == 7.0
    assert frame["city"].iloc[0] == "Paris;FR" and frame["city"].iloc[1] == "Lyon" and pd.isna(frame["city"].iloc[2])


def test_duckdb_reads_the_csv_with_its_options(ws: Workspace) -> None:
    _check(ws.features.get_training_set(ENTITY, features=["stats:x", "stats:city"]))


@pytest.mark.spark
@pytest.mark.skipif(os.environ.get("SHIPYARD_TEST_SPARK") != "1", reason="set SHIPYARD_TEST_SPARK=1")
def test_spark_reads_the_csv_with_the_same_options(ws: Workspace) -> None:
    refs = ["stats:x", "stats:city"]
    spark = ws.features.get_training_set(ENTITY, features=refs, engine="spark")
    _check(spark)
    pd.testing.assert_frame_equal(spark, ws.features.get_training_set(ENTITY, features=refs), check_dtype=False)
