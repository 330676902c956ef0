"""GC settings of a serving process: startup freezes the heap and raises the gen-0 threshold."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from shipyard.server import create_app
from shipyard.serving import ServingEngine, heap


@pytest.fixture
def restore_gc():
    """The collector's thresholds and frozen heap as they were: both are process-wide."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
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


def test_settle_freezes_objects_created_by_a_load(restore_gc):
    heap.settle()
    frozen = gc.get_freeze_count()
    loaded = [[i] for i in range(3_000)]
    heap.settle()
    assert gc.get_freeze_count() >= frozen + len(loaded)


def test_server_startup_tunes_gc_unless_disabled(module_workspace, restore_gc):
    gc.set_threshold(700, 10, 10)
    app = create_app(module_workspace, engine=ServingEngine(models=None, features=None), follow_interval=0)
    with TestClient(app):
        assert app.state.serving.gc_thresholds == (heap.GEN0_THRESHOLD, 10, 10)
        assert gc.get_threshold()[0] == heap.GEN0_THRESHOLD
    gc.set_threshold(700, 10, 10)
    app = create_app(module_workspace, engine=ServingEngine(models=None, features=None), follow_interval=0,
                     tune_gc=False)
    with TestClient(app):
        assert app.state.serving.gc_thresholds is None
        assert gc.get_threshold()[0] == 700


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
