"""Alert rules end to end: a real local webhook receiver and a real SMTP server (aiosmtpd),
de-duplication within the cool-down, silences, resolution, an unreachable notifier retried and
recorded, unknown metrics refused at apply, custom-plugin metrics, passwords kept out of sight."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring.series import SeriesRecorder
from tests.monitoring.support import frame, write_day


class Receiver:
    """A webhook endpoint on loopback that keeps every JSON body it gets."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append({**json.loads(body), "_auth": self.headers.get("authorization")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Keep(Message):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[Any] = []

        def handle_message(self, message: Any) -> None:
            self.messages.append(message)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _traffic(ws: Any, errors: int, ok: int = 20) -> None:
    rec = SeriesRecorder(ws.monitoring.series_store, instance="t")
    for _ in range(ok):
        rec.observe("credit", "1", "control", 0.01, 0.002, 0.005)
    for _ in range(errors):
        rec.error("credit", "1", "control", "model_error", 500)
    rec.close()


RULES = """
rules:
  - name: error-rate
    metric: error_rate
    scope: {{scene: credit}}
    condition: "> 0.1"
    window: 5m
    severity: critical
    cooldown: 30m
    notify: [hook, mail]
notifiers:
  - {{name: hook, type: webhook, url: "{url}", retries: 1, backoff_s: 0.01}}
  - {{name: mail, type: smtp, host: 127.0.0.1, port: {port}, to: [risk@example.com],
      sender: shipyard@example.com, retries: 0}}
"""


def test_alert_fires_to_webhook_and_smtp_once_per_cooldown(workspace, receiver, smtp_server) -> None:
    handler, port = smtp_server
    m = workspace.monitoring
    assert m.apply_rules(RULES.format(url=receiver.url, port=port), "alice") == {
        "rules": ["error-rate"], "notifiers": ["hook", "mail"]}
    _traffic(workspace, errors=10)
    evaluator = m.evaluator()
    events = evaluator.evaluate_once()
    assert [(e.status, [d.ok for d in e.deliveries]) for e in events] == [("firing", [True, True])]
    assert receiver.received[0]["rule"] == "error-rate"
    assert receiver.received[0]["value"] == pytest.approx(10 / 30)
    assert len(handler.messages) == 1 and "[CRITICAL] error-rate" in handler.messages[0]["Subject"]
    assert "error_rate" in handler.messages[0].get_payload()
    # still firing: recorded, not sent again within the cool-down
    assert [e.deliveries for e in evaluator.evaluate_once()] == [[]]
    assert len(receiver.received) == 1 and len(handler.messages) == 1
    history = m.alerts.history()
    assert len(history) == 1 and history[0]["status"] == "firing"
    assert [d["notifier"] for d in history[0]["notifications"]] == ["hook", "mail"]
    # after the cool-down it reminds once
    later = time.time() + 31 * 60
    _traffic_at(workspace, later, errors=10)
    assert [len(e.deliveries) for e in evaluator.evaluate_once(now=later)] == [2]


def _traffic_at(ws: Any, when: float, errors: int) -> None:
    from shipyard.monitoring.series import MINUTE_MS, SeriesRow

    minute = int(when * 1000) // MINUTE_MS * MINUTE_MS
    ws.monitoring.series_store.write([SeriesRow("credit", "1", "control", minute, requests=20 + errors,
                                                errors=errors, latency_total={"40": 20})], "later")


