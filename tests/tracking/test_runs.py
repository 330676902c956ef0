"""Runs, params, tags and metrics on every metadata backend."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.store.schema import run_latest_metrics, run_metrics, run_params, run_tags
from shipyard.tracking import FAILED, FINISHED, KILLED, RUNNING, active_run
from shipyard.tracking.source import git_commit


def _count(ws, table, run_id: str) -> int:
    with ws.store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.run_id == run_id)).scalar_one()


def test_context_manager_finishes_and_records_everything(workspace) -> None:
    tracking = workspace.tracking
    with tracking.start_run(experiment="credit", name="lgbm-1", tags={"team": "risk"}) as run:
        assert active_run() is run
        run.log_params({"model": "lgbm", "depth": 6, "lr": 0.05})
        run.log_metric("auc", 0.71, step=1)
        run.log_metrics({"auc": 0.78, "ks": 0.41}, step=2)
        run.set_tag("stage", "dev")
        assert tracking.get_run(run.id).info.status == RUNNING
    assert active_run() is None
    record = tracking.get_run(run.id)
    assert record.info.status == FINISHED
    assert record.info.end_time is not None and record.info.end_time >= record.info.start_time
    assert record.info.name == "lgbm-1"
    assert record.info.user == "alice"
    assert record.params == {"depth": "6", "lr": "0.05", "model": "lgbm"}
    assert record.tags == {"stage": "dev", "team": "risk"}
    assert record.metrics == {"auc": 0.78, "ks": 0.41}
    assert [m.value for m in tracking.metric_history(run.id, "auc")] == [0.71, 0.78]
    assert [m.step for m in tracking.metric_history(run.id, "auc")] == [1, 2]
    assert tracking.get_experiment("credit").name == "credit"
    assert record.info.artifact_uri.endswith(f"runs/{run.id}/artifacts")


def test_block_that_raises_marks_run_failed(workspace) -> None:
    with pytest.raises(ZeroDivisionError):
        with workspace.tracking.start_run(experiment="credit") as run:
            run.log_metric("loss", 1.5)
            1 / 0  # noqa: B018
    assert workspace.tracking.get_run(run.id).info.status == FAILED
    assert active_run() is None


def test_kill_and_end_twice(workspace) -> None:
    tracking = workspace.tracking
    run = tracking.start_run(experiment="credit")
    run.kill()
    assert tracking.get_run(run.id).info.status == KILLED
    run.end()  # no-op for the handle
    with pytest.raises(Conflict, match="already ended as KILLED"):
        tracking.end_run(run.id, FINISHED)
    other = tracking.start_run(experiment="credit")
    with pytest.raises(InvalidInput, match="does not end a run"):
        tracking.end_run(other.id, "RUNNING")
    other.end()


def test_nested_runs_become_children(workspace) -> None:
    tracking = workspace.tracking
    with tracking.start_run(experiment="tune") as parent:
        with tracking.start_run(experiment="tune") as child_a:
            with tracking.start_run(experiment="tune") as grandchild:
                pass
        with tracking.start_run(experiment="tune") as child_b:
            pass
    explicit = tracking.start_run(experiment="tune", parent=parent.id)
    explicit.end()
    assert tracking.get_run(parent.id).info.parent_run_id is None
    assert tracking.get_run(child_a.id).info.parent_run_id == parent.id
    assert tracking.get_run(child_b.id).info.parent_run_id == parent.id
    assert tracking.get_run(grandchild.id).info.parent_run_id == child_a.id
    assert tracking.get_run(explicit.id).info.parent_run_id == parent.id
    children = tracking.search_runs("tune", filter=f"attributes.parent_run_id = '{parent.id}'")
    assert sorted(r.id for r in children) == sorted([child_a.id, child_b.id, explicit.id])
    with pytest.raises(NotFound, match="parent_run_id|does not exist"):
        tracking.start_run(experiment="tune", parent="0" * 32)


def test_params_are_immutable(workspace) -> None:
    with workspace.tracking.start_run(experiment="credit") as run:
        run.log_param("depth", 6)
        run.log_param("depth", "6")  # same value again is fine
        with pytest.raises(Conflict, match="param 'depth'") as info:
            run.log_params({"new": 1, "depth": 7})
        assert info.value.details["key"] == "depth"
    # the failed batch left nothing behind
    assert workspace.tracking.get_run(run.id).params == {"depth": "6"}


BAD_KEYS = ["", "a" * 256, "../up", "/abs", "x..y", None]
BAD_VALUES = [math.nan, math.inf, -math.inf, "0.5", None, True]


def test_bad_metric_keys_and_values_are_rejected(workspace) -> None:
    with workspace.tracking.start_run(experiment="credit") as run:
        for key in BAD_KEYS:
            with pytest.raises(InvalidInput) as info:
                run.log_metric(key, 1.0)
            assert info.value.details["field"] == "metric"
        for value in BAD_VALUES:
            with pytest.raises(InvalidInput, match="metric 'auc'"):
                run.log_batch(metrics=[("ok", 1.0, 0, None), ("auc", value, 0, None)])
        with pytest.raises(InvalidInput, match="step must be an integer"):
            run.log_metric("auc", 0.5, step="x")  # type: ignore[arg-type]
    assert _count(workspace, run_metrics, run.id) == 0  # every refused batch left nothing behind


def test_param_and_tag_keys_validated(workspace) -> None:
    with workspace.tracking.start_run(experiment="credit") as run:
        with pytest.raises(InvalidInput, match="param key"):
            run.log_param("../x", 1)
        with pytest.raises(InvalidInput, match="tag key"):
            run.set_tag("", 1)
        with pytest.raises(InvalidInput, match="limit is 6000"):
            run.log_param("long", "x" * 6001)


def test_log_batch_counts_and_latest_metric(workspace) -> None:
    tracking = workspace.tracking
    run = tracking.start_run(experiment="batch")
    metrics = [(f"m{i % 10}", float(i), i // 10, 1_000 + i) for i in range(5_000)]
    params = {f"p{i}": i for i in range(300)}
    tags = {f"t{i}": f"v{i}" for i in range(200)}
    run.log_batch(metrics=metrics, params=params, tags=tags)
    # a late point with a lower step does not replace the latest value
    run.log_batch(metrics=[("m0", -1.0, 3, 99_999)])
    # same step, later timestamp wins
    run.log_batch(metrics=[("m1", 12345.0, 499, 10_000_000)])
    run.set_tags({"t0": "changed"})
    run.end()
    assert _count(workspace, run_metrics, run.id) == 5_002
    assert _count(workspace, run_params, run.id) == 300
    assert _count(workspace, run_tags, run.id) == 200
    assert _count(workspace, run_latest_metrics, run.id) == 10
    record = tracking.get_run(run.id)
    assert record.metrics["m0"] == 4990.0
    assert record.metrics["m9"] == 4999.0
    assert record.metrics["m1"] == 12345.0
    assert record.tags["t0"] == "changed"
    assert record.params["p299"] == "299"
    history = tracking.metric_history(run.id, "m3")
    assert len(history) == 500
    assert [h.step for h in history] == list(range(500))


def test_experiments_and_missing_things(workspace) -> None:
    tracking = workspace.tracking
    exp = tracking.create_experiment("scorecards", tags={"owner": "risk"})
    assert tracking.get_experiment(exp.id).name == "scorecards"
    assert tracking.get_experiment(str(exp.id)).tags == {"owner": "risk"}
    from shipyard.errors import AlreadyExists

    with pytest.raises(AlreadyExists):
        tracking.create_experiment("scorecards")
    tracking.start_run(experiment="other").end()
    assert [e.name for e in tracking.list_experiments()] == ["scorecards", "other"]
    assert tracking.count_runs(tracking.get_experiment("other").id) == 1
    with pytest.raises(NotFound, match="experiment 'nope'"):
        tracking.get_experiment("nope")
    with pytest.raises(NotFound, match="run 'missing'"):
        tracking.get_run("missing")
    with pytest.raises(NotFound, match="run 'missing'"):
        tracking.log_batch("missing", metrics=[("a", 1.0)])
    with pytest.raises(NotFound):
        tracking.metric_history("missing", "a")


def test_deleted_runs_are_hidden(workspace) -> None:
    tracking = workspace.tracking
    keep = tracking.start_run(experiment="credit")
    drop = tracking.start_run(experiment="credit")
    keep.end()
    drop.end()
    tracking.delete_run(drop.id)
    assert [r.id for r in tracking.search_runs("credit")] == [keep.id]
    assert len(tracking.search_runs("credit", include_deleted=True)) == 2
    with pytest.raises(NotFound, match="is deleted"):
        tracking.log_batch(drop.id, params={"a": 1})


def test_source_and_git_commit(workspace, tmp_path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == sha
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    other = "f" * 40
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{other} refs/heads/main\n")
    assert git_commit(repo) == other
    (repo / ".git" / "HEAD").write_text(sha + "\n")  # detached
    assert git_commit(repo) == sha
    assert git_commit(tmp_path / "nowhere") is None or len(git_commit(tmp_path / "nowhere")) == 40
    run = workspace.tracking.start_run(experiment="credit", commit=sha, source="train.py")
    run.end()
    info = workspace.tracking.get_run(run.id).info
    assert (info.source_git_commit, info.source_name) == (sha, "train.py")


def test_module_level_start_run_uses_current_workspace(tmp_path) -> None:
    import shipyard as sy

    ws = sy.connect(tmp_path / "proj", user="bob")
    try:
        with sy.start_run(experiment="credit") as run:
            run.log_metric("auc", 0.9)
        record = ws.tracking.get_run(run.id)
        assert record.metrics == {"auc": 0.9}
        assert record.info.user == "bob"
    finally:
        ws.close()


def test_public_surface() -> None:
    import shipyard.tracking as tracking

    assert set(tracking.__all__) == {
        "FAILED", "FINISHED", "KILLED", "RUNNING", "Experiment", "Metric", "Run", "RunArtifact", "RunInfo",
        "RunLogger", "RunRecord", "Tracking", "active_run",
    }
    assert all(hasattr(tracking, name) for name in tracking.__all__)
