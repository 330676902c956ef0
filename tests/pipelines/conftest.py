"""Helpers for pipeline tests: a module of user components written into each test's folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

COMPONENTS = '''
import os
import time
from pathlib import Path

import pandas as pd

from shipyard.pipelines import component

HERE = Path(__file__).parent


def _count(name):
    with open(HERE / "calls.txt", "a") as handle:
        handle.write(name + "\\n")


def make_frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Plain function: one table output read from the return annotation."""
    import numpy as np

    _count("make_frame")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b"], n)})


@component(inputs={"data": "table"}, outputs={"mean": "json", "doubled": "table"})
def stats(ctx, data, scale: float = 2.0):
    _count("stats")
    print("stats sees", len(data), "rows")
    os.write(1, b"raw write to fd 1\\n")
    ctx.log_metric("rows", len(data))
    return {"mean": {"x": float(data["x"].mean())}, "doubled": data.assign(x=data["x"] * scale)}


@component(inputs={"data": "table"}, outputs={"total": "json"})
def total(data):
    _count("total")
    return {"sum": float(data["x"].sum())}


@component(inputs={"data": "table"}, outputs={"ok": "json"})
def boom(data, fail: bool = True):
    _count("boom")
    if fail:
        raise RuntimeError("boom failed on purpose")
    return {"ok": True}


@component(inputs={"data": "table"}, outputs={"ok": "json"})
def flaky(data):
    """Fails on its first call, succeeds after."""
    marker = HERE / "flaky.marker"
    _count("flaky")
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("first attempt fails")
    return {"ok": True}


@component(outputs={"span": "json"})
def sleeper(seconds: float = 0.5, tag: str = "a"):
    _count("sleeper")
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time(), "pid": os.getpid(), "tag": tag}


@component(outputs={"env": "json"})
def environment():
    return {"keys": sorted(os.environ), "values": sorted(os.environ.values())}
'''


@pytest.fixture
def components_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipes"
    folder.mkdir()
    (folder / "comps.py").write_text(textwrap.dedent(COMPONENTS))
    return folder


def calls(folder: Path) -> list[str]:
    path = folder / "calls.txt"
    return path.read_text().split() if path.exists() else []
