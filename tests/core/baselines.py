"""A per-module count that may only shrink, recorded in a JSON file beside the tests (type errors,
``Any`` parameters): more than recorded fails with the new ones listed; fewer fails until the file
is lowered, which ``<env_var>=1`` does."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path


def check_shrinking_baseline(counts: Mapping[str, int], baseline_file: Path, *, what: str, env_var: str,
                             rerun: str, details: Callable[[set[str]], list[str]], fix: str) -> None:
    """``counts`` per module against ``baseline_file``; ``details(modules)`` lists the findings of
    the modules that grew, ``fix`` says what to do about them."""
    baseline: dict[str, int] = json.loads(baseline_file.read_text())
    grown = {m: (baseline.get(m, 0), n) for m, n in counts.items() if n > baseline.get(m, 0)}
    assert not grown, (f"new {what} (module: baseline -> now); {fix}:\n"
                       + "\n".join(f"  {m}: {b} -> {n}" for m, (b, n) in sorted(grown.items())) + "\n"
                       + "\n".join(details(set(grown))))
    shrunk = {m: (n, counts.get(m, 0)) for m, n in baseline.items() if counts.get(m, 0) < n}
    if shrunk and os.environ.get(env_var) == "1":
        lowered = {m: min(n, counts.get(m, 0)) for m, n in baseline.items()}
        baseline_file.write_text(json.dumps({m: n for m, n in sorted(lowered.items()) if n}, indent=1) + "\n")
        return
    assert not shrunk, (f"fewer {what} than recorded: lower the baseline with {env_var}=1 {rerun}\n"
                        + "\n".join(f"  {m}: {b} -> {n}" for m, (b, n) in sorted(shrunk.items())))
