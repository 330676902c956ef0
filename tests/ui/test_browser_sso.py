"""Single sign-on from the UI's sign-in page in a real browser, against a real OpenID Connect
provider (oidc-provider-mock): the button, the provider's page, back signed in on the app."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def test_sign_in_with_single_sign_on(chromium, tmp_path: Path):
    pytest.importorskip("oidc_provider_mock")
    from tests.auth.oidc_provider import ProviderServer, ShipyardServer
    from tests.ui.conftest import UI

    with ProviderServer() as provider, \
            ShipyardServer(provider, f"sqlite:///{tmp_path / 'meta.db'}", tmp_path / "project",
                           label="Sign in with Bank SSO") as shipyard:
        provider.set_user("sub-li", preferred_username="li", groups=["ml-modelers"])
        ui = UI(chromium, shipyard.url, tmp_path)
        try:
            page = ui.open("/runs")
            assert page.get_by_role("button", name="Sign in").is_visible()  # the password form stays
            page.get_by_role("link", name="Sign in with Bank SSO").click()
            page.wait_for_selector("input[name=sub]")  # the provider's own page
            page.fill("input[name=sub]", "sub-li")
            page.locator("input[name=sub]").press("Enter")
            page.wait_for_selector(".shell", timeout=20_000)
            ui.ready()
            assert page.locator(".topbar .user").inner_text() == "li"
            # back on the page asked for, in the project the groups gave a role in
            assert page.locator("main h1").inner_text() == "Experiments and runs"
            assert sorted(page.locator("#sy-project option").all_inner_texts()) == ["credit", "default"]
            # the provider's own page may log what it likes; Shipyard's pages log nothing
            assert [e for e in ui.errors if f"@ {shipyard.url}" in e] == []
        finally:
            ui.close()
