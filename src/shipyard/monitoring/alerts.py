"""Alert rules, their evaluation, de-duplication, silences and history.

A rule names a metric, a scope, a condition, a window, a severity, a cool-down and the notifiers
to tell::

    rules:
      - name: credit-p99
        metric: latency_p99_ms          # see METRICS; custom metrics are custom:<plugin>.<key>
        scope: {scene: credit_apply}
        condition: "> 250"
        window: 5m
        severity: critical
        cooldown: 30m
        notify: [oncall-webhook, risk-mail]
    notifiers:
      - {name: oncall-webhook, type: webhook, url: "https://gateway.example/alerts"}
      - {name: risk-mail, type: smtp, host: smtp.example, port: 587, starttls: true,
         to: [risk@example.com], username: alerts, password_env: SHIPYARD_SMTP_PASSWORD}

A rule naming an unknown metric, notifier or plugin is refused when applied. A firing rule opens
one alert per scope (its fingerprint) that stays open until the condition clears; notifications
for one fingerprint are at least the cool-down apart, whichever server evaluates (the claim is a
conditional UPDATE, so two servers never both send). A matching silence records the alert but
sends nothing.

A stored rule that no longer validates (written by an older release, or naming a plugin that is gone)
is skipped with a warning and listed as invalid; every other rule is still evaluated. Deleting or
disabling a rule closes its open alerts (status ``closed``, the reason and actor in the message), so
nothing stays firing for a rule nobody evaluates.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
import yaml

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring.notifiers import Delivery, Notifier, SecretResolver, notifier_from_spec
from shipyard.store import MetadataStore
from shipyard.store.database import now_ms
from shipyard.store.schema import monitoring_alert_rules as RULES
from shipyard.store.schema import monitoring_alerts as A
from shipyard.store.schema import monitoring_notifiers as N
from shipyard.store.schema import monitoring_silences as SIL

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the longest window, cool-down or silence: a year and a day covers the daily reports' trends
#: (per-minute series are kept 30 days by default); longer ones would only overflow timestamps
MAX_DURATION_S = 366 * 86400
#: rule names travel in URL paths (DELETE /alerts/rules/{name}): no '/', spaces or '..'
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


@dataclass(frozen=True)
class MetricDef:
    family: str            # series | daily | labels | features | custom
    needs: tuple[str, ...]  # scope keys that must be given
    description: str


METRICS: dict[str, MetricDef] = {
    "requests": MetricDef("series", ("scene",), "requests in the window"),
    "errors": MetricDef("series", ("scene",), "failed requests in the window"),
    "error_rate": MetricDef("series", ("scene",), "errors / requests in the window"),
    "fallbacks": MetricDef("series", ("scene",), "responses served from the fallback"),
    "fallback_rate": MetricDef("series", ("scene",), "fallbacks / successful requests"),
    "qps": MetricDef("series", ("scene",), "requests per second over the window"),
    "latency_p50_ms": MetricDef("series", ("scene",), "median total latency (merged histograms)"),
    "latency_p95_ms": MetricDef("series", ("scene",), "95th percentile total latency"),
    "latency_p99_ms": MetricDef("series", ("scene",), "99th percentile total latency"),
    "latency_p999_ms": MetricDef("series", ("scene",), "99.9th percentile total latency"),
    "features_latency_p99_ms": MetricDef("series", ("scene",), "99th percentile of the features step"),
    "model_latency_p99_ms": MetricDef("series", ("scene",), "99th percentile of the model step"),
    "volume": MetricDef("daily", ("scene",), "records of the latest reported day"),
    "approval_rate": MetricDef("daily", ("scene",), "approval rate of the latest reported day"),
    "psi": MetricDef("daily", ("scene",), "PSI of the score (or scope.column) on the latest reported day"),
    "js": MetricDef("daily", ("scene", "column"), "Jensen–Shannon distance of a column, latest day"),
    "wasserstein": MetricDef("daily", ("scene", "column"), "normed Wasserstein distance of a column, latest day"),
    "missing_rate": MetricDef("daily", ("scene", "column"), "missing rate of a column, latest day"),
    "max_psi": MetricDef("daily", ("scene",), "largest input PSI of the latest reported day"),
    "auc": MetricDef("labels", ("scene",), "AUC of labelled predictions in the window"),
    "ks": MetricDef("labels", ("scene",), "KS of labelled predictions in the window"),
    "bad_rate": MetricDef("labels", ("scene",), "bad rate of labelled predictions in the window"),
    "labelled": MetricDef("labels", ("scene",), "labelled predictions in the window"),
    "feature_freshness_seconds": MetricDef("features", ("view",), "age of a feature view's newest online row"),
    "feature_missing_rate": MetricDef("features", ("view", "feature"), "missing rate of an online feature"),
}
SCOPE_KEYS = {"scene", "version", "arm", "column", "view", "feature"}


def parse_duration(text: Any, field_name: str) -> int:
    """Seconds from ``30s``, ``5m``, ``1h`` or ``7d``, at most 366 days (``MAX_DURATION_S``)."""
    m = _DURATION.match(str(text))
    if not m:
        raise InvalidInput(f"{field_name} {text!r} is not a duration; write e.g. 30s, 5m, 1h or 7d",
                           {"field": field_name})
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds > MAX_DURATION_S:
        raise InvalidInput(f"{field_name} {text!r} is longer than the limit of 366d; give at most 366d",
                           {"field": field_name, "max": "366d"})
    return int(seconds)


@dataclass
class AlertRule:
    name: str
    metric: str
    condition: str
    scope: dict[str, str] = field(default_factory=dict)
    window: str = "5m"
    severity: str = "warning"
    cooldown: str = "30m"
    notify: list[str] = field(default_factory=list)
    description: str = ""
    enabled: bool = True

    @property
    def op(self) -> str:
        return _parse_condition(self.condition, self.name)[0]

    @property
    def threshold(self) -> float:
        return _parse_condition(self.condition, self.name)[1]

    def holds(self, value: float) -> bool:
        op, threshold = _parse_condition(self.condition, self.name)
        return _OPS[op](value, threshold)

    @property
    def window_s(self) -> int:
        return parse_duration(self.window, "window")

    @property
    def cooldown_s(self) -> int:
        return parse_duration(self.cooldown, "cooldown")

    def fingerprint(self) -> str:
        return f"{self.name}|{orjson.dumps(self.scope, option=orjson.OPT_SORT_KEYS).decode()}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_condition(text: str, rule: str) -> tuple[str, float]:
    m = re.match(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$", str(text))
    if not m:
        raise InvalidInput(f"rule {rule!r}: condition {text!r} is not understood; write e.g. '> 0.25' or '<= 0.7'",
                           {"field": "condition", "rule": rule})
    return m.group(1), float(m.group(2))


_RULE_KEYS = {"name", "metric", "condition", "scope", "window", "severity", "cooldown", "notify", "description",
              "enabled"}


def rule_from_spec(spec: Any, known_plugins: Callable[[str | None], set[str]],
                   notifiers: set[str]) -> AlertRule:
    """Validate one rule; unknown metrics, scope keys, notifiers and plugins are refused with the fix."""
    if not isinstance(spec, dict):
        raise InvalidInput("each rule must be a mapping (name, metric, condition, ...)", {"field": "rules"})
    name = spec.get("name")
    if not name or not isinstance(name, str):
        raise InvalidInput("a rule needs a name (up to 255 characters)", {"field": "rules.name"})
    if not RULE_NAME.match(name) or ".." in name:
        raise InvalidInput(f"rule name {name!r} is not valid: use 1-255 letters, digits, '_', '-' or '.' (no '..'), "
                           f"starting with a letter or digit (pattern {RULE_NAME.pattern}), e.g. 'score-psi'",
                           {"field": "rules.name", "rule": name, "pattern": RULE_NAME.pattern})
    unknown = sorted(set(spec) - _RULE_KEYS)
    if unknown:
        raise InvalidInput(f"rule {name!r}: unknown key(s) {unknown}; known: {sorted(_RULE_KEYS)}",
                           {"field": f"rules.{unknown[0]}", "rule": name})
    for required in ("metric", "condition"):
        if not spec.get(required):
            raise InvalidInput(f"rule {name!r} has no {required}", {"field": f"rules.{required}", "rule": name})
    scope = {str(k): str(v) for k, v in (spec.get("scope") or {}).items()}
    bad_scope = sorted(set(scope) - SCOPE_KEYS)
    if bad_scope:
        raise InvalidInput(f"rule {name!r}: scope key(s) {bad_scope} are not known; use {sorted(SCOPE_KEYS)}",
                           {"field": "rules.scope", "rule": name})
    metric = str(spec["metric"])
    if metric.startswith("custom:"):
        plugin, _, key = metric[len("custom:"):].partition(".")
        if not plugin or not key:
            raise InvalidInput(f"rule {name!r}: custom metric {metric!r} must read custom:<plugin>.<key>",
                               {"field": "rules.metric", "rule": name})
        if "scene" not in scope:
            raise InvalidInput(f"rule {name!r}: a custom metric needs scope.scene", {"field": "rules.scope", "rule": name})
        known = known_plugins(scope.get("scene"))
        if plugin not in known:
            raise InvalidInput(f"rule {name!r}: metric {metric!r} names plugin {plugin!r}, which is not registered; "
                               f"known plugins: {sorted(known)}", {"field": "rules.metric", "rule": name})
    elif metric not in METRICS:
        raise InvalidInput(f"rule {name!r}: metric {metric!r} is not known; use one of {sorted(METRICS)} or "
                           "custom:<plugin>.<key>", {"field": "rules.metric", "rule": name, "metric": metric})
    else:
        missing = [k for k in METRICS[metric].needs if k not in scope]
        if missing:
            raise InvalidInput(f"rule {name!r}: metric {metric!r} needs scope key(s) {missing}",
                               {"field": "rules.scope", "rule": name})
    severity = str(spec.get("severity", "warning"))
    if severity not in SEVERITIES:
        raise InvalidInput(f"rule {name!r}: severity {severity!r} is not one of {list(SEVERITIES)}",
                           {"field": "rules.severity", "rule": name})
    notify = spec.get("notify") or []
    notify = [notify] if isinstance(notify, str) else [str(n) for n in notify]
    missing_n = [n for n in notify if n not in notifiers]
    if missing_n:
        raise InvalidInput(f"rule {name!r}: notifier(s) {missing_n} are not defined; define them under notifiers "
                           f"(known: {sorted(notifiers)})", {"field": "rules.notify", "rule": name})
    rule = AlertRule(name, metric, str(spec["condition"]), scope, str(spec.get("window", "5m")), severity,
                     str(spec.get("cooldown", "30m")), notify, str(spec.get("description", "")),
                     bool(spec.get("enabled", True)))
    _parse_condition(rule.condition, name)
    parse_duration(rule.window, "window")
    parse_duration(rule.cooldown, "cooldown")
    return rule


def stored_rule(name: str, spec: object, known_plugins: Callable[[str | None], set[str]]) -> AlertRule:
    """A stored rule row, checked as ``apply`` checks it; raises InvalidInput (or the error of the
    malformed value) when it no longer validates."""
    if not isinstance(spec, dict):
        raise InvalidInput(f"rule {name!r}: the stored definition is a {type(spec).__name__}, not a mapping",
                           {"field": "rules", "rule": name})
    notify = spec.get("notify") or []
    # a notifier removed since is reported on each delivery, it does not make the rule invalid
    listed = {notify} if isinstance(notify, str) else {str(n) for n in notify} if isinstance(notify, list) else set()
    return rule_from_spec({**spec, "name": name}, known_plugins, listed)


def _stored_json(raw: object) -> object:
    """A JSON column's value: decoded by the driver already (PostgreSQL), or its text."""
    if not isinstance(raw, str | bytes):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the stored definition is not valid JSON ({exc})", {"field": "rules"}) from None


