"""The prediction fast path: answers in front of the ASGI stack, same answers as the routes."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipyard.server import create_app
from shipyard.serving import ServingEngine
from shipyard.serving.engine import new_request_id
from tests.conftest import auth_headers


class Boom:
    input_names = ["income", "debt", "age"]
    has_fast_path = False
    signature = None

    def predict(self, records: Any) -> Any:
        raise ZeroDivisionError("division by zero in a flavor")


@pytest.fixture(scope="module")
def app(module_workspace, loaded):
    from tests.serving.conftest import make_catalog

    catalog = make_catalog(loaded)
    catalog.add("boom", Boom(), version=1, aliases=["champion"])
    engine = ServingEngine(module_workspace, models=catalog, features=None)
    app = create_app(module_workspace, engine=engine, max_request_bytes=2_000, follow_interval=0)
    app.auth = auth_headers(module_workspace)
    return app


def _asgi(app: Any, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None,
          disconnect: bool = False) -> tuple[bool, list[dict[str, Any]]]:
    """Call the fast path directly with a raw ASGI scope; returns (handled, messages sent)."""
    token = app.auth["Authorization"].encode()
    scope = {"type": "http", "method": "POST", "path": path, "client": ("10.0.0.1", 5000),
             "headers": [*(headers or [(b"content-type", b"application/json")]), (b"authorization", token)]}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        queue = [{"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    handled = asyncio.run(app.fast_path(scope, receive, send))
    return handled, sent


ROW = {"income": 4.0, "debt": 1.0, "age": 40.0}


def test_fast_path_is_installed_for_the_lifespan_only(app):
    assert app.fast_path is None
    with TestClient(app, headers=app.auth) as client:
        assert app.fast_path is not None
        r = client.post("/v1/models/credit/champion/predict", json=ROW, headers={"x-request-id": "abc"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc" == r.json()["request_id"]
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)
    assert app.fast_path is None


def test_fast_path_answers_like_the_routes(app):
    with TestClient(app, headers=app.auth) as client:
        fast = client.post("/v1/models/credit/1/invocations", json={"dataframe_records": [ROW, ROW]})
        fast_path, app.fast_path = app.fast_path, None  # the routed path
        try:
            routed = client.post("/v1/models/credit/1/invocations", json={"dataframe_records": [ROW, ROW]})
        finally:
            app.fast_path = fast_path
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json()
    assert fast.headers["x-shipyard-model-version"] == routed.headers["x-shipyard-model-version"] == "1"


def test_fast_path_raw_asgi(app):
    with TestClient(app):
        body = orjson.dumps(ROW)
        # a body in three chunks is joined
        handled, sent = _asgi(app, "/v1/models/credit/champion/predict", [body[:5], body[5:20], body[20:]])
        assert handled and sent[0]["status"] == 200
        assert "predictions" in orjson.loads(sent[1]["body"])
        # a streamed body over the limit is refused with 413 and the limit
        handled, sent = _asgi(app, "/v1/models/credit/champion/predict", [b" " * 1_500, b" " * 1_500])
        assert handled and sent[0]["status"] == 413
        assert orjson.loads(sent[1]["body"])["error"]["details"]["limit"] == 2_000
        # a declared length over the limit is refused before reading
        handled, sent = _asgi(app, "/v1/models/credit/champion/predict", [b"{}"],
                              headers=[(b"content-length", b"999999")])
        assert handled and sent[0]["status"] == 413
        # a client that went away gets nothing and nothing fails
        handled, sent = _asgi(app, "/v1/models/credit/champion/predict", [], disconnect=True)
        assert handled and sent == []
        # other paths are left to the application
        assert _asgi(app, "/api/v1/scenes", [b"{}"]) == (False, [])
        assert _asgi(app, "/invocations", [b"{}"]) == (False, [])  # no single model configured


def test_model_exception_is_a_named_counted_500(app):
    with TestClient(app, raise_server_exceptions=False, headers=app.auth) as client:
        r = client.post("/v1/models/boom/champion/predict", json=ROW)
        metrics = client.get("/metrics").text
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "model_error"
    assert err["message"] == "model 'boom' version 1: ZeroDivisionError: division by zero in a flavor"
    assert err["details"]["model"] == "boom" and err["details"]["version"] == 1
    assert err["details"]["exception"] == "ZeroDivisionError"
    assert re.search(r'shipyard_prediction_errors_total\{[^}]*code="model_error"[^}]*scene="model:boom"[^}]*\} 1\.0',
                     metrics)
    assert re.search(r'shipyard_predictions_total\{[^}]*scene="model:boom",status="500"[^}]*\} 1\.0', metrics)


def test_request_ids_are_20_random_hex_digits():
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_request_ids_of_a_forked_worker_are_its_own():
    new_request_id()  # the parent now holds unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids, then leave without running the parent's cleanup
        os.write(write, "".join(new_request_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    text = b""
    while chunk := os.read(read, 65536):
        text += chunk
    os.close(read)
    child = {text[i:i + 20].decode() for i in range(0, len(text), 20)}
    parent = {new_request_id() for _ in range(300)}
    assert len(child) == 300 and not child & parent


def test_fast_path_refuses_before_reading_the_body(app):
    with TestClient(app):
        # no token: 401 without reading a body far over the limit, on the fast path
        scope = {"type": "http", "method": "POST", "path": "/v1/models/credit/champion/predict",
                 "client": ("10.0.0.1", 5000), "headers": [(b"content-length", b"10")]}
        received: list[str] = []

        async def receive() -> dict[str, Any]:
            received.append("body")
            return {"type": "http.request", "body": b"{}", "more_body": False}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        assert asyncio.run(app.fast_path(scope, receive, send))
        assert sent[0]["status"] == 401 and received == []
        assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]


def test_prediction_hooks_run_on_both_paths(app):
    from shipyard.errors import Forbidden

    def only_branch_a(request) -> None:
        if request.header("x-branch") != "a":
            raise Forbidden(f"branch {request.header('x-branch')!r} may not score {request.name}", {"field": "x-branch"})

    app.add_prediction_hook(only_branch_a)
    try:
        with TestClient(app, headers=app.auth) as client:
            for fast in (True, False):
                saved = app.fast_path
                if not fast:
                    app.fast_path = None
                try:
                    ok = client.post("/v1/models/credit/champion/predict", json=ROW, headers={"x-branch": "a"})
                    refused = client.post("/v1/models/credit/champion/predict", json=ROW, headers={"x-branch": "b"})
                finally:
                    app.fast_path = saved
                assert ok.status_code == 200, (fast, ok.text)
                assert refused.status_code == 403 and "branch 'b'" in refused.json()["error"]["message"], fast
    finally:
        app.prediction_hooks.remove(only_branch_a)


def test_added_middleware_sees_every_prediction(module_workspace, loaded):
    from starlette.middleware.base import BaseHTTPMiddleware

    from tests.serving.conftest import make_catalog

    engine = ServingEngine(module_workspace, models=make_catalog(loaded), features=None)
    app = create_app(module_workspace, engine=engine, follow_interval=0)
    seen: list[str] = []

    async def record(request, call_next):
        seen.append(request.url.path)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=record)
    with TestClient(app, headers=auth_headers(module_workspace)) as client:
        assert app.fast_path is None
        r = client.post("/v1/models/credit/champion/predict", json=ROW)
    assert r.status_code == 200 and seen == ["/v1/models/credit/champion/predict"]
