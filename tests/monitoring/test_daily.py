"""Daily model report: numbers against hand computations on the same rows, stored statistics,
trends from stored rows only, plugins (custom, broken, unloadable), empty day, corrupt file,
absent and all-missing columns."""

from __future__ import annotations

import html
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from shipyard.monitoring.logread import scene_dir
from shipyard.risk.metrics import psi as risk_psi
from tests.monitoring.support import frame, write_day

DAY = "2026-01-05"


@pytest.fixture
def mon(workspace):
    m = workspace.monitoring
    ref = frame(5000, 1)
    m.create_baseline("train", ref, "alice", scene="s")
    m.configure("s", "alice", baseline="train", score="pd", decision="decision")
    return workspace, m, ref


def test_report_numbers_match_the_rows(mon, tmp_path: Path) -> None:
    ws, m, ref = mon
    cur = frame(3000, 2, shift=0.3)
    cur.loc[::10, "x3"] = np.nan
    write_day(ws, "s", DAY, cur)
    report = m.daily_report("s", DAY, "alice")
    s = report.data["day_stats"]["summary"]
    assert report.rows == s["rows"] == 3000 and not report.plugin_errors and not report.warnings
    assert s["approval_rate"] == pytest.approx((cur["decision"] == "approve").mean())
    assert s["decisions"] == cur["decision"].value_counts().to_dict()
    assert s["score_psi"] == pytest.approx(risk_psi(ref["pd"], cur["pd"]), abs=1e-12)
    for col in ("x1", "x2", "x3"):
        assert s["columns"][col]["psi"] == pytest.approx(risk_psi(ref[col], cur[col]), abs=1e-12)
    assert s["columns"]["x3"]["missing_rate"] == pytest.approx(0.1)
    assert s["score_mean"] == pytest.approx(cur["pd"].mean(), rel=1e-12)
    assert s["fallbacks"] == 60  # support.write_day marks every 50th request
    # stored once, listed in the history, HTML self-contained and the JSON twin has the same numbers
    stored = m.daily.stored("s", DAY, DAY)
    assert stored[0]["rows"] == 3000 and stored[0]["summary"]["score_psi"] == s["score_psi"]
    assert [r["day"] for r in m.reports("s")] == [DAY]
    html = ws.artifacts.get_bytes(report.html_path).decode()
    twin = json.loads(ws.artifacts.get_bytes(report.json_path))
    assert "<script" not in html and "<link" not in html
    assert twin["day_stats"]["summary"]["approval_rate"] == s["approval_rate"]
    for title in ("Volume", "Decisions", "Score distribution", "PSI of inputs", "Trends (30 days)"):
        assert title in html
    m.daily_report("s", DAY, "alice")
    assert len(m.reports("s")) == 2  # every generation is kept


def test_a_day_of_old_json_files_and_typed_files_reads_as_one(mon) -> None:
    ws, m, ref = mon
    cur = frame(3000, 2, shift=0.3)
    cur.loc[::10, "x3"] = np.nan
    old, new = cur.iloc[:1000].reset_index(drop=True), cur.iloc[1000:].reset_index(drop=True)
    write_day(ws, "s", DAY, old, layout="json", prefix="old")
    write_day(ws, "s", DAY, new, prefix="new")
    report = m.daily_report("s", DAY, "alice")
    s = report.data["day_stats"]["summary"]
    assert report.rows == 3000 and not report.warnings
    assert s["decisions"] == cur["decision"].value_counts().to_dict()
    assert s["score_psi"] == pytest.approx(risk_psi(ref["pd"], cur["pd"]), abs=1e-12)
    for col in ("x1", "x2", "x3"):
        assert s["columns"][col]["psi"] == pytest.approx(risk_psi(ref[col], cur[col]), abs=1e-12)
    assert s["columns"]["x3"]["missing_rate"] == pytest.approx(0.1)
    assert s["score_mean"] == pytest.approx(cur["pd"].mean(), rel=1e-12)


def test_empty_day_says_so(mon) -> None:
    _, m, _ = mon
    report = m.daily_report("s", "2026-02-01", "alice")
    assert report.rows == 0 and not report.plugin_errors
    assert "No traffic on 2026-02-01" in report.html


def test_corrupt_file_is_skipped_with_a_warning_naming_it(mon) -> None:
    ws, m, _ = mon
    write_day(ws, "s", DAY, frame(500, 3))
    bad = f"{scene_dir('s')}/date={DAY}/part-0-broken.parquet"
    ws.artifacts.put_bytes(bad, b"PAR1 this is not parquet")
    report = m.daily_report("s", DAY, "alice")
    assert report.rows == 500
    assert len(report.warnings) == 1 and bad in report.warnings[0]
    assert bad in report.html


