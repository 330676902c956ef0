"""Single sign-on with OpenID Connect: settings, the authorization-code flow, ID-token checks and
the mapping of the provider's groups to roles.

    oidc:
      issuer: https://sso.example.com/realms/ml        # the provider (its discovery document)
      client_id: shipyard
      client_secret_env: SHIPYARD_OIDC_CLIENT_SECRET   # the NAME of the variable holding the secret
      redirect_base: https://shipyard.example.com      # this server as browsers reach it
      role_map: {ml-modelers: {credit: modeler}, ml-admins: {"*": admin}}

The flow: ``begin`` builds the provider's authorization URL (state, nonce and a PKCE S256
challenge) and an encrypted, short-lived cookie that keeps state, nonce and verifier in the
browser, so any server process can finish the sign-in. ``finish`` checks the returned state against
that cookie, redeems the code (with the verifier and the client secret) and validates the ID token
against the provider's JWKS: signature, issuer, audience, expiry, nonce. ``sign_in`` then creates
or updates the user and replaces the roles that single sign-on granted before.

Authlib, requests and cryptography are imported only when single sign-on is configured (the
``oidc`` extra). The client secret is read from the environment when needed and never stored on
these objects, printed or put into an error.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shipyard.auth.permissions import ROLE_NAMES
from shipyard.auth.principal import ALL_PROJECTS
from shipyard.auth.store import USER_NAME, AuthStore, OidcSync
from shipyard.errors import (
    ConfigError,
    Forbidden,
    InvalidInput,
    NotFound,
    ProviderUnavailable,
    Unauthorized,
    require,
)

log = logging.getLogger(__name__)

LOGIN_PATH = "/api/v1/auth/oidc/login"
CALLBACK_PATH = "/api/v1/auth/oidc/callback"
STATE_COOKIE = "shipyard_oidc"
# a sign-in must come back from the provider within this time
STATE_SECONDS = 600
# discovery document and keys are fetched again after this long (and keys at once on an unknown kid)
METADATA_SECONDS = 3600.0
LEEWAY_SECONDS = 60
# ID tokens signed with the provider's public keys only: no "none", no shared-secret HMAC
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

_KEYS = ("issuer", "client_id", "client_secret_env", "redirect_base", "scopes", "username_claim", "groups_claim",
         "role_map", "label", "password_login", "timeout_s")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_LOOPBACK = re.compile(r"^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1)$")


def _bad(key: str, problem: str, fix: str, value: Any = None, *, show: bool = True) -> ConfigError:
    shown = f" (got {value!r})" if show and value is not None else ""
    return ConfigError(f"setting oidc.{key}{shown}: {problem}; {fix}", {"field": f"oidc.{key}"})


def _url(key: str, value: Any, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, "is missing", f"set it to a URL such as {example}", value)
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise _bad(key, "is not an http(s) URL without query or fragment", f"use a URL such as {example}", value)
    if parts.scheme == "http" and not _LOOPBACK.match(parts.hostname):
        raise _bad(key, "uses plain http to a host that is not this machine",
                   "use https (http is accepted for loopback addresses only)", value)
    return text


@dataclass(frozen=True)
class OidcConfig:
    """The ``oidc`` settings, checked. Holds the NAME of the secret's variable, never the secret."""

    issuer: str
    client_id: str
    client_secret_env: str
    redirect_base: str
    role_map: Mapping[str, frozenset[tuple[str, str]]]
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    label: str = "Single sign-on"
    password_login: bool = True
    timeout_s: float = 10.0

    @property
    def callback_url(self) -> str:
        return self.redirect_base + CALLBACK_PATH

    @property
    def cookie_path(self) -> str:
        """Where the state cookie is sent: the sign-in routes only (under any path prefix)."""
        return (urlsplit(self.redirect_base).path.rstrip("/") + CALLBACK_PATH).rsplit("/", 1)[0]

    @property
    def secure_cookies(self) -> bool:
        return self.redirect_base.startswith("https://")

    def client_secret(self) -> str:
        value = os.environ.get(self.client_secret_env, "")
        if not value:
            raise ConfigError(f"the environment variable {self.client_secret_env} named by oidc.client_secret_env is "
                              "not set or empty; set it to the client secret the provider issued for "
                              f"{self.client_id!r}", {"field": "oidc.client_secret_env"})
        return value

    def bindings_for(self, groups: list[str]) -> set[tuple[str, str]]:
        """(project, role) pairs the groups map to."""
        found: set[tuple[str, str]] = set()
        for group in groups:
            found |= self.role_map.get(group, frozenset())
        return found

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> OidcConfig | None:
        """The checked settings, or None when ``raw`` is empty (single sign-on off)."""
        if not raw:
            return None
        if "client_secret" in raw:
            raise _bad("client_secret", "must not hold the secret itself (settings files end up in backups and "
                       "repositories)", "put the secret in an environment variable and name that variable in "
                       "oidc.client_secret_env", show=False)
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise _bad(unknown[0], "is not a known key", f"use only {', '.join(_KEYS)}")
        issuer = _url("issuer", raw.get("issuer"), "https://sso.example.com/realms/ml")
        base = _url("redirect_base", raw.get("redirect_base"), "https://shipyard.example.com")
        client_id = raw.get("client_id")
        if not isinstance(client_id, str) or not client_id.strip():
            raise _bad("client_id", "is missing", "set it to the client id registered at the provider", client_id)
        env = raw.get("client_secret_env")
        if not isinstance(env, str) or not _ENV_NAME.match(env):
            raise _bad("client_secret_env", "is not the name of an environment variable",
                       "name the variable that holds the client secret, e.g. SHIPYARD_OIDC_CLIENT_SECRET", env)
        scopes = raw.get("scopes", list(cls.scopes))
        if isinstance(scopes, str):
            scopes = scopes.replace(",", " ").split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s and " " not in s for s in scopes) \
                or "openid" not in scopes:
            raise _bad("scopes", "must be a list of scope names that includes 'openid'",
                       "use e.g. [openid, profile, email]", scopes)
        claims = {}
        for key in ("username_claim", "groups_claim", "label"):
            value = raw.get(key, getattr(cls, key))
            if not isinstance(value, str) or not value.strip():
                raise _bad(key, "must be a non-empty string", f"leave it out for {getattr(cls, key)!r}", value)
            claims[key] = value.strip()
        password_login = raw.get("password_login", True)
        if not isinstance(password_login, bool):
            raise _bad("password_login", "must be true or false", "leave it out to keep password sign-in",
                       password_login)
        timeout = raw.get("timeout_s", cls.timeout_s)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise _bad("timeout_s", "must be a number of seconds in (0, 120]", "leave it out for 10", timeout)
        return cls(issuer=issuer, client_id=client_id.strip(), client_secret_env=env, redirect_base=base,
                   role_map=_role_map(raw.get("role_map")), scopes=tuple(dict.fromkeys(scopes)),
                   password_login=password_login, timeout_s=float(timeout), **claims)