def test_silence_and_resolution(workspace, receiver, monkeypatch) -> None:
    m = workspace.monitoring
    m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["hook"]}],
                   "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url,
                                  "header_env": {"Authorization": "SY_TEST_HOOK_TOKEN"}}]}, "alice")
    monkeypatch.setenv("SY_TEST_HOOK_TOKEN", "Bearer hook-secret")
    m.alerts.silence("errors", "1h", "alice", reason="maintenance")
    _traffic(workspace, errors=2)
    events = m.evaluator().evaluate_once()
    assert events[0].silenced and events[0].deliveries == [] and receiver.received == []
    assert m.alerts.history()[0]["silenced"] is True
    # the errors leave the 5-minute window: the alert resolves
    events = m.evaluator().evaluate_once(now=time.time() + 600)
    assert events == []  # no traffic at all in the window: no data, nothing decided
    _traffic_at(workspace, time.time() + 900, errors=0)
    events = m.evaluator().evaluate_once(now=time.time() + 900)
    assert [e.status for e in events] == ["resolved"]
    assert m.alerts.history()[0]["status"] == "resolved"
    # a new firing after the silence ended is sent, the header's value read from the environment only
    _traffic_at(workspace, time.time() + 7300, errors=3)
    events = m.evaluator().evaluate_once(now=time.time() + 7300)
    assert [d.ok for d in events[0].deliveries] == [True]
    assert receiver.received[-1]["_auth"] == "Bearer hook-secret"
    assert "hook-secret" not in json.dumps(m.alerts.history(), default=str)


def test_unreachable_notifier_is_retried_and_recorded(workspace, monkeypatch) -> None:
    m = workspace.monitoring
    m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["down", "mail"]}],
                   "notifiers": [{"name": "down", "type": "webhook", "url": f"http://127.0.0.1:{_closed_port()}/x",
                                  "retries": 2, "backoff_s": 0.01, "timeout_s": 1},
                                 {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": _closed_port(),
                                  "to": ["a@example.com"], "username": "alerts", "password_env": "SY_TEST_SMTP_PW",
                                  "retries": 1, "backoff_s": 0.01, "timeout_s": 1}]}, "alice")
    monkeypatch.setenv("SY_TEST_SMTP_PW", "s3cret-value")
    _traffic(workspace, errors=1)
    events = m.evaluator().evaluate_once()
    down, mail = events[0].deliveries
    assert (down.ok, down.attempts) == (False, 3) and "Connect" in down.error
    assert (mail.ok, mail.attempts) == (False, 2)
    stored = json.dumps(m.alerts.history(), default=str)
    assert '"ok": false' in stored and "s3cret-value" not in stored
    notifier = m.alerts.notifiers()["mail"]
    assert "s3cret" not in repr(notifier) and "s3cret" not in json.dumps(notifier.describe())


def test_unknown_metric_refused_and_nothing_stored(workspace) -> None:
    m = workspace.monitoring
    doc = {"rules": [{"name": "ok", "metric": "errors", "scope": {"scene": "credit"}, "condition": "> 1"},
                     {"name": "typo", "metric": "latency_p98_ms", "scope": {"scene": "credit"}, "condition": "> 1"}]}
    with pytest.raises(InvalidInput, match="metric 'latency_p98_ms' is not known") as err:
        m.apply_rules(doc, "alice")
    assert err.value.details["field"] == "rules.metric"
    assert m.alerts.rules() == []
    for bad, field in ((
            {"name": "c", "metric": "custom:nope.x", "scope": {"scene": "credit"}, "condition": "> 1"},
            "rules.metric"),
            ({"name": "n", "metric": "errors", "scope": {"scene": "credit"}, "condition": "> 1", "notify": ["x"]},
             "rules.notify"),
            ({"name": "w", "metric": "errors", "scope": {"scene": "credit"}, "condition": "more than 1"},
             "condition"),
            ({"name": "s", "metric": "js", "scope": {"scene": "credit"}, "condition": "> 1"}, "rules.scope")):
        with pytest.raises(InvalidInput) as err:
            m.apply_rules({"rules": [bad]}, "alice")
        assert err.value.details["field"] == field
    with pytest.raises(InvalidInput, match="never put a password"):
        m.apply_rules({"notifiers": [{"name": "m", "type": "smtp", "host": "h", "to": ["a@b"], "password": "x"}]},
                      "alice")
    assert m.alerts.rules() == [] and m.alerts.notifier_names() == []


