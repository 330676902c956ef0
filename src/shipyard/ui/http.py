"""Serving the web UI from ``shipyard server``: the page at ``/`` (and ``/ui``), its static files
under ``/ui/static/<build>/``, and the API docs at ``/docs`` on vendored Swagger UI.

None of these routes reads project data: the page is the same for everyone and the app calls
/api/v1 with the session cookie like any other client, so they need no permission. They set the
security headers themselves (a middleware would take predictions off the serving fast path).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shipyard.auth.http import API_PREFIX, api_routes
from shipyard.ui.assets import Assets
from shipyard.ui.shell import BASE_HEADERS, UI_CSP, docs_page, page
from shipyard.workspace import Workspace

_IMMUTABLE = "public, max-age=31536000, immutable"


def _headers(csp: str, cache: str = "no-cache") -> dict[str, str]:
    return {**BASE_HEADERS, "Content-Security-Policy": csp, "Cache-Control": cache}


def api_groups(app: FastAPI) -> list[str]:
    """First path segments under /api/v1 ("runs", "models", "monitoring", ...), for the app to show
    only the pages this server can answer; "runs" stands for the tracking routes."""
    found = set()
    for path, _methods, _route in api_routes(app):
        if path.startswith(API_PREFIX + "/"):
            found.add(path[len(API_PREFIX) + 1:].split("/", 1)[0])
    return sorted(found)


def install(app: FastAPI, ws: Workspace, **_options: Any) -> None:
    assets = Assets()
    app.state.ui_assets = assets

    groups: list[str] = []

    async def shell(request: Request) -> Response:
        if not groups:  # every module has added its routes by the first request
            groups.extend(api_groups(app))
        root = request.scope.get("root_path", "")
        return Response(page(assets, root, groups), media_type="text/html; charset=utf-8",
                        headers=_headers(UI_CSP))

    async def to_shell(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=308)

    async def static(request: Request) -> Response:
        rel = request.path_params["path"]
        asset = assets.get(rel)
        if asset is None:
            return Response(b'{"error": {"code": "not_found", "message": "no such UI file", "details": {}}}',
                            status_code=404, media_type="application/json", headers=_headers(UI_CSP))
        # an old build id still gets today's file, but only the current one may be kept for a year
        cache = _IMMUTABLE if request.path_params["build"] == assets.build else "no-cache"
        headers = {**_headers(UI_CSP, cache), "ETag": asset.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=asset.content_type, headers=headers)

    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        text, csp = docs_page(assets, f"{root}{app.openapi_url}", root)
        return Response(text, media_type="text/html; charset=utf-8", headers=_headers(csp))

    app.add_route("/", shell, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/ui", to_shell, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/ui/", to_shell, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/ui/static/{build}/{path:path}", static, methods=["GET", "HEAD"], include_in_schema=False)
    if app.openapi_url:
        app.add_route("/docs", docs, methods=["GET", "HEAD"], include_in_schema=False)
