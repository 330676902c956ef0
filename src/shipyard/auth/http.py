"""The permission dependency every /api/v1 route declares, and the routes of users, tokens, roles,
projects, sign-in and the audit log.

    @api.post("/models/{name}/aliases/{alias}")
    def set_alias(..., ctx: RequestContext = allow(Resource.MODELS, Action.RELEASE)) -> ...:
        ctx.audit(before=..., after=...)
        return ctx.ws.registry.set_alias(..., actor=ctx.actor)

``allow`` authenticates the caller (bearer token or session cookie), checks the permission in the
project the request names (header ``X-Shipyard-Project``, else the token's project, else
``default``) and, for any action that changes state, writes one audit record when the route ends —
ok, failed or denied. The server refuses to start when a route under /api/v1 declares none
(``check_routes``), and a test walks the route table for the same.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.routing import APIRoute
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from shipyard.auth.audit import AuditEntry
from shipyard.auth.guard import PROJECT_HEADER, SESSION_COOKIE, AccessGuard
from shipyard.auth.oidc import LOGIN_PATH, STATE_COOKIE, STATE_SECONDS, SingleSignOn
from shipyard.auth.permissions import ROLE_NAMES, Action, Resource, is_mutation
from shipyard.auth.principal import ACTING, ALL_PROJECTS, ANONYMOUS, DEFAULT_PROJECT, Principal
from shipyard.auth.projects import ProjectWorkspaces, check_public_target
from shipyard.auth.store import check_scopes
from shipyard.errors import Forbidden, InvalidInput, NotFound, ShipyardError, Unauthorized
from shipyard.http_util import RequestBody
from shipyard.workspace import Workspace

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
# Session cookies are only accepted for changes when the browser says the page came from here.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class RequestContext:
    """What a route knows about its request: who, in which project, and the project's workspace."""

    principal: Principal
    project: str
    ws: Workspace
    client: str
    request_id: str
    guard: AccessGuard
    details: dict[str, Any] = field(default_factory=dict)
    # who and what the audit record names when the route knows better (a sign-in's user name)
    audit_actor: str | None = None
    audit_action: str | None = None

    @property
    def actor(self) -> str:
        return self.principal.name

    def audit(self, **details: Any) -> None:
        """Add to this request's audit record (e.g. ``before=...``, ``after=...``)."""
        self.details.update(details)

    def require(self, resource: Resource, action: Action) -> None:
        """A second permission some requests need (e.g. uploading code on top of writing models)."""
        self.guard.require(self.principal, self.project, resource, action)


def guard_of(request: Request) -> AccessGuard:
    guard = getattr(request.app.state, "access_guard", None)
    if guard is None:  # an app built without auth.install; never serve it open
        raise ShipyardError("the server was assembled without its access guard", {})
    return guard


def _client(request: Request) -> str:
    client = request.client
    return client.host if client else ""


def _check_origin(request: Request, guard: AccessGuard) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    allowed = {f"http://{host}", f"https://{host}", *guard.settings.cors_origins}
    if origin not in allowed:
        raise Forbidden("a signed-in browser request came from another site; use a token instead",
                        {"field": "Origin"})


def _subject(request: Request) -> str:
    path = request.url.path
    return path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path


def _route(request: Request) -> str:
    """"METHOD /full/path/{template}" of the matched route (a route of an included router knows
    only its own part of the path; the app's table, built at start, knows the whole)."""
    route = request.scope.get("route")
    paths: dict[int, str] = getattr(request.app.state, "route_paths", {})
    template = paths.get(id(getattr(route, "original_route", route))) or str(getattr(route, "path", ""))
    return f"{request.method} {template or request.url.path}"


def _status(request: Request) -> int:
    return int(getattr(request.scope.get("route"), "status_code", None) or 200)


