"""Signing in to the UI in a real browser: password (with the API's message on a wrong one), the
one-time login link (spent once, then gone from the address bar), signing out."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_password_sign_in_shows_the_api_error_then_signs_in(ui):
    page = ui.open("/runs")
    assert page.get_by_role("button", name="Sign in").is_visible()
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "user name or password is wrong" in alert.inner_text()
    ui.shot("signin-refused")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(".shell")
    ui.ready()
    # the page asked for before signing in is the one shown
    assert page.get_by_role("heading", level=1).inner_text() == "Experiments and runs"
    assert page.locator(".topbar .user").inner_text() == "ana"
    ui.shot("signin")
    # the refused sign-in is the browser's one logged failure
    assert len(ui.errors) == 1 and "401" in ui.errors[0]


def test_a_login_link_signs_in_once_and_leaves_the_address_bar(ui_factory, ui_project, live_url):
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.ui import login_link
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        link = login_link(ws, live_url, user="vic", minutes=5)
    finally:
        ws.close()
    token = re.search(r"token=([^&]+)", link).group(1)
    first = ui_factory()
    first.page.goto(link)
    first.page.wait_for_selector(".shell")
    first.ready()
    assert first.page.locator(".topbar .user").inner_text() == "vic"
    assert token not in first.page.url and "token" not in urlsplit(first.page.url).fragment
    assert first.errors == []
    first.shot("login-link")
    first.page.go_back()  # replaced, not pushed: Back does not return to the token
    assert token not in first.page.url

    again = ui_factory()
    again.page.goto(link)
    again.ready()
    warning = again.page.locator(".alert.warn")
    assert "did not work" in warning.inner_text() and "shipyard ui link" in warning.inner_text()
    assert again.page.get_by_role("button", name="Sign in").is_visible()


def test_sign_out_ends_the_session(ui):
    ui.sign_in("otto")
    ui.page.get_by_role("button", name="Sign out").click()
    ui.page.get_by_role("button", name="Sign in").wait_for()
    status = ui.page.evaluate("fetch('/api/v1/auth/whoami').then(r => r.status)")
    assert status == 401


def test_the_demos_link_opens_everything_it_created(ui, ui_project, live_url):
    # the demo prints the address of `shipyard server`'s default port; this server listens elsewhere
    parts = urlsplit(ui_project.demo_link)
    page = ui.page
    page.goto(f"{live_url}/#{parts.fragment}")
    page.wait_for_selector(".shell")
    ui.ready()
    assert page.locator(".topbar .user").inner_text() == "admin"
    assert page.locator("#sy-project").input_value() == "default"
    expect(page.locator("main")).to_contain_text("credit_apply")
    page = ui.go("/runs")
    expect(page.locator("main")).to_contain_text("scorecard")
    expect(page.locator("main")).to_contain_text("xgboost")
    page = ui.go("/models")
    assert "credit_scorecard" in page.locator("main").inner_text() and "credit_xgb" in page.locator("main").inner_text()
    page = ui.go("/features")
    assert {"applicant_profile", "applicant_account"} <= set(page.locator("tbody tr td:first-child").all_inner_texts())
    page = ui.go("/reports")
    assert "scorecard_report.html" in page.locator("main").inner_text()
    ui.shot("demo-link")
    assert ui.errors == []
