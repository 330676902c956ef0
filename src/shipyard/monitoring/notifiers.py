"""Alert notifiers: a JSON webhook (for SMS/IM gateways) and SMTP e-mail, both retried with backoff.

Passwords are never part of a notifier's settings: an SMTP notifier names the environment
variable (``password_env``) or the secret (``password_secret``) that holds it, and reads it only
when it sends. Settings print without them, and delivery errors never include them.
"""

from __future__ import annotations

import logging
import os
import smtplib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import orjson

from shipyard.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

SecretResolver = Callable[[str], str]


@dataclass
class Delivery:
    notifier: str
    ok: bool
    attempts: int
    error: str | None = None
    at: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _retry(name: str, retries: int, backoff_s: float, send: Callable[[], None],
           sleep: Callable[[float], None] = time.sleep) -> Delivery:
    attempts = 0
    error = None
    for attempt in range(retries + 1):
        attempts += 1
        try:
            send()
            return Delivery(name, True, attempts, None, int(time.time() * 1000))
        except Exception as exc:  # recorded, never raised: an outage must not stop the evaluator
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("notifier %s: attempt %d failed: %s", name, attempts, error)
            if attempt < retries:
                sleep(backoff_s * (2 ** attempt))
    return Delivery(name, False, attempts, error, int(time.time() * 1000))


@dataclass
class WebhookNotifier:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    # header -> environment variable holding its value (e.g. a gateway token kept out of the settings)
    header_env: dict[str, str] = field(default_factory=dict)
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0
    kind = "webhook"

    def send(self, payload: dict[str, Any]) -> Delivery:
        def post() -> None:
            secret_headers = {}
            for header, env in self.header_env.items():
                if env not in os.environ:
                    raise ConfigError(f"notifier {self.name!r}: environment variable {env!r} for header {header!r} "
                                      "is not set", {"field": "header_env"})
                secret_headers[header] = os.environ[env]
            response = httpx.post(self.url, content=orjson.dumps(payload),
                                  headers={"content-type": "application/json", **self.headers, **secret_headers},
                                  timeout=self.timeout_s)
            if response.status_code >= 300:
                raise RuntimeError(f"HTTP {response.status_code} from the webhook")

        return _retry(self.name, self.retries, self.backoff_s, post)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "webhook", "url": self.url, "headers": sorted(self.headers),
                "header_env": dict(self.header_env),
                "retries": self.retries, "backoff_s": self.backoff_s, "timeout_s": self.timeout_s}


@dataclass
class SmtpNotifier:
    name: str
    host: str
    to: list[str]
    sender: str = "shipyard@localhost"
    port: int = 25
    username: str | None = None
    password_env: str | None = None
    password_secret: str | None = None
    starttls: bool = False
    ssl: bool = False
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    secrets: SecretResolver | None = field(default=None, repr=False, compare=False)
    kind = "smtp"

    def _password(self) -> str | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"notifier {self.name!r}: environment variable {self.password_env!r} is not set",
                                  {"field": "password_env"})
            return value
        if self.password_secret:
            if self.secrets is None:
                raise ConfigError(f"notifier {self.name!r}: no secret store is connected to read "
                                  f"{self.password_secret!r}; open monitoring from a workspace or use password_env",
                                  {"field": "password_secret"})
            return self.secrets(self.password_secret)
        return None

    def send(self, payload: dict[str, Any]) -> Delivery:
        msg = EmailMessage()
        msg["Subject"] = f"[{str(payload.get('severity', 'alert')).upper()}] {payload.get('rule')}: " \
                         f"{payload.get('status', 'firing')}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(_email_body(payload))

        def deliver() -> None:
            password = self._password()
            cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
            with cls(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, password or "")
                smtp.send_message(msg)

        return _retry(self.name, self.retries, self.backoff_s, deliver)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "smtp", "host": self.host, "port": self.port, "sender": self.sender,
                "to": list(self.to), "username": self.username, "password_env": self.password_env,
                "password_secret": self.password_secret, "starttls": self.starttls, "ssl": self.ssl,
                "retries": self.retries, "backoff_s": self.backoff_s}


