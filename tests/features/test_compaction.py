"""Compaction of the offline log: same rows before, during and after, fewer files, no loss or
duplicate after a crash at any step, pushes and reads running alongside."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from shipyard.artifacts import ArtifactStore
from shipyard.errors import InvalidInput
from shipyard.features import compaction
from shipyard.features.compaction import compact_log, live_log_files
from shipyard.features.store import OFFLINE_LOG_PREFIX
from tests.conftest import auth_headers
from tests.features import online_support
from tests.features.online_support import T0
from tests.features.pit_reference import naive_pit

embedded_feature_store = online_support.embedded_feature_store
FOLDER = "features/offline/v"


# -- the log on its own: an artifact store, small files and a reader ------------------------------
@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    root, options = request.getfixturevalue("s3_bucket")
    return ArtifactStore(root, options)


def _write_small_files(store: ArtifactStore, count: int, rows_each: int = 3, start: int = 0) -> list[dict[str, Any]]:
    written = []
    for i in range(start, start + count):
        rows = [{"k": i, "j": j, "ts": T0 + dt.timedelta(minutes=i * rows_each + j), "x": float(i * 100 + j)}
                for j in range(rows_each)]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        store.put_bytes(f"{FOLDER}/part-{i:013d}-{uuid.uuid4().hex[:12]}.parquet", buffer.getvalue())
        written += rows
    return written


def _read(store: ArtifactStore) -> list[tuple[Any, ...]]:
    """What a reader sees: the rows of the live files, sorted (a multiset, so duplicates show)."""
    rows = []
    for path in live_log_files(store, FOLDER):
        table = pq.read_table(io.BytesIO(store.get_bytes(path)))
        rows += [(r["k"], r["j"], r["ts"], r["x"]) for r in table.to_pylist()]
    return sorted(rows)


def _expected(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r["k"], r["j"], r["ts"], r["x"]) for r in rows)


class Crash(Exception):
    """Stands for the process being killed."""


class Interrupted:
    """An artifact store that checks what a reader sees before every write or delete, and dies at
    write-or-delete number ``crash_at``."""

    def __init__(self, inner: ArtifactStore, crash_at: int | None, expected: list[tuple[Any, ...]]) -> None:
        self.inner, self.crash_at, self.expected, self.ops = inner, crash_at, expected, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _step(self) -> None:
        assert _read(self.inner) == self.expected  # a reader at this point misses and repeats nothing
        if self.ops == self.crash_at:
            raise Crash
        self.ops += 1

    def put_bytes(self, path: str, data: bytes) -> Any:
        self._step()
        return self.inner.put_bytes(path, data)

    def delete(self, path: str) -> None:
        self._step()
        self.inner.delete(path)


def test_compaction_merges_small_files_and_keeps_every_row_once(artifacts: ArtifactStore) -> None:
    rows = _write_small_files(artifacts, 25)
    result = compact_log(artifacts, FOLDER, "v", timestamp_field="ts", target_rows=30, grace_seconds=0)
    assert (result.files_before, result.files_after, result.rows_merged) == (25, 3, 75)
    assert _read(artifacts) == _expected(rows)
    # only the merged files and their sidecars are left
    assert len(artifacts.list(FOLDER)) == 6
    assert all(p.rsplit("/", 1)[-1].startswith("compact-") for p in artifacts.list(FOLDER))
    # merged files that are still small are merged again, with new pushes
    rows += _write_small_files(artifacts, 4, start=25)
    again = compact_log(artifacts, FOLDER, "v", timestamp_field="ts", target_rows=1000, grace_seconds=0)
    assert (again.files_before, again.files_after) == (7, 1)
    assert _read(artifacts) == _expected(rows)
    merged = live_log_files(artifacts, FOLDER)[0]
    times = pq.read_table(io.BytesIO(artifacts.get_bytes(merged))).column("ts").to_pylist()
    assert times == sorted(times)  # in event-time order


def test_replaced_files_stay_for_the_grace_period_but_are_not_read(artifacts: ArtifactStore) -> None:
    rows = _write_small_files(artifacts, 6)
    compact_log(artifacts, FOLDER, "v", target_rows=100, grace_seconds=3600)
    assert len([p for p in artifacts.list(FOLDER) if p.endswith(".parquet")]) == 7
    assert len(live_log_files(artifacts, FOLDER)) == 1
    assert _read(artifacts) == _expected(rows)
    later = compact_log(artifacts, FOLDER, "v", target_rows=100, grace_seconds=0)
    assert len(later.deleted) == 6 and later.written == []
    assert _read(artifacts) == _expected(rows)


def test_a_crash_at_any_step_loses_and_repeats_nothing(artifacts: ArtifactStore, tmp_path: Path) -> None:
    crash_at = 0
    while True:
        store = ArtifactStore(str(tmp_path / f"crash-{crash_at}")) if artifacts.is_local else artifacts
        for path in store.list(FOLDER):
            store.delete(path)
        rows = _write_small_files(store, 8, rows_each=2)
        want = _expected(rows)
        interrupted = Interrupted(store, crash_at, want)
        try:
            compact_log(interrupted, FOLDER, "v", target_rows=6, grace_seconds=0)  # type: ignore[arg-type]
        except Crash:
            pass
        else:
            break  # every step has been interrupted once
        assert _read(store) == want
        # the next run finishes the job: every row once, the small files gone, no stray sidecars
        compact_log(store, FOLDER, "v", target_rows=6, grace_seconds=0)
        compact_log(store, FOLDER, "v", target_rows=6, grace_seconds=0)
        assert _read(store) == want
        left = store.list(FOLDER)
        assert not [p for p in left if "part-" in p]
        assert {p[: -len(".json")] for p in left if p.endswith(".json")} == \
            {p[: -len(".parquet")] for p in left if p.endswith(".parquet")}
        crash_at += 1
    # 8 files of 2 rows in runs of up to 6 rows: 3 merges (sidecar + file each), then 8 inputs deleted
    assert crash_at == 3 * 2 + 8


def test_concurrent_compactions_never_duplicate(artifacts: ArtifactStore) -> None:
    rows = _write_small_files(artifacts, 6)
    compact_log(artifacts, FOLDER, "v", target_rows=100, grace_seconds=3600)
    sidecar = compaction.read_sidecar(artifacts, live_log_files(artifacts, FOLDER)[0])
    assert sidecar is not None and len(sidecar["covers"]) == 6
    table = pa.Table.from_pylist([{"k": r[0], "j": r[1], "ts": r[2], "x": r[3]} for r in _expected(rows)])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    # a second compaction that listed the log at the same time and committed the same inputs too
    # (the check before committing narrows this race but cannot close it); its older name loses
    twin = f"{FOLDER}/compact-{0:013d}-{'0' * 12}"
    artifacts.put_bytes(f"{twin}.json", json.dumps({"format": 1, "rows": 18, "covers": sidecar["covers"]}).encode())
    artifacts.put_bytes(f"{twin}.parquet", buffer.getvalue())
    assert len(live_log_files(artifacts, FOLDER)) == 1
    assert _read(artifacts) == _expected(rows)
    compact_log(artifacts, FOLDER, "v", target_rows=100, grace_seconds=0)
    assert _read(artifacts) == _expected(rows)
    assert not artifacts.exists(f"{twin}.parquet")


def test_bad_options_name_the_field(artifacts: ArtifactStore) -> None:
    with pytest.raises(InvalidInput) as info:
        compact_log(artifacts, FOLDER, "v", target_rows=1)
    assert info.value.details["field"] == "target_rows"
    with pytest.raises(InvalidInput) as info:
        compact_log(artifacts, FOLDER, "v", grace_seconds=-1)
    assert info.value.details["field"] == "grace_seconds"


# -- the feature store: pushes, point-in-time joins, online reads, the CLI ------------------------
def _push_rows(i: int) -> list[dict[str, Any]]:
    at = T0 + dt.timedelta(minutes=7 * i)
    return [{"customer_id": i % 5, "event_timestamp": at, "amount": float(i), "n": i, "city": f"c{i % 3}",
             "vip": i % 2 == 0, "seen": at - dt.timedelta(hours=1)}]


def _offline(store: Any) -> pd.DataFrame:
    frame = store.read_offline("cust_stats").to_pandas()
    return frame.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)


def _log_files(store: Any) -> list[str]:
    return [p for p in store.ws.artifacts.list(f"{OFFLINE_LOG_PREFIX}/cust_stats") if p.endswith(".parquet")]


def test_many_pushes_then_compact_gives_the_same_features(embedded_feature_store: Any) -> None:
    store = embedded_feature_store
    pushed = [row for i in range(40) for row in _push_rows(i)]
    for i in range(40):
        store.push("cust_stats", _push_rows(i))
    entity = pd.DataFrame({"customer_id": [0, 1, 2, 3, 4, 0, 7],
                           "event_timestamp": pd.to_datetime([T0 + dt.timedelta(minutes=m)
                                                              for m in (0, 50, 100, 200, 280, 300, 100)], utc=True)})
    refs = ["cust_stats:amount", "cust_stats:n", "cust_stats:city"]
    before = store.get_training_set(entity, features=refs)
    want = naive_pit(entity.to_dict("records"), pushed, ["customer_id"], "event_timestamp", ["amount", "n", "city"],
                     dt.timedelta(days=2))
    for i, row in enumerate(want):
        for col in ("amount", "n", "city"):
            assert (pd.isna(before[col].iloc[i]) if row[col] is None else before[col].iloc[i] == row[col]), (i, col)
    offline_before = _offline(store)
    latest_before, _ = store.read_offline_latest("cust_stats")
    online_rows = [{"customer_id": c} for c in range(6)]
    online_before = store.get_online_features(online_rows, features=refs)
    assert len(_log_files(store)) == 40

    [result] = store.compact("cust_stats", target_rows=15, grace_seconds=0)
    assert (result.files_before, result.files_after, result.rows_merged) == (40, 3, 40)
    assert len(_log_files(store)) == 3
    pd.testing.assert_frame_equal(_offline(store), offline_before)
    pd.testing.assert_frame_equal(store.get_training_set(entity, features=refs), before)
    assert store.read_offline_latest("cust_stats")[0].sort_by("customer_id").equals(latest_before.sort_by("customer_id"))
    assert store.get_online_features(online_rows, features=refs) == online_before
    # pushes stay idempotent on (entity, event time): replays are duplicates and add no offline rows
    again = store.push("cust_stats", _push_rows(3))
    assert (again.duplicates, again.offline_rows) == (1, 0)
    assert len(_offline(store)) == 40


def test_push_and_read_while_compacting(embedded_feature_store: Any) -> None:
    store = embedded_feature_store
    total = 120
    done = threading.Event()
    pushed = [0]
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            for i in range(total):
                store.push("cust_stats", _push_rows(i))
                pushed[0] = i + 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                at_least = pushed[0]
                frame = store.read_offline("cust_stats").to_pandas()
                assert not frame.duplicated(["customer_id", "event_timestamp"]).any()
                assert len(frame) >= at_least
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=pusher), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    runs = 0
    while not done.is_set() or runs == 0:
        store.compact("cust_stats", target_rows=10)  # replaced files kept for readers (default grace)
        runs += 1
    for thread in threads:
        thread.join()
    assert not errors, errors
    store.compact("cust_stats", target_rows=10)
    frame = _offline(store)
    assert sorted(frame["n"]) == list(range(total))
    assert len(live_log_files(store.ws.artifacts, f"{OFFLINE_LOG_PREFIX}/cust_stats")) <= total // 10 + 1


def test_cli_compact(embedded_feature_store: Any) -> None:
    from shipyard.cli import main

    store = embedded_feature_store
    for i in range(6):
        store.push("cust_stats", _push_rows(i))
    project = store.ws.settings.project_dir
    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(project), "features", "compact", "cust_stats", "--json",
                                  "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert '"files_after": 1' in result.output and '"rows_merged": 6' in result.output
    result = runner.invoke(main, ["--project", str(project), "features", "compact"])
    assert result.exit_code == 0, result.output
    assert "cust_stats" in result.output and "pair_stats" in result.output
    assert len(_offline(store)) == 6


def test_a_merged_file_without_its_sidecar_is_not_read(artifacts: ArtifactStore) -> None:
    rows = _write_small_files(artifacts, 4)
    compact_log(artifacts, FOLDER, "v", target_rows=100, grace_seconds=3600)
    [merged] = live_log_files(artifacts, FOLDER)
    # the sidecar is gone (deleted by hand, or by a cleanup racing this reader): the file is not trusted
    compaction._SIDECAR_CACHE.clear()
    artifacts.delete(merged[: -len(".parquet")] + ".json")
    assert _read(artifacts) == _expected(rows)  # the inputs, not the inputs and the merged file


def test_http_compact_and_its_bad_input(embedded_feature_store: Any) -> None:
    from fastapi.testclient import TestClient

    from shipyard.server import create_app

    store = embedded_feature_store
    for i in range(5):
        store.push("cust_stats", _push_rows(i))
    before = _offline(store)
    with TestClient(create_app(store.ws), headers=auth_headers(store.ws)) as client:
        reply = client.post("/api/v1/features/compact", json={"view": "cust_stats", "grace_seconds": 0})
        assert reply.status_code == 200, reply.text
        [result] = reply.json()["results"]
        assert (result["view"], result["files_before"], result["files_after"], result["rows_merged"]) == \
            ("cust_stats", 5, 1, 5)
        reply = client.post("/api/v1/features/compact", json={"view": "cust_stats", "target_rows": 1})
        assert reply.status_code == 400 and "target_rows" in reply.text
        reply = client.post("/api/v1/features/compact", json={"view": "nope"})
        assert reply.status_code == 404 and "nope" in reply.text
        reply = client.post("/api/v1/features/compact", json={})
        assert reply.status_code == 200 and {r["view"] for r in reply.json()["results"]} == {"cust_stats", "pair_stats"}
    pd.testing.assert_frame_equal(_offline(store), before)
    assert len(_log_files(store)) == 1


def test_a_compaction_alone_makes_no_incremental_run_read_again(embedded_feature_store: Any) -> None:
    """Incremental materialization treats new offline-log files as late arrivals. A compacted file
    whose inputs the last run had all seen holds no new row, so the next run starts where the last
    one ended; one that merged an unseen file is an arrival, and its late row reaches the store."""
    from shipyard.features.online import online_store_of

    store = embedded_feature_store
    for i in range(12):
        store.offline_append("cust_stats", _push_rows(i))
    [first] = store.materialize_incremental(end=T0 + dt.timedelta(hours=2), views=["cust_stats"])
    assert first.rows_read == 12
    [compacted] = store.compact("cust_stats", target_rows=100, grace_seconds=0)
    assert (compacted.files_before, compacted.files_after) == (12, 1)

    [second] = store.materialize_incremental(end=T0 + dt.timedelta(hours=3), views=["cust_stats"])
    assert second.start == first.end and second.rows_read == 0

    late = {**_push_rows(0)[0], "customer_id": 9, "amount": 9.5, "event_timestamp": T0 + dt.timedelta(hours=1)}
    store.offline_append("cust_stats", [late])
    store.compact("cust_stats", target_rows=100, grace_seconds=0)  # merges the unseen file too
    [third] = store.materialize_incremental(end=T0 + dt.timedelta(hours=4), views=["cust_stats"])
    assert third.start is not None and third.start <= late["event_timestamp"]
    assert third.rows_written >= 1
    assert online_store_of(store).read("cust_stats", ["amount"], [(9,)]) == {"amount": [9.5]}  # no TTL: T0 is past
