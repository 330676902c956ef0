"""Label feedback: matching by request id and by (entity, time), unknown ids counted, AUC/KS/bad
rate/approval rate per version and day against sklearn/scipy on the matched rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from shipyard.errors import InvalidInput
from tests.monitoring.support import day_ms, frame, write_day


@pytest.fixture
def served(workspace):
    m = workspace.monitoring
    m.configure("s", "alice", score="pd", decision="decision", entity="id")
    data = {}
    for version, day in ((1, "2026-01-05"), (2, "2026-01-06")):
        d = frame(400, version)
        write_day(workspace, "s", day, d, version=version, prefix=f"v{version}-")
        data[(version, day)] = d
    return workspace, m, data


def test_labels_by_request_id_for_some_requests(served) -> None:
    _, m, data = served
    rng = np.random.default_rng(0)
    rows = []
    truth = {}
    for (version, day), d in data.items():
        chosen = rng.choice(len(d), 250, replace=False)  # labels for only some requests
        for i in chosen:
            bad = int(rng.random() < d["pd"].iloc[i])
            rows.append({"request_id": f"v{version}-{i}", "bad": bad})
            truth.setdefault((version, day), []).append((d["pd"].iloc[i], bad, d["decision"].iloc[i]))
    rows += [{"request_id": f"nobody-{i}", "bad": 1} for i in range(7)]
    result = m.ingest_labels("s", pd.DataFrame(rows))
    assert (result.labels, result.matched, result.unmatched) == (507, 500, 7)
    assert result.unmatched_sample[:2] == ["nobody-0", "nobody-1"]
    metrics = m.label_metrics("s")
    assert metrics.matched == 500 and metrics.unmatched == 7
    by_day = metrics.by_day.set_index(["version", "day"])
    for key, items in truth.items():
        score = np.array([t[0] for t in items])
        y = np.array([t[1] for t in items])
        row = by_day.loc[key]
        assert row["labelled"] == 250
        assert row["bad_rate"] == pytest.approx(y.mean())
        assert row["auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert row["ks"] == pytest.approx(st.ks_2samp(score[y == 1], score[y == 0]).statistic, abs=1e-12)
        assert row["approval_rate"] == pytest.approx(np.mean([t[2] == "approve" for t in items]))
    # the daily report shows them and IV appears once labels exist
    report = m.daily_report("s", "2026-01-05", "alice")
    assert "Performance (labels)" in report.html
    assert report.data["day_stats"]["plugins"]["iv"]["labelled"] == 250


def test_labels_by_entity_and_time(served) -> None:
    _, m, data = served
    # entity id=3 was served on both days; a label timed on day 2 matches the day-2 prediction
    labels = pd.DataFrame({"applicant": ["3", "4", "999"], "outcome": [1, 0, 1],
                           "at": pd.to_datetime([day_ms("2026-01-06", 23.9), day_ms("2026-01-05", 23.9),
                                                 day_ms("2026-01-06", 23.9)], unit="ms", utc=True)})
    result = m.ingest_labels("s", labels, entity_column="applicant", time_column="at", label_column="outcome")
    assert (result.matched, result.unmatched) == (2, 1)
    got = m.label_metrics("s").by_day.set_index(["version", "day"])["labelled"].to_dict()
    assert got == {(1, "2026-01-05"): 1, (2, "2026-01-06"): 1}


def test_bad_label_input_changes_nothing(served) -> None:
    _, m, _ = served
    with pytest.raises(InvalidInput, match="label column 'bad' is not in the labels") as err:
        m.ingest_labels("s", pd.DataFrame({"request_id": ["v1-1"], "target": [1]}))
    assert err.value.details["field"] == "label_column"
    with pytest.raises(InvalidInput, match="binary"):
        m.ingest_labels("s", pd.DataFrame({"request_id": ["v1-1", "v1-2", "v1-3"], "bad": [0, 1, 7]}))
    assert m.label_metrics("s").matched == 0


def test_labels_from_a_database_table(served, tmp_path) -> None:
    import sqlalchemy as sa

    _, m, _ = served
    url = f"sqlite:///{tmp_path / 'outcomes.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"request_id": ["v1-0", "v1-1", "v2-0", "lost"], "bad": [1, 0, 0, 1]}).to_sql("outcomes", engine)
    engine.dispose()
    result = m.ingest_labels_from_table("s", url, "outcomes")
    assert (result.matched, result.unmatched) == (3, 1)
    with pytest.raises(InvalidInput, match="table 'nope' does not exist"):
        m.ingest_labels_from_table("s", url, "nope")


def test_metrics_window_that_is_not_a_date_is_refused(served) -> None:
    _, m, data = served
    m.ingest_labels("s", pd.DataFrame({"request_id": ["v1-0", "v2-0"], "bad": [1, 0]}))
    assert m.label_metrics("s", since="2026-01-06").matched == 1
    for bad in ({"since": "garbage"}, {"until": "01/06/2026"}, {"since": "2026-02-30"}):
        with pytest.raises(InvalidInput) as err:
            m.label_metrics("s", **bad)
        assert err.value.details["field"] == next(iter(bad))
