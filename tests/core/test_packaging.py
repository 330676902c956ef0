"""Extras install what they promise: the demo and dev extras take XGBoost without CUDA libraries."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _names(extra: str, platform: str) -> set[str]:
    reqs = [Requirement(r) for r in tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"][extra]]
    env = {"sys_platform": platform, "platform_system": {"linux": "Linux", "win32": "Windows"}.get(platform, "Darwin")}
    return {r.name for r in reqs if r.marker is None or r.marker.evaluate(env)}


@pytest.mark.parametrize("extra", ["demo", "dev"])
def test_xgboost_without_cuda_where_a_cpu_build_exists(extra: str) -> None:
    for platform in ("linux", "win32"):
        names = _names(extra, platform)
        assert "xgboost-cpu" in names and "xgboost" not in names, (extra, platform)
    mac = _names(extra, "darwin")  # xgboost-cpu publishes no macOS wheels; xgboost has no CUDA there
    assert "xgboost" in mac and "xgboost-cpu" not in mac


def test_the_xgboost_module_imports() -> None:
    xgboost = pytest.importorskip("xgboost")
    assert hasattr(xgboost, "XGBClassifier") and hasattr(xgboost, "Booster")


def test_python_dash_m_shipyard_runs_the_command_line() -> None:
    # `python -m shipyard` is how a venv without its scripts on PATH reaches the CLI
    import subprocess
    import sys

    import shipyard

    done = subprocess.run([sys.executable, "-m", "shipyard", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shipyard.__version__ in done.stdout