def _role_map(raw: Any) -> dict[str, frozenset[tuple[str, str]]]:
    example = "e.g. {ml-modelers: {credit: modeler}, ml-admins: {'*': admin}}"
    if not isinstance(raw, dict) or not raw:
        raise _bad("role_map", "must map each provider group to {project: role}", f"set it, {example}", raw)
    out: dict[str, frozenset[tuple[str, str]]] = {}
    for group, grants in raw.items():
        key = f"role_map[{group!r}]"
        if not isinstance(group, str) or not group:
            raise _bad("role_map", "has a group name that is not a string", example, group)
        if not isinstance(grants, dict) or not grants:
            raise _bad(key, "must map projects to roles", example, grants)
        pairs = set()
        for project, roles in grants.items():
            if project != ALL_PROJECTS and (not isinstance(project, str) or not _PROJECT.match(project)):
                raise _bad(key, f"names project {project!r}, which is not a project name",
                           "use '*' or 1-48 lowercase letters, digits and '_' starting with a letter")
            for role in roles if isinstance(roles, list) else [roles]:
                if role not in ROLE_NAMES:
                    raise _bad(f"{key}[{project!r}]", f"role {role!r} does not exist",
                               f"use one of {', '.join(ROLE_NAMES)}")
                pairs.add((project, role))
        out[group] = frozenset(pairs)
    return out


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider says signed in, from a validated ID token."""

    issuer: str
    subject: str
    username: str
    groups: list[str]
    display_name: str = ""
    email: str = ""


@dataclass(frozen=True)
class LoginStart:
    url: str
    # the encrypted state cookie's value
    cookie: str


@dataclass(frozen=True)
class LoginDone:
    identity: OidcIdentity
    # the path to send the browser to (checked to be one of this server's)
    next_path: str


@dataclass
class _Provider:
    metadata: dict[str, Any] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = -1e9


def safe_next(value: str | None) -> str:
    """A path on this server to land on after signing in; anything that could leave it is refused."""
    if not value:
        return "/"
    if len(value) > 2048 or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"next {value[:100]!r} is not a path on this server; use a path such as /ui/models",
                           {"field": "next"})
    return value


class SingleSignOn:
    """The OIDC relying party of one server, shared by its requests (thread-safe)."""

    def __init__(self, config: OidcConfig) -> None:
        for module in ("authlib", "requests", "cryptography"):
            require(module, "oidc")
        config.client_secret()  # refuse to start without it rather than fail at the first sign-in
        self.config = config
        self._provider = _Provider()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SingleSignOn(issuer={self.config.issuer!r}, client_id={self.config.client_id!r})"

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any]) -> SingleSignOn | None:
        config = OidcConfig.parse(raw)
        return cls(config) if config is not None else None

    def describe(self) -> dict[str, Any]:
        """What a sign-in page needs to know (nothing secret)."""
        return {"login_url": LOGIN_PATH, "label": self.config.label, "issuer": self.config.issuer}

    # -- the flow -----------------------------------------------------------------------------------
    def begin(self, next_path: str | None = None) -> LoginStart:
        target = safe_next(next_path)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        metadata = self._metadata()
        with self._session() as session:
            url, _ = session.create_authorization_url(metadata["authorization_endpoint"], state=state,
                                                      code_verifier=verifier, nonce=nonce)
        sealed = self._fernet().encrypt(json.dumps({"s": state, "n": nonce, "v": verifier, "r": target}).encode())
        return LoginStart(url=url, cookie=sealed.decode())

    def finish(self, cookie: str | None, params: Mapping[str, str]) -> LoginDone:
        """Check what the provider sent back against the state cookie, redeem the code and validate
        the ID token. Raises Unauthorized (the sign-in cannot be trusted) or ProviderUnavailable."""
        pending = self._open_cookie(cookie)
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending["s"].encode()):
            raise Unauthorized("the sign-in's state does not match the one this browser started with (a forged or "
                               f"stale link); start again at {LOGIN_PATH}", {"field": "state"})
        returned_issuer = params.get("iss")
        if returned_issuer is not None and returned_issuer.rstrip("/") != self.config.issuer:
            raise Unauthorized(f"the sign-in came back from issuer {returned_issuer[:200]!r}, not from the "
                               f"configured {self.config.issuer!r}; start again at {LOGIN_PATH}", {"field": "iss"})
        if "error" in params:
            error = re.sub(r"[^A-Za-z0-9_.:-]", "", params["error"])[:64]
            description = re.sub(r"[^\w .,:;'()/-]", "", params.get("error_description", ""))[:200]
            raise Unauthorized(f"the provider refused the sign-in: {error}" + (f" ({description})" if description
                               else "") + f"; start again at {LOGIN_PATH}", {"field": "error", "error": error})
        code = params.get("code", "")
        if not code:
            raise Unauthorized(f"the provider sent no authorization code; start again at {LOGIN_PATH}",
                               {"field": "code"})
        token = self._redeem(code, pending["v"])
        claims = self._verify(token, pending["n"])
        return LoginDone(identity=self._identity(claims), next_path=pending["r"])

    def sign_in(self, identity: OidcIdentity, auth: AuthStore) -> OidcSync:
        """Create or update the user and set its roles from its groups; Forbidden when it ends up
        with no role (nothing is created for a new user then)."""
        bindings = self.config.bindings_for(identity.groups)
        try:
            sync = auth.sync_oidc_user(identity.issuer, identity.subject, identity.username, bindings=bindings,
                                       display_name=identity.display_name, email=identity.email)
        except NotFound as exc:
            project = exc.details.get("project")
            if project is None:
                raise
            raise ConfigError(f"oidc.role_map gives a role in project {project!r}, which does not exist; an admin "
                              f"creates it with 'shipyard projects create {project}' or removes it from "
                              "oidc.role_map", {"field": "oidc.role_map", "project": project}) from None
        if not sync.roles:
            name = sync.user.name if sync.user is not None else identity.username
            raise Forbidden(f"{name!r} signed in, but none of its groups ({self.config.groups_claim} claim: "
                            f"{sorted(identity.groups)[:20]}) maps to a role in oidc.role_map; ask an admin to map "
                            "one of your groups or to grant you a role",
                            {"field": "oidc.role_map", "user": name})
        return sync

    # -- pieces -------------------------------------------------------------------------------------
    def _session(self) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        metadata = self._provider.metadata
        supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in supported else "client_secret_post"
        return OAuth2Session(client_id=self.config.client_id, client_secret=self.config.client_secret(),
                             scope=" ".join(self.config.scopes), redirect_uri=self.config.callback_url,
                             code_challenge_method="S256", token_endpoint_auth_method=method,
                             default_timeout=self.config.timeout_s)

    def _fernet(self) -> Any:
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        # a key of its own, derived from the client secret every server process shares
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=self.config.client_id.encode(),
                   info=b"shipyard oidc state").derive(self.config.client_secret().encode())
        return Fernet(base64.urlsafe_b64encode(key))

    def _open_cookie(self, cookie: str | None) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        if not cookie:
            raise Unauthorized(f"this browser has no sign-in under way (its state cookie is missing: cookies off, "
                               f"or another browser); start again at {LOGIN_PATH}", {"field": STATE_COOKIE})
        try:
            pending = json.loads(self._fernet().decrypt(cookie.encode(), ttl=STATE_SECONDS))
        except (InvalidToken, ValueError):
            raise Unauthorized(f"the sign-in's state cookie is not valid or older than {STATE_SECONDS // 60} "
                               f"minutes; start again at {LOGIN_PATH}", {"field": STATE_COOKIE}) from None
        if not isinstance(pending, dict) or not all(isinstance(pending.get(k), str) for k in "snvr"):
            raise Unauthorized(f"the sign-in's state cookie is not valid; start again at {LOGIN_PATH}",
                               {"field": STATE_COOKIE})
        return pending

    def _get(self, url: str, what: str) -> dict[str, Any]:
        import requests

        try:
            with requests.Session() as http:
                response = http.get(url, timeout=self.config.timeout_s, headers={"Accept": "application/json"})
            response.raise_for_status()
            doc = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("OIDC provider %s: could not read its %s: %s", self.config.issuer, what, type(exc).__name__)
            raise ProviderUnavailable(f"the sign-in provider {self.config.issuer} did not answer with its {what} "
                                      f"({type(exc).__name__}); check oidc.issuer and that the provider is up",
                                      {"field": "oidc.issuer"}) from None
        if not isinstance(doc, dict):
            raise ProviderUnavailable(f"the sign-in provider's {what} is not a JSON object", {"field": "oidc.issuer"})
        return doc

    def _metadata(self, *, force: bool = False) -> dict[str, Any]:
        from authlib.oidc.discovery import OpenIDProviderMetadata

        with self._lock:
            provider = self._provider
            if not force and provider.metadata and time.monotonic() - provider.fetched_at < METADATA_SECONDS:
                return provider.metadata
        doc = self._get(self.config.issuer + "/.well-known/openid-configuration", "discovery document")
        if str(doc.get("issuer", "")).rstrip("/") != self.config.issuer:
            raise ProviderUnavailable(f"the discovery document names issuer {str(doc.get('issuer'))[:200]!r}, not "
                                      f"{self.config.issuer!r}; set oidc.issuer to the provider's issuer exactly",
                                      {"field": "oidc.issuer"})
        try:
            OpenIDProviderMetadata(doc).validate()
        except ValueError as exc:
            raise ProviderUnavailable(f"the provider's discovery document is not valid: {exc}",
                                      {"field": "oidc.issuer"}) from None
        jwks = self._get(doc["jwks_uri"], "signing keys (JWKS)")
        with self._lock:
            self._provider = _Provider(metadata=doc, jwks=jwks, fetched_at=time.monotonic())
        return doc

    def _redeem(self, code: str, verifier: str) -> dict[str, Any]:
        import requests
        from authlib.integrations.base_client import OAuthError

        metadata = self._metadata()
        try:
            with self._session() as session:
                token = session.fetch_token(metadata["token_endpoint"], grant_type="authorization_code", code=code,
                                            code_verifier=verifier)
        except OAuthError as exc:
            error = re.sub(r"[^A-Za-z0-9_.:-]", "", str(exc.error or ""))[:64]
            raise Unauthorized(f"the provider did not accept the sign-in's code ({error}): it was used already, "
                               f"expired, or oidc.client_id / the client secret are wrong; start again at {LOGIN_PATH}",
                               {"field": "code", "error": error}) from None
        except (requests.RequestException, ValueError) as exc:
            log.warning("OIDC provider %s: token request failed: %s", self.config.issuer, type(exc).__name__)
            raise ProviderUnavailable(f"the sign-in provider {self.config.issuer} did not answer the token request "
                                      f"({type(exc).__name__}); try again later", {"field": "oidc.issuer"}) from None
        if not isinstance(token.get("id_token"), str):
            raise Unauthorized("the provider answered without an ID token; make sure oidc.scopes includes 'openid' "
                               "and the client is an OpenID Connect client", {"field": "id_token"})
        return dict(token)

    def _verify(self, token: dict[str, Any], nonce: str) -> dict[str, Any]:
        from joserfc.errors import InvalidKeyIdError, JoseError

        metadata = self._metadata()
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in ASYMMETRIC_ALGS if a in offered]
        kwargs = {"issuer": self.config.issuer, "client_id": self.config.client_id, "nonce": nonce,
                  "access_token": token.get("access_token"), "algorithms": algorithms}
        try:
            try:
                return verify_id_token(token["id_token"], jwks=self._provider.jwks, **kwargs)
            except InvalidKeyIdError:  # the provider rotated its keys since we fetched them
                self._metadata(force=True)
                return verify_id_token(token["id_token"], jwks=self._provider.jwks, **kwargs)
        except (JoseError, ValueError) as exc:
            reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            raise Unauthorized(f"the provider's ID token is not valid ({reason[:200]}); start again at {LOGIN_PATH}",
                               {"field": "id_token"}) from None

    def _identity(self, claims: dict[str, Any]) -> OidcIdentity:
        name = claims.get(self.config.username_claim)
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"the ID token has no {self.config.username_claim!r} claim to name the user by; set "
                               "oidc.username_claim to a claim the provider sends (e.g. email), or add it at the "
                               "provider", {"field": "oidc.username_claim"})
        if not USER_NAME.match(name):
            raise Unauthorized(f"the {self.config.username_claim!r} claim {name[:100]!r} is not a valid user name "
                               "(letters, digits, '_', '.', '@', '+', '-'); set oidc.username_claim to another "
                               "claim", {"field": "oidc.username_claim"})
        return OidcIdentity(issuer=self.config.issuer, subject=str(claims["sub"]), username=name,
                            groups=groups_of(claims, self.config.groups_claim),
                            display_name=_text(claims.get("name")), email=_text(claims.get("email")))


def groups_of(claims: Mapping[str, Any], path: str) -> list[str]:
    """The groups in ``claims`` at ``path`` (dots walk into objects: ``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


def _text(value: Any) -> str:
    return value[:255] if isinstance(value, str) else ""


def verify_id_token(id_token: str, *, jwks: Mapping[str, Any], issuer: str, client_id: str, nonce: str,
                    algorithms: list[str], access_token: str | None = None, now: int | None = None) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (by a key of ``jwks``, with one of ``algorithms``),
    issuer, audience, expiry, issue time, nonce, authorized party and access-token hash check out;
    a joserfc ``JoseError`` otherwise."""
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import UnsupportedAlgorithmError
    from joserfc.jwk import KeySet

    if not algorithms:
        raise UnsupportedAlgorithmError("the provider offers no public-key signing algorithm for ID tokens")
    decoded = jwt.decode(id_token, KeySet.import_key_set(dict(jwks)), algorithms=algorithms)
    options = {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id}}
    params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
    claims = CodeIDToken(decoded.claims, decoded.header, options, params)
    claims.validate(now=now, leeway=LEEWAY_SECONDS)
    return dict(claims)
