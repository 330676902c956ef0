"""Browser tests: Debian's chromium driven headless by Playwright against a live `shipyard server` app
on loopback, over the demo's project with a few more runs, versions and users.

Enabled by SHIPYARD_TEST_BROWSER=1 (``.ci/run`` sets it after ``apt-get install -y chromium``);
SHIPYARD_CHROMIUM names another browser binary. Screenshots go to the test's tmp folder; with
SHIPYARD_UI_SCREENSHOTS=docs/ui the final one of each flow is also written there, small.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BROWSER_ENABLED = os.environ.get("SHIPYARD_TEST_BROWSER") == "1"
CHROMIUM = os.environ.get("SHIPYARD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
PASSWORD = "correct horse battery"
USERS = {"ana": ("admin", "*"), "rita": ("reviewer", "default"), "mo": ("modeler", "default"),
         "otto": ("operator", "default"), "vic": ("viewer", "default")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Project:
    path: Path
    compare_runs: list[str] = field(default_factory=list)
    pending: dict[str, Any] = field(default_factory=dict)
    demo_link: str = ""


def _populate(path: Path) -> Project:
    """The demo, then: two runs with per-step metrics, a version of credit_xgb registered by a
    modeler and waiting for a reviewer, and one person per role."""
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.demo.run import run_demo
    from shipyard.workspace import Workspace

    out = run_demo(path, say=lambda _line: None)
    ws = Workspace(load_settings(path), principal=SERVER)
    project = Project(path, demo_link=out["login_link"])
    try:
        for name, (role, where) in USERS.items():
            ws.auth.create_user(name, password=PASSWORD, roles={where: role}, actor="test")
        for name, depth, rate in (("gbm-depth-3", 3, 0.1), ("gbm-depth-5", 5, 0.05)):
            with ws.tracking.start_run(experiment="german_credit", name=name) as run:
                run.log_params({"max_depth": depth, "learning_rate": rate, "n_estimators": 40})
                for step in range(10):
                    run.log_metric("train_loss", 0.7 * (1 - rate) ** step + 0.01 * depth, step=step)
                    run.log_metric("valid_auc", 0.6 + 0.02 * step * (depth / 5), step=step)
            project.compare_runs.append(run.id)
        xgb_run = ws.registry.get_version("credit_xgb", 1).source_run_id
        modeler = Workspace(ws.settings, token=ws.auth.create_token("mo", actor="test").token)
        try:
            mv = modeler.registry.register(f"runs:/{xgb_run}/model", "credit_xgb", run_id=xgb_run,
                                           await_validation=True, metrics={"test_auc": 0.64})
        finally:
            modeler.close()
        project.pending = {"name": mv.name, "version": mv.version, "status": mv.status}
    finally:
        ws.close()
    return project


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    if not BROWSER_ENABLED:
        pytest.skip("set SHIPYARD_TEST_BROWSER=1 (and install chromium) to run browser tests")
    return _populate(tmp_path_factory.mktemp("ui") / "demo")


@pytest.fixture(scope="session")
def live_url(ui_project: Project) -> Iterator[str]:
    """A live server on the project (the app `shipyard server` runs), scenes followed every 0.5 s."""
    import uvicorn

    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(ui_project.path), principal=SERVER)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ws, follow_interval=0.5), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)
    ws.close()


# package scope: Playwright's sync API keeps an event loop on the main thread while it runs, which
# would break later tests that call asyncio.run()
@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    if not BROWSER_ENABLED:
        pytest.skip("set SHIPYARD_TEST_BROWSER=1 (and install chromium) to run browser tests")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: apt-get install -y chromium (or set SHIPYARD_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class UI:
    """One browser context (its own cookies) on the live server, collecting console errors."""

    def __init__(self, browser: Any, url: str, shots: Path, locale: str = "en-GB") -> None:
        self.url = url
        self.shots = shots
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, locale=locale,
                                           timezone_id="Asia/Shanghai")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        # each error names the page it happened on ("... @ url")
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text} @ {self.page.url}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e} @ {self.page.url}"))

    def open(self, route: str = "/") -> Any:
        """Load the page at ``#route`` and wait until the app says it rendered."""
        self.page.goto(f"{self.url}/#{route}")
        self.ready()
        return self.page

    def ready(self, timeout: float = 20_000) -> None:
        self.page.wait_for_selector("body[data-ready]", state="attached", timeout=timeout)

    def sign_in(self, user: str, password: str = PASSWORD) -> None:
        self.open("/")
        self.page.get_by_label("User name").fill(user)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_selector(".shell", timeout=20_000)
        self.ready()

    def go(self, route: str) -> Any:
        """Navigate inside the app (a hash change) and wait for the new page."""
        if self.page.evaluate("location.hash") in (f"#{route}", "" if route == "/" else None):
            self.ready()
            return self.page
        self.page.evaluate("document.body.removeAttribute('data-ready')")
        self.page.evaluate(f"location.hash = {('#' + route)!r}")
        self.ready()
        return self.page

    def follow(self, link: Any) -> Any:
        """Click a link to another page and wait for that page, not the one still marked ready."""
        self.page.evaluate("document.body.removeAttribute('data-ready')")
        link.click()
        self.ready()
        return self.page

    def shot(self, name: str) -> Path:
        target = self.shots / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        docs = os.environ.get("SHIPYARD_UI_SCREENSHOTS")
        if docs:
            _small_copy(self.page, Path(docs) / f"{name}.png")
        return target

    def close(self) -> None:
        self.context.close()


def _small_copy(page: Any, target: Path) -> None:
    """The visible part of the page as a small PNG for the docs (a 32-colour palette when Pillow is
    installed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(target) as image:
        small = image.convert("RGB").quantize(colors=32)
        small.save(target, optimize=True)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def ui_factory(chromium: Any, live_url: str, shots: Path) -> Iterator[Any]:
    opened: list[UI] = []

    def make(locale: str = "en-GB") -> UI:
        ui = UI(chromium, live_url, shots, locale)
        opened.append(ui)
        return ui

    yield make
    for ui in opened:
        ui.close()


@pytest.fixture
def ui(ui_factory: Any) -> UI:
    return ui_factory()