def test_custom_and_drift_metrics_from_the_daily_report(workspace, receiver, tmp_path) -> None:
    m = workspace.monitoring
    (tmp_path / "share.py").write_text(
        "def calculate_metrics(history_stats, day_log, bins):\n"
        "    return None, {'high': float((day_log['pd'] > 0.5).mean())}\n"
        "def display_metrics(display_df):\n    return 'ok'\n")
    m.create_baseline("train", frame(3000, 1), "alice")
    m.configure("credit", "alice", baseline="train", score="pd", decision="decision",
                plugins=[str(tmp_path / "share.py")])
    today = time.strftime("%Y-%m-%d", time.gmtime())
    cur = frame(500, 2, shift=1.5)
    write_day(workspace, "credit", today, cur)
    m.daily_report("credit", today, "alice", save=False)
    m.apply_rules({"rules": [
        {"name": "share", "metric": "custom:share.high", "scope": {"scene": "credit"}, "condition": "> 0.2",
         "window": "1d", "notify": ["hook"]},
        {"name": "x1-psi", "metric": "psi", "scope": {"scene": "credit", "column": "x1"}, "condition": "> 0.25",
         "window": "1d", "notify": ["hook"]}],
        "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}]}, "alice")
    events = {e.rule: e for e in m.evaluator().evaluate_once()}
    assert events["share"].value == pytest.approx((cur["pd"] > 0.5).mean())
    assert events["x1-psi"].status == "firing" and events["x1-psi"].value > 0.25
    assert {r["rule"] for r in receiver.received} == {"share", "x1-psi"}


def test_evaluator_thread_start_stop(workspace, receiver) -> None:
    m = workspace.monitoring
    m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["hook"]}],
                   "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}]}, "alice")
    _traffic(workspace, errors=1)
    ev = m.evaluator(interval_s=0.05)
    ev.start()
    deadline = time.time() + 10
    while not receiver.received and time.time() < deadline:
        time.sleep(0.05)
    ev.stop()
    assert len(receiver.received) == 1 and ev.last_error is None


def test_label_and_feature_store_metrics(workspace, receiver) -> None:
    import pandas as pd

    from shipyard.monitoring import Monitoring

    m = workspace.monitoring
    m.configure("credit", "alice", score="pd", decision="decision")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    data = frame(200, 4)
    ids = write_day(workspace, "credit", today, data)
    # labels that the score ranks backwards: AUC far below 0.5
    m.ingest_labels("credit", pd.DataFrame({"request_id": ids, "bad": (data["pd"] < data["pd"].median()).astype(int)}))
    m.apply_rules({"rules": [{"name": "auc", "metric": "auc", "scope": {"scene": "credit"}, "condition": "< 0.6",
                              "window": "7d", "notify": ["hook"]}],
                   "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}]}, "alice")
    [event] = m.evaluator().evaluate_once()
    assert event.value == pytest.approx(0.0) and receiver.received[0]["metric"] == "auc"
    # feature freshness through the feature store's monitoring report (its shape, given directly)
    report = {"views": [{"view": "applicant", "online": {"freshness_seconds": 7200.0,
                                                         "features": {"income": {"missing_rate": 0.4}}}}]}
    fm = Monitoring(workspace.store, workspace.artifacts, feature_monitor=lambda views: report)
    fm.apply_rules({"rules": [
        {"name": "stale", "metric": "feature_freshness_seconds", "scope": {"view": "applicant"}, "condition": "> 3600"},
        {"name": "holes", "metric": "feature_missing_rate", "scope": {"view": "applicant", "feature": "income"},
         "condition": "> 0.2"}]}, "alice")
    values = {e.rule: e.value for e in fm.evaluator().evaluate_once() if e.status == "firing"}
    assert values["stale"] == 7200.0 and values["holes"] == 0.4


def test_smtp_login_with_a_password_from_the_secret_store(workspace) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message
    from aiosmtpd.smtp import AuthResult

    logins: list[tuple[bytes, bytes]] = []
    messages: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            messages.append(message)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret-from-store")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        workspace.secrets.put("smtp-password", "s3cret-from-store", "alice")
        m = workspace.monitoring
        m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                                  "condition": ">= 1", "notify": ["mail"]}],
                       "notifiers": [{"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": port,
                                      "to": ["risk@example.com"], "username": "alerts",
                                      "password_secret": "smtp-password", "retries": 0}]}, "alice")
        _traffic(workspace, errors=1)
        [event] = m.evaluator().evaluate_once()
    finally:
        controller.stop()
    assert [d.ok for d in event.deliveries] == [True]
    assert logins == [(b"alerts", b"s3cret-from-store")] and len(messages) == 1
    assert "s3cret" not in json.dumps(m.alerts.history(), default=str)


