"""Generated from the app's route table: every /api/v1 route declares a permission, refuses
anonymous and wrong-role callers without changing anything, and every mutating route writes an
audit record whatever its outcome."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi import APIRouter

from shipyard.auth.http import API_PREFIX, PermissionCheck, api_routes, declared_check
from shipyard.auth.permissions import is_mutation
from shipyard.errors import ShipyardError
from shipyard.server import create_app
from shipyard.store.schema import metadata
from tests.conftest import user_token

PARAMS = {"name": "credit", "version": "1", "alias": "champion", "run_id": "0" * 32, "name_or_id": "x",
          "kind": "scene", "token_id": "ffffffffffff", "role": "viewer", "scene": "s"}


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS.get(m.group(1), "x"), path)


def _routes(client) -> list[tuple[str, str, PermissionCheck]]:
    out = []
    for path, methods, route in api_routes(client.app):
        if not path.startswith(API_PREFIX):
            continue
        check = declared_check(route)
        for method in sorted(methods - {"HEAD"}):
            out.append((method, path, check))
    return out


def _fingerprint(ws) -> dict[str, int]:
    with ws.store.read() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def _mutating(method: str, check: PermissionCheck) -> bool:
    if check.action is not None:
        return is_mutation(check.action)
    return method not in ("GET", "HEAD")


def test_every_api_route_declares_a_permission(client):
    routes = _routes(client)
    assert len(routes) > 60
    missing = [(m, p) for m, p, check in routes if check is None]
    assert missing == []


def test_a_route_without_a_permission_stops_the_server(server_ws, monkeypatch):
    import shipyard.tracking.http as tracking_http

    original = tracking_http.router

    def leaky() -> APIRouter:
        api = original()

        @api.get("/leak")
        def leak() -> dict[str, str]:
            return {"secret": "x"}

        return api

    monkeypatch.setattr(tracking_http, "router", leaky)
    with pytest.raises(ShipyardError, match="/api/v1/leak"):
        create_app(server_ws, follow_interval=0)


def test_anonymous_callers_are_refused_everywhere_and_nothing_changes(client, server_ws):
    user_token(server_ws)  # the server has users; nobody is signed in below
    before = _fingerprint(server_ws)
    for method, path, check in _routes(client):
        if check.public:
            continue
        response = client.request(method, _url(path), json={})
        assert response.status_code == 401, (method, path, response.text)
        body = response.json()["error"]
        assert body["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        if check.resource is not None:
            assert f"{check.resource}:{check.action}" in body["message"]
    assert _fingerprint(server_ws) == before


def test_a_predictor_token_is_refused_everything_but_predictions(client, server_ws):
    headers = {"Authorization": f"Bearer {user_token(server_ws, 'app', 'predictor', 'default')}"}
    audit_before = len(server_ws.audit.list(limit=10_000))
    refused = 0
    for method, path, check in _routes(client):
        if check.public or check.resource is None:
            continue
        response = client.request(method, _url(path), json={}, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        error = response.json()["error"]
        assert error["details"]["permission"] == f"{check.resource}:{check.action}"
        refused += 1
    assert refused > 50
    # refusals of changes are audited as denied; refusals of reads are not
    denied = [r for r in server_ws.audit.list(limit=10_000)][: len(server_ws.audit.list(limit=10_000)) - audit_before]
    assert denied and {r.outcome for r in denied} == {"denied"} and {r.actor for r in denied} == {"app"}


def test_every_mutating_route_writes_an_audit_record(client, server_ws):
    headers = {"Authorization": f"Bearer {user_token(server_ws)}"}
    seen = 0
    for method, path, check in _routes(client):
        if not _mutating(method, check) or path.endswith("/auth/logout"):
            continue
        last = server_ws.audit.list(limit=1)
        last_id = last[0].id if last else 0
        response = client.request(method, _url(path), json={}, headers=headers)
        assert response.status_code < 500 or response.status_code == 503, (method, path, response.text)
        new = [r for r in server_ws.audit.list(limit=50) if r.id > last_id]
        assert new, f"{method} {path} answered {response.status_code} and wrote no audit record"
        assert new[-1].route == f"{method} {path}", (new[-1].route, method, path)
        assert new[-1].outcome == ("ok" if response.status_code < 400 else "failed"), (method, path, response.text)
        seen += 1
    assert seen > 30
    checked, broken = server_ws.audit.verify()
    assert broken is None and checked >= seen
