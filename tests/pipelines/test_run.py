"""Running pipelines: tracking runs, caching, breakpoints, failures, retries, timeouts, parallel workers,
logs, lineage, and the secret key kept out of worker processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.fernet import Fernet

from shipyard.errors import InvalidInput
from shipyard.pipelines.types import decode
from shipyard.workspace import Workspace
from tests.pipelines.conftest import calls


def _write(folder: Path, doc: dict) -> Path:
    path = folder / f"{doc['name']}.json"
    path.write_text(json.dumps(doc))
    return path


def _output(ws: Workspace, record, node: str, name: str):  # noqa: ANN001, ANN202 - test helper
    ref = record.node(node).outputs[name]
    return decode(ref["type"], ws.artifacts.get_bytes(ref["path"], expected_sha256=ref["sha256"]))


BASIC = {
    "name": "basic",
    "params": {"n": 200, "scale": 2.0},
    "nodes": [
        {"id": "data", "component": "comps.py:make_frame", "params": {"n": "${n}", "seed": 3}},
        {"id": "stats", "component": "comps.py:stats", "inputs": {"data": "data"}, "params": {"scale": "${scale}"}},
        {"id": "total", "component": "comps.py:total", "inputs": {"data": "stats.doubled"}},
    ],
}


def test_run_records_outputs_tracking_and_logs_then_reuses_everything(workspace: Workspace,
                                                                       components_dir: Path) -> None:
    path = _write(components_dir, BASIC)
    first = workspace.pipelines.run(path, workers=1)
    assert first.status == "succeeded", first.error
    assert [n.status for n in first.nodes] == ["succeeded"] * 3
    rng = np.random.default_rng(3)  # the reference: the same frame built directly
    x = rng.normal(size=200)
    assert _output(workspace, first, "stats", "mean") == {"x": pytest.approx(float(x.mean()), rel=1e-12)}
    assert _output(workspace, first, "total", "total")["sum"] == pytest.approx(float((2 * x).sum()), rel=1e-12)
    # one tracking run for the pipeline run, a nested run per node with its metrics
    parent = workspace.tracking.get_run(first.tracking_run_id)
    assert parent.info.status == "FINISHED" and parent.params == {"n": "200", "scale": "2.0"}
    stats_run = workspace.tracking.get_run(first.node("stats").tracking_run_id)
    assert stats_run.info.parent_run_id == parent.id and stats_run.metrics["rows"] == 200
    assert {a.path for a in workspace.tracking.list_artifacts(stats_run.id, "logs")} == {"logs/stats.log"}
    log = workspace.pipelines.logs(first.id, "stats")
    assert "stats sees 200 rows" in log.text and "raw write to fd 1" in log.text and log.complete
    assert calls(components_dir) == ["make_frame", "stats", "total"]

    second = workspace.pipelines.run(path, workers=1)
    assert [n.status for n in second.nodes] == ["cached"] * 3
    assert calls(components_dir) == ["make_frame", "stats", "total"]  # nothing executed again
    assert {n.node_id: n.outputs for n in second.nodes} == {n.node_id: n.outputs for n in first.nodes}
    nested = workspace.tracking.get_run(second.node("total").tracking_run_id)
    assert nested.tags["shipyard.cached_from"] == first.id


def test_changing_a_param_or_the_code_reruns_only_what_depends_on_it(sqlite_workspace: Workspace,
                                                                    components_dir: Path) -> None:
    ws = sqlite_workspace
    path = _write(components_dir, BASIC)
    ws.pipelines.run(path, workers=0)
    run = ws.pipelines.run(path, params={"scale": 3.0}, workers=0)
    assert [n.status for n in run.nodes] == ["cached", "succeeded", "succeeded"]
    # an edit to total's source changes its code hash: only total runs
    source = (components_dir / "comps.py").read_text()
    (components_dir / "comps.py").write_text(source.replace('return {"sum": float(data["x"].sum())}',
                                                            'return {"sum": float(data["x"].sum()), "v": 2}'))
    run = ws.pipelines.run(path, params={"scale": 3.0}, workers=0)
    assert [n.status for n in run.nodes] == ["cached", "cached", "succeeded"]
    assert _output(ws, run, "total", "total")["v"] == 2


def test_from_reruns_the_node_and_what_follows_and_to_stops_early(sqlite_workspace: Workspace,
                                                                  components_dir: Path) -> None:
    ws = sqlite_workspace
    path = _write(components_dir, BASIC)
    with pytest.raises(InvalidInput, match="no stored result"):
        ws.pipelines.run(path, start="stats", workers=0)
    first = ws.pipelines.run(path, workers=0)
    before = len(calls(components_dir))
    again = ws.pipelines.run(path, start="stats", workers=0)
    assert {n.node_id: n.status for n in again.nodes} == {"data": "reused", "stats": "succeeded",
                                                          "total": "succeeded"}
    assert again.node("data").reused_from == first.id
    assert calls(components_dir)[before:] == ["stats", "total"]
    upto = ws.pipelines.run(path, stop="stats", params={"n": 50}, workers=0)
    assert {n.node_id: n.status for n in upto.nodes} == {"data": "succeeded", "stats": "succeeded",
                                                         "total": "not_selected"}
    with pytest.raises(InvalidInput, match="--from 'nosuch'"):
        ws.pipelines.run(path, start="nosuch", workers=0)


def test_a_failing_node_fails_the_run_naming_it_keeps_its_log_and_skips_what_follows(
        sqlite_workspace: Workspace, components_dir: Path) -> None:
    ws = sqlite_workspace
    doc = {"name": "failing", "params": {"fail": True}, "nodes": [
        {"id": "data", "component": "comps.py:make_frame"},
        {"id": "stats", "component": "comps.py:stats", "inputs": {"data": "data"}},
        {"id": "bad", "component": "comps.py:boom", "inputs": {"data": "stats.doubled"}, "params": {"fail": "${fail}"}},
        {"id": "independent", "component": "comps.py:total", "inputs": {"data": "data"}},
    ]}
    path = _write(components_dir, doc)
    run = ws.pipelines.run(path, workers=0)
    assert run.status == "failed" and "node 'bad' failed" in run.error and "boom failed on purpose" in run.error
    assert run.node("bad").status == "failed" and run.node("independent").status == "succeeded"
    log = ws.pipelines.logs(run.id, "bad").text
    assert "Traceback" in log and "RuntimeError: boom failed on purpose" in log
    assert ws.tracking.get_run(run.node("bad").tracking_run_id).info.status == "FAILED"
    assert ws.tracking.get_run(run.tracking_run_id).info.status == "FAILED"
    scratch = ws.settings.state_dir / "pipelines" / "tmp"
    assert not (scratch / run.id).exists()  # nothing left behind by a failed run
    fixed = ws.pipelines.run(path, start="bad", params={"fail": False}, workers=0)
    assert fixed.status == "succeeded" and not (scratch / fixed.id).exists()
    assert {n.node_id: n.status for n in fixed.nodes} == {"data": "not_selected", "stats": "reused",
                                                          "bad": "succeeded", "independent": "not_selected"}


def test_downstream_of_a_failure_is_skipped(sqlite_workspace: Workspace, components_dir: Path) -> None:
    (components_dir / "more.py").write_text(
        "from shipyard.pipelines import component\n"
        "@component(inputs={'data': 'table'}, outputs={'data': 'table'})\n"
        "def fail_table(data):\n    raise ValueError('no table today')\n")
    doc = {"name": "skips", "nodes": [
        {"id": "data", "component": "comps.py:make_frame"},
        {"id": "broken", "component": "more.py:fail_table", "inputs": {"data": "data"}},
        {"id": "after", "component": "comps.py:total", "inputs": {"data": "broken"}},
        {"id": "side", "component": "comps.py:total", "inputs": {"data": "data"}},
    ]}
    run = sqlite_workspace.pipelines.run(_write(components_dir, doc), workers=2)
    assert {n.node_id: n.status for n in run.nodes} == {"data": "succeeded", "broken": "failed",
                                                        "after": "skipped", "side": "succeeded"}
    assert "'broken'" in run.node("after").error
    assert "total" not in calls(components_dir)[:1]


def test_retries_and_timeouts_in_worker_processes(sqlite_workspace: Workspace, components_dir: Path) -> None:
    doc = {"name": "faults", "nodes": [
        {"id": "data", "component": "comps.py:make_frame"},
        {"id": "flaky", "component": "comps.py:flaky", "inputs": {"data": "data"}, "retries": 1},
        {"id": "slow", "component": "comps.py:sleeper", "params": {"seconds": 60}, "timeout_s": 1},
    ]}
    run = sqlite_workspace.pipelines.run(_write(components_dir, doc), workers=2)
    assert run.node("flaky").status == "succeeded" and run.node("flaky").attempts == 2
    slow = run.node("slow")
    assert slow.status == "failed" and "timeout of 1" in slow.error
    assert "ran past its timeout" in sqlite_workspace.pipelines.logs(run.id, "slow").text
    assert calls(components_dir).count("flaky") == 2


def test_independent_nodes_run_in_parallel_processes(sqlite_workspace: Workspace, components_dir: Path) -> None:
    doc = {"name": "parallel", "nodes": [
        {"id": "a", "component": "comps.py:sleeper", "params": {"seconds": 1.0, "tag": "a"}},
        {"id": "b", "component": "comps.py:sleeper", "params": {"seconds": 1.0, "tag": "b"}},
    ]}
    run = sqlite_workspace.pipelines.run(_write(components_dir, doc), workers=2)
    a, b = (_output(sqlite_workspace, run, n, "span") for n in ("a", "b"))
    assert a["pid"] != b["pid"] != os.getpid()
    assert a["start"] < b["end"] and b["start"] < a["end"]  # their sleeps overlapped


def test_worker_processes_never_see_the_secret_key(tmp_path: Path, components_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.config import load_settings

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SHIPYARD_SECRET_KEY", key)
    ws = Workspace(load_settings(tmp_path / "proj", user="alice"))
    ws.secrets.put("warehouse_pw", "s3cret-value-42", actor="alice")
    run = ws.pipelines.run(_write(components_dir, {"name": "env", "nodes": [
        {"id": "env", "component": "comps.py:environment"}]}), workers=1)
    env = _output(ws, run, "env", "env")
    assert "SHIPYARD_SECRET_KEY" not in env["keys"]
    assert key not in env["values"] and "s3cret-value-42" not in env["values"]
    ws.close()


def test_load_dataset_reads_the_latest_version_and_records_lineage(sqlite_workspace: Workspace, tmp_path: Path,
                                                                  components_dir: Path) -> None:
    ws = sqlite_workspace
    landing = tmp_path / "landing"
    landing.mkdir()
    frame = pd.DataFrame({"x": np.arange(20.0), "g": ["a", "b"] * 10})
    frame.to_parquet(landing / "d.parquet")
    ws.data.add_source("files", "file", {"root": str(landing)}, actor="alice")
    ws.data.create_dataset("d", "files", {"path": "d.parquet", "profile": False}, actor="alice")
    ws.data.refresh("d", actor="alice")
    doc = {"name": "uses_data", "nodes": [
        {"id": "data", "component": "load_dataset", "params": {"dataset": "d"}},
        {"id": "total", "component": "comps.py:total", "inputs": {"data": "data"}}]}
    path = _write(components_dir, doc)
    run = ws.pipelines.run(path, workers=0)
    assert _output(ws, run, "total", "total")["sum"] == 190.0
    frame.assign(x=frame["x"] * 10).to_parquet(landing / "d.parquet")
    ws.data.refresh("d", actor="alice")
    again = ws.pipelines.run(path, workers=0)  # a new version is new input: nothing cached
    assert [n.status for n in again.nodes] == ["succeeded", "succeeded"]
    assert _output(ws, again, "total", "total")["sum"] == 1900.0
    readers = ws.data.lineage("d")["readers"]
    assert {r["id"] for r in readers["pipeline_run"]} == {run.id, again.id}
    assert {(r["version"], r["id"]) for r in readers["run"]} == {
        (1, run.node("data").tracking_run_id), (2, again.node("data").tracking_run_id)}


def test_run_record_and_runs_listing(sqlite_workspace: Workspace, components_dir: Path) -> None:
    ws = sqlite_workspace
    path = _write(components_dir, BASIC)
    run = ws.pipelines.run(path, workers=0)
    assert ws.pipelines.get_run(run.id[:10]).id == run.id
    listed = ws.pipelines.runs("basic")
    assert [r.id for r in listed] == [run.id]
    data = listed[0].to_dict()
    assert data["counts"] == {"succeeded": 3} and "document" not in data


def test_run_pipeline_runs_in_the_workspace_connect_opened(tmp_path: Path, components_dir: Path) -> None:
    import shipyard as sy

    ws = sy.connect(tmp_path / "proj", user="bob")
    try:
        record = sy.run_pipeline(_write(components_dir, BASIC), workers=0)
        assert record.status == "succeeded", record.error
        assert ws.pipelines.get_run(record.id).status == "succeeded"
        x = np.random.default_rng(3).normal(size=200)
        assert _output(ws, record, "total", "total")["sum"] == pytest.approx(float((2 * x).sum()), rel=1e-12)
    finally:
        ws.close()