def test_absent_and_all_missing_columns(workspace) -> None:
    m = workspace.monitoring
    ref = frame(2000, 1).assign(x4=np.arange(2000.0))
    m.create_baseline("b4", ref, "alice")
    m.configure("s4", "alice", baseline="b4", score="pd", decision="decision")
    cur = frame(400, 2)
    cur["x3"] = np.nan
    write_day(workspace, "s4", DAY, cur.assign(x4=0.0), drop=("x4",))  # x4 never logged
    s = m.daily_report("s4", DAY, "alice").data["day_stats"]["summary"]
    assert s["columns"]["x4"]["missing_rate"] == 1.0
    assert s["columns"]["x3"]["missing_rate"] == 1.0
    assert s["columns"]["x3"]["psi"] == pytest.approx(risk_psi(ref["x3"], cur["x3"]), abs=1e-12)


PLUGIN = """
import pandas as pd

TITLE = "High scores"

def calculate_metrics(history_stats, day_log, bins):
    score = day_log["pd"]
    share = float((score > 0.5).mean())
    display_df = pd.DataFrame({"threshold": [0.5], "share_above": [share], "history_days": [len(history_stats)],
                               "bins_columns": [bins["column"].nunique()]})
    return display_df, {"share_above": share, "history_days": len(history_stats)}

def display_metrics(display_df):
    return [display_df, "Share of scores above 0.5"]
"""

BROKEN = """
def calculate_metrics(history_stats, day_log, bins):
    raise ValueError("the plugin has a bug")

def display_metrics(display_df):
    return display_df
"""


