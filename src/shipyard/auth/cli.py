"""``shipyard users|tokens|roles|projects|public|audit|login``: thin commands over the auth store.

They act on the project's own database as the workspace's user (its token, see
``shipyard.workspace``); changes are written to the audit log like the server's.
"""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from shipyard.auth.permissions import ROLE_NAMES, SCOPES, Action, Resource
from shipyard.auth.projects import check_public_target
from shipyard.auth.store import check_scopes
from shipyard.errors import Forbidden

if TYPE_CHECKING:
    from shipyard.workspace import Workspace


def _ws(ctx: click.Context) -> Any:
    from shipyard.cli import workspace_from

    return workspace_from(ctx)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _require(ws: Workspace, resource: Resource, action: Action, project: str | None = None) -> None:
    """A token's user needs the permission; an unauthenticated local user owns the database anyway."""
    principal = ws.principal
    if principal.kind == "local":
        return
    where = project or ws.settings.project
    if not principal.allows(where, resource, action):
        raise Forbidden(f"{principal.name!r} may not {action} {resource} in project {where!r}",
                        {"permission": f"{resource}:{action}"})


def _audit(ws: Workspace, action: str, resource: str, subject: str, **details: Any) -> None:
    from shipyard.auth.audit import AuditEntry

    ws.audit.record(AuditEntry(project=ws.settings.project, actor=ws.user, action=action, resource=resource,
                               subject=subject, route="cli", client=f"cli@{socket.gethostname()}",
                               details=details))


def _role_spec(text: str) -> tuple[str, str]:
    role, _, project = text.partition("@")
    if role not in ROLE_NAMES:
        raise click.BadParameter(f"{role!r} is not a role; use one of {', '.join(ROLE_NAMES)} (ROLE or ROLE@PROJECT)")
    return project or "default", role


def _password(prompt: bool, stdin: bool) -> str | None:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if prompt:
        return str(click.prompt("password", hide_input=True, confirmation_prompt=True))
    return None


# -- users ------------------------------------------------------------------------------------------
@click.group("users")
def users() -> None:
    """People and service accounts."""


@users.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="ROLE or ROLE@PROJECT ('*' for every project); repeatable.")
@click.option("--service", is_flag=True, help="A service account (tokens only, no password).")
@click.option("--password", "ask", is_flag=True, help="Ask for a password (people only).")
@click.option("--password-stdin", "stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--email", default="")
@click.pass_context
def create_user(ctx: click.Context, name: str, roles: tuple[str, ...], service: bool, ask: bool, stdin: bool,
                email: str) -> None:
    """Create a user; give roles with --role modeler --role reviewer@credit."""
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.ADMIN)
    bindings = dict(_role_spec(r) for r in roles)
    user = ws.auth.create_user(name, kind="service" if service else "person", password=_password(ask, stdin),
                               roles=bindings, email=email, actor=ws.user)
    _audit(ws, "admin", "users", f"/users/{name}", after={"kind": user.kind, "roles": user.roles})
    click.echo(f"created {user.kind} {user.name!r} with roles {user.roles or '{}'}")


@users.command("list")
@click.pass_context
def list_users(ctx: click.Context) -> None:
    """Users with their roles per project."""
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.READ)
    rows = [[u.name, u.kind, "disabled" if u.disabled else "active",
             "; ".join(f"{p}: {','.join(r)}" for p, r in u.roles.items()) or "-", _when(u.last_login_at)]
            for u in ws.auth.list_users()]
    _table(rows, ["user", "kind", "state", "roles", "last sign-in"])


@users.command("disable")
@click.argument("name")
@click.pass_context
def disable_user(ctx: click.Context, name: str) -> None:
    """Disable a user: sign-in and every token stop working."""
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.ADMIN)
    ws.auth.set_disabled(name, True, actor=ws.user)
    _audit(ws, "admin", "users", f"/users/{name}", before={"disabled": False}, after={"disabled": True})
    click.echo(f"disabled {name!r}")


