"""The prediction log's writer: nothing submitted is lost, partitions, drops and bad records."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.artifacts import ArtifactStore
from shipyard.serving.prediction_log import COLUMNS, PredictionLog, read_prediction_log

DAY1, DAY2 = 1_700_000_000_000, 1_700_000_000_000 + 86_400_000  # 2023-11-14 and 2023-11-15 (UTC)


def record(i: int, scene: str = "a", ts: int = DAY1, **extra: Any) -> dict[str, Any]:
    return {"ts": ts + i, "request_id": f"r{i}", "scene": scene, "version": 1 + i % 3, "arm": "control",
            "kind": "live", "inputs": [{"x": i / 7, "name": f"n{i}"}], "features": [{"v:f": i * 0.5, "k": None}],
            "outputs": [{"score": i / 3}], "models": {"m": 1}, "latency_ms": i / 10, "features_ms": 0.25,
            "model_ms": None, "fallback": i % 2 == 0, "error": None, **extra}


def logged(rec: dict[str, Any]) -> dict[str, Any]:
    """What reading a record back gives: a field logged as null reads back as absent (typed columns)."""
    out = dict(rec)
    for source in ("inputs", "features", "outputs"):
        if out[source] is not None:
            out[source] = [{k: v for k, v in item.items() if v is not None} for item in out[source]]
    return out


@pytest.fixture
def artifacts(tmp_path):
    return ArtifactStore(str(tmp_path / "artifacts"))


def test_everything_submitted_from_many_threads_is_written_on_close(artifacts):
    # long intervals: only close() may write, and it must write all of it
    plog = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600, chunk_size=7)
    sent = [record(k * 1000 + i, scene="a" if i % 3 else "b", ts=DAY1 if i % 2 else DAY2)
            for k in range(4) for i in range(250)]
    threads = [threading.Thread(target=lambda part=sent[k::4]: [plog.submit(r) for r in part]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plog.close()
    assert plog.written == len(sent) and plog.dropped == 0
    paths = artifacts.list("prediction_logs")
    assert {p.rsplit("/", 1)[0] for p in paths} == {
        f"prediction_logs/scene={s}/date={d}" for s in ("a", "b") for d in ("2023-11-14", "2023-11-15")}
    for scene in ("a", "b"):
        frame = read_prediction_log(artifacts, scene)
        expected = sorted((r for r in sent if r["scene"] == scene), key=lambda r: r["request_id"])
        got = frame.sort_values("request_id").to_dict("records")
        assert len(got) == len(expected)
        for row, rec in zip(got, sorted(expected, key=lambda r: r["request_id"]), strict=True):
            rec = logged(rec)
            for column in COLUMNS:
                value = row[column]
                assert (value is None or value != value) if rec[column] is None else value == rec[column], column
        assert list(read_prediction_log(artifacts, scene, "2023-11-15", "2023-11-15")["ts"] // 86_400_000) == \
            [DAY2 // 86_400_000] * sum(1 for r in expected if r["ts"] >= DAY2)


def test_flush_writes_what_was_submitted_before_it(artifacts):
    plog = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600)
    for i in range(10):
        plog.submit(record(i))
    plog.flush()
    assert plog.written == 10 and len(read_prediction_log(artifacts, "a")) == 10
    plog.submit(record(10))
    plog.flush()
    assert plog.written == 11 and sorted(read_prediction_log(artifacts, "a")["request_id"]) == \
        sorted(f"r{i}" for i in range(11))
    plog.close()
    plog.submit(record(11))  # a closed log starts its writer again
    plog.close()
    assert plog.written == 12


def test_full_queue_drops_and_counts(artifacts):
    drops = []
    plog = PredictionLog(artifacts, max_queue=20, flush_interval=3600, encode_interval=3600,
                         on_drop=lambda: drops.append(1))
    accepted = [plog.submit(record(i)) for i in range(25)]
    assert accepted == [True] * 20 + [False] * 5 and plog.dropped == 5 and len(drops) == 5
    plog.close()
    assert plog.written == 20


def test_a_bad_record_costs_its_chunk_only_and_features_reach_the_feature_logger(artifacts):
    handed: dict[str, list[str]] = {}
    plog = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600, chunk_size=4,
                         feature_logger=lambda scene, rows: handed.setdefault(scene, []).extend(
                             r["request_id"] for r in rows))
    for i in range(12):
        plog.submit(record(i, version="not a number") if i == 5 else record(i, features=None if i == 7 else
                                                                         [{"f": i}]))
    plog.close()
    # records 4-7 share a chunk with the bad one; the other 8 are written and the writer lived on
    assert plog.written == 8 and plog.dropped == 4
    assert sorted(read_prediction_log(artifacts, "a")["request_id"]) == sorted(
        f"r{i}" for i in (0, 1, 2, 3, 8, 9, 10, 11))
    assert sorted(handed["a"]) == sorted(f"r{i}" for i in (0, 1, 2, 3, 8, 9, 10, 11))


def test_a_retried_request_id_is_logged_once_per_instance(artifacts):
    plog = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600)
    assert plog.submit(record(1)) and not plog.submit(record(1))  # the retry
    assert plog.submit(record(1, kind="shadow"))  # the mirrored call of the same request is its own record
    plog.close()
    frame = read_prediction_log(artifacts, "a")
    assert sorted(zip(frame["request_id"], frame["kind"], strict=True)) == [("r1", "live"), ("r1", "shadow")]
    assert plog.duplicates == 1 and set(frame["instance"]) == {plog.instance}


def _crash_after_spooling(spool: str, root: str, ids: list[int]) -> None:
    """A process that spools records, gets their group commits, and dies without a flush."""
    plog = PredictionLog(ArtifactStore(root), flush_interval=3600, encode_interval=3600, spool_dir=spool,
                         instance="dead-1")
    plog.start()
    for i in ids:
        ticket = plog.append(record(i))
        assert ticket.wait()
    os._exit(0)  # no close(): the memory buffer is lost, the flock released by the kernel


def test_a_dead_instances_spool_is_recovered_once_and_skips_what_is_already_written(tmp_path):
    root, spool = str(tmp_path / "artifacts"), str(tmp_path / "spool")
    artifacts = ArtifactStore(root)
    child = multiprocessing.get_context("fork").Process(target=_crash_after_spooling,
                                                        args=(spool, root, list(range(40))))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert read_prediction_log(artifacts, "a").empty  # nothing reached Parquet before the death
    # a retry of r3 that reached another server, written before the recovery: not logged again
    other = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600)
    other.submit(record(3))
    other.close()
    live = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600, spool_dir=spool)
    live.start()  # recovers synchronously
    assert live.recovered == 39
    assert not live.submit(record(5))  # a later retry of a recovered id is a duplicate here too
    live.close()
    frame = read_prediction_log(artifacts, "a")
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(40))
    assert (frame.set_index("request_id")["instance"].drop("r3") == "dead-1").all()
    assert not list(Path(spool).iterdir())  # the dead spool and the live one (closed cleanly) are gone
    rec = frame.set_index("request_id").loc["r7"]
    assert rec["outputs"] == [{"score": 7 / 3}] and rec["inputs"] == [{"x": 1.0, "name": "n7"}]


def test_a_live_instances_spool_is_left_alone(tmp_path):
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    first = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600, spool_dir=tmp_path / "spool")
    first.start()
    assert first.append(record(1)).wait()
    second = PredictionLog(artifacts, flush_interval=3600, encode_interval=3600, spool_dir=tmp_path / "spool")
    second.start()
    assert second.recovered == 0 and read_prediction_log(artifacts, "a").empty
    first.close()
    second.close()
    assert list(read_prediction_log(artifacts, "a")["request_id"]) == ["r1"]
