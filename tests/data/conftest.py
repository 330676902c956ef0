"""Fixtures for data-source tests: a throwaway MariaDB database, seeded frames."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

MARIADB_URL = os.environ.get("SHIPYARD_TEST_MARIADB_URL", "")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh database on the MariaDB server (SHIPYARD_TEST_MARIADB_URL), dropped afterwards."""
    if not MARIADB_URL:
        pytest.skip("set SHIPYARD_TEST_MARIADB_URL (e.g. mysql+pymysql://root@127.0.0.1:3306/) to run MariaDB tests")
    import sqlalchemy as sa

    name = f"sy_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(MARIADB_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield sa.make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def loans_frame(n: int = 1000, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """A loans table: ints, floats, strings, a mostly-missing column whose first rows are all null."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "loan_id": np.arange(n, dtype=np.int64),
        "amount": np.round(rng.lognormal(8 + shift, 0.5, n), 2),
        "term": rng.choice([12, 24, 36, 48], n).astype(np.int64),
        "grade": rng.choice(["A", "B", "C", "D"], n),
        "bad": (rng.random(n) < 0.2).astype(np.int64),
    })
    late = np.full(n, np.nan)
    late[n // 2:] = rng.normal(3, 1, n - n // 2)
    frame["late_fee"] = late
    return frame