class PermissionCheck:
    """The dependency behind ``allow``: authenticate, authorize, audit. ``public`` and
    ``authenticated`` mark the few routes that need no project permission (sign-in, whoami)."""

    def __init__(self, resource: Resource | None, action: Action | None, *, public: bool = False) -> None:
        self.resource = resource
        self.action = action
        self.public = public

    @property
    def permission(self) -> str:
        if self.public:
            return "public"
        if self.resource is None or self.action is None:
            return "authenticated"
        return f"{self.resource}:{self.action}"

    async def __call__(self, request: Request) -> AsyncIterator[RequestContext]:
        guard = guard_of(request)
        request_id = request.headers.get("x-request-id", "")
        principal = ANONYMOUS if self.public else await _identify_async(guard, request)
        project = request.headers.get(PROJECT_HEADER) or principal.token_project or DEFAULT_PROJECT
        mutation = is_mutation(self.action) if self.action is not None else request.method not in _SAFE_METHODS
        entry = AuditEntry(project=project, actor=principal.name, action=str(self.action or "session"),
                           resource=str(self.resource or "auth"), subject=_subject(request), route=_route(request),
                           client=_client(request), request_id=request_id)
        if self.resource is not None and self.action is not None:
            try:
                guard.require(principal, project, self.resource, self.action)
            except Forbidden as exc:
                if mutation:
                    await _write(guard, entry, "denied", exc.status, {"reason": exc.message})
                raise
        elif not self.public and principal is ANONYMOUS:
            raise Unauthorized("this request needs a token: send 'Authorization: Bearer <token>'",
                               {"permission": "authenticated"})
        # routes without a project permission act in the server's own workspace
        if self.resource is None:
            ws = guard.projects.root
        else:
            # an open project is a dictionary lookup; opening one touches the database
            ws = guard.projects.opened_workspace(project) or await run_in_threadpool(guard.projects.get, project)
        ctx = RequestContext(principal=principal, project=project, ws=ws, client=entry.client,
                             request_id=request_id, guard=guard)
        audited = mutation or self.public
        # deep calls that record "who" (ws.user) see the caller, in this task and its thread hops
        acting = ACTING.set(principal)
        try:
            yield ctx
        except ShipyardError as exc:
            if audited and (mutation or ctx.details):
                await _write(guard, _as(entry, ctx), "failed", exc.status, {**ctx.details, "error": exc.code})
            raise
        except Exception as exc:
            if audited and (mutation or ctx.details):
                await _write(guard, _as(entry, ctx), "failed", 500, {**ctx.details, "error": type(exc).__name__})
            raise
        finally:
            ACTING.reset(acting)
        if mutation or (self.public and ctx.details):
            await _write(guard, _as(entry, ctx), "ok", _status(request), ctx.details)


async def _identify_async(guard: AccessGuard, request: Request) -> Principal:
    authorization = request.headers.get("authorization")
    session = None if authorization else request.cookies.get(SESSION_COOKIE)
    if session and request.method not in _SAFE_METHODS:
        _check_origin(request, guard)
    token = authorization or session
    if token and not guard.cached(authorization, session):
        return await run_in_threadpool(guard.identify, authorization, session)
    return guard.identify(authorization, session)


def _as(entry: AuditEntry, ctx: RequestContext) -> AuditEntry:
    if ctx.audit_actor:
        entry.actor = ctx.audit_actor[:255]
    if ctx.audit_action:
        entry.action = ctx.audit_action
    return entry


async def _write(guard: AccessGuard, entry: AuditEntry, outcome: str, status: int, details: dict[str, Any]) -> None:
    entry.outcome, entry.status, entry.details = outcome, status, details
    if entry.actor == ANONYMOUS.name and outcome == "denied":
        return
    try:
        await run_in_threadpool(guard.record, entry)
    except ShipyardError:
        log.exception("could not write the audit record of %s %s", entry.route, entry.subject)
        raise


def allow(resource: Resource, action: Action) -> Any:
    """Declare the permission a route needs; the route gets a ``RequestContext``."""
    return Depends(PermissionCheck(resource, action), scope="function")


def allow_authenticated() -> Any:
    """Any signed-in caller (whoami, one's own tokens); the route checks anything finer itself."""
    return Depends(PermissionCheck(None, None), scope="function")


def allow_public() -> Any:
    """No credential needed (sign-in). Audited when the route adds details."""
    return Depends(PermissionCheck(None, None, public=True), scope="function")


def declared_check(route: APIRoute) -> PermissionCheck | None:
    """The permission a route declared, found in its dependency tree."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, PermissionCheck):
            return dep.call
        stack.extend(dep.dependencies)
    return None


def api_routes(app: FastAPI) -> list[tuple[str, frozenset[str], APIRoute]]:
    """(full path, methods, route) of every FastAPI route of ``app``, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers: app.routes is already flat
        return [(r.path, frozenset(r.methods or ()), r) for r in app.routes if isinstance(r, APIRoute)]
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found.append((str(context.path), frozenset(context.methods or ()), route))
    return found


