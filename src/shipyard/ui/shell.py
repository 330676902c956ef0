"""The one HTML page of the UI (everything else is static files and the REST API), the API docs page
on vendored Swagger UI, and the security headers both carry.

The page embeds a JSON block the app reads at start: the build id, the role → permission table
(public: it is the documented role model, so the app can hide buttons a role cannot use) and the
API groups this server has. No project data is ever rendered here; the app gets it from /api/v1 like any client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from shipyard import __version__
from shipyard.auth.permissions import ROLE_NAMES, ROLE_PERMISSIONS
from shipyard.ui.assets import Assets

# Scripts only from this server, never inline; styles may be inline (the self-contained HTML
# reports shown in sandboxed frames carry their CSS inline, and frames inherit this policy).
UI_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
          "font-src 'self'; connect-src 'self'; frame-src 'self' blob:; worker-src 'none'; manifest-src 'self'; "
          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'")
BASE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# the app's modules, fetched in parallel with the page rather than one import at a time
CORE_MODULES = ("main.js", "app.js", "state.js", "api.js", "dom.js", "i18n.js", "router.js", "perms.js", "format.js",
                "components.js", "locales/zh.js")


def role_table() -> dict[str, list[str]]:
    """Role name → sorted ``resource:action`` permissions, from shipyard.auth.permissions."""
    return {role: sorted(f"{r}:{a}" for r, a in ROLE_PERMISSIONS[role]) for role in ROLE_NAMES}


def _json_block(data: dict[str, Any]) -> str:
    # "</" can end a script element early; escape it (and the other HTML-significant characters)
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(assets: Assets, root_path: str = "", apis: list[str] | None = None) -> str:
    """``apis``: the first path segment of every /api/v1 route this server has (the app shows the
    pages whose API exists)."""
    static = f"{root_path}/ui/static/{assets.build}"
    config = {"version": __version__, "build": assets.build, "root": root_path, "static": static,
              "roles": role_table(), "apis": apis or []}
    preload = "\n".join(f'<link rel="modulepreload" href="{static}/js/{m}">' for m in CORE_MODULES)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>Shipyard</title>
<link rel="icon" href="{static}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{static}/app.css">
{preload}
<script type="application/json" id="sy-config">{_json_block(config)}</script>
<script type="module" src="{static}/js/main.js"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<div id="app"><noscript>Shipyard's web UI needs JavaScript; the REST API is at /api/v1 (see /docs).</noscript></div>
</body>
</html>
"""


def docs_page(assets: Assets, openapi_url: str, root_path: str = "") -> tuple[str, str]:
    """(HTML, Content-Security-Policy) of the API docs on the vendored Swagger UI; the page's one
    inline script is allowed by its hash, not by 'unsafe-inline'."""
    from fastapi.openapi.docs import get_swagger_ui_html

    static = f"{root_path}/ui/static/{assets.build}"
    body = get_swagger_ui_html(
        openapi_url=openapi_url, title="Shipyard API",
        swagger_js_url=f"{static}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon.svg",
    ).body
    text = bytes(body).decode()
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", text, flags=re.S))
    csp = (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'; object-src 'none'")
    return text, csp
