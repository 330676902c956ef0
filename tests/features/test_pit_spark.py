"""The Spark engine gives the naive reference's (and DuckDB's) results. Enabled by SHIPYARD_TEST_SPARK=1."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from shipyard.config import load_settings
from shipyard.workspace import Workspace
from tests.features.pit_support import frames, pit_data, shop_frame, write_project
from tests.features.test_pit import FEATURES, check_against_reference

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(os.environ.get("SHIPYARD_TEST_SPARK") != "1", reason="set SHIPYARD_TEST_SPARK=1"),
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=pit_data())
def test_spark_matches_reference_and_duckdb(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> None:
    root = tmp_path_factory.mktemp("spark")
    stats, pairs, entity = frames(data)
    write_project(root, stats, pairs, data["ttl_hours"], shop_frame(data))
    ws = Workspace(load_settings(root, user="alice"))
    try:
        ws.features.apply(root)
        check_against_reference(ws, data, engine="spark")
        spark = ws.features.get_training_set(entity, features=FEATURES, engine="spark")
        duck = ws.features.get_training_set(entity, features=FEATURES, engine="duckdb")
        pd.testing.assert_frame_equal(spark, duck)
    finally:
        ws.close()