def check_routes(app: FastAPI) -> None:
    """Refuse to serve an /api/v1 route that declares no permission."""
    found = api_routes(app)
    app.state.route_paths = {id(route): path for path, _methods, route in found}
    missing = [f"{','.join(sorted(methods))} {path}" for path, methods, route in found
               if path.startswith(API_PREFIX) and declared_check(route) is None]
    if missing:
        raise ShipyardError(f"routes without a declared permission: {missing}; add "
                            "`ctx: RequestContext = allow(Resource.X, Action.Y)`", {"routes": missing})


# -- routes -----------------------------------------------------------------------------------------
class LoginIn(RequestBody):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    # a named API token for a command-line client instead of a browser session
    token_name: str | None = Field(None, max_length=255)
    expires_in_days: float | None = Field(90.0, gt=0, le=3650)


class LinkIn(RequestBody):
    token: str = Field(min_length=1, max_length=512)


# the names AuthStore accepts (auth/store.py), published in the document
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"
ROLE_PATTERN = "^(" + "|".join(ROLE_NAMES) + ")$"


class UserIn(RequestBody):
    name: str = Field(pattern=USER_PATTERN)
    kind: str = Field("person", pattern="^(person|service)$")
    password: str | None = Field(None, min_length=8, max_length=1024)
    roles: dict[str, str] = Field(default_factory=dict, description="project (or '*') -> role")
    display_name: str = Field("", max_length=255)
    email: str = Field("", max_length=255)


class UserPatch(RequestBody):
    disabled: bool | None = None
    password: str | None = Field(None, min_length=8, max_length=1024)


class RoleIn(RequestBody):
    role: str = Field(pattern=ROLE_PATTERN)
    project: str = Field(DEFAULT_PROJECT, pattern=r"^(\*|[a-z][a-z0-9_]{0,47})$")


class TokenIn(RequestBody):
    user: str | None = Field(None, max_length=128, description="default: yourself (admins may name another)")
    name: str = Field("", max_length=255)
    scopes: list[str] | None = Field(None, description="default: the scopes of the token making it")
    project: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,47}$")
    expires_in_days: float | None = Field(90.0, gt=0, le=3650)


class ProjectIn(RequestBody):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    description: str = Field("", max_length=2000)


class PublicIn(RequestBody):
    public: bool


def _set_session_cookie(response: Response, token: str, max_age: int, secure: bool) -> Response:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure,
                        path="/")
    return response


