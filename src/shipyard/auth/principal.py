"""Who is acting: an authenticated user or service account with its roles per project."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from shipyard.auth.permissions import DEFAULT_SCOPES, Action, Resource, role_allows, scope_of
from shipyard.errors import Forbidden

ALL_PROJECTS = "*"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class Principal:
    name: str
    # person | service | oidc | local (unauthenticated notebook or CLI use of an embedded project)
    kind: str
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    scopes: frozenset[str] = DEFAULT_SCOPES
    token_id: str | None = None
    # a token bound to one project acts only there
    token_project: str | None = None
    # milliseconds since the epoch; None never expires
    expires_at: int | None = None
    # what authenticated it: "api" (an API token), "session" (a browser session), None (no token)
    token_kind: str | None = None

    def roles_in(self, project: str) -> frozenset[str]:
        if self.token_project is not None and project != self.token_project:
            return frozenset()
        return self.roles.get(project, frozenset()) | self.roles.get(ALL_PROJECTS, frozenset())

    def allows(self, project: str, resource: Resource, action: Action) -> bool:
        if scope_of(action) not in self.scopes:
            return False
        return any(role_allows(role, resource, action) for role in self.roles_in(project))

    def is_admin(self, project: str = ALL_PROJECTS) -> bool:
        return "admin" in self.roles_in(project)

    def projects(self) -> list[str]:
        """Projects this principal holds a role in (``*`` for all)."""
        if self.token_project is not None:
            return [self.token_project]
        return sorted(p for p, roles in self.roles.items() if roles)

    def check_can_mint(self, scopes: list[str], project: str | None) -> None:
        """Refuse a token for oneself broader than the token making it: a leaked predict-only or
        project-bound token must not buy a full-scope or unbound one."""
        wider = sorted(set(scopes) - self.scopes)
        if wider:
            raise Forbidden(f"this token's scopes {sorted(self.scopes)} do not include {wider}; a token can only "
                            "make tokens with its own scopes or fewer (sign in again for more)", {"field": "scopes"})
        if self.token_project is not None and project != self.token_project:
            raise Forbidden(f"this token is bound to project {self.token_project!r}; a token it makes must be "
                            f"bound to it too (project: {self.token_project!r})", {"field": "project"})

    def mint_expiry_limit(self) -> int | None:
        """The latest expiry (ms) a token this principal makes for itself may have: an API token's own,
        so a token that expires cannot buy one that expires later or never. None (no limit) for a
        browser session, whose user signed in with a password or single sign-on, and for an API
        token that never expires."""
        return self.expires_at if self.token_kind == "api" else None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind,
                "roles": {p: sorted(r) for p, r in sorted(self.roles.items())},
                "scopes": sorted(self.scopes), "token_id": self.token_id, "token_project": self.token_project,
                "expires_at": self.expires_at, "token_kind": self.token_kind}


ANONYMOUS = Principal(name="anonymous", kind="anonymous", scopes=frozenset())

# The caller of the request being served, set by the server's permission check; ``Workspace.user``
# reads it first, so core code records the caller, not the server's own identity.
ACTING: ContextVar[Principal | None] = ContextVar("shipyard_acting_principal", default=None)
# What a server's own workspaces act as outside any request (background rollouts, followers).
SERVER = Principal(name="shipyard-server", kind="service")