def _no_plugins(_scene: str | None) -> set[str]:
    return set()


def load_rules_document(source: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the rules file is not valid YAML: {exc}", {"field": "rules"}) from None
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, dict):
        raise InvalidInput("the rules file must hold a mapping with rules: and notifiers:", {"field": "rules"})
    return doc


@dataclass
class AlertEvent:
    rule: str
    fingerprint: str
    status: str
    value: float | None
    silenced: bool
    deliveries: list[Delivery] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deliveries"] = [d.to_dict() for d in self.deliveries]
        return out


class AlertStore:
    """Rules, notifiers, silences and the alert history in the metadata database."""

    def __init__(self, store: MetadataStore, secrets: SecretResolver | None = None,
                 known_plugins: Callable[[str | None], set[str]] = _no_plugins) -> None:
        self.store = store
        self.secrets = secrets
        self.known_plugins = known_plugins  # the plugins a scene's custom metrics may name

    # -- rules and notifiers -------------------------------------------------------------------------
    def apply(self, document: str | dict[str, Any], actor: str,
              known_plugins: Callable[[str | None], set[str]]) -> dict[str, Any]:
        """Validate every rule and notifier, then store them all in one transaction (nothing on error)."""
        doc = load_rules_document(document)
        unknown = sorted(set(doc) - {"rules", "notifiers"})
        if unknown:
            raise InvalidInput(f"unknown section(s) {unknown} in the rules document; use rules and notifiers",
                               {"field": unknown[0]})
        notifier_specs = list(doc.get("notifiers") or [])
        built = [notifier_from_spec(s, self.secrets) for s in notifier_specs]
        names = {n.name for n in built} | set(self.notifier_names())
        rules = [rule_from_spec(s, known_plugins, names) for s in (doc.get("rules") or [])]
        dupes = sorted({r.name for r in rules if [x.name for x in rules].count(r.name) > 1})
        if dupes:
            raise InvalidInput(f"rule name(s) {dupes} appear more than once", {"field": "rules.name"})
        now = now_ms()
        with self.store.begin() as conn:
            for spec in notifier_specs:
                conn.execute(N.delete().where(N.c.name == spec["name"]))
                conn.execute(N.insert().values(name=spec["name"], spec=dict(spec), updated_at=now, updated_by=actor))
            for r in rules:
                old = conn.execute(sa.select(RULES.c.created_at).where(RULES.c.name == r.name)).first()
                conn.execute(RULES.delete().where(RULES.c.name == r.name))
                conn.execute(RULES.insert().values(name=r.name, spec=r.to_dict(), enabled=r.enabled,
                                                   created_at=old[0] if old else now, updated_at=now, updated_by=actor))
                # nobody evaluates a disabled rule's alerts, nor those of a scope the rule no longer has
                if not r.enabled:
                    self._close_open_alerts(conn, r.name, f"rule disabled by {actor}", now)
                elif old:
                    self._close_open_alerts(conn, r.name, f"rule's scope changed by {actor}", now,
                                            keep=r.fingerprint())
        return {"rules": [r.name for r in rules], "notifiers": [n.name for n in built]}

    def rules(self) -> list[AlertRule]:
        """The stored rules that validate (see ``load_rules`` for the others)."""
        return self.load_rules()[0]

    def overview(self) -> dict[str, Any]:
        """The stored rules and notifiers (without secrets), the invalid ones with the reason and the fix."""
        rules, broken = self.load_rules()
        usable, invalid = self.load_notifiers()
        return {"rules": [r.to_dict() for r in rules],
                "invalid_rules": [{"name": k, "error": v} for k, v in broken.items()],
                "notifiers": [n.describe() for n in usable.values()],
                "invalid_notifiers": [{"name": k, "error": v} for k, v in invalid.items()]}

    def load_rules(self) -> tuple[list[AlertRule], dict[str, str]]:
        """The stored rules that validate, and the error of each one that does not (stored by an older
        release, or naming a metric or plugin that no longer exists), by rule name. An invalid rule is
        not evaluated; it stays stored until it is applied again or deleted."""
        with self.store.read() as conn:
            # read as text where the database stores text: one row that is not JSON (edited by hand)
            # must not fail the whole query, it is listed as invalid like any other
            spec_text = sa.type_coerce(RULES.c.spec, sa.Text)
            rows = conn.execute(sa.select(RULES.c.name, spec_text).order_by(RULES.c.name)).all()
        usable: list[AlertRule] = []
        invalid: dict[str, str] = {}
        for name, raw in rows:
            try:
                spec = _stored_json(raw)
                usable.append(stored_rule(name, spec, self.known_plugins))
            except (InvalidInput, TypeError, ValueError, AttributeError, KeyError) as exc:
                reason = (exc.message.removeprefix(f"rule {name!r}: ") if isinstance(exc, InvalidInput)
                          else f"{type(exc).__name__}: {exc}")
                invalid[name] = (f"alert rule {name!r} is stored with an invalid definition ({reason}); it is not "
                                 f"evaluated until it is applied again with a valid definition, or deleted with "
                                 f"'shipyard alerts delete {name}'")
        return usable, invalid

    def delete_rule(self, name: str, actor: str) -> list[int]:
        """Delete the rule (valid or not) and close its open alerts; returns the ids of the closed alerts."""
        now = now_ms()
        with self.store.begin() as conn:
            if not conn.execute(RULES.delete().where(RULES.c.name == name)).rowcount:
                raise NotFound(f"no alert rule named {name!r}", {"field": "rule"})
            return self._close_open_alerts(conn, name, f"rule deleted by {actor}", now)

    def _close_open_alerts(self, conn: Any, rule: str, reason: str, now: int, keep: str | None = None) -> list[int]:
        """Close the rule's firing alerts (but the one of fingerprint ``keep``): status ``closed``, the
        reason at the end of the message. Nothing is sent for them."""
        query = sa.select(A.c.id, A.c.message).where((A.c.rule == rule) & (A.c.status == "firing"))
        if keep is not None:
            query = query.where(A.c.fingerprint != keep)
        closed = []
        for alert_id, message in conn.execute(query).all():
            conn.execute(A.update().where(A.c.id == alert_id).values(
                status="closed", resolved_at=now, updated_at=now, message=f"{message} (closed: {reason})"))
            closed.append(int(alert_id))
        return closed

    def rule_names(self) -> list[str]:
        """Every stored rule, valid or not."""
        with self.store.read() as conn:
            return [r[0] for r in conn.execute(sa.select(RULES.c.name).order_by(RULES.c.name))]

    def notifier_names(self) -> list[str]:
        with self.store.read() as conn:
            return [r[0] for r in conn.execute(sa.select(N.c.name).order_by(N.c.name))]

    def notifiers(self) -> dict[str, Notifier]:
        """The stored notifiers that can be used (see ``load_notifiers`` for the others)."""
        return self.load_notifiers()[0]

    def load_notifiers(self) -> tuple[dict[str, Notifier], dict[str, str]]:
        """The stored notifiers by name, and the error of each one whose stored settings are not valid
        (stored before apply checked their types): skipped with a warning naming it, so one bad
        notifier does not stop the evaluation of every rule."""
        with self.store.read() as conn:
            rows = conn.execute(sa.select(N.c.name, N.c.spec).order_by(N.c.name)).all()
        usable: dict[str, Notifier] = {}
        invalid: dict[str, str] = {}
        for name, spec in rows:
            try:
                usable[name] = notifier_from_spec(spec, self.secrets)
            except Exception as exc:  # noqa: BLE001 - any stored shape; reported, never raised
                # the setting is named, its value is not: it may be a header holding a token
                details = getattr(exc, "details", None) or {}
                what = str(details.get("field", "")).removeprefix("notifiers.") or type(exc).__name__
                invalid[name] = (f"notifier {name!r} is stored with an invalid setting ({what}); it is skipped "
                                 "until it is applied again with valid settings")
                log.warning("%s", invalid[name])
        return usable, invalid

    # -- silences ------------------------------------------------------------------------------------
    def silence(self, rule: str, duration: str, actor: str, *, scope: dict[str, str] | None = None,
                reason: str = "") -> dict[str, Any]:
        seconds = parse_duration(duration, "duration")
        if rule != "*" and rule not in self.rule_names():
            raise NotFound(f"no alert rule named {rule!r}; silence an existing rule or '*' for all",
                           {"field": "rule"})
        now = now_ms()
        values = {"rule": rule, "scope": dict(scope or {}), "starts_at": now, "ends_at": now + seconds * 1000,
                  "reason": reason, "created_at": now, "created_by": actor}
        with self.store.begin() as conn:
            values["id"] = conn.execute(SIL.insert().values(**values)).inserted_primary_key[0]
        return values

    def silences(self, active_at: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(SIL).order_by(SIL.c.id)
        if active_at is not None:
            q = q.where((SIL.c.starts_at <= active_at) & (SIL.c.ends_at > active_at))
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def _silenced(self, rule: AlertRule, silences: list[dict[str, Any]]) -> bool:
        for s in silences:
            if s["rule"] in ("*", rule.name) and all(rule.scope.get(k) == v for k, v in (s["scope"] or {}).items()):
                return True
        return False

    # -- history ------------------------------------------------------------------------------------
    def history(self, *, rule: str | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(A).order_by(A.c.id.desc()).limit(limit)
        if rule:
            q = q.where(A.c.rule == rule)
        if status:
            q = q.where(A.c.status == status)
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def _open(self, conn: Any, fingerprint: str) -> Any:
        return conn.execute(sa.select(A).where(A.c.fingerprint == fingerprint).order_by(A.c.id.desc()).limit(1)
                            ).mappings().first()

    def record(self, rule: AlertRule, value: float | None, firing: bool, now: int,
               silences: list[dict[str, Any]]) -> tuple[int | None, str | None, bool]:
        """Open, update or resolve the rule's alert; returns (alert id, status, whether to notify)."""
        fp = rule.fingerprint()
        silenced = self._silenced(rule, silences)
        with self.store.begin() as conn:
            # the rule's row is locked: a rule deleted or disabled meanwhile (its alerts closed) is left
            # alone, neither reopened nor notified
            current = conn.execute(sa.select(RULES.c.enabled).where(RULES.c.name == rule.name)
                                   .with_for_update()).first()
            if current is None or not current[0]:
                return None, None, False
            last = self._open(conn, fp)
            if firing:
                if last is not None and last["status"] == "firing":
                    conn.execute(A.update().where(A.c.id == last["id"]).values(value=value, updated_at=now,
                                                                                 silenced=silenced))
                    alert_id = last["id"]
                else:
                    alert_id = self._open_alert(conn, rule, fp, value, silenced, now, last)
                if silenced:
                    return alert_id, "firing", False
                claimed = conn.execute(A.update().where(
                    (A.c.id == alert_id) & ((A.c.last_notified_at.is_(None))
                                            | (A.c.last_notified_at <= now - rule.cooldown_s * 1000)))
                    .values(last_notified_at=now)).rowcount
                return alert_id, "firing", bool(claimed)
            if last is not None and last["status"] == "firing" and value is not None:
                conn.execute(A.update().where(A.c.id == last["id"]).values(status="resolved", resolved_at=now,
                                                                             updated_at=now, value=value))
                return last["id"], "resolved", False
        return None, None, False

    def _open_alert(self, conn: Any, rule: AlertRule, fp: str, value: float | None, silenced: bool, now: int,
                    last: Any) -> int:
        """Insert the firing alert; when another server opened it first (the unique index on open
        alerts says so), use that one."""
        # a new firing inherits the last notification time: the cool-down spans flapping
        values = {"rule": rule.name, "fingerprint": fp, "scope": rule.scope, "status": "firing",
                  "severity": rule.severity, "value": value, "threshold": rule.threshold,
                  "message": _message(rule, value), "silenced": silenced, "started_at": now, "updated_at": now,
                  "last_notified_at": last["last_notified_at"] if last else None, "notifications": []}
        try:
            with conn.begin_nested():
                return int(conn.execute(A.insert().values(**values)).inserted_primary_key[0])
        except sa.exc.IntegrityError:
            row = self._open(conn, fp)
            return int(row["id"])

    def add_deliveries(self, alert_id: int, deliveries: list[Delivery]) -> None:
        with self.store.begin() as conn:
            row = conn.execute(sa.select(A.c.notifications).where(A.c.id == alert_id)).first()
            existing = list(row[0] or []) if row else []
            conn.execute(A.update().where(A.c.id == alert_id).values(
                notifications=existing + [d.to_dict() for d in deliveries]))


def _message(rule: AlertRule, value: float | None) -> str:
    scope = ", ".join(f"{k}={v}" for k, v in sorted(rule.scope.items()))
    return f"{rule.metric} = {value:.6g} ({rule.condition}) over {rule.window} [{scope}]" if value is not None \
        else f"{rule.metric}: no data [{scope}]"


MetricReader = Callable[[AlertRule, int], float | None]


class AlertEvaluator:
    """Evaluates every enabled rule: ``evaluate_once()`` for a scheduler, ``start``/``stop`` for a thread."""

    def __init__(self, alerts: AlertStore, read_metric: MetricReader, *, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.alerts = alerts
        self.read_metric = read_metric
        self.interval_s = interval_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.invalid_rules: dict[str, str] = {}  # of the last evaluation: rule name -> why it was skipped

    def evaluate_once(self, now: float | None = None) -> list[AlertEvent]:
        now_ms_ = int((now if now is not None else self.clock()) * 1000)
        silences = self.alerts.silences(active_at=now_ms_)
        notifiers, invalid = self.alerts.load_notifiers()
        rules, broken = self.alerts.load_rules()
        for error in broken.values():
            log.warning("%s", error)
        self.invalid_rules = broken
        events = []
        for rule in rules:
            if not rule.enabled:
                continue
            try:
                value = self.read_metric(rule, now_ms_)
            except Exception as exc:  # one failing metric must not stop the others
                log.warning("alert rule %s: could not read %s: %s", rule.name, rule.metric, exc)
                continue
            firing = value is not None and rule.holds(value)
            alert_id, status, notify = self.alerts.record(rule, value, firing, now_ms_, silences)
            if status is None:
                continue
            event = AlertEvent(rule.name, rule.fingerprint(), status, value, not notify and status == "firing"
                               and self.alerts._silenced(rule, silences))
            if notify and alert_id is not None:
                payload = {"rule": rule.name, "status": status, "severity": rule.severity, "metric": rule.metric,
                           "value": value, "condition": rule.condition, "window": rule.window, "scope": rule.scope,
                           "message": _message(rule, value), "description": rule.description,
                           "started_at": dt.datetime.fromtimestamp(now_ms_ / 1000, dt.UTC).isoformat()}
                for name in rule.notify:
                    notifier = notifiers.get(name)
                    if notifier is None:
                        error = invalid.get(name, "notifier no longer defined")
                        event.deliveries.append(Delivery(name, False, 0, error, now_ms_))
                        continue
                    event.deliveries.append(notifier.send(payload))
                self.alerts.add_deliveries(alert_id, event.deliveries)
            events.append(event)
        return events

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="shipyard-alerts", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate_once()
                self.last_error = None
            except Exception as exc:  # e.g. the database is down: try again next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
