"""Single sign-on settings, the sign-in page's configuration, an unreachable provider, a missing
extra, and the ID-token checks against tokens signed here with keys of our own."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey

from shipyard.auth.oidc import OidcConfig, SingleSignOn, groups_of, safe_next, verify_id_token
from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.errors import ConfigError, InvalidInput, MissingDependency
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.auth.oidc_provider import free_port

SECRET_ENV = "SHIPYARD_TEST_OIDC_SETTINGS_SECRET"
SECRET = "s3cr3t-value-of-the-client"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET_ENV


def _raw(**changes: Any) -> dict[str, Any]:
    raw = {"issuer": "https://sso.example.com/realms/ml", "client_id": "shipyard", "client_secret_env": SECRET_ENV,
           "redirect_base": "https://shipyard.example.com", "role_map": {"ml-modelers": {"credit": "modeler"}}}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_settings_are_checked_and_defaults_filled(secret_env: str):
    config = OidcConfig.parse(_raw(role_map={"g1": {"credit": ["modeler", "viewer"], "*": "viewer"},
                                             "g2": {"default": "admin"}}, scopes="openid, email"))
    assert config is not None and config.issuer == "https://sso.example.com/realms/ml"
    assert config.scopes == ("openid", "email") and config.username_claim == "preferred_username"
    assert config.groups_claim == "groups" and config.password_login is True and config.timeout_s == 10.0
    assert config.callback_url == "https://shipyard.example.com/api/v1/auth/oidc/callback"
    assert config.cookie_path == "/api/v1/auth/oidc" and config.secure_cookies
    assert config.bindings_for(["g1", "g2", "other"]) == {("credit", "modeler"), ("credit", "viewer"),
                                                          ("*", "viewer"), ("default", "admin")}
    assert config.bindings_for(["other"]) == set()
    # a server under a path prefix keeps its cookie under it; loopback may use plain http
    behind = OidcConfig.parse(_raw(redirect_base="http://127.0.0.1:8000/shipyard/", issuer="http://localhost:9400"))
    assert behind.callback_url == "http://127.0.0.1:8000/shipyard/api/v1/auth/oidc/callback"
    assert behind.cookie_path == "/shipyard/api/v1/auth/oidc" and not behind.secure_cookies
    assert OidcConfig.parse({}) is None


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"issuer": None}, "oidc.issuer", "is missing"),
    ({"issuer": "sso.example.com"}, "oidc.issuer", "not an http(s) URL"),
    ({"issuer": "http://sso.example.com"}, "oidc.issuer", "use https"),
    ({"redirect_base": "https://shipyard.example.com/?x=1"}, "oidc.redirect_base", "without query"),
    ({"client_id": ""}, "oidc.client_id", "is missing"),
    ({"client_secret_env": "my secret"}, "oidc.client_secret_env", "not the name of an environment variable"),
    ({"scopes": ["profile"]}, "oidc.scopes", "includes 'openid'"),
    ({"groups_claim": ""}, "oidc.groups_claim", "non-empty"),
    ({"password_login": "no"}, "oidc.password_login", "true or false"),
    ({"timeout_s": 0}, "oidc.timeout_s", "(0, 120]"),
    ({"role_map": None}, "oidc.role_map", "must map each provider group"),
    ({"role_map": {"g": "modeler"}}, "oidc.role_map['g']", "must map projects to roles"),
    ({"role_map": {"g": {"Credit Team": "modeler"}}}, "oidc.role_map['g']", "not a project name"),
    ({"role_map": {"g": {"credit": "boss"}}}, "oidc.role_map['g']['credit']", "role 'boss' does not exist"),
    ({"tenant": "x"}, "oidc.tenant", "not a known key"),
])
def test_bad_settings_name_the_key_and_the_fix(secret_env: str, changes: dict, field: str, words: str):
    with pytest.raises(ConfigError) as caught:
        OidcConfig.parse(_raw(**changes))
    assert caught.value.details["field"] == field and words in caught.value.message
    assert "; " in caught.value.message  # problem; fix


def test_a_secret_written_into_the_settings_is_refused_and_never_echoed(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        OidcConfig.parse(_raw(client_secret=SECRET))
    assert caught.value.details["field"] == "oidc.client_secret" and "client_secret_env" in caught.value.message
    assert SECRET not in str(caught.value.to_dict())
    settings = load_settings(tmp_path, oidc=_raw(client_secret=SECRET))
    assert SECRET not in repr(settings) and SECRET not in str(settings.to_dict())
    assert settings.to_dict()["oidc"]["client_secret_env"] == SECRET_ENV


def test_the_server_does_not_start_without_the_secret_or_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    ws = Workspace(load_settings(tmp_path, oidc=_raw()), principal=SERVER)
    try:
        with pytest.raises(ConfigError) as caught:
            create_app(ws, follow_interval=0)
        assert SECRET_ENV in caught.value.message and caught.value.details["field"] == "oidc.client_secret_env"
        monkeypatch.setenv(SECRET_ENV, SECRET)
        monkeypatch.setitem(sys.modules, "authlib", None)  # as if the oidc extra were not installed
        with pytest.raises(MissingDependency, match=r"pip install 'shipyard-ml\[oidc\]'"):
            create_app(ws, follow_interval=0)
    finally:
        ws.close()


@pytest.fixture
def app_with(tmp_path: Path, secret_env: str) -> Iterator[Any]:
    made: list[Workspace] = []

    def build(oidc: dict[str, Any] | None) -> TestClient:
        ws = Workspace(load_settings(tmp_path / f"p{len(made)}", oidc=oidc or {}), principal=SERVER)
        made.append(ws)
        return TestClient(create_app(ws, follow_interval=0), raise_server_exceptions=False)

    yield build
    for ws in made:
        ws.close()


def test_the_sign_in_page_learns_which_ways_are_on(app_with: Any):
    plain = app_with(None)
    assert plain.get("/api/v1/auth/config").json() == {"password": True, "oidc": None}
    off = plain.get("/api/v1/auth/oidc/login", follow_redirects=False)
    assert off.status_code == 404 and off.json()["error"]["details"]["field"] == "oidc"

    sso = app_with(_raw(label="Bank SSO"))
    assert sso.get("/api/v1/auth/config").json() == {
        "password": True,
        "oidc": {"login_url": "/api/v1/auth/oidc/login", "label": "Bank SSO",
                 "issuer": "https://sso.example.com/realms/ml"}}

    only_sso = app_with(_raw(password_login=False))
    assert only_sso.get("/api/v1/auth/config").json()["password"] is False
    refused = only_sso.post("/api/v1/auth/login", json={"username": "admin", "password": "correct horse"})
    assert refused.status_code == 403 and "oidc.password_login" in refused.json()["error"]["message"]
    assert "shipyard_session" not in refused.headers.get("set-cookie", "")


def test_an_unreachable_provider_is_a_clear_error_and_no_cookie(app_with: Any):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = app_with(_raw(issuer=closed, timeout_s=2))
    r = client.get("/api/v1/auth/oidc/login", follow_redirects=False)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "provider_unavailable" and error["details"]["field"] == "oidc.issuer"
    assert closed in error["message"] and SECRET not in r.text and "set-cookie" not in r.headers
    # the callback is refused before the provider is asked anything: there is no sign-in under way
    r = client.get("/api/v1/auth/oidc/callback", params={"state": "x", "code": "y"})
    assert r.status_code == 401 and "no sign-in under way" in r.json()["error"]["message"]
    assert "set-cookie" not in r.headers


def test_next_paths_stay_on_this_server():
    assert safe_next(None) == "/" and safe_next("/ui/models?tab=2") == "/ui/models?tab=2"
    for bad in ("https://evil.example", "//evil.example", "/\\evil", "evil", "/a\nSet-Cookie: x", "/" + "a" * 3000):
        with pytest.raises(InvalidInput):
            safe_next(bad)


def test_groups_are_read_at_a_dotted_path():
    claims = {"groups": ["a", 3, "b"], "realm_access": {"roles": ["r1"]}, "team": "solo"}
    assert groups_of(claims, "groups") == ["a", "b"]
    assert groups_of(claims, "realm_access.roles") == ["r1"]
    assert groups_of(claims, "team") == ["solo"]
    assert groups_of(claims, "missing.path") == []


# -- ID-token checks ----------------------------------------------------------------------------------
ISSUER = "https://sso.example.com/realms/ml"


@pytest.fixture(scope="module")
def keys() -> tuple[RSAKey, RSAKey]:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"}), RSAKey.generate_key(2048, parameters={"kid": "k1"})


def _token(key: Any, alg: str = "RS256", **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "u1", "aud": "shipyard", "exp": now + 300, "iat": now, "nonce": "n-1",
              "preferred_username": "ana"}
    claims.update(changes)
    return jwt.encode({"alg": alg, "kid": "k1"}, {k: v for k, v in claims.items() if v is not None}, key,
                      algorithms=[alg])


def _verify(token: str, signer: RSAKey) -> dict[str, Any]:
    jwks = KeySet([signer]).as_dict(private=False)
    return verify_id_token(token, jwks=jwks, issuer=ISSUER, client_id="shipyard", nonce="n-1",
                           algorithms=["RS256"])


def test_a_good_id_token_passes(keys: tuple[RSAKey, RSAKey]):
    good, _ = keys
    assert _verify(_token(good), good)["preferred_username"] == "ana"
    assert _verify(_token(good, aud=["other", "shipyard"], azp="shipyard"), good)["sub"] == "u1"


@pytest.mark.parametrize(("changes", "why"), [
    ({"aud": "another-client"}, "audience"),
    ({"aud": ["another-client"], "azp": "shipyard"}, "audience, even with our azp"),
    ({"iss": "https://evil.example"}, "issuer"),
    ({"nonce": "n-2"}, "nonce"),
    ({"nonce": None}, "no nonce"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": None}, "no expiry"),
    ({"sub": None}, "no subject"),
    ({"aud": ["another-client", "shipyard"], "azp": "another-client"}, "authorized party"),
])
def test_bad_id_tokens_are_refused(keys: tuple[RSAKey, RSAKey], changes: dict, why: str):
    good, _ = keys
    with pytest.raises(JoseError):
        _verify(_token(good, **changes), good)


def test_tokens_not_signed_by_the_providers_keys_are_refused(keys: tuple[RSAKey, RSAKey]):
    good, rogue = keys
    with pytest.raises(JoseError):
        _verify(_token(rogue), good)  # same kid, another key
    # a token "signed" with the client secret (HS256), or not at all, is never accepted
    shared = OctKey.import_key(SECRET.encode() * 2)
    hs = jwt.encode({"alg": "HS256", "kid": "k1"}, {"iss": ISSUER, "sub": "u1", "aud": "shipyard",
                                                    "exp": int(time.time()) + 300, "iat": int(time.time()),
                                                    "nonce": "n-1"}, shared, algorithms=["HS256"])
    with pytest.raises(JoseError):
        _verify(hs, good)
    header, payload, _sig = _token(good).split(".")
    with pytest.raises(JoseError):
        _verify(f"{header}.{payload}.", good)
    with pytest.raises(JoseError):
        verify_id_token(_token(good), jwks=KeySet([good]).as_dict(private=False), issuer=ISSUER,
                        client_id="shipyard", nonce="n-1", algorithms=[])


def test_repr_of_the_relying_party_shows_no_secret(secret_env: str):
    sso = SingleSignOn.from_settings(_raw())
    assert sso is not None
    assert SECRET not in repr(sso) and SECRET not in repr(sso.config) and SECRET not in str(sso.describe())
