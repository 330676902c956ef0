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
