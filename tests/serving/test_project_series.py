"""One server, its own project and a hosted one, each with a scene named ``ab``: the requests of
the hosted project's scene are counted under that project only — its /metrics label, its
per-minute series (in its own store), its scene status — never under the server's own project.

References: the number of requests sent (every one answered 200); the stored series rows read
straight from each project's table; a rollout's checks name what they judged.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import sqlalchemy as sa

from shipyard.serving import apply_scene
from shipyard.serving import flow as F
from shipyard.serving.release import rollout_status
from shipyard.store.schema import monitoring_series as T
from tests.serving.conftest import LiveServer

SCENE = {"name": "ab", "inputs": {"user_id": "string", "x": "double"}, "outputs": ["score"],
         "flow": [F.expr("score", "x * 0.5")], "log": {"sample_rate": 0.0},
         "traffic": {"key": "user_id", "arms": {"b": {"flow": [F.expr("score", "x * 0.5")]}}},
         "limits": {"min_requests": 5, "error_rate": 0.5}}
SENT = 37


def _stored(ws: Any, scene: str) -> int:
    """Requests of ``scene`` in the project's series table, every instance and minute added."""
    with ws.store.read() as conn:
        return int(sum(r.requests for r in conn.execute(sa.select(T).where(T.c.scene == scene))))


def _exposed(text: str, project: str, scene: str) -> float:
    """``shipyard_predictions_total`` of one project's scene answered ok, from the /metrics text."""
    pattern = re.compile(r'^shipyard_predictions_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for labels, v in pattern.findall(text)
               if f'project="{project}"' in labels and f'scene="{scene}"' in labels and 'status="ok"' in labels)


def _status_count(client: httpx.Client, headers: dict[str, str]) -> tuple[str, int]:
    r = client.get("/api/v1/scenes/ab/status", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["source"], sum(int(a["count"]) for a in body["arms"].values())


def test_a_hosted_projects_requests_are_counted_in_that_project_only(sqlite_workspace) -> None:
    from shipyard.server import create_app

    ws = sqlite_workspace
    app = create_app(ws, follow_interval=0, series_flush_interval=0.2)
    app.state.projects.create("credit", "", actor="test")
    hosted = app.state.projects.get("credit")
    for project_ws in (ws, hosted):
        apply_scene(project_ws, SCENE)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        own = dict(server.headers)
        credit = {**server.headers, "X-Shipyard-Project": "credit"}
        answered = [client.post("/v1/scenes/ab/predict", json={"user_id": f"u{i}", "x": 1.0}, headers=credit)
                    for i in range(SENT)]
        assert [r.status_code for r in answered] == [200] * SENT
        assert _status_count(client, credit) == ("fleet", SENT)
        assert _status_count(client, own) == ("fleet", 0)
        metrics = client.get("/metrics", headers=own).text
        assert _exposed(metrics, "credit", "ab") == SENT
        assert _exposed(metrics, "default", "ab") == 0
        deadline = time.monotonic() + 30  # the hosted project's recorder writes every 0.2 s
        while _stored(hosted, "ab") < SENT and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored(hosted, "ab") == SENT
        r = client.get("/api/v1/monitoring/series", params={"scene": "ab", "since": "1h"}, headers=credit)
        assert r.status_code == 200 and r.json()["total"]["requests"] == SENT, r.text
        r = client.get("/api/v1/monitoring/series", params={"scene": "ab", "since": "1h"}, headers=own)
        assert r.status_code == 200 and r.json()["total"]["requests"] == 0, r.text
    # the server shut down: every recorder wrote its last minutes, each into its own project's store
    assert (_stored(hosted, "ab"), _stored(ws, "ab")) == (SENT, 0)
    app.state.projects.close()


def test_a_hosted_rollout_is_judged_on_the_projects_fleet_series(sqlite_workspace) -> None:
    """A rollout started in the hosted project judges the rows in that project's series: another
    server's failing requests written there roll it back; healthy rows of the same scene name in
    the server's own project do not count."""
    from shipyard.monitoring.series import SeriesRow
    from shipyard.server import create_app
    from shipyard.serving.fleet import minute_of

    ws = sqlite_workspace
    app = create_app(ws, follow_interval=0, series_flush_interval=0.2)
    app.state.projects.create("credit", "", actor="test")
    hosted = app.state.projects.get("credit")
    for project_ws in (ws, hosted):
        apply_scene(project_ws, {**SCENE, "limits": {"error_rate": 0.1}})
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        credit = {**server.headers, "X-Shipyard-Project": "credit"}
        r = client.post("/api/v1/scenes/ab/rollout", headers=credit,
                        json={"arm": "b", "steps": [50, 100], "min_requests": 20, "interval_s": 0.3})
        assert r.status_code == 202, r.text
        # the step's baseline is taken: what other servers write from now on is the step's traffic
        now = minute_of(time.time())
        hosted.monitoring.series_store.write([SeriesRow("ab", "1", "b", now, 100, 50, 0, {"40": 100})], "server-b")
        ws.monitoring.series_store.write([SeriesRow("ab", "1", "b", now, 1000, 0, 0, {"40": 1000})], "server-b")
        deadline = time.monotonic() + 60
        while rollout_status(hosted, "ab")["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        r = client.get("/api/v1/scenes/ab/rollout", headers=credit)
        assert r.status_code == 200, r.text
        view = r.json()
    assert (view["status"], view["judged_on"]) == ("rolled_back", "fleet"), view
    [check] = view["checks"]
    assert (check["judged_on"], check["count"], check["errors"]) == ("fleet", 100, 50), check
    app.state.projects.close()


def test_a_rollout_on_a_scene_without_challengers_names_its_real_arms(sqlite_workspace) -> None:
    from shipyard.server import create_app

    ws = sqlite_workspace
    apply_scene(ws, {k: v for k, v in SCENE.items() if k != "traffic"})
    app = create_app(ws, follow_interval=0)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for arm in ("b", "control"):
            r = client.post("/api/v1/scenes/ab/rollout", headers=server.headers, json={"arm": arm, "steps": [50, 100]})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["details"]["field"] == "arm" and "its arms are ['control']" in error["message"], error
            assert "add an arm" in error["message"]
    app.state.projects.close()