@users.command("enable")
@click.argument("name")
@click.pass_context
def enable_user(ctx: click.Context, name: str) -> None:
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.ADMIN)
    ws.auth.set_disabled(name, False, actor=ws.user)
    _audit(ws, "admin", "users", f"/users/{name}", before={"disabled": True}, after={"disabled": False})
    click.echo(f"enabled {name!r}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", "stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def set_password(ctx: click.Context, name: str, stdin: bool) -> None:
    """Set a person's password (asked for, never a flag)."""
    ws = _ws(ctx)
    if name != ws.user:
        _require(ws, Resource.USERS, Action.ADMIN)
    ws.auth.set_password(name, _password(True, stdin) or "")
    _audit(ws, "admin", "users", f"/users/{name}", password_changed=True)
    click.echo(f"password of {name!r} set")


# -- tokens ------------------------------------------------------------------------------------------
@click.group("tokens")
def tokens() -> None:
    """API tokens: shown once when created, stored hashed."""


@tokens.command("create")
@click.option("--user", default=None, help="Whose token (default: yourself; others need admin).")
@click.option("--name", default="", help="What the token is for.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="read, write, predict (repeatable; default all three).")
@click.option("--project", default=None, help="Bind the token to one project.")
@click.option("--expires-days", type=float, default=90.0, show_default=True)
@click.option("--no-expiry", is_flag=True, help="A token that does not expire (service accounts).")
@click.pass_context
def create_token(ctx: click.Context, user: str | None, name: str, scopes: tuple[str, ...], project: str | None,
                 expires_days: float, no_expiry: bool) -> None:
    """Create a token and print it (the only time it is shown)."""
    ws = _ws(ctx)
    target = user or ws.user
    if target != ws.user:
        _require(ws, Resource.USERS, Action.ADMIN)
    chosen = check_scopes(list(scopes)) if scopes else sorted(ws.principal.scopes)
    limit = None
    if target == ws.user:
        ws.principal.check_can_mint(chosen, project)
        limit = ws.principal.mint_expiry_limit()  # never outlives the API token making it
    made = ws.auth.create_token(target, name=name, scopes=chosen, project=project,
                                expires_in_days=None if no_expiry else expires_days, actor=ws.user,
                                expires_at_most=limit)
    _audit(ws, "write", "users", f"/tokens/{made.record.id}", after={"user": target, "scopes": made.record.scopes})
    click.echo(made.token)
    click.echo(f"token {made.record.id} for {target!r} (scopes {', '.join(made.record.scopes)}; "
               f"expires {_when(made.record.expires_at) if made.record.expires_at else 'never'}); "
               "store it now: it is not shown again", err=True)


@tokens.command("list")
@click.option("--user", default=None, help="Whose tokens (default: yourself; '*' for everyone, admins only).")
@click.option("--all", "include_inactive", is_flag=True, help="Include revoked and expired tokens.")
@click.pass_context
def list_tokens(ctx: click.Context, user: str | None, include_inactive: bool) -> None:
    ws = _ws(ctx)
    target = user or ws.user
    if target != ws.user:
        _require(ws, Resource.USERS, Action.ADMIN)
    found = ws.auth.list_tokens(None if target == "*" else target, include_inactive=include_inactive)
    rows = [[t.id, t.user, t.name or "-", ",".join(t.scopes), t.project or "*", _when(t.expires_at),
             _when(t.last_used_at), "active" if t.active else ("revoked" if t.revoked_at else "expired")]
            for t in found]
    _table(rows, ["id", "user", "name", "scopes", "project", "expires", "last used", "state"])


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def revoke_token(ctx: click.Context, token_id: str) -> None:
    ws = _ws(ctx)
    record = ws.auth.get_token(token_id)
    if record.user != ws.user:
        _require(ws, Resource.USERS, Action.ADMIN)
    ws.auth.revoke_token(token_id, actor=ws.user)
    _audit(ws, "write", "users", f"/tokens/{token_id}", after={"revoked": True, "user": record.user})
    click.echo(f"revoked token {token_id} of {record.user!r}")


# -- roles and projects --------------------------------------------------------------------------------
@click.group("roles")
def roles() -> None:
    """Roles per project: admin, modeler, reviewer, operator, viewer, predictor."""


@roles.command("grant")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLE_NAMES))
@click.option("--in", "project", default="default", show_default=True, help="Project, or '*' for every project.")
@click.pass_context
def grant(ctx: click.Context, user: str, role: str, project: str) -> None:
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.ADMIN, project if project != "*" else None)
    before = ws.auth.get_user(user).roles
    after = ws.auth.grant(user, project, role, actor=ws.user)
    _audit(ws, "admin", "users", f"/users/{user}/roles", before=before, after=after)
    click.echo(f"{user}: {after}")


@roles.command("revoke")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLE_NAMES))
@click.option("--in", "project", default="default", show_default=True)
@click.pass_context
def revoke(ctx: click.Context, user: str, role: str, project: str) -> None:
    ws = _ws(ctx)
    _require(ws, Resource.USERS, Action.ADMIN, project if project != "*" else None)
    before = ws.auth.get_user(user).roles
    after = ws.auth.revoke(user, project, role, actor=ws.user)
    _audit(ws, "admin", "users", f"/users/{user}/roles", before=before, after=after)
    click.echo(f"{user}: {after}")


@roles.command("list")
def list_roles() -> None:
    """What each role may do."""
    from shipyard.auth.permissions import ROLE_PERMISSIONS

    for name in ROLE_NAMES:
        granted = sorted(f"{r}:{a}" for r, a in ROLE_PERMISSIONS[name])
        click.echo(f"{name}: {', '.join(granted)}")