def test_custom_broken_and_unloadable_plugins(mon, tmp_path: Path) -> None:
    ws, m, ref = mon
    (tmp_path / "high.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "broken.py").write_text(textwrap.dedent(BROKEN))
    m.configure("s", "alice", plugins=[str(tmp_path / "high.py"), str(tmp_path / "broken.py"),
                                       {"name": "ghost", "path": str(tmp_path / "missing.py")}])
    days = ["2026-01-03", "2026-01-04", DAY]
    data = {d: frame(300, i + 10, shift=0.2 * i) for i, d in enumerate(days)}
    for d in days:
        write_day(ws, "s", d, data[d])
    reports = {d: m.daily_report("s", d, "alice") for d in days}
    last = reports[DAY]
    assert set(last.plugin_errors) == {"broken", "ghost"}
    assert "ValueError: the plugin has a bug" in last.plugin_errors["broken"]
    assert "the plugin has a bug" in last.html and "High scores" in last.html
    stats = last.data["day_stats"]["plugins"]["high"]
    assert stats["share_above"] == pytest.approx((data[DAY]["pd"] > 0.5).mean())
    assert stats["history_days"] == 2  # the two earlier stored days, read from the statistics table
    assert last.data["day_stats"]["plugins"]["volume"]["rows"] == 300  # built-ins unaffected


def test_trend_reads_stored_rows_not_logs(mon) -> None:
    ws, m, _ = mon
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    sizes = [100, 200, 300]
    for d, n in zip(days, sizes, strict=True):
        write_day(ws, "s", d, frame(n, n))
        m.daily_report("s", d, "alice", save=False)
    for path in ws.artifacts.list(scene_dir("s")):
        ws.artifacts.delete(path)
    trend = m.trend("s", days=30, until="2026-01-03")
    assert trend["day"].tolist() == days and trend["rows"].tolist() == sizes
    assert trend["volume.rows"].tolist() == sizes


def test_plugin_registered_by_entry_point(mon, tmp_path: Path, monkeypatch) -> None:
    """A package's entry point in group shipyard.monitoring_plugins is found by name."""
    ws, m, _ = mon
    (tmp_path / "sy_volume_twice.py").write_text(
        "def calculate_metrics(history_stats, day_log, bins):\n"
        "    return None, {'twice': 2 * len(day_log)}\n"
        "def display_metrics(display_df):\n    return {'ok': 1}\n")
    dist = tmp_path / "sy_volume_twice-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sy-volume-twice\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[shipyard.monitoring_plugins]\ntwice = sy_volume_twice\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m.configure("s", "alice", plugins=["twice"])
    write_day(ws, "s", DAY, frame(50, 1))
    report = m.daily_report("s", DAY, "alice")
    assert report.data["day_stats"]["plugins"]["twice"] == {"twice": 100}
    assert "twice" in m.known_plugins("s")


def test_many_files_in_batches_and_a_file_damaged_inside(mon) -> None:
    """Files are read in batches; a file whose footer is intact but whose data is not fails its
    batch, which is then read file by file: only that file is skipped, and named."""
    ws, m, _ = mon
    parts = [frame(40, i) for i in range(12)]
    for i, part in enumerate(parts):
        write_day(ws, "s", DAY, part, prefix=f"p{i}-")
    files = sorted(ws.artifacts.list(f"{scene_dir('s')}/date={DAY}"))
    assert len(files) == 12
    victim = files[5]
    data = bytearray(ws.artifacts.get_bytes(victim))
    middle = len(data) // 2
    data[middle - 200:middle + 200] = b"\xff" * 400  # the footer at the end stays valid
    ws.artifacts.put_bytes(victim, bytes(data))
    report = m.daily_report("s", DAY, "alice")
    assert len(report.warnings) == 1 and victim in report.warnings[0]
    assert report.rows == 11 * 40
    assert report.data["day_stats"]["summary"]["files"] == 11


def test_baseline_from_a_model_versions_training_data(workspace, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from shipyard.errors import InvalidInput
    from shipyard.models import save_model

    train = frame(800, 3)
    workspace.artifacts.put_bytes("datasets/credit/train.parquet", train.to_parquet())
    X = train[["x1", "x3"]]
    folder = save_model(LogisticRegression().fit(X, (train["pd"] > 0.3).astype(int)), tmp_path / "m",
                        input_example=X.head(3))
    workspace.registry.register(folder, "credit", lineage={"dataset_version": "datasets/credit/train.parquet"},
                                await_validation=True)
    m = workspace.monitoring
    base = m.baseline_from_model("credit-v1", "credit", "1", "alice", columns=["x1", "x2"])
    assert base.rows == 800 and list(base.columns) == ["x1", "x2"]
    assert base.source["dataset_version"] == "datasets/credit/train.parquet"
    cur = frame(500, 4, shift=0.4)
    from shipyard.monitoring import drift

    assert drift(m.baseline("credit-v1"), cur).column("x1").psi == pytest.approx(risk_psi(train["x1"], cur["x1"]))
    workspace.registry.register(folder, "plain", await_validation=True)
    with pytest.raises(InvalidInput, match="records no training data") as err:
        m.baseline_from_model("b", "plain", "1", "alice")
    assert err.value.details["field"] == "lineage.dataset_version"


def test_baseline_from_a_model_registered_with_a_dataset_version(workspace, tmp_path: Path) -> None:
    """The register_model pipeline component records lineage as "dataset@version" (docs/data.md)."""
    from sklearn.linear_model import LogisticRegression

    from shipyard.errors import InvalidInput
    from shipyard.models import save_model

    train = frame(600, 5)
    (tmp_path / "files").mkdir()
    train.to_csv(tmp_path / "files" / "train.csv", index=False)
    workspace.data.add_source("files", "file", {"root": str(tmp_path / "files")}, actor="alice")
    workspace.data.create_dataset("credit_train", "files", {"path": "train.csv", "profile": False}, actor="alice")
    workspace.data.refresh("credit_train", actor="alice")
    X = train[["x1", "x3"]]
    folder = save_model(LogisticRegression().fit(X, (train["pd"] > 0.3).astype(int)), tmp_path / "m",
                        input_example=X.head(3))
    workspace.registry.register(folder, "credit", lineage={"dataset_version": "credit_train@1"}, await_validation=True)
    m = workspace.monitoring
    base = m.baseline_from_model("credit-v1", "credit", "1", "alice", columns=["x1", "x2"])
    assert base.rows == 600 and base.source["dataset_version"] == "credit_train@1"
    cur = frame(500, 6, shift=0.4)
    from shipyard.monitoring import drift

    assert drift(m.baseline("credit-v1"), cur).column("x1").psi == pytest.approx(risk_psi(train["x1"], cur["x1"]))
    workspace.registry.register(folder, "two", lineage={"dataset_version": "credit_train@1,other@2"},
                                await_validation=True)
    with pytest.raises(InvalidInput, match="credit_train@1, other@2") as err:
        m.baseline_from_model("b", "two", "1", "alice")
    assert err.value.details["field"] == "lineage.dataset_version"


def test_a_broken_plugins_traceback_names_no_server_path(mon, tmp_path: Path) -> None:
    """The report is served over HTTP (GET /monitoring/reports/{id}/html), where answers carry no
    server paths: the traceback keeps file names and lines only."""
    ws, m, ref = mon
    (ws.settings.project_dir / "plugins").mkdir(parents=True, exist_ok=True)
    (ws.settings.project_dir / "plugins" / "broken.py").write_text(textwrap.dedent(BROKEN))
    m.configure("s", "alice", plugins=[str(ws.settings.project_dir / "plugins" / "broken.py")])
    write_day(ws, "s", DAY, frame(300, 3))
    report = m.daily_report("s", DAY, "alice")
    page = html.unescape(report.html)
    assert "the plugin has a bug" in page and 'File "broken.py", line' in page
    for root in (str(tmp_path), str(Path(__file__).resolve().parents[2]), sys.prefix):
        assert root not in page


def test_a_scene_that_does_not_exist_is_refused_and_nothing_is_stored(workspace) -> None:
    from shipyard.errors import NotFound

    m = workspace.monitoring
    with pytest.raises(NotFound) as err:
        m.daily_report("nope", "2026-12-01", "alice")
    assert "'nope'" in err.value.message and "shipyard scenes list" in err.value.message
    assert err.value.details["field"] == "scene"
    assert m.reports("nope") == [] and m.daily.stored("nope", "2026-01-01", "2026-12-31") == []
    # a scene known only by its logged traffic, or only by its monitoring settings, still gets its report
    write_day(workspace, "logged", DAY, frame(20, 1))
    assert m.daily_report("logged", DAY, "alice").rows == 20
    m.configure("configured", "alice", score="pd")
    assert m.daily_report("configured", DAY, "alice").rows == 0
