"""Scenes in a real browser: the decision flow drawn as a graph, and a traffic split changed in the
editor that takes effect on the next predictions (the "try it" panel's and a client's)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _try(page, applicant: int) -> str:
    panel = page.locator("section[aria-label='Try it']")
    panel.get_by_label("applicant_id (long)").fill(str(applicant))
    panel.get_by_role("button", name="Send").click()
    panel.get_by_role("heading", name="Latency").wait_for()
    arm = panel.locator("dl dd").first.inner_text()
    return arm


def _client_arms(url: str, token: str, n: int = 8) -> list[str]:
    arms = []
    for i in range(n):
        r = httpx.post(f"{url}/v1/scenes/credit_apply/predict", json={"applicant_id": 1000 + i},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        arms.append(r.json()["arm"])
    return arms


def test_the_flow_graph_shows_every_step(ui):
    ui.sign_in("vic")
    page = ui.go("/scenes/credit_apply")
    graph = page.locator("section[aria-label='Decision flow'] svg")
    labels = graph.locator("g.node text").all_text_contents()
    for expected in ("credit_scoring", "credit_scorecard", "credit_xgb", "@champion", "model → points", "expr → pd_card",
                     "fusion → pd", "rules → decision"):
        assert any(expected in label for label in labels), (expected, labels)
    # request → features → two models in parallel → expr → fusion → rules → response
    assert graph.locator("g.node").count() == 8 and graph.locator("path.edge").count() == 8
    # a viewer may not predict nor change traffic: neither is offered
    assert page.get_by_role("button", name="Send").count() == 0
    assert page.get_by_role("button", name="Apply as a new version").count() == 0
    ui.shot("scene-flow")
    assert ui.errors == []


def test_a_traffic_split_takes_effect_on_the_next_predictions(ui, live_url, ui_project):
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        token = ws.auth.create_token("otto", scopes=["predict"], actor="test").token
    finally:
        ws.close()
    assert set(_client_arms(live_url, token)) == {"control"}

    ui.sign_in("otto")
    page = ui.go("/scenes/credit_apply")
    assert _try(page, 1001) == "control"
    editor = page.locator("section[aria-label='Traffic policy']")
    editor.get_by_role("button", name="Add an arm").click()
    editor.get_by_label("Arm name").fill("challenger")
    editor.get_by_label("Arm name").press("Tab")
    editor.get_by_label("Model").select_option("credit_xgb")
    editor.get_by_label("Version or alias").fill("1")
    editor.get_by_role("button", name="Add a weight").click()
    editor.get_by_label("Weight of control").fill("0")
    editor.get_by_label("Weight of control").press("Tab")
    editor.get_by_role("button", name="Add a weight").click()
    split = editor.locator("table[aria-label='A/B split'] tr").nth(1)
    split.get_by_label("Arm").select_option("challenger")
    split.get_by_label("Weight of").fill("100")
    split.get_by_label("Weight of").press("Tab")
    expect(editor.locator("table[aria-label='A/B split']")).to_contain_text("100.0 %")
    # a broken policy is caught before it is sent
    assert editor.locator(".alert.warn").count() == 0
    ui.shot("scene-traffic-editor")
    editor.get_by_role("button", name="Apply as a new version").click()
    dialog = page.get_by_role("dialog")
    shown = dialog.inner_text()
    assert '"challenger": 100' in shown and '"control": 0' in shown and "v2" in shown
    dialog.get_by_label("Comment").fill("all traffic to the challenger")
    dialog.get_by_role("button", name="Apply").click()
    page.get_by_text("Now serving v2").wait_for(timeout=30_000)
    ui.ready()
    assert _try(page, 1002) == "challenger"
    assert set(_client_arms(live_url, token)) == {"challenger"}
    versions = page.evaluate("fetch('/api/v1/scenes/credit_apply/versions').then(r => r.json())")
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["created_by"] == "otto"
    assert versions[1]["comment"] == "all traffic to the challenger"
    page.locator("section[aria-label='Live traffic']").get_by_text("challenger").first.wait_for(timeout=10_000)
    ui.shot("scene-traffic-applied")
    assert ui.errors == []


def test_a_bad_split_is_refused_with_the_reason(ui):
    ui.sign_in("otto")
    page = ui.go("/scenes/credit_apply")
    editor = page.locator("section[aria-label='Traffic policy']")
    editor.get_by_role("button", name="Add a weight").click()
    row = editor.locator("table[aria-label='A/B split'] tr").last
    row.get_by_label("Arm").select_option("control")
    row.get_by_label("Weight of").fill("-5")
    row.get_by_label("Weight of").press("Tab")
    warning = editor.locator(".alert.warn")
    assert "must be a number of at least 0" in warning.inner_text()
    editor.get_by_role("button", name="Apply as a new version").click()
    assert page.get_by_role("dialog").count() == 0  # nothing is sent