def router() -> APIRouter:
    api = APIRouter(tags=["auth"])

    @api.post("/auth/login")
    def login(body: LoginIn, request: Request, ctx: RequestContext = allow_public()) -> Response:
        """Sign in with a password: a browser session cookie, or a named API token for a CLI."""
        guard = ctx.guard
        if guard.sso is not None and not guard.sso.config.password_login:
            raise Forbidden("password sign-in is off on this server (oidc.password_login: false); sign in with "
                            f"single sign-on at {LOGIN_PATH}", {"field": "password"})
        client = _client(request)
        guard.logins.check(f"user:{body.username}", f"client:{client}")
        ctx.audit_actor, ctx.audit_action = body.username, "login"
        try:
            name = guard.auth.check_login(body.username, body.password)
        except Unauthorized:
            guard.logins.failed(f"user:{body.username}", f"client:{client}")
            ctx.audit(result="wrong password or unknown user")
            raise
        guard.logins.succeeded(f"user:{body.username}")
        ctx.audit(via="password", token=bool(body.token_name))
        if body.token_name:
            made = guard.auth.create_token(name, name=body.token_name, expires_in_days=body.expires_in_days,
                                           actor=name)
            return JSONResponse({"user": name, "token": made.token, "token_id": made.record.id,
                                 "expires_at": made.record.expires_at})
        return _start_session(guard, name, request)

    @api.post("/auth/link")
    def use_link(body: LinkIn, request: Request, ctx: RequestContext = allow_public()) -> Response:
        """Exchange a one-time login link (``shipyard ui link``) for a browser session."""
        guard = ctx.guard
        client = _client(request)
        guard.logins.check(f"client:{client}")
        ctx.audit_action = "login"
        try:
            name = guard.auth.use_login_link(body.token)
        except Unauthorized:
            guard.logins.failed(f"client:{client}")
            ctx.audit(result="unknown, used or expired login link")
            raise
        ctx.audit_actor = name
        ctx.audit(via="login link")
        return _start_session(guard, name, request)

    @api.get("/auth/config")
    def auth_config(ctx: RequestContext = allow_public()) -> dict[str, Any]:
        """The ways of signing in this server offers, for a sign-in page."""
        sso = ctx.guard.sso
        return {"password": sso is None or sso.config.password_login, "oidc": sso.describe() if sso else None}

    @api.get("/auth/oidc/login")
    def oidc_login(next_path: str = Query("/", alias="next", max_length=2048),
                   ctx: RequestContext = allow_public()) -> Response:
        """Start single sign-on: a redirect to the provider; ``next`` is the path to land on afterwards."""
        sso = _sso(ctx)
        start = sso.begin(next_path)
        response = RedirectResponse(start.url, status_code=302)
        # Lax, not Strict: the provider sends the browser back with a cross-site top-level GET
        response.set_cookie(STATE_COOKIE, start.cookie, max_age=STATE_SECONDS, httponly=True, samesite="lax",
                            secure=sso.config.secure_cookies, path=sso.config.cookie_path)
        return response

    @api.get("/auth/oidc/callback")
    def oidc_callback(request: Request, ctx: RequestContext = allow_public()) -> Response:
        """Where the provider sends the browser back: check it, sign the user in, start a session."""
        guard, sso = ctx.guard, _sso(ctx)
        client = f"client:{_client(request)}"
        guard.sso_failures.check(client)
        ctx.audit_action = "login"
        ctx.audit(via="oidc", issuer=sso.config.issuer)
        try:
            done = sso.finish(request.cookies.get(STATE_COOKIE), dict(request.query_params))
        except Unauthorized as exc:
            guard.sso_failures.failed(client)
            ctx.audit(result=exc.message)
            raise
        ctx.audit_actor = done.identity.username
        ctx.audit(groups=[g for g in done.identity.groups if g in sso.config.role_map])
        try:
            sync = sso.sign_in(done.identity, guard.auth)
        except ShipyardError as exc:
            ctx.audit(result=exc.message)
            raise
        finally:
            guard.forget()  # roles may have changed even when the sign-in is refused
        assert sync.user is not None
        ctx.audit_actor = sync.user.name
        ctx.audit(created=sync.created, before=sync.before, after=sync.roles,
                  granted=[list(b) for b in sync.granted], removed=[list(b) for b in sync.removed])
        response = RedirectResponse(done.next_path, status_code=303)
        response.delete_cookie(STATE_COOKIE, path=sso.config.cookie_path)
        return _start_session(guard, sync.user.name, request, response, secure=sso.config.secure_cookies)

    @api.post("/auth/logout")
    def logout(request: Request, ctx: RequestContext = allow_authenticated()) -> Response:
        """End this session (its token is revoked); API tokens are revoked with DELETE /tokens/{id}."""
        if ctx.principal.token_id is not None and request.cookies.get(SESSION_COOKIE):
            ctx.guard.auth.revoke_token(ctx.principal.token_id, actor=ctx.actor)
            ctx.guard.forget()
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @api.get("/auth/whoami")
    def whoami(ctx: RequestContext = allow_authenticated()) -> dict[str, Any]:
        """The caller: name, kind, roles per project, token scopes."""
        return ctx.principal.to_dict()

    @api.get("/users")
    def list_users(ctx: RequestContext = allow(Resource.USERS, Action.READ)) -> list[dict[str, Any]]:
        return [u.to_dict() for u in ctx.guard.auth.list_users()]

    @api.post("/users", status_code=201)
    def create_user(body: UserIn, ctx: RequestContext = allow(Resource.USERS, Action.ADMIN)) -> dict[str, Any]:
        _admin_everywhere(ctx)
        user = ctx.guard.auth.create_user(body.name, kind=body.kind, password=body.password, roles=body.roles,
                                          display_name=body.display_name, email=body.email, actor=ctx.actor)
        ctx.audit(after={"user": user.name, "kind": user.kind, "roles": user.roles})
        return user.to_dict()

    @api.get("/users/{name}")
    def get_user(name: str, ctx: RequestContext = allow_authenticated()) -> dict[str, Any]:
        if name != ctx.actor:
            ctx.require(Resource.USERS, Action.READ)
        return ctx.guard.auth.get_user(name).to_dict()

    @api.patch("/users/{name}")
    def update_user(name: str, body: UserPatch, ctx: RequestContext = allow(Resource.USERS, Action.ADMIN)) \
            -> dict[str, Any]:
        _admin_everywhere(ctx)
        before = ctx.guard.auth.get_user(name)
        if body.password is not None:
            ctx.guard.auth.set_password(name, body.password)
        if body.disabled is not None:
            if body.disabled and name == ctx.actor:
                raise InvalidInput("you cannot disable yourself; ask another admin", {"field": "disabled"})
            ctx.guard.auth.set_disabled(name, body.disabled, actor=ctx.actor)
        ctx.guard.forget()
        after = ctx.guard.auth.get_user(name)
        ctx.audit(before={"disabled": before.disabled}, after={"disabled": after.disabled},
                  password_changed=body.password is not None)
        return after.to_dict()

    @api.post("/users/{name}/roles")
    def grant_role(name: str, body: RoleIn, ctx: RequestContext = allow(Resource.USERS, Action.ADMIN)) \
            -> dict[str, Any]:
        _admin_of(ctx, body.project)
        before = ctx.guard.auth.get_user(name).roles
        roles = ctx.guard.auth.grant(name, body.project, body.role, actor=ctx.actor)
        ctx.guard.forget()
        ctx.audit(before=before, after=roles)
        return {"user": name, "roles": roles}

    @api.delete("/users/{name}/roles/{role}")
    def revoke_role(name: str, role: str = Path(pattern=ROLE_PATTERN), project: str = Query(DEFAULT_PROJECT, pattern=r"^(\*|[a-z][a-z0-9_]{0,47})$"),
                    ctx: RequestContext = allow(Resource.USERS, Action.ADMIN)) -> dict[str, Any]:
        _admin_of(ctx, project)
        before = ctx.guard.auth.get_user(name).roles
        roles = ctx.guard.auth.revoke(name, project, role, actor=ctx.actor)
        ctx.guard.forget()
        ctx.audit(before=before, after=roles)
        return {"user": name, "roles": roles}

    @api.get("/tokens")
    def list_tokens(user: str | None = None, ctx: RequestContext = allow_authenticated()) -> list[dict[str, Any]]:
        """Your own tokens; an admin may name any user (or ``user=*`` for all)."""
        target = user or ctx.actor
        if target != ctx.actor:
            ctx.require(Resource.USERS, Action.ADMIN)
        return [t.to_dict() for t in ctx.guard.auth.list_tokens(None if target == "*" else target)]

    @api.post("/tokens", status_code=201)
    def create_token(body: TokenIn, ctx: RequestContext = allow_authenticated()) -> dict[str, Any]:
        """A new API token, shown in this response only. For yourself, or (admins) for another user."""
        target = body.user or ctx.actor
        if target != ctx.actor:
            ctx.require(Resource.USERS, Action.ADMIN)
        elif ctx.principal.kind == "oidc" and ctx.principal.token_id is None:
            raise Forbidden("sign in first", {})
        scopes = sorted(ctx.principal.scopes) if body.scopes is None else check_scopes(body.scopes)
        limit = None
        if target == ctx.actor:
            ctx.principal.check_can_mint(scopes, body.project)
            limit = ctx.principal.mint_expiry_limit()  # never outlives the API token making it
        made = ctx.guard.auth.create_token(target, name=body.name, scopes=scopes, project=body.project,
                                           expires_in_days=body.expires_in_days, actor=ctx.actor,
                                           expires_at_most=limit)
        ctx.audit(after={"token_id": made.record.id, "user": target, "scopes": made.record.scopes,
                         "project": made.record.project, "expires_at": made.record.expires_at})
        return made.to_dict()

    @api.delete("/tokens/{token_id}")
    def revoke_token(token_id: str, ctx: RequestContext = allow_authenticated()) -> dict[str, Any]:
        record = ctx.guard.auth.get_token(token_id)
        if record.user != ctx.actor:
            ctx.require(Resource.USERS, Action.ADMIN)
        revoked = ctx.guard.auth.revoke_token(token_id, actor=ctx.actor)
        ctx.guard.forget()
        ctx.audit(after={"token_id": token_id, "user": record.user, "revoked_at": revoked.revoked_at})
        return revoked.to_dict()

    @api.get("/projects")
    def list_projects(ctx: RequestContext = allow_authenticated()) -> list[dict[str, Any]]:
        """Projects you hold a role in (every project for an admin of '*')."""
        mine = set(ctx.principal.projects())
        return [p for p in ctx.guard.auth.list_projects() if ALL_PROJECTS in mine or p["name"] in mine]

    @api.post("/projects", status_code=201)
    def create_project(body: ProjectIn, ctx: RequestContext = allow(Resource.PROJECTS, Action.ADMIN)) \
            -> dict[str, Any]:
        _admin_everywhere(ctx)
        created = ctx.guard.projects.create(body.name, body.description, actor=ctx.actor)
        ctx.audit(after={"project": body.name})
        return created

    @api.put("/public/{kind}/{name}")
    def set_public(name: str, body: PublicIn, kind: str = Path(pattern="^(scene|model)$"),
                   allow_missing: bool = False,
                   ctx: RequestContext = allow(Resource.SCENES, Action.RELEASE)) -> dict[str, Any]:
        """Let a scene's or model's prediction endpoint answer without a token (or stop it). The scene
        or model must exist (404 otherwise) unless ``allow_missing=true``, e.g. before it is applied."""
        if kind == "model":
            ctx.require(Resource.MODELS, Action.RELEASE)
        if body.public and not allow_missing:
            check_public_target(ctx.ws, kind, name)
        was = ctx.guard.auth.set_public(ctx.project, kind, name, body.public, actor=ctx.actor)
        ctx.guard.forget()
        ctx.audit(before={"public": was}, after={"public": body.public})
        return {"project": ctx.project, "kind": kind, "name": name, "public": body.public}

    @api.get("/audit")
    def audit(actor: str | None = None, resource: str | None = None, action: str | None = None,
              since: int | None = Query(None, ge=0, le=2**62), until: int | None = Query(None, ge=0, le=2**62),
              before_id: int | None = Query(None, ge=1, le=2**62), limit: int = Query(200, ge=1, le=10_000),
              ctx: RequestContext = allow(Resource.AUDIT, Action.READ)) -> list[dict[str, Any]]:
        """The project's audit records, newest first (page with ``before_id``)."""
        found = ctx.guard.audit.list(project=ctx.project, actor=actor, resource=resource, action=action,
                                     since=since, until=until, limit=limit, before_id=before_id)
        return [r.to_dict() for r in found]

    @api.get("/audit/verify")
    def audit_verify(ctx: RequestContext = allow(Resource.AUDIT, Action.READ)) -> dict[str, Any]:
        """Walk the hash chain of the whole audit log."""
        checked, broken = ctx.guard.audit.verify()
        return {"checked": checked, "intact": broken is None, "first_broken_id": broken}

    return api


