"""Users, service accounts, API tokens, role bindings, projects and public endpoints.

All of it lives in the server's own metadata database (the default project's), whatever project a
request acts in. Secrets never leave this module in clear: tokens are returned once, at creation.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.auth import tokens as tk
from shipyard.auth.permissions import DEFAULT_SCOPES, ROLE_NAMES, SCOPES
from shipyard.auth.principal import ALL_PROJECTS, DEFAULT_PROJECT, Principal
from shipyard.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shipyard.store import MetadataStore, now_ms
from shipyard.store.schema import (
    api_tokens,
    oidc_identities,
    projects,
    public_endpoints,
    role_bindings,
    users,
)

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
USER_KINDS = ("person", "service", "oidc")
TOKEN_KINDS = ("api", "session", "login_link")
PUBLIC_KINDS = ("scene", "model")
MIN_PASSWORD = 8
# last_used_at is written at most this often per token, so reads do not turn into writes
LAST_USED_EVERY_MS = 60_000
DAY_MS = 86_400_000
# granted_by of the role bindings single sign-on derives from group claims; never a user name (':'
# is not allowed in one), so a sign-in replaces exactly these and never a role an admin granted
OIDC_GRANTOR = "oidc:groups"


@dataclass(frozen=True)
class UserRecord:
    name: str
    kind: str
    display_name: str
    email: str
    disabled: bool
    created_at: int
    created_by: str
    last_login_at: int | None
    roles: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "display_name": self.display_name, "email": self.email,
                "disabled": self.disabled, "created_at": self.created_at, "created_by": self.created_by,
                "last_login_at": self.last_login_at, "roles": self.roles}


@dataclass(frozen=True)
class TokenRecord:
    id: str
    user: str
    kind: str
    name: str
    scopes: list[str]
    project: str | None
    created_at: int
    created_by: str
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now_ms())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "kind": self.kind, "name": self.name, "scopes": self.scopes,
                "project": self.project, "created_at": self.created_at, "created_by": self.created_by,
                "expires_at": self.expires_at, "last_used_at": self.last_used_at, "revoked_at": self.revoked_at,
                "active": self.active}


@dataclass(frozen=True)
class NewToken:
    """A token as created: ``token`` is the only time its secret is visible."""

    record: TokenRecord
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "token": self.token}

    def __repr__(self) -> str:
        return f"NewToken(id={self.record.id!r}, user={self.record.user!r}, token='***')"


@dataclass(frozen=True)
class OidcSync:
    """What a single sign-on did to its user: ``user`` is None when no account was made (no role)."""

    user: UserRecord | None
    created: bool
    granted: list[tuple[str, str]]
    removed: list[tuple[str, str]]
    before: dict[str, list[str]]

    @property
    def roles(self) -> dict[str, list[str]]:
        return self.user.roles if self.user is not None else {}


def check_user_name(name: object) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise InvalidInput(f"user name {name!r} is not valid; use 1-128 letters, digits, '_', '.', '@', '+', '-' "
                           "starting with a letter or digit", {"field": "name"})
    return name


def check_project_name(name: object) -> str:
    if not isinstance(name, str) or not PROJECT_NAME.match(name):
        raise InvalidInput(f"project name {name!r} is not valid; use 1-48 lowercase letters, digits and '_', "
                           "starting with a letter", {"field": "project"})
    return name


def check_role(role: object) -> str:
    if role not in ROLE_NAMES:
        raise InvalidInput(f"role {role!r} does not exist; use one of {', '.join(ROLE_NAMES)}", {"field": "role"})
    return str(role)


def check_scopes(scopes: Any) -> list[str]:
    if scopes is None:
        return sorted(DEFAULT_SCOPES)
    if isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInput("scopes must be a list of strings", {"field": "scopes"})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"token scopes {sorted(scopes)} are not valid; use one or more of {', '.join(SCOPES)}",
                           {"field": "scopes"})
    return sorted(set(scopes))


def check_password_strength(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters", {"field": "password"})
    return password


class AuthStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- users ----------------------------------------------------------------------------------
    def create_user(self, name: str, *, kind: str = "person", password: str | None = None,
                    roles: dict[str, str] | None = None, display_name: str = "", email: str = "",
                    actor: str) -> UserRecord:
        check_user_name(name)
        if kind not in USER_KINDS:
            raise InvalidInput(f"user kind {kind!r} is not valid; use one of {', '.join(USER_KINDS)}",
                               {"field": "kind"})
        if password is not None and kind != "person":
            raise InvalidInput("only people log in with a password; service accounts use tokens",
                               {"field": "password"})
        hashed = tk.hash_password(check_password_strength(password)) if password is not None else None
        bindings = {check_project_name(p) if p != ALL_PROJECTS else p: check_role(r) for p, r in (roles or {}).items()}
        now = now_ms()
        with self.store.begin() as conn:
            if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first() is not None:
                raise AlreadyExists(f"user {name!r} already exists", {"name": name})
            conn.execute(users.insert().values(
                name=name, kind=kind, password_hash=hashed, display_name=display_name, email=email,
                disabled=False, created_at=now, created_by=actor, last_login_at=None))
            for project, role in bindings.items():
                self._require_project(conn, project)
                conn.execute(role_bindings.insert().values(user=name, project=project, role=role, granted_at=now,
                                                           granted_by=actor))
        return self.get_user(name)

    def get_user(self, name: str) -> UserRecord:
        with self.store.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
            if row is None:
                raise NotFound(f"user {name!r} does not exist; list users with 'shipyard users list'",
                               {"name": name})
            return self._user(row, self._roles(conn, name))

    def list_users(self) -> list[UserRecord]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.name)).mappings().all()
            bindings = conn.execute(sa.select(role_bindings)).mappings().all()
        by_user: dict[str, dict[str, list[str]]] = {}
        for b in bindings:
            by_user.setdefault(b["user"], {}).setdefault(b["project"], []).append(b["role"])
        return [self._user(r, {p: sorted(v) for p, v in by_user.get(r["name"], {}).items()}) for r in rows]

    def set_disabled(self, name: str, disabled: bool, *, actor: str) -> UserRecord:
        with self.store.begin() as conn:
            self._user_row(conn, name)
            conn.execute(users.update().where(users.c.name == name).values(disabled=disabled))
        return self.get_user(name)

    def set_password(self, name: str, password: str) -> None:
        hashed = tk.hash_password(check_password_strength(password))
        with self.store.begin() as conn:
            row = self._user_row(conn, name)
            if row["kind"] != "person":
                raise InvalidInput(f"user {name!r} is a {row['kind']} account and cannot have a password",
                                   {"field": "password"})
            conn.execute(users.update().where(users.c.name == name).values(password_hash=hashed))

    def user_count(self) -> int:
        with self.store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    # -- roles ------------------------------------------------------------------------------------
    def grant(self, user: str, project: str, role: str, *, actor: str) -> dict[str, list[str]]:
        check_role(role)
        if project != ALL_PROJECTS:
            check_project_name(project)
        with self.store.begin() as conn:
            self._user_row(conn, user)
            self._require_project(conn, project)
            exists = conn.execute(sa.select(role_bindings.c.role).where(
                role_bindings.c.user == user, role_bindings.c.project == project,
                role_bindings.c.role == role)).first()
            if exists is None:
                conn.execute(role_bindings.insert().values(user=user, project=project, role=role,
                                                           granted_at=now_ms(), granted_by=actor))
            else:
                # granted by hand now: the next single sign-on must keep it even if the groups drop it
                conn.execute(role_bindings.update().where(
                    role_bindings.c.user == user, role_bindings.c.project == project, role_bindings.c.role == role,
                    role_bindings.c.granted_by == OIDC_GRANTOR).values(granted_by=actor))
            return self._roles(conn, user)

    def revoke(self, user: str, project: str, role: str, *, actor: str) -> dict[str, list[str]]:
        check_role(role)
        with self.store.begin() as conn:
            self._user_row(conn, user)
            if role == "admin" and self._last_admin(conn, user, project):
                raise Conflict(f"{user!r} is the last admin of every project; grant admin on '*' to another "
                               "user first", {"user": user})
            gone = conn.execute(role_bindings.delete().where(
                role_bindings.c.user == user, role_bindings.c.project == project, role_bindings.c.role == role))
            if gone.rowcount == 0:
                raise NotFound(f"user {user!r} has no role {role!r} in project {project!r}",
                               {"user": user, "project": project, "role": role})
            return self._roles(conn, user)

    def _last_admin(self, conn: Connection, user: str, project: str) -> bool:
        if project != ALL_PROJECTS:
            return False
        admins = conn.execute(sa.select(role_bindings.c.user).where(
            role_bindings.c.project == ALL_PROJECTS, role_bindings.c.role == "admin")).scalars().all()
        return list(admins) == [user]

    # -- projects -----------------------------------------------------------------------------------
    def ensure_default_project(self, actor: str = "shipyard") -> None:
        with self.store.begin() as conn:
            if conn.execute(sa.select(projects.c.name).where(projects.c.name == DEFAULT_PROJECT)).first() is None:
                conn.execute(projects.insert().values(name=DEFAULT_PROJECT, description="the server's own project",
                                                      created_at=now_ms(), created_by=actor))

    def create_project(self, name: str, description: str = "", *, actor: str) -> dict[str, Any]:
        check_project_name(name)
        with self.store.begin() as conn:
            if conn.execute(sa.select(projects.c.name).where(projects.c.name == name)).first() is not None:
                raise AlreadyExists(f"project {name!r} already exists", {"project": name})
            conn.execute(projects.insert().values(name=name, description=description, created_at=now_ms(),
                                                  created_by=actor))
        return self.get_project(name)

    def get_project(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(sa.select(projects).where(projects.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"project {name!r} does not exist; an admin creates it with "
                           "'shipyard projects create NAME'", {"project": name})
        return dict(row)

    def list_projects(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(projects).order_by(projects.c.name)).mappings()]

    def _require_project(self, conn: Connection, project: str) -> None:
        if project == ALL_PROJECTS:
            return
        if conn.execute(sa.select(projects.c.name).where(projects.c.name == project)).first() is None:
            if project == DEFAULT_PROJECT:
                conn.execute(projects.insert().values(name=project, description="the server's own project",
                                                      created_at=now_ms(), created_by="shipyard"))
                return
            raise NotFound(f"project {project!r} does not exist; an admin creates it with "
                           "'shipyard projects create NAME'", {"project": project})

    # -- tokens -------------------------------------------------------------------------------------
    def create_token(self, user: str, *, name: str = "", scopes: list[str] | None = None,
                     project: str | None = None, expires_in_days: float | None = 90.0, kind: str = "api",
                     actor: str, expires_at_most: int | None = None) -> NewToken:
        """A new token of ``user``. ``expires_at_most`` (ms since the epoch) caps its expiry: the
        token gets the earlier of that and ``expires_in_days`` (``None``: never) from now."""
        if kind not in TOKEN_KINDS:
            raise InvalidInput(f"token kind {kind!r} is not valid", {"field": "kind"})
        chosen = check_scopes(scopes)
        if project is not None:
            check_project_name(project)
        if expires_in_days is not None and not (0 < expires_in_days <= 3650):
            raise InvalidInput(f"expires_in_days must be in (0, 3650] or null for no expiry, got {expires_in_days}",
                               {"field": "expires_in_days"})
        now = now_ms()
        expires = None if expires_in_days is None else now + int(expires_in_days * DAY_MS)
        if expires_at_most is not None:
            expires = expires_at_most if expires is None else min(expires, expires_at_most)
        token_id, token, digest = tk.new_token()
        with self.store.begin() as conn:
            row = self._user_row(conn, user)
            if row["disabled"]:
                raise Conflict(f"user {user!r} is disabled; enable it before giving it a token", {"user": user})
            if project is not None:
                self._require_project(conn, project)
            conn.execute(api_tokens.insert().values(
                id=token_id, user=user, kind=kind, name=name[:255], secret_sha256=digest, scopes=chosen,
                project=project, created_at=now, created_by=actor, expires_at=expires, last_used_at=None,
                revoked_at=None))
        return NewToken(self.get_token(token_id), token)

    def get_token(self, token_id: str) -> TokenRecord:
        with self.store.read() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise NotFound(f"token {token_id!r} does not exist", {"token": token_id})
        return self._token(row)

    def list_tokens(self, user: str | None = None, *, include_inactive: bool = False) -> list[TokenRecord]:
        query = sa.select(api_tokens).where(api_tokens.c.kind == "api").order_by(api_tokens.c.created_at)
        if user is not None:
            query = query.where(api_tokens.c.user == user)
        with self.store.read() as conn:
            found = [self._token(r) for r in conn.execute(query).mappings()]
        return found if include_inactive else [t for t in found if t.active]

    def revoke_token(self, token_id: str, *, actor: str) -> TokenRecord:
        with self.store.begin() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
            if row is None:
                raise NotFound(f"token {token_id!r} does not exist; list tokens with 'shipyard tokens list'",
                               {"token": token_id})
            if row["revoked_at"] is None:
                conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=now_ms()))
        return self.get_token(token_id)

    # -- authentication -----------------------------------------------------------------------------
    def authenticate(self, token: str, *, kinds: tuple[str, ...] = ("api", "session")) -> Principal:
        """The principal a token stands for; Unauthorized (without saying which check failed) otherwise."""
        parts = tk.split_token(token)
        if parts is None:
            raise _bad_token()
        token_id, secret = parts
        now = now_ms()
        with self.store.read() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
            # compare even when the id is unknown, so both misses take the same time
            ok = tk.digest_matches(secret, row["secret_sha256"] if row is not None else "0" * 64)
            if row is None or not ok or row["kind"] not in kinds or row["revoked_at"] is not None \
                    or (row["expires_at"] is not None and row["expires_at"] <= now):
                raise _bad_token()
            user = self._user_row(conn, row["user"], missing=_bad_token)
            if user["disabled"]:
                raise _bad_token()
            roles = self._roles(conn, row["user"])
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_EVERY_MS:
            self._touch(token_id, now)
        return Principal(name=row["user"], kind=user["kind"],
                         roles={p: frozenset(r) for p, r in roles.items()},
                         scopes=frozenset(row["scopes"] or DEFAULT_SCOPES), token_id=token_id,
                         token_project=row["project"], expires_at=row["expires_at"], token_kind=row["kind"])

    def use_login_link(self, token: str) -> str:
        """Spend a one-time login link; returns its user. A link works once."""
        parts = tk.split_token(token)
        if parts is None:
            raise _bad_token()
        token_id, secret = parts
        with self.store.begin() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
            ok = tk.digest_matches(secret, row["secret_sha256"] if row is not None else "0" * 64)
            if row is None or not ok or row["kind"] != "login_link" or row["revoked_at"] is not None \
                    or (row["expires_at"] is not None and row["expires_at"] <= now_ms()):
                raise _bad_token()
            spent = conn.execute(api_tokens.update().where(api_tokens.c.id == token_id,
                                                           api_tokens.c.revoked_at.is_(None))
                                 .values(revoked_at=now_ms(), last_used_at=now_ms()))
            if spent.rowcount != 1:
                raise _bad_token()
            user = self._user_row(conn, row["user"], missing=_bad_token)
            if user["disabled"]:
                raise _bad_token()
            return str(row["user"])

    def check_login(self, name: str, password: str) -> str:
        """The user name when the password is right; Unauthorized otherwise (same message either way)."""
        with self.store.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first() \
                if isinstance(name, str) and USER_NAME.match(name) else None
        stored = row["password_hash"] if row is not None else None
        if not tk.check_password(password, stored) or row is None or row["disabled"]:
            raise Unauthorized("user name or password is wrong", {"field": "password"})
        with self.store.begin() as conn:
            values: dict[str, Any] = {"last_login_at": now_ms()}
            if tk.needs_rehash(stored):
                values["password_hash"] = tk.hash_password(password)
            conn.execute(users.update().where(users.c.name == name).values(**values))
        return name

    def principal_for(self, name: str, kind: str | None = None) -> Principal:
        """The principal of a user by name, with every scope (for sessions the server itself started)."""
        with self.store.read() as conn:
            row = self._user_row(conn, name)
            roles = self._roles(conn, name)
        return Principal(name=name, kind=kind or row["kind"], roles={p: frozenset(r) for p, r in roles.items()})

    # -- single sign-on ------------------------------------------------------------------------------
    def sync_oidc_user(self, issuer: str, subject: str, name: str, *, bindings: set[tuple[str, str]],
                       display_name: str = "", email: str = "") -> OidcSync:
        """Create or update the account of provider identity (issuer, subject) and set the roles its
        groups map to (``bindings``: (project, role) pairs). Only bindings single sign-on made before
        are replaced; roles granted by hand stay. A new identity with no binding gets no account.

        The account keeps the name it got at its first sign-in. Raises Conflict when ``name`` is
        taken by a local account or by another identity, Forbidden when the account is disabled.
        """
        for project, role in bindings:
            check_role(role)
            if project != ALL_PROJECTS:
                check_project_name(project)
        now = now_ms()
        with self.store.begin() as conn:
            link = conn.execute(sa.select(oidc_identities).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)).mappings().first()
            created = link is None
            if link is None:
                check_user_name(name)
                taken = conn.execute(sa.select(users.c.kind).where(users.c.name == name)).first()
                if taken is not None:
                    raise Conflict(f"the provider's user name {name!r} belongs to an existing {taken[0]} account "
                                   "of this server, so single sign-on will not take it over; an admin renames "
                                   "one of the two, or sets oidc.username_claim to another claim",
                                   {"user": name, "field": "oidc.username_claim"})
                if not bindings:
                    return OidcSync(user=None, created=False, granted=[], removed=[], before={})
                conn.execute(users.insert().values(
                    name=name, kind="oidc", password_hash=None, display_name=display_name[:255],
                    email=email[:255], disabled=False, created_at=now, created_by=OIDC_GRANTOR, last_login_at=now))
                conn.execute(oidc_identities.insert().values(issuer=issuer, subject=subject, user=name,
                                                             created_at=now, last_login_at=now))
            else:
                name = link["user"]
                if self._user_row(conn, name)["disabled"]:
                    raise Forbidden(f"user {name!r} is disabled; an admin enables it with "
                                    f"'shipyard users enable {name}'", {"user": name})
                conn.execute(users.update().where(users.c.name == name).values(
                    display_name=display_name[:255], email=email[:255], last_login_at=now))
                conn.execute(oidc_identities.update().where(
                    oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)
                    .values(last_login_at=now))
            before = self._roles(conn, name)
            rows = conn.execute(sa.select(role_bindings.c.project, role_bindings.c.role, role_bindings.c.granted_by)
                                .where(role_bindings.c.user == name)).all()
            held = {(p, r) for p, r, _by in rows}
            from_groups = {(p, r) for p, r, by in rows if by == OIDC_GRANTOR}
            removed = []
            for project, role in sorted(from_groups - bindings):
                if role == "admin" and self._last_admin(conn, name, project):
                    continue  # never lock everyone out; an admin revokes it by hand after granting another
                conn.execute(role_bindings.delete().where(
                    role_bindings.c.user == name, role_bindings.c.project == project, role_bindings.c.role == role,
                    role_bindings.c.granted_by == OIDC_GRANTOR))
                removed.append((project, role))
            granted = sorted(bindings - held)
            for project, role in granted:
                self._require_project(conn, project)
                conn.execute(role_bindings.insert().values(user=name, project=project, role=role, granted_at=now,
                                                           granted_by=OIDC_GRANTOR))
            user = self._user(self._user_row(conn, name), self._roles(conn, name))
        return OidcSync(user=user, created=created, granted=granted, removed=removed, before=before)

    # -- public endpoints ---------------------------------------------------------------------------
    def set_public(self, project: str, kind: str, name: str, public: bool, *, actor: str) -> bool:
        if kind not in PUBLIC_KINDS:
            raise InvalidInput(f"kind {kind!r} is not valid; use scene or model", {"field": "kind"})
        with self.store.begin() as conn:
            self._require_project(conn, project)
            key = (public_endpoints.c.project == project, public_endpoints.c.kind == kind,
                   public_endpoints.c.name == name)
            was = conn.execute(sa.select(public_endpoints.c.name).where(*key)).first() is not None
            if public and not was:
                conn.execute(public_endpoints.insert().values(project=project, kind=kind, name=name,
                                                              set_at=now_ms(), set_by=actor))
            elif not public and was:
                conn.execute(public_endpoints.delete().where(*key))
        return was

    def public_set(self) -> frozenset[tuple[str, str, str]]:
        """(project, kind, name) of every public endpoint."""
        with self.store.read() as conn:
            rows = conn.execute(sa.select(public_endpoints.c.project, public_endpoints.c.kind,
                                          public_endpoints.c.name)).all()
        return frozenset((r[0], r[1], r[2]) for r in rows)

    # -- helpers -------------------------------------------------------------------------------------
    def _touch(self, token_id: str, now: int) -> None:
        try:
            with self.store.begin() as conn:
                conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now))
        except Exception:  # noqa: BLE001 - a busy database must not fail the request being authenticated
            pass

    def _user_row(self, conn: Connection, name: str, missing: Any = None) -> Any:
        row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            if missing is not None:
                raise missing()
            raise NotFound(f"user {name!r} does not exist; list users with 'shipyard users list'", {"name": name})
        return row

    @staticmethod
    def _roles(conn: Connection, name: str) -> dict[str, list[str]]:
        rows = conn.execute(sa.select(role_bindings.c.project, role_bindings.c.role)
                            .where(role_bindings.c.user == name)).all()
        out: dict[str, list[str]] = {}
        for project, role in rows:
            out.setdefault(project, []).append(role)
        return {p: sorted(r) for p, r in sorted(out.items())}

    @staticmethod
    def _user(row: Any, roles: dict[str, list[str]]) -> UserRecord:
        return UserRecord(name=row["name"], kind=row["kind"], display_name=row["display_name"], email=row["email"],
                          disabled=bool(row["disabled"]), created_at=row["created_at"], created_by=row["created_by"],
                          last_login_at=row["last_login_at"], roles=roles)

    @staticmethod
    def _token(row: Any) -> TokenRecord:
        return TokenRecord(id=row["id"], user=row["user"], kind=row["kind"], name=row["name"],
                           scopes=list(row["scopes"] or []), project=row["project"], created_at=row["created_at"],
                           created_by=row["created_by"], expires_at=row["expires_at"],
                           last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])


def _bad_token() -> Unauthorized:
    return Unauthorized("the token is not valid: unknown, expired, revoked or its user is disabled; "
                        "create a new one with 'shipyard tokens create' or log in again", {"field": "Authorization"})


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)
