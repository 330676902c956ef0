"""Single sign-on end to end: a real OpenID Connect provider and a real Shipyard server on loopback,
driven by an HTTP client that follows the redirects as a browser would."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from shipyard.auth.store import OIDC_GRANTOR
from shipyard.errors import NotFound
from shipyard.store.schema import oidc_identities, role_bindings, users
from tests.auth.oidc_provider import CALLBACK, Provider, ProviderServer, Shipyard, ShipyardServer

pytestmark = pytest.mark.oidc


@pytest.fixture
def provider() -> Iterator[Provider]:
    with ProviderServer() as running:
        yield running


@pytest.fixture
def shipyard(provider: Provider, metadata_url: str, tmp_path: Path) -> Iterator[Shipyard]:
    with ShipyardServer(provider, metadata_url, tmp_path / "project") as running:
        yield running


def _bindings(ws, name: str) -> set[tuple[str, str, str]]:
    with ws.store.read() as conn:
        rows = conn.execute(sa.select(role_bindings.c.project, role_bindings.c.role, role_bindings.c.granted_by)
                            .where(role_bindings.c.user == name)).all()
    return {(p, r, by) for p, r, by in rows}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_sign_in_creates_the_user_with_mapped_roles_and_a_session(shipyard: Shipyard, provider: Provider):
    provider.set_user("sub-ana-1", preferred_username="ana", name="Ana Lima", email="ana@bank.example",
                      groups=["ml-modelers", "cafeteria"])
    with shipyard.browser() as browser:
        landed = shipyard.sign_in(browser, "sub-ana-1")
        # login -> provider's page; form post -> callback -> next (whoami), all followed
        assert landed.status_code == 200, landed.text
        assert [r.status_code for r in landed.history] == [302, 303]
        assert urlsplit(str(landed.history[0].url)).path == "/oauth2/authorize"
        assert urlsplit(str(landed.history[1].url)).path == CALLBACK
        me = landed.json()
        assert me["name"] == "ana" and me["kind"] == "oidc"
        assert me["roles"] == {"credit": ["modeler"], "default": ["viewer"]}
        session = landed.history[1].headers["set-cookie"].lower()
        assert "shipyard_session=" in session and "httponly" in session and "samesite=strict" in session
        assert 'shipyard_oidc=""' in session or "shipyard_oidc=;" in session  # the state cookie is spent
        # the session is a real one: it reads a project it has a role in and nothing more
        assert browser.get(f"{shipyard.url}/api/v1/models", headers={"X-Shipyard-Project": "credit"}).status_code \
            == 200
        assert browser.get(f"{shipyard.url}/api/v1/users").status_code == 403

    user = shipyard.ws.auth.get_user("ana")
    assert (user.kind, user.display_name, user.email) == ("oidc", "Ana Lima", "ana@bank.example")
    with shipyard.ws.store.read() as conn:
        assert conn.execute(sa.select(users.c.password_hash).where(users.c.name == "ana")).scalar_one() is None
        link = conn.execute(sa.select(oidc_identities)).mappings().one()
    assert (link["issuer"], link["subject"], link["user"]) == (provider.url, "sub-ana-1", "ana")
    assert _bindings(shipyard.ws, "ana") == {("credit", "modeler", OIDC_GRANTOR), ("default", "viewer", OIDC_GRANTOR)}

    # what the provider was sent: state, nonce and a PKCE S256 challenge matching the verifier redeemed
    [authorize] = [s for s in provider.recorder.seen if s.path == "/oauth2/authorize" and s.method == "GET"]
    [token] = [s for s in provider.recorder.seen if s.path == "/oauth2/token"]
    assert authorize.query["code_challenge_method"] == ["S256"] and authorize.query["state"][0]
    assert authorize.query["nonce"][0] and authorize.query["redirect_uri"] == [shipyard.url + CALLBACK]
    assert authorize.query["scope"] == ["openid profile email"]
    assert authorize.query["code_challenge"] == [_s256(token.form["code_verifier"][0])]
    assert token.form["grant_type"] == ["authorization_code"]

    [record] = [r for r in shipyard.ws.audit.list(limit=50) if r.action == "login"]
    assert (record.actor, record.outcome, record.route) == ("ana", "ok", f"GET {CALLBACK}")
    assert record.details["via"] == "oidc" and record.details["created"] is True
    assert record.details["groups"] == ["ml-modelers"]
    assert record.details["after"] == {"credit": ["modeler"], "default": ["viewer"]}


def test_a_user_in_no_mapped_group_is_refused_and_nothing_is_created(shipyard: Shipyard, provider: Provider):
    provider.set_user("sub-bo", preferred_username="bo", groups=["cafeteria", "parking"])
    with shipyard.browser() as browser:
        refused = shipyard.sign_in(browser, "sub-bo")
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "forbidden" and "oidc.role_map" in error["message"] and "cafeteria" in error["message"]
        assert "shipyard_session" not in refused.headers.get("set-cookie", "")
        assert "shipyard_session" not in browser.cookies
        assert browser.get(f"{shipyard.url}/api/v1/auth/whoami").status_code == 401
    with pytest.raises(NotFound):
        shipyard.ws.auth.get_user("bo")
    with shipyard.ws.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(oidc_identities)).scalar_one() == 0
    [record] = [r for r in shipyard.ws.audit.list(limit=50) if r.action == "login"]
    assert (record.actor, record.outcome, record.status) == ("bo", "failed", 403)


def _callback_url(shipyard: Shipyard, browser: httpx.Client, sub: str) -> str:
    """Sign in at the provider but stop before the browser goes back to Shipyard: the callback URL."""
    page = browser.get(f"{shipyard.url}/api/v1/auth/oidc/login", params={"next": "/api/v1/auth/whoami"})
    back = browser.post(str(page.url), data={"sub": sub}, follow_redirects=False)
    assert back.status_code == 302 and urlsplit(back.headers["location"]).path == CALLBACK
    return back.headers["location"]


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def _refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert all(w in message for w in words), message
    assert "shipyard_session" not in response.headers.get("set-cookie", "")


def test_a_tampered_state_a_missing_cookie_and_a_swapped_sign_in_are_refused(shipyard: Shipyard,
                                                                               provider: Provider):
    provider.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
    whoami = f"{shipyard.url}/api/v1/auth/whoami"
    with shipyard.browser() as browser:
        callback = _callback_url(shipyard, browser, "sub-ana")
        state = parse_qs(urlsplit(callback).query)["state"][0]
        _refused(browser.get(_with(callback, state=state[:-2] + ("AA" if state[-2:] != "AA" else "BB"))),
                 401, "state does not match")
        _refused(browser.get(_with(callback, state="")), 401, "state does not match")
        assert browser.get(whoami).status_code == 401
        # a state cookie that was altered does not decrypt
        sealed = browser.cookies["shipyard_oidc"]
        browser.cookies.set("shipyard_oidc", sealed[:-4] + "AAAA", domain="127.0.0.1", path="/api/v1/auth/oidc")
        _refused(browser.get(callback), 401, "state cookie is not valid")
    # the right link in another browser (no state cookie there): a forged or stolen link
    with shipyard.browser() as other:
        _refused(other.get(callback), 401, "no sign-in under way")
        assert other.get(whoami).status_code == 401

    # a code obtained for one sign-in replayed into another sign-in of the same browser, with that
    # sign-in's state: the state matches, but the ID token carries the first sign-in's nonce
    with shipyard.browser() as browser:
        first = _callback_url(shipyard, browser, "sub-ana")
        second = _callback_url(shipyard, browser, "sub-ana")  # its cookie replaces the first's
        second_state = parse_qs(urlsplit(second).query)["state"][0]
        _refused(browser.get(_with(first, state=second_state)), 401, "ID token is not valid", "nonce")
        # the second sign-in itself still works, once
        done = browser.get(second)
        assert done.status_code == 200 and done.json()["name"] == "ana", done.text
        replayed = browser.get(second)
        _refused(replayed, 401)  # the state cookie is spent (cleared) and the code used
    failed = [r for r in shipyard.ws.audit.list(limit=50) if r.action == "login" and r.outcome == "failed"]
    assert len(failed) == 6 and all(r.details["via"] == "oidc" for r in failed)


def test_roles_follow_the_groups_on_the_next_sign_in_and_hand_granted_roles_stay(shipyard: Shipyard,
                                                                                 provider: Provider):
    provider.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
    with shipyard.browser() as browser:
        assert shipyard.sign_in(browser, "sub-ana").json()["roles"] == {"credit": ["modeler"], "default": ["viewer"]}
    auth = shipyard.ws.auth
    auth.grant("ana", "default", "operator", actor="admin")  # by hand: no group gives it
    auth.grant("ana", "credit", "modeler", actor="admin")  # by hand too, though a group gave it first

    provider.set_user("sub-ana", preferred_username="ana", groups=["ml-reviewers"])
    with shipyard.browser() as browser:
        me = shipyard.sign_in(browser, "sub-ana").json()
    # default:viewer came from the group she left: gone. credit:modeler was taken over by the admin's
    # grant and default:operator was the admin's alone: both stay. ml-reviewers adds its two roles.
    assert me["roles"] == {"credit": ["modeler", "reviewer", "viewer"], "default": ["operator"]}
    assert _bindings(shipyard.ws, "ana") == {
        ("credit", "modeler", "admin"), ("default", "operator", "admin"),
        ("credit", "reviewer", OIDC_GRANTOR), ("credit", "viewer", OIDC_GRANTOR)}
    last = [r for r in shipyard.ws.audit.list(limit=50) if r.action == "login"][0]
    assert last.details["created"] is False
    assert last.details["removed"] == [["default", "viewer"]]
    assert last.details["granted"] == [["credit", "reviewer"], ["credit", "viewer"]]

    # out of every mapped group: the group roles go, the hand-granted ones keep her signed in
    provider.set_user("sub-ana", preferred_username="ana", groups=[])
    with shipyard.browser() as browser:
        assert shipyard.sign_in(browser, "sub-ana").json()["roles"] == {"credit": ["modeler"],
                                                                         "default": ["operator"]}
    auth.revoke("ana", "credit", "modeler", actor="admin")
    auth.revoke("ana", "default", "operator", actor="admin")
    with shipyard.browser() as browser:
        assert shipyard.sign_in(browser, "sub-ana").status_code == 403
    assert auth.get_user("ana").roles == {}

    # the account is the provider's subject, not its name: a new name at the provider keeps "ana"
    provider.set_user("sub-ana", preferred_username="ana.lima", groups=["ml-admins"])
    with shipyard.browser() as browser:
        me = shipyard.sign_in(browser, "sub-ana").json()
    assert me["name"] == "ana" and me["roles"] == {"*": ["admin"]}


def test_names_taken_by_local_accounts_or_other_subjects_are_not_taken_over(shipyard: Shipyard,
                                                                             provider: Provider):
    auth = shipyard.ws.auth
    auth.create_user("admin", password="correct horse", roles={"*": "admin"}, actor="test")
    provider.set_user("sub-mallory", preferred_username="admin", groups=["ml-admins"])
    with shipyard.browser() as browser:
        _refused(shipyard.sign_in(browser, "sub-mallory"), 409, "existing person account")
        assert browser.get(f"{shipyard.url}/api/v1/auth/whoami").status_code == 401
    assert auth.get_user("admin").kind == "person" and auth.check_login("admin", "correct horse") == "admin"

    provider.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
    provider.set_user("sub-ana-impostor", preferred_username="ana", groups=["ml-admins"])
    with shipyard.browser() as browser:
        assert shipyard.sign_in(browser, "sub-ana").json()["name"] == "ana"
    with shipyard.browser() as browser:
        _refused(shipyard.sign_in(browser, "sub-ana-impostor"), 409, "existing oidc account")
    assert auth.get_user("ana").roles == {"credit": ["modeler"], "default": ["viewer"]}

    auth.set_disabled("ana", True, actor="admin")
    with shipyard.browser() as browser:
        _refused(shipyard.sign_in(browser, "sub-ana"), 403, "disabled")


def test_an_unsafe_next_is_refused_before_leaving_for_the_provider(shipyard: Shipyard, provider: Provider):
    with shipyard.browser() as browser:
        for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "ui"):
            r = browser.get(f"{shipyard.url}/api/v1/auth/oidc/login", params={"next": bad},
                            follow_redirects=False)
            assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "next", bad
            assert "shipyard_oidc" not in r.headers.get("set-cookie", "")
    assert not [s for s in provider.recorder.seen if s.path == "/oauth2/authorize"]


def test_an_expired_id_token_is_refused(metadata_url: str, tmp_path: Path):
    with ProviderServer(token_max_age=timedelta(seconds=-600)) as stale, \
            ShipyardServer(stale, metadata_url, tmp_path / "project") as shipyard:
        stale.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
        with shipyard.browser() as browser:
            _refused(shipyard.sign_in(browser, "sub-ana"), 401, "ID token is not valid", "expired")
        with pytest.raises(NotFound):
            shipyard.ws.auth.get_user("ana")


def test_a_wrong_client_secret_is_refused_by_the_provider(provider: Provider, metadata_url: str, tmp_path: Path):
    with ShipyardServer(provider, metadata_url, tmp_path / "project", secret="not-the-secret") as shipyard:
        provider.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
        with shipyard.browser() as browser:
            _refused(shipyard.sign_in(browser, "sub-ana"), 401, "did not accept", "invalid_client")


def test_the_client_secret_never_appears_in_responses_or_logs(provider: Provider, metadata_url: str,
                                                              tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              capfd: pytest.CaptureFixture[str]):
    caplog.set_level(logging.DEBUG)
    with ShipyardServer(provider, metadata_url, tmp_path / "project") as shipyard:
        secret = shipyard.secret
        provider.set_user("sub-ana", preferred_username="ana", groups=["ml-modelers"])
        provider.set_user("sub-bo", preferred_username="bo", groups=["cafeteria"])
        with shipyard.browser() as browser:
            assert shipyard.sign_in(browser, "sub-ana").status_code == 200
            assert shipyard.sign_in(browser, "sub-bo").status_code == 403
            callback = _callback_url(shipyard, browser, "sub-ana")
            assert browser.get(_with(callback, state="forged")).status_code == 401
            assert browser.get(_with(callback, error="access_denied")).status_code == 401
            assert browser.get(f"{shipyard.url}/api/v1/auth/config").status_code == 200
            admin = shipyard.ws.auth
            admin.create_user("root", roles={"*": "admin"}, actor="test")
            token = admin.create_token("root", actor="test").token
            for path in ("/api/v1/users", "/api/v1/audit", "/api/v1/auth/whoami", "/openapi.json"):
                assert browser.get(shipyard.url + path, headers={"Authorization": f"Bearer {token}"}) \
                    .status_code == 200
        sso = shipyard.ws.settings
        shown = [repr(sso), str(sso.to_dict())]
        from shipyard.auth.oidc import SingleSignOn

        single = SingleSignOn.from_settings(shipyard.ws.settings.oidc)
        shown += [repr(single), repr(single.config), str(single.describe())]
    # the secret was in use (the provider saw it on every token request) ...
    assert len(shipyard.responses) > 15 and len(caplog.records) > 10
    basic = base64.b64encode(f"{shipyard.client_id}:{secret}".encode()).decode()
    # ... and shows up in none of Shipyard's responses, log records or output (the provider's own
    # threads log their registered clients, secret included: that is the provider's business)
    for response in shipyard.responses:
        text = response.text + str(response.headers) + str(response.url)
        assert secret not in text and basic not in text, response.url
    ours = [r for r in caplog.records if r.threadName not in provider.recorder.threads]
    assert {r.name.split(".")[0] for r in ours} >= {"uvicorn", "httpx"}
    for record in ours:
        assert secret not in record.getMessage() and basic not in record.getMessage(), record.getMessage()
    out, err = capfd.readouterr()
    assert secret not in out + err
    assert all(secret not in s for s in shown)


def test_a_role_map_naming_a_missing_project_is_a_clear_error(provider: Provider, metadata_url: str,
                                                              tmp_path: Path):
    role_map = {"ml-risk": {"risk": "modeler", "default": "viewer"}}
    with ShipyardServer(provider, metadata_url, tmp_path / "project", role_map=role_map) as shipyard:
        provider.set_user("sub-ana", preferred_username="ana", groups=["ml-risk"])
        with shipyard.browser() as browser:
            refused = shipyard.sign_in(browser, "sub-ana")
            _refused(refused, 400, "project 'risk'", "shipyard projects create risk")
            assert refused.json()["error"]["details"]["field"] == "oidc.role_map"
        with pytest.raises(NotFound):  # nothing half-made: no user, no default:viewer binding
            shipyard.ws.auth.get_user("ana")
        shipyard.ws.auth.create_project("risk", actor="admin")
        with shipyard.browser() as browser:
            assert shipyard.sign_in(browser, "sub-ana").json()["roles"] == {"default": ["viewer"],
                                                                             "risk": ["modeler"]}
