"""Data sources against real servers: PostgreSQL, MariaDB, S3 (moto server) and Spark in local mode.

Each test builds its own database, bucket or table and drops it afterwards. Reference values come from
reading the same data with pandas or the server's own driver.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard.config import load_settings
from shipyard.errors import InvalidInput
from shipyard.workspace import Workspace
from tests.data.conftest import loans_frame

PASSWORD = "Wr0ng-or-right-9d1c7e"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(load_settings(tmp_path / "project", user="alice"))
    yield workspace
    workspace.close()


def _seed(url: str, frame: pd.DataFrame) -> None:
    engine = sa.create_engine(url)
    frame.to_sql("loans", engine, index=False)
    engine.dispose()


def _check_sql_source(ws: Workspace, url: str, caplog: pytest.LogCaptureFixture) -> None:
    frame = loans_frame(1500, seed=5)
    _seed(url, frame)
    ws.secrets.put("db_pw", PASSWORD, actor="alice")
    u = sa.make_url(url)
    clean_url = sa.URL.create(u.drivername, u.username, None, u.host, u.port, u.database,
                              u.query).render_as_string(hide_password=False)
    ws.data.add_source("db", "sql", {"url": clean_url, "secrets": {"password": "db_pw"}}, actor="alice")
    caplog.set_level(logging.DEBUG)
    test = ws.data.test_source("db")
    assert test.ok, test.message
    assert test.details["server_version"]
    preview = ws.data.preview("db", {"query": "SELECT loan_id, amount FROM loans ORDER BY loan_id"}, limit=5)
    assert preview.column("loan_id").to_pylist() == [0, 1, 2, 3, 4]
    ws.data.create_dataset("loans", "db", {"query": "SELECT * FROM loans ORDER BY loan_id"}, actor="alice")
    progress: list[tuple[int, int | None]] = []
    result = ws.data.refresh("loans", actor="alice", chunk_rows=400, progress=lambda d, t: progress.append((d, t)))
    assert progress == [(400, 1500), (800, 1500), (1200, 1500), (1500, 1500)]
    engine = sa.create_engine(url)
    reference = pd.read_sql("SELECT * FROM loans ORDER BY loan_id", engine)
    engine.dispose()
    got = ws.data.read("loans")
    # the first chunks' late_fee values are all NULL; the version still has the float column
    assert {c["name"]: c["type"] for c in result.version.schema}["late_fee"] == "double"
    pd.testing.assert_frame_equal(got, reference, check_dtype=False)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    bad = ws.data.preview  # a failing query names the query and hides the password
    with pytest.raises(InvalidInput) as err:
        bad("db", {"query": "SELECT nosuch FROM loans"})
    assert err.value.details["field"] == "query" and PASSWORD not in err.value.message


@pytest.mark.postgres
def test_postgres_source(ws: Workspace, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    _check_sql_source(ws, postgres_url, caplog)


@pytest.mark.postgres
def test_postgres_numeric_refreshed_twice_diffs_as_numbers(ws: Workspace, postgres_url: str) -> None:
    """A NUMERIC column without declared precision: each refresh types it from its values, so a value
    with one more digit turns decimal128(5, 1) into decimal128(6, 1). That is no retype, and drift
    compares the amounts as numbers (deciles of the first version), not as thousands of categories."""
    import numpy as np
    from click.testing import CliRunner

    from shipyard.cli import main
    from tests.data.test_datasets import _naive_psi

    rng = np.random.default_rng(11)
    first = np.round(rng.normal(5000, 1500, 2000).clip(100, 9999), 1)
    second = np.round(rng.normal(5600, 1500, 2000).clip(100, 99999), 1)
    second[:3] = 12345.6
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pay (id integer, amt numeric)")
        conn.execute(sa.text("INSERT INTO pay VALUES (:id, :amt)"),
                     [{"id": i, "amt": str(v)} for i, v in enumerate(first)])
    ws.data.add_source("db", "sql", {"url": postgres_url}, actor="alice")
    ws.data.create_dataset("pay", "db", {"query": "SELECT amt FROM pay ORDER BY id"}, actor="alice")
    ws.data.refresh("pay", actor="alice")
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM pay")
        conn.execute(sa.text("INSERT INTO pay VALUES (:id, :amt)"),
                     [{"id": i, "amt": str(v)} for i, v in enumerate(second)])
    engine.dispose()
    ws.data.refresh("pay", actor="alice")
    diff = ws.data.diff("pay")
    assert diff.type_changed == []
    assert [(c["from"], c["to"], c["change"]) for c in diff.precision_changed] == [
        ("decimal128(5, 1)", "decimal128(6, 1)", "widened")]
    assert diff.drift[0]["psi"] == pytest.approx(_naive_psi(first, second), rel=1e-9)
    out = CliRunner().invoke(main, ["-p", str(ws.settings.project_dir), "datasets", "diff", "pay"]).output
    assert "~ amt" not in out and "precision widened, not a type change" in out


@pytest.mark.mariadb
def test_mariadb_source(ws: Workspace, mariadb_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = sa.make_url(mariadb_url)
    admin = sa.create_engine(url)
    user = f"u{os.urandom(4).hex()}"
    with admin.begin() as conn:  # a user whose password only the secret holds
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{PASSWORD}'")
        conn.exec_driver_sql(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%%'")
    try:
        _check_sql_source(ws, url.set(username=user, password=PASSWORD).render_as_string(hide_password=False), caplog)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


@pytest.mark.mariadb
def test_mariadb_wrong_password_is_a_clear_error_without_the_password(ws: Workspace, mariadb_url: str) -> None:
    url = sa.make_url(mariadb_url)
    admin = sa.create_engine(url)
    user = f"u{os.urandom(4).hex()}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'the-right-one'")
    try:
        ws.secrets.put("db_pw", PASSWORD, actor="alice")
        ws.data.add_source("db", "sql", {"url": url.set(username=user).render_as_string(hide_password=False),
                                         "secrets": {"password": "db_pw"}}, actor="alice")
        result = ws.data.test_source("db")
        assert not result.ok and "Access denied" in result.message and PASSWORD not in result.message
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


@pytest.mark.s3
def test_s3_csv_and_parquet_with_credentials_from_secrets(ws: Workspace, s3_bucket: tuple[str, dict]) -> None:
    import boto3

    root, options = s3_bucket
    bucket = root.split("/")[2]
    client = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="us-east-1")
    frame = loans_frame(800, seed=7)
    client.put_object(Bucket=bucket, Key="landing/2024-01.csv", Body=frame.iloc[:400].to_csv(index=False).encode())
    client.put_object(Bucket=bucket, Key="landing/2024-02.csv", Body=frame.iloc[400:].to_csv(index=False).encode())
    client.put_object(Bucket=bucket, Key="landing/all.parquet", Body=frame.to_parquet())
    ws.secrets.put("s3_key", options["key"], actor="alice")
    ws.secrets.put("s3_secret", options["secret"], actor="alice")
    ws.data.add_source("lake", "file", {"root": f"s3://{bucket}/landing",
                                        "storage_options": {"endpoint_url": options["endpoint_url"]},
                                        "secrets": {"key": "s3_key", "secret": "s3_secret"}}, actor="alice")
    assert ws.data.test_source("lake").ok
    ws.data.create_dataset("monthly", "lake", {"path": "2024-*.csv", "column_types": {"late_fee": "double"}},
                           actor="alice")
    ws.data.create_dataset("all", "lake", {"path": "all.parquet"}, actor="alice")
    ws.data.refresh("monthly", actor="alice")
    ws.data.refresh("all", actor="alice", chunk_rows=100)
    pd.testing.assert_frame_equal(ws.data.read("monthly"), frame, check_dtype=False)
    pd.testing.assert_frame_equal(ws.data.read("all"), frame, check_dtype=False)
    assert ws.data.version("monthly").sha256 == ws.data.version("all").sha256  # same content, same hash


@pytest.mark.spark
@pytest.mark.skipif(os.environ.get("SHIPYARD_TEST_SPARK") != "1", reason="set SHIPYARD_TEST_SPARK=1")
def test_spark_table_and_query(ws: Workspace, tmp_path: Path) -> None:
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("shipyard-test-data")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.warehouse.dir", str(tmp_path / "warehouse")).getOrCreate())
    frame = loans_frame(300, seed=9).drop(columns=["late_fee"])
    db = f"sy_{os.urandom(4).hex()}"
    spark.sql(f"CREATE DATABASE {db}")
    try:
        spark.createDataFrame(frame).write.saveAsTable(f"{db}.loans")
        ws.data.add_source("spark", "spark", {"master": "local[1]"}, actor="alice")
        assert ws.data.test_source("spark").ok
        ws.data.create_dataset("loans", "spark", {"table": f"{db}.loans"}, actor="alice")
        ws.data.create_dataset("big", "spark", {"query": f"SELECT * FROM {db}.loans WHERE amount > 3000"},
                               actor="alice")
        ws.data.refresh("loans", actor="alice", chunk_rows=64)
        ws.data.refresh("big", actor="alice")
        got = ws.data.read("loans").sort_values("loan_id", ignore_index=True)
        pd.testing.assert_frame_equal(got, frame, check_dtype=False)
        assert ws.data.version("big").rows == int((frame["amount"] > 3000).sum())
        with pytest.raises(InvalidInput, match="table"):
            ws.data.preview("spark", {"table": f"{db}.nosuch"})
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")
