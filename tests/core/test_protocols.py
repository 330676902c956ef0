"""The local and remote implementations of the registry, tracking and features interfaces are checked
by a type checker (mypy): a renamed method, a dropped argument or a changed return type on either side
fails here, before the shared suite (tests/client/test_parity.py) even runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[2]


def _mypy(target: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-error-summary",
         "--cache-dir", str(cache), str(target)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def test_local_and_remote_implementations_conform(cache: Path) -> None:
    result = _mypy(ROOT / "tests" / "core" / "protocol_conformance.py", cache)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_diverging_implementation(tmp_path: Path, cache: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from shipyard.models.registry.protocol import RegistryAPI\n"
        "from shipyard.models.remote import RemoteRegistry\n\n"
        "class Renamed(RemoteRegistry):\n"
        "    def load(self, name: str, version: int, cache: str) -> None:  # type: ignore[override]\n"
        "        return None\n\n"
        "def check(registry: Renamed) -> RegistryAPI:\n"
        "    return registry\n")
    result = _mypy(broken, cache)
    assert result.returncode == 1 and "RegistryAPI" in result.stdout and "load" in result.stdout, result.stdout
