"""The dataset page in a real browser: the comparison of two versions says which columns drifted,
as an independent PSI does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect


def _naive_psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Deciles of the reference, right-closed bins, eps in place of empty shares."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    bounds = [-np.inf, *edges, np.inf]
    total = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        e = max(float(np.mean((expected > lo) & (expected <= hi))), eps)
        a = max(float(np.mean((actual > lo) & (actual <= hi))), eps)
        total += (a - e) * np.log(a / e)
    return total


def _frame(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"income": rng.normal(50 + shift, 10, 3000), "age": rng.normal(40, 8, 3000)})


@pytest.fixture
def drifting_dataset(ui_project, tmp_path: Path) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Dataset ``ui_drift``: v2 shifts ``income`` by one standard deviation, ``age`` is drawn again."""
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    first, second = _frame(1, 0.0), _frame(2, 10.0)
    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        ws.data.add_source("ui_drift_landing", "file", {"root": str(tmp_path)}, actor="test")
        ws.data.create_dataset("ui_drift", "ui_drift_landing", {"path": "d.parquet"}, actor="test")
        for frame in (first, second):
            frame.to_parquet(tmp_path / "d.parquet")
            ws.data.refresh("ui_drift", actor="test")
    finally:
        ws.close()
    yield first, second


def test_the_comparison_says_which_columns_drifted(ui, drifting_dataset):
    first, second = drifting_dataset
    expected = {c: _naive_psi(first[c].to_numpy(), second[c].to_numpy()) for c in first.columns}
    assert expected["income"] >= 0.25 > expected["age"]  # the data does what the test says
    ui.sign_in("vic")
    page = ui.go("/data/datasets/ui_drift")
    table = page.locator("table[aria-label='Drift between the versions']")
    table.wait_for()
    expect(page.locator(".loading")).to_have_count(0, timeout=20_000)
    shown = {}
    for row in table.locator("tbody tr").all():
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        shown[cells[0]] = (float(cells[1]), cells[2])
    assert shown.keys() == expected.keys()
    for column, psi in expected.items():
        assert shown[column][0] == pytest.approx(psi, abs=0.01), column
        assert shown[column][1] == ("yes" if psi >= 0.25 else "no"), column
    assert "PSI of 0.25 or more against version 1" in page.locator("main").inner_text()
    ui.shot("dataset-drift")
    assert ui.errors == []
