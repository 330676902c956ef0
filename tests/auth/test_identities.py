"""Tokens, sessions, sign-in, scopes and projects, against the running app and the store."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from shipyard.auth import guard as guard_module
from shipyard.auth.store import AuthStore
from shipyard.errors import Conflict, InvalidInput, Unauthorized
from shipyard.store.schema import api_tokens, users
from tests.conftest import user_token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_random_shown_once_and_stored_hashed(server_ws):
    auth = server_ws.auth
    auth.create_user("ana", actor="test")
    made = [auth.create_token("ana", actor="test") for _ in range(3)]
    assert len({m.token for m in made}) == 3 and all(len(m.token) > 50 for m in made)
    with server_ws.store.read() as conn:
        stored = conn.execute(sa.select(api_tokens)).mappings().all()
    for m in made:
        assert all(m.token not in str(dict(row)) for row in stored)  # only a hash is kept
        assert "***" in repr(m) and m.token not in repr(m)
    assert [t.id for t in auth.list_tokens("ana")] == [m.record.id for m in made]
    assert "token" not in auth.list_tokens("ana")[0].to_dict()


def test_passwords_are_argon2_hashed(server_ws):
    server_ws.auth.create_user("ana", password="correct horse", actor="test")
    with server_ws.store.read() as conn:
        stored = conn.execute(sa.select(users.c.password_hash).where(users.c.name == "ana")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert server_ws.auth.check_login("ana", "correct horse") == "ana"
    with pytest.raises(Unauthorized, match="user name or password is wrong"):
        server_ws.auth.check_login("ana", "wrong horse")
    with pytest.raises(Unauthorized, match="user name or password is wrong"):
        server_ws.auth.check_login("nobody", "correct horse")
    with pytest.raises(InvalidInput, match="at least 8"):
        server_ws.auth.create_user("bo", password="short", actor="test")


def test_expired_revoked_and_disabled_tokens_are_refused(client, server_ws, monkeypatch):
    monkeypatch.setattr(guard_module, "CACHE_SECONDS", 0.0)
    admin = _bearer(user_token(server_ws))
    token = user_token(server_ws, "ana", "viewer", "default")
    assert client.get("/api/v1/models", headers=_bearer(token)).status_code == 200
    # revoked through the API: refused at once
    token_id = token.split("_")[1]
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin).status_code == 200
    assert client.get("/api/v1/models", headers=_bearer(token)).status_code == 401
    # expired
    short = server_ws.auth.create_token("ana", expires_in_days=1, actor="test")
    with server_ws.store.begin() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.id == short.record.id).values(expires_at=1))
    refused = client.get("/api/v1/models", headers=_bearer(short.token))
    assert refused.status_code == 401 and "expired, revoked" in refused.json()["error"]["message"]
    # a disabled user's tokens all stop working
    live = server_ws.auth.create_token("ana", actor="test").token
    assert client.get("/api/v1/models", headers=_bearer(live)).status_code == 200
    assert client.patch("/api/v1/users/ana", json={"disabled": True}, headers=admin).status_code == 200
    assert client.get("/api/v1/models", headers=_bearer(live)).status_code == 401
    # garbage never gets past the door, and says the same thing
    for bad in ("shy_zzz", "Bearer", "shy_" + "a" * 12 + "_x", token[:-1] + ("A" if token[-1] != "A" else "B")):
        assert client.get("/api/v1/models", headers=_bearer(bad)).status_code == 401
    assert client.get("/api/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401


def test_scopes_narrow_a_token(client, server_ws):
    user_token(server_ws, "ana", "modeler", "default")
    read_only = server_ws.auth.create_token("ana", scopes=["read"], actor="test").token
    predict_only = server_ws.auth.create_token("ana", scopes=["predict"], actor="test").token
    assert client.get("/api/v1/models", headers=_bearer(read_only)).status_code == 200
    refused = client.post("/api/v1/experiments", json={"name": "x"}, headers=_bearer(read_only))
    assert refused.status_code == 403 and "scopes ['read'] do not include 'write'" in refused.json()["error"]["message"]
    assert client.get("/api/v1/models", headers=_bearer(predict_only)).status_code == 403
    r = client.post("/v1/models/nope/champion/predict", json={"x": 1}, headers=_bearer(predict_only))
    assert r.status_code == 404  # past the door: the model does not exist
    r = client.post("/v1/models/nope/champion/predict", json={"x": 1}, headers=_bearer(read_only))
    assert r.status_code == 403


def test_password_sign_in_session_cookie_and_rate_limit(client, server_ws):
    server_ws.auth.create_user("ana", password="correct horse", roles={"default": "viewer"}, actor="test")
    signed = client.post("/api/v1/auth/login", json={"username": "ana", "password": "correct horse"})
    assert signed.status_code == 200 and signed.json()["user"] == "ana"
    cookie = signed.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert client.get("/api/v1/auth/whoami").json()["name"] == "ana"  # the cookie signs requests in
    assert client.get("/api/v1/models").status_code == 200
    # a signed-in browser request that says it came from elsewhere may not change anything
    foreign = client.post("/api/v1/experiments", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]["message"]
    assert client.post("/api/v1/auth/logout").status_code == 200
    client.cookies.clear()
    assert client.get("/api/v1/models").status_code == 401
    # five wrong passwords, then even the right one waits
    for _ in range(5):
        assert client.post("/api/v1/auth/login", json={"username": "ana", "password": "nope nope"}).status_code == 401
    limited = client.post("/api/v1/auth/login", json={"username": "ana", "password": "correct horse"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    attempts = [r for r in server_ws.audit.list(limit=100) if r.action == "login"]
    assert [r.outcome for r in attempts].count("failed") == 5 and {r.actor for r in attempts} == {"ana"}


def test_a_cli_sign_in_gets_a_named_token(client, server_ws):
    server_ws.auth.create_user("ana", password="correct horse", roles={"default": "viewer"}, actor="test")
    body = client.post("/api/v1/auth/login", json={"username": "ana", "password": "correct horse",
                                                   "token_name": "cli@laptop", "expires_in_days": 7}).json()
    assert client.get("/api/v1/auth/whoami", headers=_bearer(body["token"])).json()["name"] == "ana"
    [listed] = client.get("/api/v1/tokens", headers=_bearer(body["token"])).json()
    assert listed["name"] == "cli@laptop" and 6.9 < (listed["expires_at"] - time.time() * 1000) / 86_400_000 <= 7


def test_login_links_work_once(client, server_ws):
    server_ws.auth.create_user("ana", roles={"default": "viewer"}, actor="test")
    link = server_ws.auth.create_token("ana", kind="login_link", expires_in_days=1 / 96, actor="test").token
    # a link is not an API token
    assert client.get("/api/v1/models", headers=_bearer(link)).status_code == 401
    assert client.post("/api/v1/auth/link", json={"token": link}).status_code == 200
    assert client.get("/api/v1/auth/whoami").json()["name"] == "ana"
    client.cookies.clear()
    assert client.post("/api/v1/auth/link", json={"token": link}).status_code == 401


def test_users_manage_their_own_tokens_and_only_admins_others(client, server_ws):
    ana = _bearer(user_token(server_ws, "ana", "viewer", "default"))
    user_token(server_ws, "bo", "viewer", "default")
    mine = client.post("/api/v1/tokens", json={"name": "laptop"}, headers=ana)
    assert mine.status_code == 201 and mine.json()["user"] == "ana" and mine.json()["token"].startswith("shy_")
    assert client.post("/api/v1/tokens", json={"user": "bo"}, headers=ana).status_code == 403
    assert client.get("/api/v1/tokens", params={"user": "bo"}, headers=ana).status_code == 403
    bos = server_ws.auth.list_tokens("bo")[0].id
    assert client.delete(f"/api/v1/tokens/{bos}", headers=ana).status_code == 403
    assert client.get("/api/v1/users", headers=ana).status_code == 403


def test_roles_are_per_project_and_projects_are_isolated(client, server_ws, tmp_path):
    admin = _bearer(user_token(server_ws))
    assert client.post("/api/v1/projects", json={"name": "credit"}, headers=admin).status_code == 201
    assert client.post("/api/v1/projects", json={"name": "Bad Name"}, headers=admin).status_code == 400
    ana = _bearer(user_token(server_ws, "ana", "modeler", "credit"))
    in_credit = {**ana, "X-Shipyard-Project": "credit"}
    assert client.post("/api/v1/experiments", json={"name": "pd"}, headers=in_credit).status_code == 201
    # ana has no role in the default project
    assert client.get("/api/v1/experiments", headers=ana).status_code == 403
    assert client.get("/api/v1/experiments", headers={**admin, "X-Shipyard-Project": "credit"}).json()[
        "experiments"][0]["name"] == "pd"
    assert [e["name"] for e in client.get("/api/v1/experiments", headers=admin).json()["experiments"]] == []
    # a project that does not exist is refused, naming it
    missing = client.get("/api/v1/experiments", headers={**admin, "X-Shipyard-Project": "ghost"})
    assert missing.status_code == 404 and "ghost" in missing.json()["error"]["message"]
    # each project has its own artifacts and definitions folder
    project_ws = client.app.state.projects.get("credit")
    assert project_ws.settings.artifact_root.endswith("/projects/credit")
    assert project_ws.settings.project_dir == server_ws.settings.project_dir / "projects" / "credit"
    assert project_ws.store is not server_ws.store
    # a token bound to a project acts only there
    bound = server_ws.auth.create_token("ana", project="credit", actor="test").token
    assert client.get("/api/v1/experiments", headers=_bearer(bound)).status_code == 200  # defaults to credit
    assert client.get("/api/v1/experiments", headers={**_bearer(bound), "X-Shipyard-Project": "default"}
                      ).status_code == 403
    assert [p["name"] for p in client.get("/api/v1/projects", headers=ana).json()] == ["credit"]


def test_the_last_admin_cannot_be_removed(server_ws):
    auth: AuthStore = server_ws.auth
    user_token(server_ws)
    with pytest.raises(Conflict, match="last admin"):
        auth.revoke("admin", "*", "admin", actor="test")


def test_the_audit_log_is_append_only_and_chained(client, server_ws):
    admin = _bearer(user_token(server_ws))
    for name in ("a", "b", "c"):
        client.post("/api/v1/experiments", json={"name": name}, headers=admin)
    assert client.get("/api/v1/audit/verify", headers=admin).json() == {
        "checked": 3, "intact": True, "first_broken_id": None}
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), server_ws.store.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), server_ws.store.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log")
    # someone with the database's owner rights drops the guard and edits a row: verify finds it
    with server_ws.store.begin() as conn:
        if server_ws.store.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    assert client.get("/api/v1/audit/verify", headers=admin).json() == {
        "checked": 1, "intact": False, "first_broken_id": 2}


def test_a_token_never_mints_a_broader_token(client, server_ws):
    # a leaked predict-only or project-bound token must not buy a full-scope or unbound one
    user_token(server_ws, "ana", "admin", "*")
    predict_only = _bearer(server_ws.auth.create_token("ana", scopes=["predict"], actor="test").token)
    refused = client.post("/api/v1/tokens", json={"scopes": ["read", "write", "predict"]}, headers=predict_only)
    assert refused.status_code == 403 and refused.json()["error"]["details"]["field"] == "scopes"
    assert "read" in refused.json()["error"]["message"]
    same = client.post("/api/v1/tokens", json={}, headers=predict_only)
    assert same.status_code == 201 and same.json()["scopes"] == ["predict"]
    bound = _bearer(server_ws.auth.create_token("ana", project="default", actor="test").token)
    refused = client.post("/api/v1/tokens", json={}, headers=bound)
    assert refused.status_code == 403 and refused.json()["error"]["details"]["field"] == "project"
    assert client.post("/api/v1/tokens", json={"project": "default"}, headers=bound).status_code == 201
    # user_token's, predict_only, bound and the two narrow ones: the refused calls made nothing
    assert len(server_ws.auth.list_tokens("ana")) == 5


def test_an_expiring_token_never_mints_one_that_outlives_it(client, server_ws):
    # a leaked 1-day token must not buy a token that never expires (or expires later)
    user_token(server_ws, "ana", "admin", "*")
    short = server_ws.auth.create_token("ana", expires_in_days=1, actor="test")
    limit = short.record.expires_at
    headers = _bearer(short.token)
    for body in ({"expires_in_days": None}, {"expires_in_days": 90}, {}):
        made = client.post("/api/v1/tokens", json=body, headers=headers)
        assert made.status_code == 201, made.text
        assert made.json()["expires_at"] == limit, body
    # a shorter expiry than the caller's is kept as asked
    sooner = client.post("/api/v1/tokens", json={"expires_in_days": 0.5}, headers=headers).json()["expires_at"]
    assert sooner < limit
    # the new token cannot extend the chain either
    child = client.post("/api/v1/tokens", json={"expires_in_days": None}, headers=headers).json()["token"]
    grandchild = client.post("/api/v1/tokens", json={"expires_in_days": None}, headers=_bearer(child))
    assert grandchild.json()["expires_at"] == limit
    # an admin making a token for someone else (a service account) is not capped by their own
    server_ws.auth.create_user("svc", kind="service", actor="test")
    other = client.post("/api/v1/tokens", json={"user": "svc", "expires_in_days": None}, headers=headers)
    assert other.status_code == 201 and other.json()["expires_at"] is None
    # a token that never expires makes tokens as before
    forever = _bearer(server_ws.auth.create_token("ana", expires_in_days=None, actor="test").token)
    assert client.post("/api/v1/tokens", json={"expires_in_days": None}, headers=forever).json()["expires_at"] is None


def test_a_browser_session_mints_tokens_as_asked(client, server_ws):
    server_ws.auth.create_user("ana", password="correct horse", roles={"default": "viewer"}, actor="test")
    assert client.post("/api/v1/auth/login", json={"username": "ana", "password": "correct horse"}).status_code == 200
    made = client.post("/api/v1/tokens", json={"expires_in_days": None})
    assert made.status_code == 201, made.text
    assert made.json()["expires_at"] is None
    later = client.post("/api/v1/tokens", json={"expires_in_days": 90}).json()["expires_at"]
    assert later > time.time() * 1000 + 80 * 86_400_000  # beyond the 12-hour session