def test_two_servers_evaluating_at_once_send_once(workspace, receiver) -> None:
    """Each server evaluates the same rules; the open-alert index and the conditional claim let
    exactly one of them notify."""
    from concurrent.futures import ThreadPoolExecutor

    from shipyard.monitoring import Monitoring

    workspace.monitoring.apply_rules(
        {"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"}, "condition": ">= 1",
                    "notify": ["hook"]}],
         "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}]}, "alice")
    _traffic(workspace, errors=2)
    servers = [Monitoring(type(workspace.store)(workspace.settings.metadata_url,
                                                schema=workspace.settings.metadata_schema), workspace.artifacts)
               for _ in range(4)]
    now = time.time()
    with ThreadPoolExecutor(4) as pool:
        events = list(pool.map(lambda m: m.evaluator().evaluate_once(now=now), servers))
    sent = sum(len(e.deliveries) for batch in events for e in batch)
    assert sent == 1 and len(receiver.received) == 1
    assert [a["status"] for a in workspace.monitoring.alerts.history()] == ["firing"]
    for m in servers:
        m.store.dispose()


def test_notifier_settings_of_the_wrong_type_are_refused_at_apply(workspace) -> None:
    """A setting of the wrong type would only fail when an alert is sent, stopping the evaluation of
    every rule after it; it is refused when applied, naming the setting."""
    m = workspace.monitoring
    hook = {"name": "h", "type": "webhook", "url": "https://hooks.example/x"}
    mail = {"name": "m", "type": "smtp", "host": "mail.example", "to": ["a@example"]}
    for spec, field in (({**hook, "retries": "many"}, "notifiers.retries"),
                        ({**hook, "retries": -1}, "notifiers.retries"),
                        ({**hook, "backoff_s": "soon"}, "notifiers.backoff_s"),
                        ({**hook, "timeout_s": 0}, "notifiers.timeout_s"),
                        ({**hook, "headers": ["X-A"]}, "notifiers.headers"),
                        ({**hook, "header_env": {"X-A": 5}}, "notifiers.header_env"),
                        ({**mail, "port": "abc"}, "notifiers.port"),
                        ({**mail, "port": 70000}, "notifiers.port"),
                        ({**mail, "starttls": "yes"}, "notifiers.starttls"),
                        ({**mail, "to": ["a@example", 5]}, "notifiers.to"),
                        ({**mail, "retries": True}, "notifiers.retries")):
        with pytest.raises(InvalidInput) as err:
            m.apply_rules({"notifiers": [spec]}, "alice")
        assert err.value.details["field"] == field, spec
    assert m.alerts.notifier_names() == []
    m.apply_rules({"notifiers": [{**hook, "retries": 0, "backoff_s": 0.5, "timeout_s": 2},
                                 {**mail, "port": 2525, "starttls": True, "to": "a@example"}]}, "alice")
    assert m.alerts.notifier_names() == ["h", "m"]


