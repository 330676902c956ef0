"""Runs in a real browser: the paged, sorted, filtered table, and comparing two runs (parameter
differences, metric histories overlaid by step) — numbers checked against the API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def _rows(page) -> list[str]:
    return page.locator("table[aria-label='Runs'] tbody tr td:nth-child(2)").all_inner_texts()


def test_compare_two_runs(ui, ui_project):
    ui.sign_in("vic")
    page = ui.go("/runs")
    assert set(_rows(page)) >= {"gbm-depth-3", "gbm-depth-5", "scorecard", "xgboost"}
    for name in ("gbm-depth-3", "gbm-depth-5"):
        page.get_by_label(f"Select run {name}").check()
    ui.follow(page.get_by_role("link", name="Compare selected (2)"))
    assert page.get_by_role("heading", level=1).inner_text() == "Compare runs"
    params = page.locator("table[aria-label='Parameters'] tbody tr")
    # only the differences by default: max_depth and learning_rate differ, n_estimators does not
    assert sorted(params.locator("td:first-child").all_inner_texts()) == ["learning_rate", "max_depth"]
    page.get_by_label("only differences").uncheck()
    assert "n_estimators" in page.locator("table[aria-label='Parameters']").inner_text()
    # one chart per metric, each with both runs in its legend
    page.wait_for_selector(".charts .uplot", timeout=15_000)
    figures = page.locator(".charts figure")
    assert sorted(figures.locator("figcaption").all_inner_texts()) == ["train_loss", "valid_auc"]
    for i in range(figures.count()):
        legend = figures.nth(i).locator(".u-legend").inner_text()
        assert "gbm-depth-3" in legend and "gbm-depth-5" in legend
    # the latest valid_auc of each run, as the API has it
    row = page.locator("table[aria-label='Metrics'] tbody tr", has_text="valid_auc").locator("td")
    for column, run_id in enumerate(ui_project.compare_runs, start=1):
        expected = page.evaluate(f"fetch('/api/v1/runs/{run_id}').then(r => r.json()).then(r => r.metrics.valid_auc)")
        assert float(row.nth(column).inner_text()) == pytest.approx(expected, abs=5e-5)
    ui.shot("compare-runs")
    assert ui.errors == []


def test_runs_table_sorts_filters_and_pages_on_the_server(ui):
    ui.sign_in("vic")
    page = ui.go("/runs")
    page.get_by_role("button", name="test_auc").click()  # sort by the metric, best first
    page.wait_for_selector("th[aria-sort=descending]:has-text('test_auc')")
    headers = page.locator("table[aria-label='Runs'] thead th").all_inner_texts()
    column = headers.index("test_auc") + 1
    shown = page.locator(f"table[aria-label='Runs'] tbody tr td:nth-child({column})").all_inner_texts()
    values = [float(v) for v in shown if v != "–"]
    assert len(values) >= 2 and values == sorted(values, reverse=True)
    assert shown[:len(values)] == [v for v in shown if v != "–"]  # runs without the metric come last
    page.get_by_role("textbox", name="Filter").fill("params.max_depth = '5'")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_selector("table[aria-label='Runs']")
    page.locator(".pager", has_text="of 1").wait_for()
    assert _rows(page) == ["gbm-depth-5"]
    page.get_by_role("textbox", name="Filter").fill("metrics.auc >")
    page.get_by_role("button", name="Apply").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "filter:" in alert.inner_text() and "expected a value" in alert.inner_text()
    assert "filter=" in page.url  # the view is in the address, so it can be shared