def _email_body(p: dict[str, Any]) -> str:
    lines = [str(p.get("message", "")), "",
             f"rule: {p.get('rule')}", f"status: {p.get('status')}", f"severity: {p.get('severity')}",
             f"metric: {p.get('metric')}", f"value: {p.get('value')}", f"condition: {p.get('condition')}",
             f"scope: {p.get('scope')}", f"since: {p.get('started_at')}"]
    return "\n".join(lines) + "\n"


Notifier = WebhookNotifier | SmtpNotifier

_WEBHOOK_KEYS = {"name", "type", "url", "headers", "header_env", "retries", "backoff_s", "timeout_s"}
_SMTP_KEYS = {"name", "type", "host", "port", "to", "sender", "username", "password_env", "password_secret",
              "starttls", "ssl", "retries", "backoff_s", "timeout_s"}


def _check_types(spec: dict[str, Any], where: str) -> None:
    """Settings of the wrong type would fail only when an alert is sent: refuse them now."""
    def bad(key: str, what: str) -> InvalidInput:
        return InvalidInput(f"{where}: {key} must be {what}, got {spec[key]!r}", {"field": f"notifiers.{key}"})

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if "retries" in spec and not (is_int(spec["retries"]) and 0 <= spec["retries"] <= 100):
        raise bad("retries", "a whole number from 0 to 100")
    for key in ("backoff_s", "timeout_s"):
        if key in spec and not (is_number(spec[key]) and spec[key] >= 0 and (key != "timeout_s" or spec[key] > 0)):
            raise bad(key, "a number of seconds" + (" above 0" if key == "timeout_s" else ", 0 or more"))
    if "port" in spec and not (is_int(spec["port"]) and 1 <= spec["port"] <= 65535):
        raise bad("port", "a port number (1 to 65535)")
    for key in ("starttls", "ssl"):
        if key in spec and not isinstance(spec[key], bool):
            raise bad(key, "true or false")
    for key in ("headers", "header_env"):
        if key in spec and not (isinstance(spec[key], dict)
                                and all(isinstance(k, str) and isinstance(v, str) for k, v in spec[key].items())):
            raise bad(key, "a mapping of header names to text")
    to = spec.get("to")
    if "to" in spec and not (isinstance(to, str) or (isinstance(to, list) and all(isinstance(a, str) for a in to))):
        raise bad("to", "an address or a list of addresses")
    for key in ("host", "sender", "username", "password_env", "password_secret", "url"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise bad(key, "text")


def notifier_from_spec(spec: dict[str, Any], secrets: SecretResolver | None = None) -> Notifier:
    if not isinstance(spec, dict):
        raise InvalidInput("each notifier must be a mapping with name and type", {"field": "notifiers"})
    name = spec.get("name")
    where = f"notifier {name!r}"
    if not name or not isinstance(name, str):
        raise InvalidInput("a notifier needs a name", {"field": "notifiers.name"})
    if "password" in spec:
        raise InvalidInput(f"{where}: never put a password in the settings; name the environment variable "
                           "(password_env) or the secret (password_secret) that holds it",
                           {"field": "notifiers.password"})
    kind = spec.get("type")
    keys = {"webhook": _WEBHOOK_KEYS, "smtp": _SMTP_KEYS}.get(str(kind))
    if keys is None:
        raise InvalidInput(f"{where}: type {kind!r} is not known; use webhook or smtp", {"field": "notifiers.type"})
    unknown = sorted(set(spec) - keys)
    if unknown:
        raise InvalidInput(f"{where}: unknown setting(s) {unknown}; known: {sorted(keys)}",
                           {"field": f"notifiers.{unknown[0]}"})
    _check_types(spec, where)
    args = {k: v for k, v in spec.items() if k != "type"}
    try:
        if kind == "webhook":
            url = str(args.get("url", ""))
            if not url.startswith(("http://", "https://")):
                raise InvalidInput(f"{where}: url {url!r} must start with http:// or https://",
                                   {"field": "notifiers.url"})
            return WebhookNotifier(**args)
        to = args.get("to")
        if isinstance(to, str):
            args["to"] = [to]
        if not args.get("to") or not args.get("host"):
            raise InvalidInput(f"{where}: an smtp notifier needs host and to", {"field": "notifiers.to"})
        return SmtpNotifier(**args, secrets=secrets)
    except TypeError as exc:
        raise InvalidInput(f"{where}: {exc}", {"field": "notifiers"}) from None