def test_a_notifier_stored_with_wrong_types_is_skipped_and_the_rest_evaluated(workspace, receiver, caplog) -> None:
    """Notifiers stored before apply checked types: the bad one is skipped with a warning naming it
    and a failed delivery in the alert's history; the other notifiers and rules still work."""
    import logging

    import sqlalchemy as sa

    from shipyard.store.schema import monitoring_notifiers as N

    m = workspace.monitoring
    m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["old", "hook"]},
                             {"name": "requests", "metric": "requests", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["hook"]}],
                   "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url, "retries": 0},
                                 {"name": "old", "type": "webhook", "url": receiver.url}]}, "alice")
    with workspace.store.begin() as conn:  # as an older release stored it, with no type checks
        conn.execute(N.update().where(N.c.name == "old").values(spec={
            "name": "old", "type": "webhook", "url": receiver.url, "retries": "many",
            "headers": {"Authorization": "Bearer tok-123"}}))
    assert list(m.alerts.notifiers()) == ["hook"] and list(m.alerts.load_notifiers()[1]) == ["old"]
    _traffic(workspace, errors=1)
    with caplog.at_level(logging.WARNING, logger="shipyard.monitoring.alerts"):
        events = {e.rule: e for e in m.evaluator().evaluate_once()}
    assert set(events) == {"errors", "requests"}
    old, hook = events["errors"].deliveries
    assert (old.notifier, old.ok, hook.ok) == ("old", False, True)
    assert "notifier 'old' is stored with an invalid setting (retries)" in old.error
    assert [d.ok for d in events["requests"].deliveries] == [True] and len(receiver.received) == 2
    assert any("notifier 'old'" in r.getMessage() for r in caplog.records)
    [entry] = m.alerts.history(rule="errors")
    assert [(d["notifier"], d["ok"]) for d in entry["notifications"]] == [("old", False), ("hook", True)]
    assert "tok-123" not in json.dumps(m.alerts.history(), default=str) + old.error
    with workspace.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(N)).scalar() == 2  # kept, to be re-applied


def _store_rule(ws: Any, name: str, spec: Any) -> None:
    """A rule row as an older release (or a hand edit) left it, bypassing apply's checks."""
    from shipyard.store.database import now_ms
    from shipyard.store.schema import monitoring_alert_rules as RULES

    with ws.store.begin() as conn:
        conn.execute(RULES.delete().where(RULES.c.name == name))
        conn.execute(RULES.insert().values(name=name, spec=spec, enabled=True, created_at=now_ms(),
                                           updated_at=now_ms(), updated_by="old-release"))


BROKEN = {
    "bad-condition": {"name": "bad-condition", "metric": "errors", "scope": {"scene": "credit"},
                      "condition": "above 1", "notify": ["hook"]},
    "gone-metric": {"name": "gone-metric", "metric": "latency_p42_ms", "scope": {"scene": "credit"},
                    "condition": "> 1", "notify": ["hook"]},
    "gone-plugin": {"name": "gone-plugin", "metric": "custom:gone.score", "scope": {"scene": "credit"},
                    "condition": "> 1", "notify": ["hook"]},
    "no-condition": {"name": "no-condition", "metric": "errors", "scope": {"scene": "credit"}},
    "old-keys": {"name": "old-keys", "metric": "errors", "scope": {"scene": "credit"}, "condition": "> 1",
                 "threshold": 3},
    "not-a-mapping": ["errors", "> 1"],
}


