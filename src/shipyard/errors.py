"""Shipyard's error tree.

Every error a user can see is a ``ShipyardError``: it carries a stable ``code``, an HTTP ``status``
and optional ``details``, and serialises to ``{"error": {"code", "message", "details"}}``. The HTTP
client turns that JSON back into the same class, so remote and local calls fail alike.

    ShipyardError (500, internal)
    ├── InvalidInput (400, invalid_input) [ValueError]      bad argument, field or payload
    │   ├── InvalidType (400, invalid_type) [TypeError]     a value of the wrong kind (text for a number, sparse input)
    │   └── SchemaMismatch (400, schema_mismatch)           record does not match a model/feature schema
    │       └── MissingColumn (400, missing_column) [KeyError]  a column the schema needs is absent
    ├── ConfigError (400, config_error) [ValueError]        bad setting or shipyard.yaml
    ├── Unauthorized (401, unauthorized)
    ├── Forbidden (403, forbidden)
    ├── NotFound (404, not_found)
    ├── AlreadyExists (409, already_exists)
    ├── Conflict (409, conflict)                            state does not allow the change (e.g. alias to a failed version)
    ├── PayloadTooLarge (413, payload_too_large) [ValueError]
    ├── RateLimited (429, rate_limited)
    ├── IntegrityError (500, integrity_error)               stored bytes do not match their recorded sha256
    ├── ModelError (500, model_error)                       a model or user code raised; keeps the step name
    ├── ProviderUnavailable (502, provider_unavailable)     a sign-in provider (OIDC) did not answer usably
    ├── MissingDependency (500, missing_dependency)         optional extra not installed
    ├── StoreUnavailable (503, store_unavailable)           database locked or unreachable
    └── Overloaded (503, overloaded)                        concurrency limit reached

The built-in exception in brackets is a second base: errors caused by the caller's input are also
``ValueError`` (and ``TypeError`` or ``KeyError`` where Python and scikit-learn raise those), so
code written against NumPy, pandas or scikit-learn conventions (``except ValueError``,
``sklearn.utils.estimator_checks``) handles Shipyard's errors as it handles theirs.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


class ShipyardError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        # KeyError, a second base of some errors, would otherwise print the message quoted
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(ShipyardError, ValueError):
    code = "invalid_input"
    status = 400


class InvalidType(InvalidInput, TypeError):
    code = "invalid_type"


class SchemaMismatch(InvalidInput):
    code = "schema_mismatch"


class MissingColumn(SchemaMismatch, KeyError):
    code = "missing_column"


class ConfigError(ShipyardError, ValueError):
    code = "config_error"
    status = 400


class Unauthorized(ShipyardError):
    code = "unauthorized"
    status = 401


class Forbidden(ShipyardError):
    code = "forbidden"
    status = 403


class NotFound(ShipyardError):
    code = "not_found"
    status = 404


class AlreadyExists(ShipyardError):
    code = "already_exists"
    status = 409


class Conflict(ShipyardError):
    code = "conflict"
    status = 409


class PayloadTooLarge(ShipyardError, ValueError):
    code = "payload_too_large"
    status = 413


class RateLimited(ShipyardError):
    code = "rate_limited"
    status = 429


class IntegrityError(ShipyardError):
    code = "integrity_error"
    status = 500


class ModelError(ShipyardError):
    code = "model_error"
    status = 500


class ProviderUnavailable(ShipyardError):
    code = "provider_unavailable"
    status = 502


class MissingDependency(ShipyardError):
    code = "missing_dependency"
    status = 500


class StoreUnavailable(ShipyardError):
    code = "store_unavailable"
    status = 503


class Overloaded(ShipyardError):
    code = "overloaded"
    status = 503


def _all_error_classes() -> dict[str, type[ShipyardError]]:
    found: dict[str, type[ShipyardError]] = {}
    stack: list[type[ShipyardError]] = [ShipyardError]
    while stack:
        cls = stack.pop()
        found[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return found


def error_from_dict(payload: dict[str, Any], status: int | None = None) -> ShipyardError:
    """Rebuild the error a server sent; unknown codes become a plain ``ShipyardError``."""
    body = payload.get("error", payload) if isinstance(payload, dict) else {}
    code = body.get("code", "internal") if isinstance(body, dict) else "internal"
    message = body.get("message", str(payload)) if isinstance(body, dict) else str(payload)
    details = body.get("details") if isinstance(body, dict) else None
    cls = _all_error_classes().get(code, ShipyardError)
    err = cls(message, details)
    if cls is ShipyardError and status:
        err.status = status
    return err


def require(module: str, extra: str) -> ModuleType:
    """Import an optional driver, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{module!r} is not installed; install it with: pip install 'shipyard-ml[{extra}]'",
            {"module": module, "extra": extra},
        ) from exc
