"""The web UI served by ``shipyard server`` at ``/``: a single-page app of static files that uses the
REST API under /api/v1 like any other client, and one-time login links for a first sign-in."""

from shipyard.ui.links import announce_login_link, create_login_link, login_link

__all__ = ["announce_login_link", "create_login_link", "login_link"]
