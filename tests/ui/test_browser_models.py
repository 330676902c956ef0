"""The release workflow in a real browser: a reviewer approves a version (after a confirmation),
a modeler is never offered the button and the API refuses them anyway, an operator moves an alias
and rolls it back — each checked against the registry's own answer."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def _api(page, path: str) -> dict:
    return page.evaluate(f"fetch('/api/v1{path}').then(r => r.json())")


def test_reviewer_approves_and_modeler_is_refused(ui_factory, ui_project):
    name, version = ui_project.pending["name"], ui_project.pending["version"]
    modeler = ui_factory()
    modeler.sign_in("mo")
    page = modeler.go(f"/models/{name}?version={version}")
    assert page.get_by_role("heading", name=f"Version {version}").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_role("button", name="Reject").count() == 0
    # the API refuses a modeler who tries anyway, naming the roles that may
    refused = page.evaluate(f"""fetch('/api/v1/models/{name}/versions/{version}/approve', {{method: 'POST',
        headers: {{'Content-Type': 'application/json'}}, body: '{{}}'}}).then(async r => [r.status, await r.json()])""")
    assert refused[0] == 403 and "reviewer" in refused[1]["error"]["message"]
    assert _api(page, f"/models/{name}/versions/{version}")["approved_by"] is None
    modeler.shot("models-modeler-no-approve")

    reviewer = ui_factory()
    reviewer.sign_in("rita")
    page = reviewer.go("/")
    waiting = page.locator("[data-card=approvals]")
    assert f"{name} v{version}" in waiting.inner_text()
    waiting.get_by_role("link", name="Review").first.click()
    reviewer.ready()
    page.get_by_role("button", name="Approve").click()
    dialog = page.get_by_role("dialog")
    assert f"Approve {name} v{version}" in dialog.inner_text()
    dialog.get_by_label("Comment").fill("checked the validation report")
    reviewer.shot("models-approve-confirm")
    dialog.get_by_role("button", name="Approve").click()
    page.get_by_text("approved by rita").first.wait_for()
    doc = _api(page, f"/models/{name}/versions/{version}")
    assert doc["approved_by"] == "rita"
    events = _api(page, f"/models/{name}/events")
    assert events[0]["kind"] == "model.version_approved" and events[0]["details"]["comment"] == "checked the validation report"
    reviewer.shot("models-approved")
    assert reviewer.errors == [] and modeler.errors == [
        e for e in modeler.errors if "403" in e]  # only the refused request


def test_operator_moves_an_alias_and_rolls_it_back(ui, ui_project):
    name = "credit_scorecard"
    ui.sign_in("otto")
    page = ui.go(f"/models/{name}")
    before = _api(page, f"/models/{name}/aliases")
    assert before == {"champion": 1}
    # a second approved version to move to: the demo's scorecard, registered again and approved
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        run_id = ws.registry.get_version(name, 1).source_run_id
        mo = Workspace(ws.settings, token=ws.auth.create_token("mo", actor="test").token)
        rita = Workspace(ws.settings, token=ws.auth.create_token("rita", actor="test").token)
        mv = mo.registry.register(f"runs:/{run_id}/model", name, run_id=run_id, await_validation=True)
        rita.registry.approve(name, mv.version)
        mo.close()
        rita.close()
    finally:
        ws.close()
    page = ui.go(f"/models/{name}?version={mv.version}")
    page.get_by_role("button", name="Set alias").click()
    dialog = page.get_by_role("dialog")
    assert "champion: v1" in dialog.inner_text() and f"champion: v{mv.version}" in dialog.inner_text()
    ui.shot("models-move-alias-confirm")
    dialog.get_by_role("button", name="Move alias").click()
    page.get_by_text(f"Alias champion now points at v{mv.version}").wait_for()
    ui.ready()
    assert _api(page, f"/models/{name}/aliases") == {"champion": mv.version}

    aliases = page.locator("section[aria-label='Aliases']")
    aliases.get_by_role("button", name="Roll back").click()
    dialog = page.get_by_role("dialog")
    assert f"champion: v{mv.version}" in dialog.inner_text() and "champion: v1" in dialog.inner_text()
    ui.shot("models-rollback-confirm")
    dialog.get_by_role("button", name="Roll back").click()
    page.get_by_text("champion rolled back to v1").wait_for()
    ui.ready()
    assert _api(page, f"/models/{name}/aliases") == {"champion": 1}
    history = _api(page, f"/models/{name}/aliases/champion/history")
    assert [(m["action"], m["version"], m["moved_by"]) for m in history[-2:]] == [
        ("set", mv.version, "otto"), ("rollback", 1, "otto")]
    # the page's history lists both moves, newest first
    kinds = page.locator("section[aria-label='History'] tbody tr td:nth-child(3)").all_inner_texts()
    assert kinds[:2] == ["model.alias_rolled_back", "model.alias_set"]
    ui.shot("models-rolled-back")
    assert ui.errors == []
