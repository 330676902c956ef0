"""Monitoring in a real browser: the demo's daily report opened by date (and from the reports page),
the operational series and trends drawn, an alert rule written, evaluated and firing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_open_a_daily_report_by_date(ui):
    ui.sign_in("vic")
    page = ui.go("/monitoring?scene=credit_apply&tab=reports")
    reports = page.evaluate("fetch('/api/v1/monitoring/reports?scene=credit_apply').then(r => r.json())")
    assert reports, "the demo builds today's report"
    day = reports[0]["day"]
    history = page.locator("table[aria-label='Report history'] tbody tr")
    assert history.first.locator("td").first.inner_text() == day
    # a day without a report says so
    page.get_by_label("Day").fill("2001-01-01")
    page.get_by_role("button", name="Open").click()
    page.get_by_text("No report for 2001-01-01 yet.").wait_for()
    assert page.get_by_role("button", name="Generate for this day").count() == 0  # a viewer cannot build one
    page.get_by_label("Day").fill(day)
    page.get_by_role("button", name="Open").click()
    frame = page.frame_locator("iframe.report-frame")
    body = frame.locator("body")
    body.wait_for()
    text = body.inner_text()
    assert "credit_apply" in text and day in text
    assert page.locator("iframe.report-frame").get_attribute("sandbox") == ""
    assert f"day={day}" in page.url  # the open report is in the address
    ui.shot("monitoring-daily-report")

    page = ui.go("/reports")
    page.get_by_role("button", name=f"credit_apply · {day}").click()
    page.frame_locator("iframe.report-frame").locator("body").wait_for()
    assert "credit_apply" in page.frame_locator("iframe.report-frame").locator("body").inner_text()
    assert ui.errors == []


def test_series_and_trends_are_drawn(ui):
    ui.sign_in("vic")
    page = ui.go("/monitoring?scene=credit_apply&tab=series&since=24h")
    total = page.evaluate("fetch('/api/v1/monitoring/series?scene=credit_apply&since=24h&step=15m')"
                          ".then(r => r.json()).then(d => d.total.requests)")
    assert total > 0  # the demo served the test applicants
    shown = page.locator(".stat .value").first.inner_text().replace(",", "")
    assert int(shown) == total
    page.wait_for_selector(".charts .uplot")
    assert page.locator(".charts figure").count() == 3
    ui.shot("monitoring-series")
    page = ui.go("/monitoring?scene=credit_apply&tab=trends")
    assert page.locator("table[aria-label='Drift by day'] tbody tr").count() >= 1
    ui.shot("monitoring-trends")
    assert ui.errors == []


def test_an_operator_writes_a_rule_and_sees_it_fire(ui):
    ui.sign_in("otto")
    page = ui.go("/monitoring?scene=credit_apply&tab=alerts")
    page.get_by_role("button", name="Edit rules").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Rules (YAML)").fill(
        "rules:\n  - name: any-traffic\n    metric: requests\n    scope: {scene: credit_apply}\n"
        "    condition: \">= 0\"\n    window: 30d\n    severity: warning\n")
    dialog.get_by_role("button", name="Apply").click()
    page.get_by_text("Rules applied").wait_for()
    ui.ready()
    assert "any-traffic" in page.locator("table[aria-label='Alert rules']").inner_text()
    page.get_by_role("button", name="Evaluate now").click()
    ui.page.locator("table[aria-label='Firing alerts']", has_text="any-traffic").wait_for()
    firing = page.evaluate("fetch('/api/v1/monitoring/alerts/history?status=firing').then(r => r.json())")
    assert [a["rule"] for a in firing] == ["any-traffic"]
    ui.shot("monitoring-alerts")
    # the overview shows it too
    page = ui.go("/")
    assert "any-traffic" in page.locator("[data-card=alerts]").inner_text()
    assert ui.errors == []


def test_editing_rules_keeps_what_the_editor_does_not_show_and_removes_what_is_left_out(ui):
    ui.sign_in("otto")
    page = ui.go("/")
    document = ("notifiers:\n  - {name: ops-hook, type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
                "rules:\n"
                "  - {name: keep-me, metric: requests, scope: {scene: credit_apply}, condition: '> 1000000',"
                " window: 1h, severity: critical, cooldown: 2h, notify: [ops-hook], description: 'said \"so\"'}\n"
                "  - {name: drop-me, metric: errors, scope: {scene: credit_apply}, condition: '> 1000000', window: 1h}\n")
    status = page.evaluate("(doc) => fetch('/api/v1/monitoring/alerts/rules', {method: 'POST', headers: "
                           "{'content-type': 'application/json'}, body: JSON.stringify({document: doc})})"
                           ".then(r => r.status)", document)
    assert status == 201
    page = ui.go("/monitoring?scene=credit_apply&tab=alerts")
    page.get_by_role("button", name="Edit rules").click()
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_label("Rules (YAML)")
    text = box.input_value()
    # the hint says "rules left out are removed": take drop-me's lines out, change nothing else
    lines = text.split("\n")
    assert "drop-me" in text, text
    start = next(i for i, line in enumerate(lines) if line.startswith("  - ") and "drop-me" in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  - ")), len(lines))
    box.fill("\n".join(lines[:start] + lines[end:]))
    dialog.get_by_role("button", name="Apply").click()
    page.get_by_text("Rules applied").wait_for()
    ui.ready()
    rules = page.evaluate("fetch('/api/v1/monitoring/alerts/rules').then(r => r.json())")["rules"]
    by_name = {r["name"]: r for r in rules}
    assert "drop-me" not in by_name
    kept_rule = by_name["keep-me"]
    assert kept_rule["notify"] == ["ops-hook"] and kept_rule["cooldown"] == "2h"
    assert kept_rule["severity"] == "critical" and kept_rule["description"] == 'said "so"'
    assert ui.errors == []



def test_a_rule_is_deleted_from_the_rules_table_after_confirming(ui_factory):
    otto = ui_factory()
    otto.sign_in("otto")
    page = otto.go("/")
    document = ("rules:\n  - {name: delete-me, metric: errors, scope: {scene: credit_apply}, condition: '> 1000000',"
                " window: 1h}\n")
    status = page.evaluate("(doc) => fetch('/api/v1/monitoring/alerts/rules', {method: 'POST', headers: "
                           "{'content-type': 'application/json'}, body: JSON.stringify({document: doc})})"
                           ".then(r => r.status)", document)
    assert status == 201

    # a viewer sees the rule and no button to change it
    vic = ui_factory()
    vic.sign_in("vic")
    seen = vic.go("/monitoring?scene=credit_apply&tab=alerts").locator("table[aria-label='Alert rules']")
    seen.get_by_text("delete-me").wait_for()
    assert seen.get_by_role("button").count() == 0
    assert vic.errors == []

    page = otto.go("/monitoring?scene=credit_apply&tab=alerts")
    table = page.locator("table[aria-label='Alert rules']")
    button = table.get_by_role("button", name="Delete rule delete-me")

    def names() -> list[str]:
        return [r["name"] for r in page.evaluate("fetch('/api/v1/monitoring/alerts/rules').then(r => r.json())")
                ["rules"]]

    # cancelling the confirmation keeps the rule
    button.click()
    dialog = page.get_by_role("dialog")
    assert "no longer evaluated" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert "delete-me" in names()
    button.click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text("Rule delete-me deleted").wait_for()
    otto.ready()
    assert "delete-me" not in names()
    assert "delete-me" not in page.locator("table[aria-label='Alert rules']").inner_text()
    otto.shot("monitoring-rule-deleted")
    assert otto.errors == []


def test_a_stored_rule_that_no_longer_validates_is_marked_invalid_and_can_be_deleted(ui, ui_project):
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.store.database import now_ms
    from shipyard.store.schema import monitoring_alert_rules as RULES
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        with ws.store.begin() as conn:  # as an older release stored it
            conn.execute(RULES.insert().values(
                name="legacy-rule", spec={"name": "legacy-rule", "metric": "latency_p42_ms",
                                          "scope": {"scene": "credit_apply"}, "condition": "> 1"},
                enabled=True, created_at=now_ms(), updated_at=now_ms(), updated_by="old"))
    finally:
        ws.close()
    ui.sign_in("otto")
    page = ui.go("/monitoring?scene=credit_apply&tab=alerts")
    row = page.locator("table[aria-label='Alert rules'] tbody tr", has_text="legacy-rule")
    row.wait_for()
    text = row.inner_text()
    assert row.locator(".badge.bad").inner_text() == "invalid"
    assert "metric 'latency_p42_ms' is not known" in text
    assert "shipyard alerts delete legacy-rule" in text
    ui.shot("monitoring-rule-invalid")
    row.get_by_role("button", name="Delete rule legacy-rule").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text("Rule legacy-rule deleted").wait_for()
    ui.ready()
    listed = page.evaluate("fetch('/api/v1/monitoring/alerts/rules').then(r => r.json())")
    assert "legacy-rule" not in [r["name"] for r in listed["invalid_rules"]]
    assert ui.errors == []
