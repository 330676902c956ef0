"""Garbage-collector settings for a serving process.

A serving process imports a large stack (pandas, pyarrow, LightGBM, SQLAlchemy, MLflow's model
format) and loads models, so it holds a few million container objects that live for the whole
process. CPython's full (generation 2) collection walks all of them: measured on the benchmark
server it paused every thread for 12-130 ms several times a minute, which is what put 1-2% of
requests tens of milliseconds behind.

``tune`` moves every object alive at that point into the collector's permanent generation
(``gc.freeze``), so later collections only walk objects created since: the server tunes once at
startup (after a full collection), and ``settle`` freezes again after each model or scene load,
when a load has created another batch of long-lived objects. Reference counting still frees frozen
objects; only reference cycles among them are kept until exit, which for loaded models and imported
modules is the case anyway.

Only the server process tunes (``shipyard server``; ``create_app(..., tune_gc=True)``): the collector
belongs to the whole process, so an app or engine embedded in another program leaves it alone, and
``settle`` does nothing in a process that was never tuned.

``GEN0_THRESHOLD`` raises the youngest generation's threshold from CPython's 700 allocations, so
collections of young objects run several times less often; it stays moderate because a young
collection's pause grows with the threshold (at 20,000 they took 3-9 ms on the benchmark server).
"""

from __future__ import annotations

import atexit
import gc
import threading

GEN0_THRESHOLD = 5_000

_lock = threading.Lock()
_unfreeze_at_exit = False
_tuned = False


def _freeze() -> None:
    # Frozen objects are never collected, so extension types still alive at interpreter exit
    # report themselves as leaked (DuckDB's nanobind bindings print a page of warnings). Thawing
    # at exit lets the final collection free them as it would without the freeze.
    global _unfreeze_at_exit
    if not _unfreeze_at_exit:
        atexit.register(gc.unfreeze)
        _unfreeze_at_exit = True
    gc.freeze()


def tune(collect: bool = True) -> tuple[int, int, int]:
    """Startup: optionally collect once, freeze what is alive, raise the gen-0 threshold.

    Returns the thresholds now in effect.
    """
    global _tuned
    with _lock:
        if collect:
            gc.collect()
        _freeze()
        _tuned = True
        gen0, gen1, gen2 = gc.get_threshold()
        if 0 < gen0 < GEN0_THRESHOLD:
            gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
        return gc.get_threshold()


def settle() -> None:
    """After loading a model or scene: freeze the objects the load created (no collection, so
    no pause for requests served meanwhile on other threads). Nothing unless ``tune`` ran."""
    with _lock:
        if _tuned:
            _freeze()
