"""Metadata store: migrations, concurrency, locking, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.errors import ConfigError, StoreUnavailable
from shipyard.store import MetadataStore, now_ms
from shipyard.store.events import list_events, record_event
from shipyard.store.schema import events, experiments


def test_fresh_database_is_at_head(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    assert store.current_revision() == store.head_revision()
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"runs", "run_metrics", "model_versions", "model_aliases", "events", "artifacts"} <= tables
    store.dispose()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.dispose()


def test_upgrade_from_first_revision_keeps_rows(metadata_url: str) -> None:
    old = MetadataStore(metadata_url, migrate=False)
    old.upgrade("0001")
    assert old.current_revision() == "0001"
    with old.begin() as conn:
        conn.execute(experiments.insert().values(name="legacy", artifact_location="x", lifecycle="active",
                                                 created_at=now_ms(), tags={"team": "risk"}))
    old.dispose()
    new = MetadataStore(metadata_url)
    assert new.current_revision() == new.head_revision()
    with new.read() as conn:
        row = conn.execute(sa.select(experiments).where(experiments.c.name == "legacy")).one()
    assert row.tags == {"team": "risk"}
    new.dispose()


def _open_and_write(url: str, worker: int, n: int) -> None:
    store = MetadataStore(url)
    for i in range(n):
        with store.begin() as conn:
            record_event(conn, f"w{worker}", "test.write", f"subject/{worker}/{i}")
    store.dispose()


def test_concurrent_processes_migrate_and_write_without_loss(metadata_url: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_and_write, args=(metadata_url, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = MetadataStore(metadata_url)
    with store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(events.c.subject)))).scalar()
    assert count == 100 and distinct == 100
    assert len(list_events(store, "subject/2/", limit=1000)) == 25
    store.dispose()


def test_locked_sqlite_gives_store_unavailable_and_no_partial_write(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = MetadataStore(f"sqlite:///{path}", busy_timeout_s=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            with store.begin() as conn:
                record_event(conn, "a", "k", "s")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 0
    store.dispose()


def test_failed_transaction_rolls_back(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    with pytest.raises(RuntimeError):
        with store.begin() as conn:
            record_event(conn, "a", "k", "s1")
            raise RuntimeError("boom")
    assert list_events(store) == []
    store.dispose()


@pytest.mark.parametrize("url", ["not a url", "mysql://root@localhost/x"])
def test_bad_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="metadata_url"):
        MetadataStore(url)
