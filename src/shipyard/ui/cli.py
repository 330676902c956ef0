"""``shipyard ui link``: print a one-time login link to the web UI."""

from __future__ import annotations

import click

from shipyard.ui.links import DEFAULT_MINUTES, MAX_MINUTES


def register(group: click.Group) -> None:
    @group.group("ui")
    def ui() -> None:
        """The web UI served by `shipyard server` at /."""

    @ui.command("link")
    @click.option("--url", default=None, help="The server's address as a browser reaches it "
                                               "(default: http://<server_host>:<server_port> from the settings).")
    @click.option("--user", default=None, help="Sign in as this person (default: you; others need the admin role).")
    @click.option("--in", "project", default=None, help="Open the UI on this project (default: the current one).")
    @click.option("--expires-minutes", type=click.FloatRange(0, MAX_MINUTES, min_open=True), default=DEFAULT_MINUTES,
                  show_default=True, help="The link works once, within this time.")
    @click.pass_context
    def link(ctx: click.Context, url: str | None, user: str | None, project: str | None,
             expires_minutes: float) -> None:
        """Print a one-time login link (like Jupyter's token URL): open it to sign in to the UI."""
        from shipyard.auth.permissions import Action, Resource
        from shipyard.cli import workspace_from
        from shipyard.errors import Forbidden
        from shipyard.ui.links import login_link

        ws = workspace_from(ctx)
        try:
            principal = ws.principal
            if user is not None and user != ws.user and principal.kind != "local" \
                    and not principal.allows(ws.settings.project, Resource.USERS, Action.ADMIN):
                raise Forbidden(f"{ws.user!r} may not create a login link for {user!r}: that needs the admin role",
                                {"permission": "users:admin", "field": "--user"})
            url_text = login_link(ws, url, user=user, project=project, minutes=expires_minutes)
        finally:
            ws.close()
        click.echo(url_text)
        click.echo(f"(works once, for {expires_minutes:g} minutes; the server must be running: shipyard server)",
                   err=True)
