"""Deciding requests: who is calling (token, session cookie) and whether they may, in one place.

``AccessGuard`` is shared by the REST dependency (``shipyard.auth.http.allow``) and the prediction
endpoints (including the serving fast path), so both decide alike. Verified tokens are kept for a
few seconds, so a prediction pays a dictionary lookup, not a database query; a token revoked or a
role changed through this server is forgotten at once, through another server within
``CACHE_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from shipyard.auth.audit import AuditEntry, AuditLog
from shipyard.auth.oidc import SingleSignOn
from shipyard.auth.permissions import Action, Resource, roles_allowing, scope_of
from shipyard.auth.principal import ANONYMOUS, DEFAULT_PROJECT, Principal
from shipyard.auth.projects import ProjectWorkspaces
from shipyard.auth.store import AuthStore
from shipyard.errors import Forbidden, RateLimited, Unauthorized
from shipyard.store import now_ms

CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
SESSION_COOKIE = "shipyard_session"
PROJECT_HEADER = "x-shipyard-project"


class LoginLimiter:
    """At most ``attempts`` failed logins per user name and per client in ``window_s``."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = self._recent(key, now)
                if len(recent) >= self.attempts:
                    wait = int(self.window_s - (now - recent[0])) + 1
                    raise RateLimited(f"too many failed sign-ins; wait {wait} s before trying again",
                                      {"retry_after": wait})

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(key, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(self._failures) > _CACHE_MAX:
            self._failures = {k: v for k, v in self._failures.items() if v}
        return recent


class AccessGuard:
    def __init__(self, projects: ProjectWorkspaces) -> None:
        self.projects = projects
        self.auth: AuthStore = projects.root.auth
        self.audit: AuditLog = projects.root.audit
        self.settings = projects.root.settings
        self.logins = LoginLimiter()
        # single sign-on when the settings configure it; a bad `oidc` setting stops the server here
        self.sso: SingleSignOn | None = SingleSignOn.from_settings(self.settings.oidc)
        # failed single sign-on callbacks per client: looser than passwords (nothing to guess there; stale
        # tabs fail too), but bounded, since each one is audited
        self.sso_failures = LoginLimiter(attempts=30)
        self._tokens: dict[str, tuple[Principal, float]] = {}
        # prediction decisions: (credential, project header, kind, name) -> (project, valid until)
        self._decisions: dict[tuple[str | None, str | None, str | None, str, str], tuple[str, float]] = {}
        self._public: frozenset[tuple[str, str, str]] = frozenset()
        self._public_at = -1e9
        self._lock = threading.Lock()

    # -- who ------------------------------------------------------------------------------------
    def principal(self, token: str) -> Principal:
        """The principal of a bearer token or session; Unauthorized when it is not valid."""
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is not None and now - hit[1] < CACHE_SECONDS:
            found = hit[0]
        else:
            found = self.auth.authenticate(token)
            with self._lock:
                if len(self._tokens) >= _CACHE_MAX:
                    self._tokens.clear()
                self._tokens[token] = (found, now)
        if found.expires_at is not None and found.expires_at <= now_ms():
            self._tokens.pop(token, None)
            raise Unauthorized("the token has expired; create a new one with 'shipyard tokens create' or log in "
                               "again", {"field": "Authorization"})
        return found

    def cached(self, authorization: str | None, session: str | None) -> bool:
        """True when the credential's decision is cached (no database read needed)."""
        token = (authorization or "").partition(" ")[2].strip() if authorization else session
        hit = self._tokens.get(token or "")
        return hit is not None and time.monotonic() - hit[1] < CACHE_SECONDS

    def identify(self, authorization: str | None, session: str | None) -> Principal:
        """ANONYMOUS when no credential was sent; Unauthorized when one was sent and is not valid."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <token>'", {"field": "Authorization"})
            return self.principal(token.strip())
        if session:
            return self.principal(session)
        return ANONYMOUS

    def forget(self) -> None:
        """Drop cached decisions (after a revocation, a role change or a user disabled here)."""
        with self._lock:
            self._tokens.clear()
            self._decisions.clear()
            self._public_at = -1e9

    # -- may they ---------------------------------------------------------------------------------
    def require(self, principal: Principal, project: str, resource: Resource, action: Action) -> None:
        if principal is ANONYMOUS:
            raise Unauthorized(
                f"this request needs a token with {resource}:{action} permission: send 'Authorization: Bearer "
                "<token>' (create one with 'shipyard tokens create', or sign in with 'shipyard login URL')",
                {"permission": f"{resource}:{action}", "project": project})
        if principal.allows(project, resource, action):
            return
        scope = scope_of(action)
        if scope not in principal.scopes:
            raise Forbidden(f"this token's scopes {sorted(principal.scopes)} do not include {scope!r}, which "
                            f"{resource}:{action} needs; use a token created with that scope",
                            {"permission": f"{resource}:{action}", "project": project})
        roles = " or ".join(roles_allowing(resource, action))
        raise Forbidden(
            f"{principal.name!r} may not {action} {resource} in project {project!r}: that needs the {roles} role "
            f"(an admin grants it with 'shipyard roles grant {principal.name} ROLE --in {project}')",
            {"permission": f"{resource}:{action}", "project": project, "roles": roles_allowing(resource, action)})

    def prediction_project(self, principal: Principal, header: str | None) -> str:
        if header:
            return header
        return principal.token_project or DEFAULT_PROJECT

    def is_public(self, project: str, kind: str, name: str) -> bool:
        now = time.monotonic()
        if now - self._public_at >= CACHE_SECONDS:
            self._public = self.auth.public_set()
            self._public_at = now
        return (project, kind, name) in self._public

    def check_prediction(self, authorization: str | None, session: str | None, project_header: str | None,
                         kind: str, name: str) -> str:
        """The project a prediction of scene/model ``name`` acts in; raises when the caller may not.

        An allowed decision is kept for ``CACHE_SECONDS`` (never past the token's expiry), so a
        prediction with a known token costs one dictionary lookup."""
        key = (authorization, session, project_header, kind, name)
        now = time.monotonic()
        hit = self._decisions.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        project, until = self._decide_prediction(authorization, session, project_header, kind, name, now)
        with self._lock:
            if len(self._decisions) >= _CACHE_MAX:
                self._decisions.clear()
            self._decisions[key] = (project, until)
        return project

    def _decide_prediction(self, authorization: str | None, session: str | None, project_header: str | None,
                           kind: str, name: str, now: float) -> tuple[str, float]:
        project = self._prediction_project(authorization, session, project_header, kind, name)
        until = now + CACHE_SECONDS
        token = self._tokens.get((authorization or "").partition(" ")[2].strip() or session or "")
        expires_at = token[0].expires_at if token is not None else None
        if expires_at is not None:
            until = min(until, now + (expires_at - now_ms()) / 1000)
        return project, until

    def _prediction_project(self, authorization: str | None, session: str | None, project_header: str | None,
                            kind: str, name: str) -> str:
        principal = self.identify(authorization, session)
        project = self.prediction_project(principal, project_header)
        if principal is ANONYMOUS and self.is_public(project, kind, name):
            return project
        resource = Resource.SCENES if kind == "scene" else Resource.MODELS
        if principal is not ANONYMOUS and not principal.allows(project, resource, Action.PREDICT) \
                and self.is_public(project, kind, name):
            return project
        self.require(principal, project, resource, Action.PREDICT)
        return project

    def record(self, entry: AuditEntry) -> None:
        self.audit.record(entry)
