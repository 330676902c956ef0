"""REST routes: each is the same call as Python and CLI; permissions per role; no server paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipyard.auth.principal import SERVER
from shipyard.config import load_settings
from shipyard.risk.metrics import psi
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import auth_headers
from tests.monitoring.support import frame, write_day

DAY = "2026-01-05"
API = "/api/v1/monitoring"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Workspace, TestClient]]:
    settings = load_settings(tmp_path / "project", artifact_root=str(tmp_path / "artifacts"))
    ws = Workspace(settings, principal=SERVER)
    with TestClient(create_app(ws, follow_interval=0), headers=auth_headers(ws, "ann", "modeler")) as http:
        yield ws, http
    ws.close()


def test_routes_end_to_end(server, tmp_path: Path) -> None:
    ws, http = server
    ref, cur = frame(1500, 1), frame(600, 2, shift=0.5)
    r = http.post(f"{API}/drift", json={"reference": ref.to_dict(orient="records"),
                                        "current": cur.to_dict(orient="records"), "columns": ["x1", "x2"]})
    assert r.status_code == 200, r.text
    assert r.json()["columns"][0]["psi"] == pytest.approx(psi(ref["x1"], cur["x1"]), abs=1e-12)
    r = http.post(f"{API}/baselines", json={"name": "train", "scene": "s", "rows": ref.to_dict(orient="records")})
    assert r.status_code == 201 and r.json()["rows"] == 1500
    r = http.put(f"{API}/scenes/s", json={"baseline": "train", "score": "pd", "decision": "decision"})
    assert r.status_code == 200 and r.json()["baseline"] == "train"
    ids = write_day(ws, "s", DAY, cur)
    r = http.post(f"{API}/reports/daily", json={"scene": "s", "date": DAY})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rows"] == 600 and body["report"]["day_stats"]["summary"]["score_psi"] == pytest.approx(
        psi(ref["pd"], cur["pd"]), abs=1e-12)
    listed = http.get(f"{API}/reports", params={"scene": "s"}).json()
    assert [x["day"] for x in listed] == [DAY] and not listed[0]["html_path"].startswith("/")
    html = http.get(f"{API}/reports/{listed[0]['id']}/html")
    assert html.status_code == 200 and "Daily report" in html.text
    assert http.get(f"{API}/reports/999/html").status_code == 404
    r = http.post(f"{API}/reports/daily", json={"scene": "nope", "date": "2026-12-01"})
    assert r.status_code == 404 and "scene 'nope' does not exist" in r.json()["error"]["message"]
    assert http.get(f"{API}/reports", params={"scene": "nope"}).json() == []
    assert http.get(f"{API}/trend", params={"scene": "s", "until": DAY}).json()[0]["rows"] == 600
    r = http.post(f"{API}/labels", json={"scene": "s", "labels": [{"request_id": i, "bad": n % 2}
                                                                 for n, i in enumerate(ids[:50])] +
                                         [{"request_id": "ghost", "bad": 1}]})
    assert r.status_code == 201 and (r.json()["matched"], r.json()["unmatched"]) == (50, 1)
    assert http.get(f"{API}/labels/metrics", params={"scene": "s"}).json()["matched"] == 50
    bad = http.post(f"{API}/alerts/rules", json={"document": "rules:\n  - {name: x, metric: nope, scope: {scene: s}, "
                                                            "condition: '> 1'}\n"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "rules.metric"
    ok = http.post(f"{API}/alerts/rules", json={"document": {"rules": [
        {"name": "vol", "metric": "volume", "scope": {"scene": "s"}, "condition": "> 10", "window": "1d"}]}})
    assert ok.status_code == 201 and ok.json()["rules"] == ["vol"]
    assert [x["name"] for x in http.get(f"{API}/alerts/rules").json()["rules"]] == ["vol"]
    assert http.post(f"{API}/alerts/silences", json={"rule": "vol", "duration": "1h"}).status_code == 201
    assert len(http.get(f"{API}/alerts/silences").json()) == 1
    assert http.post(f"{API}/alerts/evaluate").status_code == 200
    assert http.get(f"{API}/alerts/history").status_code == 200
    assert http.delete(f"{API}/alerts/rules/vol").status_code == 200
    assert http.get(f"{API}/series", params={"scene": "s", "since": "1h"}).status_code == 200


def test_a_log_window_that_is_not_a_date_is_refused_naming_the_field(server) -> None:
    ws, http = server
    write_day(ws, "s", DAY, frame(50, 1))
    for start, end, field in (("2026-99-01", DAY, "start"), (DAY, "2026-01-32", "end"), ("2026-01-09", DAY, "start")):
        r = http.post(f"{API}/baselines", json={"name": "w", "scene": "s", "start": start, "end": end})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, r.text
    r = http.post(f"{API}/baselines", json={"name": "w", "scene": "s", "start": "2026-99-01", "end": DAY})
    assert r.json()["error"]["message"] == "start '2026-99-01' is not a date; use YYYY-MM-DD"
    # a scene without any logged day: still a date error, not "no traffic"
    r = http.post(f"{API}/baselines", json={"name": "w", "scene": "quiet", "start": "2026-99-01", "end": DAY})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "start" and "not a date" in r.text
    assert http.get(f"{API}/baselines").json() == []


def test_roles_and_code_upload(server, tmp_path: Path) -> None:
    ws, http = server
    viewer = auth_headers(ws, "vic", "viewer")
    assert http.get(f"{API}/scenes/s", headers=viewer).status_code == 200
    r = http.put(f"{API}/scenes/s", json={"score": "pd"}, headers=viewer)
    assert r.status_code == 403
    assert ws.monitoring.settings("s").score is None
    # naming a plugin file is code the server would run: writing monitoring alone is not enough
    plugin = "def calculate_metrics(h, d, b):\n    return None, {}\ndef display_metrics(x):\n    return None\n"
    (tmp_path / "p.py").write_text(plugin)
    (ws.settings.project_dir / "p.py").write_text(plugin)
    operator = auth_headers(ws, "otto", "operator")
    r = http.put(f"{API}/scenes/s", json={"plugins": [{"name": "p", "path": "p.py"}]}, headers=operator)
    assert r.status_code == 403 and ws.monitoring.settings("s").plugins == []
    # a modeler may, but only a file of the project's own folder (never elsewhere on the server)
    r = http.put(f"{API}/scenes/s", json={"plugins": [{"name": "p", "path": str(tmp_path / "p.py")}]})
    assert r.status_code == 403 and "outside the project" in r.json()["error"]["message"]
    assert ws.monitoring.settings("s").plugins == []
    r = http.put(f"{API}/scenes/s", json={"plugins": [{"name": "p", "path": "p.py"}]})
    assert r.status_code == 200 and r.json()["plugins"] == [{"name": "p", "path": "p.py"}]  # no server path


def test_notifiers_naming_secrets_or_server_variables_need_the_permission_to_read_them(server) -> None:
    """A notifier sends what it names to a host of the caller's choosing: naming a stored secret is
    reading it, and naming a variable of the server's environment reads the server's own settings."""
    ws, http = server
    operator, modeler, admin = (auth_headers(ws, n, r) for n, r in (("otto", "operator"), ("mo", "modeler"),
                                                                     ("ada", "admin")))
    rule = {"name": "r", "metric": "requests", "scope": {"scene": "s"}, "condition": ">= 0", "window": "5m"}
    smtp = {"name": "mail", "type": "smtp", "host": "mail.example", "to": ["x@example"], "username": "u",
            "password_secret": "warehouse_pw"}
    hook = {"name": "hook", "type": "webhook", "url": "https://hooks.example/x",
            "header_env": {"Authorization": "SHIPYARD_SECRET_KEY"}}
    smtp_env = {"name": "mail2", "type": "smtp", "host": "mail.example", "to": ["x@example"],
                "password_env": "SHIPYARD_METADATA_URL"}
    plain = {"name": "plain", "type": "webhook", "url": "https://hooks.example/y"}

    def apply(notifier: dict, headers: dict) -> int:
        document = {"rules": [dict(rule, notify=[notifier["name"]])], "notifiers": [notifier]}
        return http.post(f"{API}/alerts/rules", json={"document": document}, headers=headers).status_code

    assert apply(plain, operator) == 201
    for notifier in (smtp, hook, smtp_env):
        assert apply(notifier, operator) == 403, notifier["name"]
    assert apply(smtp, modeler) == 201          # a modeler may use the project's secrets (as in data sources)
    assert apply(hook, modeler) == 403 and apply(smtp_env, modeler) == 403
    assert apply(hook, admin) == 201 and apply(smtp_env, admin) == 201
    names = {n.name for n in ws.monitoring.alerts.notifiers().values()}
    assert names == {"plain", "mail", "hook", "mail2"}
    # rules naming notifiers already stored stay open to any monitoring writer
    document = {"rules": [dict(rule, name="r2", notify=["hook", "mail"])]}
    assert http.post(f"{API}/alerts/rules", json={"document": document}, headers=operator).status_code == 201
    yaml_text = "notifiers:\n  - {name: h3, type: webhook, url: 'https://a.example', header_env: {X: HOME}}\n"
    assert http.post(f"{API}/alerts/rules", json={"document": yaml_text}, headers=operator).status_code == 403


def test_a_running_server_evaluates_the_alert_rules_on_its_own(tmp_path: Path) -> None:
    """`shipyard server` (background=True) evaluates every project's rules on an interval; a test app
    (background off) does not."""
    import time

    settings = load_settings(tmp_path / "project", artifact_root=str(tmp_path / "artifacts"))
    ws = Workspace(settings, principal=SERVER)
    try:
        recorder = ws.monitoring.recorder(flush_interval=3600)
        recorder.observe("s", "1", "control", 0.01, 0.001, 0.005)
        recorder.flush()
        ws.monitoring.apply_rules({"rules": [{"name": "traffic", "metric": "requests", "scope": {"scene": "s"},
                                              "condition": ">= 1", "window": "1h"}]}, "alice")
        with TestClient(create_app(ws, follow_interval=0)):
            time.sleep(1.0)
        assert ws.monitoring.alerts.history() == []
        with TestClient(create_app(ws, follow_interval=0, background=True, alert_interval_s=0.2)):
            deadline = time.monotonic() + 30
            while not ws.monitoring.alerts.history(status="firing"):
                assert time.monotonic() < deadline, "the server never evaluated the rules"
                time.sleep(0.2)
        assert [a["rule"] for a in ws.monitoring.alerts.history()] == ["traffic"]
    finally:
        ws.close()


def test_the_server_skips_a_malformed_rule_and_deleting_a_firing_rule_closes_its_alert(tmp_path: Path) -> None:
    """Through a running server: its own evaluator skips a stored rule that no longer parses and
    evaluates the other; the API lists the broken one as invalid; deleting the firing rule over the
    API closes its alert for good, and the audit record names who deleted it and what was closed."""
    import time

    from shipyard.store.database import now_ms
    from shipyard.store.schema import monitoring_alert_rules as RULES

    settings = load_settings(tmp_path / "project", artifact_root=str(tmp_path / "artifacts"))
    ws = Workspace(settings, principal=SERVER)
    try:
        recorder = ws.monitoring.recorder(flush_interval=3600)
        recorder.observe("s", "1", "control", 0.01, 0.001, 0.005)
        recorder.flush()
        ws.monitoring.apply_rules({"rules": [{"name": "traffic", "metric": "requests", "scope": {"scene": "s"},
                                              "condition": ">= 1", "window": "1h"}]}, "alice")
        with ws.store.begin() as conn:  # as an older release stored it
            conn.execute(RULES.insert().values(name="legacy", spec={"name": "legacy", "metric": "requests",
                                                                    "scope": {"scene": "s"}, "condition": "at least 1"},
                                               enabled=True, created_at=now_ms(), updated_at=now_ms(),
                                               updated_by="old"))
        app = create_app(ws, follow_interval=0, background=True, alert_interval_s=0.2)
        with TestClient(app, headers=auth_headers(ws, "ann", "modeler")) as http:
            deadline = time.monotonic() + 30
            while not ws.monitoring.alerts.history(status="firing"):
                assert time.monotonic() < deadline, "the server never evaluated the valid rule"
                time.sleep(0.2)
            listed = http.get(f"{API}/alerts/rules").json()
            assert [r["name"] for r in listed["rules"]] == ["traffic"]
            [invalid] = listed["invalid_rules"]
            assert invalid["name"] == "legacy" and "condition 'at least 1' is not understood" in invalid["error"]
            [alert] = ws.monitoring.alerts.history(status="firing")
            assert http.delete(f"{API}/alerts/rules/traffic", headers=auth_headers(ws, "otto", "viewer")
                               ).status_code == 403
            r = http.delete(f"{API}/alerts/rules/traffic")
            assert r.status_code == 200 and r.json() == {"deleted": "traffic", "closed_alerts": [alert["id"]]}
            time.sleep(1.0)  # several rounds of the server's evaluator
            assert ws.monitoring.alerts.history(status="firing") == []
            [closed] = ws.monitoring.alerts.history(rule="traffic")
            assert closed["status"] == "closed" and closed["message"].endswith("(closed: rule deleted by ann)")
            records = http.get("/api/v1/audit", params={"limit": 50},
                               headers=auth_headers(ws)).json()
            [record] = [x for x in records if x["route"] == "DELETE /api/v1/monitoring/alerts/rules/{name}"
                        and x["outcome"] == "ok"]
            assert record["actor"] == "ann" and record["subject"] == "/monitoring/alerts/rules/traffic"
            assert record["details"]["after"] == {"closed_alerts": [alert["id"]]}
            assert record["details"]["before"] == {"rule": "traffic"}
    finally:
        ws.close()


def test_a_rule_name_that_cannot_travel_in_a_url_is_refused_with_the_pattern(server) -> None:
    _ws, http = server
    for name in ("x/../y", "a b", "..", "-x", "x..y"):
        r = http.post(f"{API}/alerts/rules", json={"document": {"rules": [
            {"name": name, "metric": "requests", "scope": {"scene": "s"}, "condition": "> 1"}]}})
        assert r.status_code == 400, (name, r.text)
        error = r.json()["error"]
        assert error["details"]["field"] == "rules.name" and "pattern" in error["message"], error
    r = http.post(f"{API}/alerts/rules", json={"document": {"rules": [
        {"name": "score.psi_v2-1", "metric": "requests", "scope": {"scene": "s"}, "condition": "> 1"}]}})
    assert r.status_code == 201, r.text
    assert http.delete(f"{API}/alerts/rules/score.psi_v2-1").status_code == 200
    assert http.get(f"{API}/alerts/rules").json()["rules"] == []


def test_a_duration_beyond_366_days_is_refused_naming_the_field(server) -> None:
    _ws, http = server
    rule = {"name": "r", "metric": "requests", "scope": {"scene": "s"}, "condition": "> 1"}
    for field, value in (("window", "99999999999999999999d"), ("cooldown", "367d"), ("window", "9" * 400 + "s")):
        r = http.post(f"{API}/alerts/rules", json={"document": {"rules": [{**rule, field: value}]}})
        assert r.status_code == 400, (field, r.text)
        error = r.json()["error"]
        assert error["details"]["field"] == field and "366d" in error["message"], error
    assert http.post(f"{API}/alerts/rules", json={"document": {"rules": [{**rule, "window": "366d"}]}}
                     ).status_code == 201
    r = http.post(f"{API}/alerts/silences", json={"rule": "r", "duration": "400d"})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "duration", r.text
    assert http.get(f"{API}/alerts/silences").json() == []
    assert http.post(f"{API}/alerts/evaluate").status_code == 200


def test_a_stored_rule_that_is_not_json_is_listed_as_invalid(server) -> None:
    """A rule row edited by hand into text that is not JSON: listed under invalid_rules, the other
    rules still listed and evaluated, and it can be deleted."""
    ws, http = server
    ws.monitoring.apply_rules({"rules": [{"name": "good", "metric": "requests", "scope": {"scene": "s"},
                                          "condition": ">= 1"}]}, "alice")
    with ws.store.begin() as conn:
        conn.exec_driver_sql("INSERT INTO monitoring_alert_rules (name, spec, enabled, created_at, updated_at, "
                             "updated_by) VALUES ('hand', '{not json', 1, 0, 0, 'dba')")
    listed = http.get(f"{API}/alerts/rules")
    assert listed.status_code == 200, listed.text
    assert [r["name"] for r in listed.json()["rules"]] == ["good"]
    [invalid] = listed.json()["invalid_rules"]
    assert invalid["name"] == "hand" and "not valid JSON" in invalid["error"]
    assert http.post(f"{API}/alerts/evaluate").status_code == 200
    assert http.delete(f"{API}/alerts/rules/hand").status_code == 200
    assert http.get(f"{API}/alerts/rules").json()["invalid_rules"] == []


def test_a_body_field_the_route_does_not_take_is_refused_naming_the_known_ones(server) -> None:
    ws, http = server
    ws.monitoring.apply_rules({"rules": [{"name": "score-psi", "metric": "requests", "scope": {"scene": "s"},
                                          "condition": "> 1"}]}, "alice")
    r = http.post(f"{API}/alerts/silences", json={"rule": "score-psi", "for": "forever"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["details"]["problems"][0]["field"] == "for" and "duration" in error["message"], error
    assert http.get(f"{API}/alerts/silences").json() == []


def test_a_plugin_path_that_is_neither_a_file_nor_a_module_is_refused_when_saved(server) -> None:
    ws, http = server
    admin = auth_headers(ws, "root", "admin")
    for path in ("../../../../etc/passwd", "a/b", "x..y", "-m"):
        r = http.put(f"{API}/scenes/credit_apply", json={"plugins": [{"name": "p", "path": path}]}, headers=admin)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["details"]["field"] == "plugins.path"
    assert ws.monitoring.settings("credit_apply").plugins == []