@click.group("projects")
def projects() -> None:
    """Projects (namespaces) on this server."""


@projects.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.pass_context
def create_project(ctx: click.Context, name: str, description: str) -> None:
    from shipyard.auth.projects import ProjectWorkspaces

    ws = _ws(ctx)
    _require(ws, Resource.PROJECTS, Action.ADMIN)
    ProjectWorkspaces(ws).create(name, description, actor=ws.user)
    _audit(ws, "admin", "projects", f"/projects/{name}")
    click.echo(f"created project {name!r} (definitions in projects/{name}/)")


@projects.command("list")
@click.pass_context
def list_projects(ctx: click.Context) -> None:
    ws = _ws(ctx)
    _table([[p["name"], p["created_by"], _when(p["created_at"]), p["description"]] for p in ws.auth.list_projects()],
           ["project", "created by", "created", "description"])


@click.group("public")
def public() -> None:
    """Prediction endpoints that answer without a token."""


@public.command("set")
@click.argument("kind", type=click.Choice(["scene", "model"]))
@click.argument("name")
@click.option("--off", is_flag=True, help="Require a token again.")
@click.option("--allow-missing", is_flag=True, help="Even if no scene or model of that name exists yet.")
@click.pass_context
def set_public(ctx: click.Context, kind: str, name: str, off: bool, allow_missing: bool) -> None:
    ws = _ws(ctx)
    _require(ws, Resource.SCENES if kind == "scene" else Resource.MODELS, Action.RELEASE)
    if not off and not allow_missing:
        check_public_target(ws, kind, name)
    was = ws.auth.set_public(ws.settings.project, kind, name, not off, actor=ws.user)
    _audit(ws, "release", "scenes" if kind == "scene" else "models", f"/public/{kind}/{name}",
           before={"public": was}, after={"public": not off})
    click.echo(f"{kind} {name!r} {'needs a token' if off else 'answers without a token'}")


@public.command("list")
@click.pass_context
def list_public(ctx: click.Context) -> None:
    ws = _ws(ctx)
    for project, kind, name in sorted(ws.auth.public_set()):
        click.echo(f"{project}  {kind}  {name}")


# -- audit and sign-in ------------------------------------------------------------------------------------
@click.group("audit")
def audit() -> None:
    """The append-only audit log."""


@audit.command("list")
@click.option("--actor", default=None)
@click.option("--resource", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_audit(ctx: click.Context, actor: str | None, resource: str | None, limit: int, as_json: bool) -> None:
    ws = _ws(ctx)
    _require(ws, Resource.AUDIT, Action.READ)
    found = ws.audit.list(project=ws.settings.project, actor=actor, resource=resource, limit=limit)
    if as_json:
        for record in found:
            click.echo(json.dumps(record.to_dict(), default=str))
        return
    _table([[str(r.id), _when(r.ts), r.actor, r.outcome, r.action, r.subject, r.client] for r in found],
           ["id", "when", "actor", "outcome", "action", "subject", "from"])


@audit.command("verify")
@click.pass_context
def verify_audit(ctx: click.Context) -> None:
    """Check the hash chain: exit 1 when a record was changed or removed."""
    ws = _ws(ctx)
    _require(ws, Resource.AUDIT, Action.READ)
    checked, broken = ws.audit.verify()
    if broken is not None:
        click.secho(f"audit log broken at record {broken} (after {checked} intact records)", fg="red", err=True)
        ctx.exit(1)
    click.echo(f"audit log intact: {checked} records")


@click.command("login")
@click.argument("url")
@click.option("--user", "username", prompt=True, help="Your user name.")
@click.option("--password-stdin", "stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--expires-days", type=float, default=90.0, show_default=True)
def login(url: str, username: str, stdin: bool, expires_days: float) -> None:
    """Sign in to a server; its token is kept in ~/.shipyard/credentials for the CLI and sy.Client."""
    import httpx

    from shipyard.auth.credentials import save_server_token
    from shipyard.errors import StoreUnavailable, error_from_dict

    password = sys.stdin.readline().rstrip("\n") if stdin else click.prompt("password", hide_input=True)
    body = {"username": username, "password": password, "token_name": f"cli@{socket.gethostname()}",
            "expires_in_days": expires_days}
    try:
        response = httpx.post(url.rstrip("/") + "/api/v1/auth/login", json=body, timeout=30)
    except httpx.TransportError as exc:
        raise StoreUnavailable(f"cannot reach {url}: {exc}") from exc
    if response.status_code >= 400:
        raise error_from_dict(response.json(), response.status_code)
    path = save_server_token(url, username, response.json()["token"])
    click.echo(f"signed in to {url} as {username}; token saved in {path}")


def register(group: click.Group) -> None:
    for command in (users, tokens, roles, projects, public, audit, login):
        group.add_command(command)
