"""The type checker runs over src/ in the test suite, against a recorded baseline that only shrinks.

``mypy_baseline.json`` holds the number of mypy errors per module when the check was introduced. A
module may not gain errors (a new one fails here, printed), and when a module loses some the
baseline must be lowered with it, so it keeps shrinking:

    SHIPYARD_UPDATE_MYPY_BASELINE=1 python -m pytest tests/core/test_types.py

(which only ever lowers counts or drops modules; it never records a new error).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("mypy")

from tests.core.baselines import check_shrinking_baseline  # noqa: E402 - after the skip

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("mypy_baseline.json")
ERROR = re.compile(r"^(?P<path>src/shipyard/[^:]+\.py):\d+: error: ")


def run_mypy(cache: Path) -> tuple[Counter[str], list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-error-summary", "--hide-error-context",
         "--no-color-output", "--cache-dir", str(cache), "src/shipyard"],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")})
    lines = [line for line in done.stdout.splitlines() if ERROR.match(line)]
    if done.returncode not in (0, 1) or (done.returncode == 1 and not lines):
        raise AssertionError(f"mypy did not run: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    counts: Counter[str] = Counter()
    for line in lines:
        found = ERROR.match(line)
        assert found is not None
        counts[found["path"]] += 1
    return counts, lines


def test_type_errors_never_grow_past_the_baseline(tmp_path_factory: pytest.TempPathFactory) -> None:
    counts, lines = run_mypy(tmp_path_factory.mktemp("mypy-cache"))
    check_shrinking_baseline(
        counts, BASELINE, what="type errors", env_var="SHIPYARD_UPDATE_MYPY_BASELINE",
        rerun="python -m pytest tests/core/test_types.py",
        details=lambda grown: [line for line in lines if (found := ERROR.match(line)) and found["path"] in grown],
        fix="fix them, they are not added to the baseline")
