"""The type checker runs over src/ in the test suite, against a recorded baseline that only shrinks.

``mypy_baseline.json`` holds the number of mypy errors per module when the check was introduced. A
module may not gain errors (a new one fails here, printed), and when a module loses some the
baseline must be lowered with it, so it keeps shrinking:

    SHIPYARD_UPDATE_MYPY_BASELINE=1 python -m pytest tests/core/test_types.py

(which only ever lowers counts or drops modules; it never records a new error).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("mypy")

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
    baseline: dict[str, int] = json.loads(BASELINE.read_text())
    grown = {path: (baseline.get(path, 0), n) for path, n in counts.items() if n > baseline.get(path, 0)}
    detail = [line for line in lines if (found := ERROR.match(line)) and found["path"] in grown]
    assert not grown, ("new type errors (module: baseline -> now); fix them, they are not added to the baseline:\n"
                       + "\n".join(f"  {p}: {b} -> {n}" for p, (b, n) in sorted(grown.items())) + "\n"
                       + "\n".join(detail))
    shrunk = {path: (n, counts.get(path, 0)) for path, n in baseline.items() if counts.get(path, 0) < n}
    if shrunk and os.environ.get("SHIPYARD_UPDATE_MYPY_BASELINE") == "1":
        lowered = {path: min(n, counts.get(path, 0)) for path, n in baseline.items()}
        BASELINE.write_text(json.dumps({p: n for p, n in sorted(lowered.items()) if n}, indent=1) + "\n")
        return
    assert not shrunk, ("fewer type errors than recorded: lower the baseline with "
                        "SHIPYARD_UPDATE_MYPY_BASELINE=1 python -m pytest tests/core/test_types.py\n"
                        + "\n".join(f"  {p}: {b} -> {n}" for p, (b, n) in sorted(shrunk.items())))
