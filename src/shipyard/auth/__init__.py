"""Who may do what: users, service accounts, API tokens, roles per project, projects, the audit log.

Core: ``store.AuthStore`` (users, tokens, roles, projects, public endpoints), ``audit.AuditLog``,
``permissions`` (roles × resources × actions), ``guard.AccessGuard`` (one decision point for the
REST API and predictions). Shells: ``http.py`` (the ``allow`` dependency and the auth routes) and
``cli.py``. See docs/security.md.
"""
