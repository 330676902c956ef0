"""Every page in a real browser: renders for an admin and a viewer with no console error and no
error box, every control has a label, the keyboard reaches the navigation, the Chinese UI, the
report viewer's sandbox and the API docs on vendored Swagger UI."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.offsetParent !== null && el.type !== 'hidden')
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""


def _routes(page, ui_project) -> list[tuple[str, str]]:
    api = lambda path: page.evaluate(f"fetch('/api/v1{path}').then(r => r.json())")  # noqa: E731
    run = ui_project.compare_runs[0]
    view = api("/features/views")[0]["name"]
    entity = api("/features/entities")[0]["name"]
    service = api("/features/services")[0]["name"]
    return [
        ("overview", "/"), ("runs", "/runs"), ("run", f"/runs/{run}"),
        ("compare", f"/compare?ids={','.join(ui_project.compare_runs)}"),
        ("models", "/models"), ("model", "/models/credit_scorecard"),
        ("features", "/features"), ("features-entities", "/features?tab=entities"),
        ("features-services", "/features?tab=services"), ("features-health", "/features?tab=health"),
        ("features-lineage", "/features?tab=lineage"), ("feature-view", f"/features/views/{view}"),
        ("feature-service", f"/features/services/{service}"), ("feature-entity", f"/features/entities/{entity}"),
        ("scenes", "/scenes"), ("scene", "/scenes/credit_apply"), ("reports", "/reports"),
        ("admin", "/admin"), ("admin-tokens", "/admin?tab=tokens"), ("admin-projects", "/admin?tab=projects"),
        ("admin-audit", "/admin?tab=audit"),
        ("data", "/data"), ("dataset", "/data/datasets/german_credit"), ("pipelines", "/pipelines"),
        ("pipeline", "/pipelines/credit_scorecard"), ("pipeline-new", "/pipelines/new"),
        ("monitoring", "/monitoring"), ("monitoring-reports", "/monitoring?tab=reports"),
        ("monitoring-trends", "/monitoring?tab=trends"), ("monitoring-alerts", "/monitoring?tab=alerts"),
    ]


@pytest.mark.parametrize("user", ["ana", "vic"])
def test_every_page_renders_without_errors(ui, ui_project, user):
    ui.sign_in(user)
    for name, route in _routes(ui.page, ui_project):
        page = ui.go(route)
        # sections still loading show a "Loading…" line; every one must finish
        expect(page.locator(".loading")).to_have_count(0, timeout=20_000)
        assert page.locator("main h1").count() == 1, route
        assert page.locator(".alert.error").count() == 0, (route, page.locator(".alert.error").all_inner_texts())
        assert page.evaluate(UNLABELLED) == [], route
        if user == "ana":
            ui.shot(f"page-{name}")
    assert ui.errors == []


def test_a_viewer_is_offered_no_change(ui):
    ui.sign_in("vic")
    page = ui.go("/models/credit_xgb")
    for label in ("Approve", "Reject", "Move an alias", "Roll back", "Set alias", "Stress test"):
        assert page.get_by_role("button", name=label).count() == 0, label
    page = ui.go("/admin")
    assert page.get_by_role("tab", name="Users and roles").count() == 0  # users:read is the admin's
    assert page.get_by_role("tab", name="Audit log").count() == 0


def test_keyboard_reaches_the_navigation(ui):
    ui.sign_in("vic")
    page = ui.page
    page.reload()
    ui.ready()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Models":
            break
    else:
        pytest.fail("Tab never reached the Models link")
    page.evaluate("document.body.removeAttribute('data-ready')")
    page.keyboard.press("Enter")
    ui.ready()
    assert page.locator("main h1").inner_text() == "Models"


def test_chinese_interface_with_dates_in_the_users_zone(ui):
    ui.sign_in("ana")
    page = ui.go("/runs")
    page.get_by_label("Language").select_option("zh")
    page.wait_for_selector(".shell")
    ui.ready()
    assert page.locator(".nav").inner_text().split("\n")[:3] == ["概览", "实验", "模型"]
    assert page.locator("main h1").inner_text() == "实验与运行"
    started = page.locator("table[aria-label='运行'] tbody tr td:nth-child(5)").first.inner_text()
    assert "年" in started or "月" in started  # a Chinese date
    ui.shot("page-runs-zh")
    # the browser's zone (Asia/Shanghai here) is used, and another can be chosen
    stamp = page.evaluate("fetch('/api/v1/runs/search', {method: 'POST', headers: {'Content-Type': 'application/json'},"
                          "body: JSON.stringify({max_results: 1, order_by: ['attributes.start_time DESC']})})"
                          ".then(r => r.json()).then(d => d.runs[0].info.start_time)")
    shanghai = page.evaluate(f"new Intl.DateTimeFormat('zh-CN', {{hour: '2-digit', hour12: false, timeZone: 'Asia/Shanghai'}}).format({stamp})")
    assert shanghai.replace("时", "") in started
    page.get_by_label("语言").select_option("en")
    page.wait_for_selector(".shell")
    ui.ready()
    assert page.locator("main h1").inner_text() == "Experiments and runs"
    assert ui.errors == []


def test_reports_open_in_a_sandboxed_frame(ui):
    ui.sign_in("vic")
    page = ui.go("/reports")
    page.get_by_role("button", name="scorecard_report.html").click()
    frame = page.locator("iframe.report-frame")
    frame.wait_for()
    assert frame.get_attribute("sandbox") == ""  # no scripts, no same-origin access
    body = page.frame_locator("iframe.report-frame").locator("body")
    assert "KS" in body.inner_text()
    ui.shot("reports-viewer")
    assert ui.errors == []


def test_api_docs_load_from_vendored_assets(ui):
    requests: list[str] = []
    ui.page.on("request", lambda r: requests.append(r.url))
    ui.page.goto(f"{ui.url}/docs")
    ui.page.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
    # Swagger UI draws the operations near the viewport; the first tags come first
    ui.page.locator(".swagger-ui [data-path='/api/v1/auth/login']").first.wait_for(timeout=20_000)
    assert all(url.startswith(ui.url) for url in requests), [u for u in requests if not u.startswith(ui.url)]
    ui.shot("api-docs")
    assert ui.errors == []


def test_the_project_switcher_sends_the_project_header(ui, ui_project):
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    try:
        try:
            ws.auth.get_project("credit")
        except Exception:  # noqa: BLE001 - created once per session
            ws.auth.create_project("credit", "second project", actor="test")
        hosted = Workspace(load_settings(ui_project.path, project="credit"), principal=SERVER)
        with hosted.tracking.start_run(experiment="credit_only", name="only-in-credit"):
            pass
        hosted.close()
    finally:
        ws.close()
    ui.sign_in("ana")
    page = ui.go("/runs")
    assert "only-in-credit" not in page.locator("main").inner_text()
    page.get_by_label("Project").select_option("credit")
    page.wait_for_selector(".shell")
    ui.ready()
    rows = page.locator("table[aria-label='Runs'] tbody tr td:nth-child(2)").all_inner_texts()
    assert rows == ["only-in-credit"]
    assert page.evaluate("localStorage.getItem('sy.project')") == "credit"
    page.get_by_label("Project").select_option("default")
    ui.ready()
    assert ui.errors == []
