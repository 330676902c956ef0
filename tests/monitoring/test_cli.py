"""The CLI shells: drift over files, series, baseline and configure, daily report, reports list,
labels ingest, alerts apply/list/history/silence; errors as one line naming the field."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from shipyard.cli import main
from tests.monitoring.support import frame, write_day

DAY = "2026-01-05"


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_drift_command(tmp_path: Path) -> None:
    ref, cur = frame(2000, 1), frame(1500, 2, shift=1.0)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    code, out = _run(tmp_path / "p", "monitor", "drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"),
                     "--columns", "x1,x2", "--json", str(tmp_path / "d.json"), "-o", str(tmp_path / "d.html"))
    assert code == 0 and "1 of 2 column(s) drifted" in out
    data = json.loads((tmp_path / "d.json").read_text())
    assert [c["column"] for c in data["columns"]] == ["x1", "x2"] and data["columns"][0]["drifted"]
    assert (tmp_path / "d.html").stat().st_size > 1000
    code, out = _run(tmp_path / "p", "monitor", "drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"),
                     "--columns", "nope")
    assert code == 1


def test_report_labels_and_alerts_commands(tmp_path: Path) -> None:
    from shipyard.workspace import connect

    project = tmp_path / "p"
    ws = connect(project)
    ref = frame(3000, 1)
    ref.to_parquet(tmp_path / "train.parquet")
    ids = write_day(ws, "s", DAY, frame(400, 2))
    assert _run(project, "monitor", "baseline", "train", "--scene", "s", "--data", str(tmp_path / "train.parquet"))[0] == 0
    code, out = _run(project, "monitor", "configure", "--scene", "s", "--score", "pd", "--decision", "decision")
    assert code == 0 and json.loads(out)["baseline"] == "train"
    code, out = _run(project, "reports", "daily", "--scene", "s", "--date", DAY, "-o", str(tmp_path / "r.html"),
                     "--json", str(tmp_path / "r.json"))
    assert code == 0 and "400 record(s)" in out
    assert json.loads((tmp_path / "r.json").read_text())["day_stats"]["summary"]["rows"] == 400
    code, out = _run(project, "reports", "list", "--scene", "s")
    assert code == 0 and out.startswith(DAY)
    code, out = _run(project, "reports", "daily", "--scene", "nope", "--date", "2026-12-01")
    assert code == 1 and "scene 'nope' does not exist" in out and "shipyard scenes list" in out
    assert _run(project, "reports", "list", "--scene", "nope") == (0, "")
    labels = pd.DataFrame({"request_id": ids[:100] + ["ghost"], "bad": np.r_[np.arange(100) % 2, 1]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    code, out = _run(project, "labels", "ingest", str(tmp_path / "labels.csv"), "--scene", "s",
                     "--id-column", "request_id", "--label-column", "bad")
    assert code == 0 and "101 label(s): 100 matched, 1 unmatched" in out
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: vol, metric: volume, scope: {scene: s}, condition: '> 10', window: 1d}\n")
    assert _run(project, "alerts", "apply", str(rules))[0] == 0
    rules.write_text("rules:\n  - {name: bad, metric: volumes, scope: {scene: s}, condition: '> 10'}\n")
    code, out = _run(project, "alerts", "apply", str(rules))
    assert code == 1 and "metric 'volumes' is not known" in out
    code, out = _run(project, "alerts", "list")
    assert [r["name"] for r in json.loads(out)["rules"]] == ["vol"]
    code, out = _run(project, "alerts", "silence", "vol", "--for", "2h", "--reason", "test")
    [silence] = ws.monitoring.alerts.silences()
    until = dt.datetime.fromtimestamp(silence["ends_at"] / 1000, dt.UTC).isoformat(timespec="seconds")
    assert code == 0 and out.strip() == f"silence {silence['id']} on vol until {until}", out
    code, out = _run(project, "alerts", "history")
    assert code == 0 and json.loads(out) == []
    ws.close()


def test_drift_and_baseline_over_versioned_datasets(tmp_path: Path) -> None:
    """REFERENCE and CURRENT (and a baseline's --data) may name a dataset, NAME or NAME@VERSION."""
    from shipyard.monitoring import drift
    from shipyard.workspace import connect

    project = tmp_path / "p"
    ws = connect(project)
    ref, cur = frame(2000, 1), frame(1500, 2, shift=1.0)
    (project / "files").mkdir()
    ref.to_csv(project / "files" / "ref.csv", index=False)
    ws.data.add_source("files", "file", {"root": "files"}, actor="admin")
    ws.data.create_dataset("apps", "files", {"path": "data.csv", "profile": False}, actor="admin")
    for frame_ in (ref, cur):
        frame_.to_csv(project / "files" / "data.csv", index=False)
        ws.data.refresh("apps", actor="admin")
    expected = drift(ws.data.read("apps", 1), ws.data.read("apps", 2), columns=["x1", "x2"]).to_dict()
    ws.close()
    code, out = _run(project, "monitor", "drift", "apps@1", "apps", "--columns", "x1,x2", "--json",
                     str(tmp_path / "d.json"))
    assert code == 0, out
    got = json.loads((tmp_path / "d.json").read_text())
    assert [c["psi"] for c in got["columns"]] == [c["psi"] for c in expected["columns"]]
    code, out = _run(project, "monitor", "baseline", "apps-v1", "--data", "apps@1")
    assert code == 0 and "2,000 rows" in out, out
    code, out = _run(project, "monitor", "drift", "nothing@1", "apps")
    assert code != 0 and "nothing@1" in out


def test_configure_adds_removes_or_replaces_plugins(tmp_path: Path) -> None:
    from shipyard.workspace import connect

    project = tmp_path / "p"
    connect(project).close()
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text("def calculate_metrics(h, d, b):\n    return None, {}\n")

    def plugins(*args: str) -> list[str]:
        code, out = _run(project, "monitor", "configure", "--scene", "s", *args)
        assert code == 0, out
        return [p["name"] for p in json.loads(out)["plugins"]]

    assert plugins("--plugin", str(tmp_path / "a.py"), "--plugin", str(tmp_path / "b.py")) == ["a", "b"]
    assert plugins("--add-plugin", str(tmp_path / "c.py")) == ["a", "b", "c"]
    assert plugins("--add-plugin", str(tmp_path / "a.py")) == ["b", "c", "a"]  # same name: not listed twice
    assert plugins("--remove-plugin", "b", "--remove-plugin", str(tmp_path / "c.py")) == ["a"]
    assert plugins("--score", "pd") == ["a"]  # settings not given keep their values
    code, out = _run(project, "monitor", "configure", "--scene", "s", "--remove-plugin", "zzz")
    assert code == 1 and "plugin 'zzz' is not configured for scene 's' (configured: a)" in out
    assert plugins("--plugin", str(tmp_path / "c.py")) == ["c"]  # --plugin replaces the list
    code, out = _run(project, "monitor", "configure", "--help")
    assert "Replaces the scene's whole plugin list" in " ".join(out.split())


def test_alerts_list_names_an_invalid_stored_rule_and_delete_closes_the_open_alerts(tmp_path: Path) -> None:
    from shipyard.monitoring.series import SeriesRecorder
    from shipyard.store.database import now_ms
    from shipyard.store.schema import monitoring_alert_rules as RULES
    from shipyard.workspace import connect

    project = tmp_path / "p"
    ws = connect(project)
    rec = SeriesRecorder(ws.monitoring.series_store, instance="t")
    rec.observe("s", "1", "control", 0.01, 0.002, 0.005)
    rec.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: traffic, metric: requests, scope: {scene: s}, condition: '>= 1'}\n")
    assert _run(project, "alerts", "apply", str(rules))[0] == 0
    with ws.store.begin() as conn:  # as an older release stored it
        conn.execute(RULES.insert().values(name="legacy", spec={"name": "legacy", "metric": "p42", "condition": "> 1"},
                                           enabled=True,
                                           created_at=now_ms(), updated_at=now_ms(), updated_by="old"))
    code, out = _run(project, "alerts", "evaluate")
    assert code == 0 and [e["rule"] for e in json.loads(out)] == ["traffic"]
    code, out = _run(project, "alerts", "list")
    listed = json.loads(out)
    assert [r["name"] for r in listed["rules"]] == ["traffic"]
    assert [r["name"] for r in listed["invalid_rules"]] == ["legacy"]
    assert "metric 'p42' is not known" in listed["invalid_rules"][0]["error"]
    assert _run(project, "alerts", "delete", "traffic") == (0, "deleted rule traffic; closed 1 open alert(s)\n")
    code, out = _run(project, "alerts", "history", "--status", "closed")
    assert code == 0 and [a["rule"] for a in json.loads(out)] == ["traffic"]
    ws.close()