def _start_session(guard: AccessGuard, name: str, request: Request, response: Response | None = None,
                   secure: bool = False) -> Response:
    """A browser session for ``name``: its cookie on ``response`` (default: a JSON body naming the user)."""
    hours = guard.settings.session_hours
    made = guard.auth.create_token(name, name="browser session", kind="session", expires_in_days=hours / 24,
                                   actor=name)
    if response is None:
        response = JSONResponse({"user": name, "expires_at": made.record.expires_at})
    return _set_session_cookie(response, made.token, int(hours * 3600), secure or request.url.scheme == "https")


def _sso(ctx: RequestContext) -> SingleSignOn:
    if ctx.guard.sso is None:
        raise NotFound("single sign-on is not configured on this server; an admin sets 'oidc' in shipyard.yaml "
                       "(see docs/security.md)", {"field": "oidc"})
    return ctx.guard.sso


def _admin_everywhere(ctx: RequestContext) -> None:
    if not ctx.principal.is_admin():
        raise Forbidden(f"{ctx.actor!r} needs the admin role on every project ('*') for this",
                        {"permission": "users:admin", "project": ALL_PROJECTS})


def _admin_of(ctx: RequestContext, project: str) -> None:
    if project == ALL_PROJECTS:
        _admin_everywhere(ctx)
    elif not ctx.principal.is_admin(project):
        raise Forbidden(f"{ctx.actor!r} needs the admin role in project {project!r} to change roles there",
                        {"permission": "users:admin", "project": project})


# -- assembly -----------------------------------------------------------------------------------------
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def install(app: FastAPI, ws: Workspace, **_options: Any) -> None:
    """The access guard for this app: its projects, token cache and sign-in limiter."""
    projects = ProjectWorkspaces(ws)
    ws.auth.ensure_default_project()
    app.state.access_guard = AccessGuard(projects)
    app.state.projects = projects
    if ws.settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(ws.settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Shipyard-Project", "X-Request-Id"])
