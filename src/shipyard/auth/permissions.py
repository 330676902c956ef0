"""What each role may do: permissions are (resource kind × action), decided here and nowhere else.

    viewer     read everything in the project (runs, models, features, scenes, data, pipelines,
               monitoring)
    predictor  call prediction endpoints (service accounts of client applications)
    modeler    viewer + create and change runs, models, features, data, pipelines, monitoring
               rules; upload code (pickled models, feature definitions, pipeline components,
               report plugins);
               store secrets for data sources; predict
    reviewer   viewer + approve or reject model versions; read the audit log
    operator   viewer + release: move and roll back aliases, apply scenes, canary and rollouts,
               materialize and push features, run schedules, manage alert rules; predict
    admin      everything, including users, roles, tokens of others, projects and the audit log

A token narrows its user's roles by scopes: ``read`` (read actions), ``write`` (every other
action but prediction), ``predict`` (prediction endpoints).
"""

from __future__ import annotations

from enum import StrEnum


class Resource(StrEnum):
    RUNS = "runs"
    MODELS = "models"
    FEATURES = "features"
    SCENES = "scenes"
    DATA = "data"
    PIPELINES = "pipelines"
    MONITORING = "monitoring"
    SECRETS = "secrets"
    AUDIT = "audit"
    USERS = "users"
    PROJECTS = "projects"


class Action(StrEnum):
    READ = "read"
    WRITE = "write"
    UPLOAD_CODE = "upload_code"
    APPROVE = "approve"
    RELEASE = "release"
    PREDICT = "predict"
    ADMIN = "admin"


Permission = tuple[Resource, Action]

ROLE_NAMES = ("admin", "modeler", "reviewer", "operator", "viewer", "predictor")
SCOPES = ("read", "write", "predict")
DEFAULT_SCOPES = frozenset(SCOPES)

# Resources a viewer reads; secrets, users and the audit log are not among them.
_PROJECT_DATA = (Resource.RUNS, Resource.MODELS, Resource.FEATURES, Resource.SCENES, Resource.DATA,
                 Resource.PIPELINES, Resource.MONITORING)


def _grant(resources: tuple[Resource, ...], *actions: Action) -> set[Permission]:
    return {(r, a) for r in resources for a in actions}


_VIEWER = _grant(_PROJECT_DATA, Action.READ)
_PREDICT = _grant((Resource.SCENES, Resource.MODELS), Action.PREDICT)

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewer": frozenset(_VIEWER),
    "predictor": frozenset(_PREDICT),
    "modeler": frozenset(
        _VIEWER | _PREDICT
        | _grant((Resource.RUNS, Resource.MODELS, Resource.FEATURES, Resource.DATA, Resource.PIPELINES,
                  Resource.MONITORING), Action.WRITE)
        | _grant((Resource.MODELS, Resource.FEATURES, Resource.PIPELINES, Resource.MONITORING), Action.UPLOAD_CODE)
        | _grant((Resource.SECRETS,), Action.READ, Action.WRITE)
    ),
    "reviewer": frozenset(_VIEWER | {(Resource.MODELS, Action.APPROVE), (Resource.AUDIT, Action.READ)}),
    "operator": frozenset(
        _VIEWER | _PREDICT
        | {(Resource.MODELS, Action.RELEASE), (Resource.SCENES, Action.WRITE), (Resource.SCENES, Action.RELEASE),
           (Resource.FEATURES, Action.WRITE), (Resource.PIPELINES, Action.WRITE),
           (Resource.MONITORING, Action.WRITE)}
    ),
    "admin": frozenset((r, a) for r in Resource for a in Action),
}


def scope_of(action: Action) -> str:
    """The token scope an action needs."""
    if action is Action.READ:
        return "read"
    if action is Action.PREDICT:
        return "predict"
    return "write"


def role_allows(role: str, resource: Resource, action: Action) -> bool:
    return (resource, action) in ROLE_PERMISSIONS.get(role, frozenset())


def roles_allowing(resource: Resource, action: Action) -> list[str]:
    """Role names that carry a permission, for error messages ("needs the operator or admin role")."""
    return [name for name in ROLE_NAMES if role_allows(name, resource, action)]


def is_mutation(action: Action) -> bool:
    """Actions that change state (audited); reads and predictions are not."""
    return action not in (Action.READ, Action.PREDICT)