def test_a_malformed_stored_rule_is_skipped_named_and_the_rest_evaluated(workspace, receiver, caplog) -> None:
    """The server's evaluator thread skips each stored rule that no longer validates, with a warning
    naming it and the fix, lists it as invalid, and still evaluates and notifies every other rule."""
    import logging

    m = workspace.monitoring
    m.apply_rules({"rules": [{"name": "errors", "metric": "errors", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["hook"]},
                             {"name": "requests", "metric": "requests", "scope": {"scene": "credit"},
                              "condition": ">= 1", "notify": ["hook"]}],
                   "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url, "retries": 0}]}, "alice")
    for name, spec in BROKEN.items():
        _store_rule(workspace, name, spec)
    _traffic(workspace, errors=1)
    usable, invalid = m.alerts.load_rules()
    assert [r.name for r in usable] == ["errors", "requests"] and sorted(invalid) == sorted(BROKEN)
    assert "condition 'above 1' is not understood" in invalid["bad-condition"]
    assert "metric 'latency_p42_ms' is not known" in invalid["gone-metric"]
    assert "plugin 'gone', which is not registered" in invalid["gone-plugin"]
    assert "unknown key(s) ['threshold']" in invalid["old-keys"]
    assert all("applied again" in e and f"shipyard alerts delete {n}" in e for n, e in invalid.items())

    ev = m.evaluator(interval_s=0.05)
    with caplog.at_level(logging.WARNING, logger="shipyard.monitoring.alerts"):
        ev.start()
        deadline = time.time() + 10
        while len(receiver.received) < 2 and time.time() < deadline:
            time.sleep(0.05)
        ev.stop()
    assert ev.last_error is None
    assert sorted(r["rule"] for r in receiver.received) == ["errors", "requests"]
    assert sorted(ev.invalid_rules) == sorted(BROKEN)
    warned = {n for n in BROKEN for r in caplog.records if f"alert rule {n!r}" in r.getMessage()}
    assert warned == set(BROKEN)
    assert {a["rule"] for a in m.alerts.history()} == {"errors", "requests"}
    # kept until fixed or deleted: re-applying it makes it valid, deleting it removes it
    m.apply_rules({"rules": [{**BROKEN["bad-condition"], "condition": "> 100"}]}, "alice")
    m.delete_rule("not-a-mapping", "alice")
    assert set(m.alerts.load_rules()[1]) == set(BROKEN) - {"bad-condition", "not-a-mapping"}


def test_deleting_or_disabling_a_firing_rule_closes_its_alert_and_sends_nothing_more(workspace, receiver) -> None:
    m = workspace.monitoring
    hook = {"name": "hook", "type": "webhook", "url": receiver.url, "retries": 0}
    errors = {"name": "errors", "metric": "errors", "scope": {"scene": "credit"}, "condition": ">= 1",
              "cooldown": "1m", "notify": ["hook"]}
    requests = {**errors, "name": "requests", "metric": "requests"}
    m.apply_rules({"rules": [errors, requests], "notifiers": [hook]}, "alice")
    _traffic(workspace, errors=1)
    now = time.time()
    assert {e.rule: e.status for e in m.evaluator().evaluate_once(now=now)} == {"errors": "firing",
                                                                                "requests": "firing"}
    assert len(receiver.received) == 2
    firing = {a["rule"]: a for a in m.alerts.history(status="firing")}

    assert m.delete_rule("errors", "bob") == [firing["errors"]["id"]]
    m.apply_rules({"rules": [{**requests, "enabled": False}]}, "carol")
    assert m.alerts.history(status="firing") == []
    closed = {a["rule"]: a for a in m.alerts.history(status="closed")}
    assert closed["errors"]["message"].endswith("(closed: rule deleted by bob)")
    assert closed["requests"]["message"].endswith("(closed: rule disabled by carol)")
    assert all(a["resolved_at"] is not None for a in closed.values())
    # the condition still holds and the cool-down is over: nothing reopens, nothing is sent
    later = now + 5 * 60
    _traffic_at(workspace, later, errors=3)
    assert m.evaluator().evaluate_once(now=later) == []
    assert len(receiver.received) == 2 and m.alerts.history(status="firing") == []
    # an evaluation that read the rule just before it was deleted neither reopens nor sends
    m.apply_rules({"rules": [errors]}, "alice")
    [rule] = [r for r in m.alerts.rules() if r.name == "errors"]
    m.delete_rule("errors", "bob")
    assert m.alerts.record(rule, 3.0, True, int(later * 1000), []) == (None, None, False)
    with pytest.raises(NotFound, match="no alert rule named 'errors'"):
        m.delete_rule("errors", "bob")


def test_a_rule_applied_with_another_scope_closes_the_old_scope_alert(workspace, receiver) -> None:
    m = workspace.monitoring
    rule = {"name": "errors", "metric": "errors", "scope": {"scene": "credit"}, "condition": ">= 1"}
    m.apply_rules({"rules": [rule]}, "alice")
    _traffic(workspace, errors=1)
    [event] = m.evaluator().evaluate_once()
    assert event.status == "firing"
    m.apply_rules({"rules": [rule]}, "alice")  # the same rule again: its alert stays open
    assert [a["status"] for a in m.alerts.history()] == ["firing"]
    m.apply_rules({"rules": [{**rule, "scope": {"scene": "other"}}]}, "dan")
    [alert] = m.alerts.history()
    assert alert["status"] == "closed" and alert["message"].endswith("(closed: rule's scope changed by dan)")
