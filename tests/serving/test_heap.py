"""GC settings of a serving process: startup freezes the heap and raises the gen-0 threshold."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from shipyard.server import create_app
from shipyard.serving import ServingEngine, heap


@pytest.fixture
def restore_gc(monkeypatch):
    """The collector is the whole test process's: put its thresholds, freeze and tuned state back."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    monkeypatch.setattr(heap, "_tuned", heap._tuned)
    yield
    gc.set_threshold(*before)
    if frozen == 0:
        gc.unfreeze()


def test_tune_freezes_and_raises_gen0(restore_gc):
    gc.set_threshold(700, 10, 10)
    keep = [[i] for i in range(5_000)]
    thresholds = heap.tune()
    assert thresholds == (heap.GEN0_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() >= len(keep)
    # a full collection no longer walks the frozen objects: far fewer than were frozen
    assert all(gc.is_tracked(k) for k in keep[:3])
    assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()


def test_tune_keeps_a_higher_or_disabled_threshold(restore_gc):
    gc.set_threshold(50_000, 5, 5)
    assert heap.tune(collect=False) == (50_000, 5, 5)
    gc.set_threshold(0, 10, 10)  # collection disabled by threshold stays disabled
    assert heap.tune(collect=False)[0] == 0


def test_settle_does_nothing_in_a_process_that_was_never_tuned(restore_gc):
    heap._tuned = False
    gc.unfreeze()
    heap.settle()
    assert gc.get_freeze_count() == 0


def test_settle_freezes_objects_created_by_a_load(restore_gc):
    heap.tune(collect=False)
    heap.settle()
    frozen = gc.get_freeze_count()
    loaded = [[i] for i in range(3_000)]
    heap.settle()
    assert gc.get_freeze_count() >= frozen + len(loaded)


def test_an_embedded_app_leaves_the_collector_alone(module_workspace, restore_gc):
    gc.set_threshold(700, 10, 10)
    heap._tuned = False
    gc.unfreeze()
    app = create_app(module_workspace, engine=ServingEngine(models=None, features=None), follow_interval=0)
    assert gc.get_threshold() == (700, 10, 10)  # building it
    with TestClient(app):  # and running it
        assert app.state.serving.gc_thresholds is None
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_the_server_process_tunes_the_collector_at_startup(module_workspace, restore_gc):
    gc.set_threshold(700, 10, 10)
    app = create_app(module_workspace, engine=ServingEngine(models=None, features=None), follow_interval=0,
                     tune_gc=True)
    assert gc.get_threshold() == (700, 10, 10)  # not while building
    with TestClient(app):
        assert app.state.serving.gc_thresholds == (heap.GEN0_THRESHOLD, 10, 10)
        assert gc.get_threshold()[0] == heap.GEN0_THRESHOLD


def test_app_factory_is_the_one_that_asks_for_it(monkeypatch):
    # what `shipyard server` runs in each worker
    from shipyard import server

    seen = {}
    monkeypatch.setattr(server, "Workspace", lambda settings, principal: "ws")
    monkeypatch.setattr(server, "create_app", lambda ws, **options: seen.update(options) or "app")
    assert server.app_factory() == "app"
    assert seen == {"background": True, "tune_gc": True}


def test_frozen_heap_is_thawed_at_exit_so_duckdb_reports_no_leaks():
    # A frozen DuckDB object alive at exit makes its bindings print "leaked" warnings
    # on every CLI run that served something (e.g. `shipyard demo`).
    import subprocess
    import sys

    code = (
        "import duckdb\n"
        "from shipyard.serving import heap\n"
        "con = duckdb.connect(); con.sql('select 1').fetchall()\n"
        "heap.tune(); heap.settle()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr
