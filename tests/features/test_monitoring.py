"""Feature monitoring numbers against pandas on the same data, in-process, over HTTP and the CLI."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from shipyard.cli import main
from shipyard.features.monitoring import monitor
from shipyard.server import create_app
from tests.conftest import auth_headers
from tests.features import online_support

embedded_feature_store = online_support.embedded_feature_store
TTL = dt.timedelta(days=2)


@pytest.fixture
def loaded(embedded_feature_store):
    store = embedded_feature_store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rng = np.random.default_rng(11)
    n = 400
    frame = pd.DataFrame({
        "customer_id": rng.integers(0, 60, n),
        "event_timestamp": [now - dt.timedelta(minutes=int(m)) for m in rng.integers(1, 4 * 24 * 60, n)],
        "amount": rng.gamma(2.0, 50.0, n),
        "n": rng.integers(0, 9, n),
        "city": rng.choice(["a", "b", "c"], n),
        "vip": rng.random(n) < 0.3,
        "seen": [now] * n,
    })
    frame.loc[rng.random(n) < 0.1, "amount"] = np.nan
    store.offline_append("cust_stats", frame)
    return store, now, frame


def _expected(frame: pd.DataFrame, now: dt.datetime) -> tuple[pd.DataFrame, int]:
    latest = frame.sort_values("event_timestamp").groupby("customer_id").tail(1)
    live = latest[latest.event_timestamp >= now - TTL]
    return live, len(latest) - len(live)


def _check_features(report_view: dict, live: pd.DataFrame) -> None:
    stats = report_view["online"]["features"]
    amount = live.amount.dropna()
    assert stats["amount"]["missing"] == int(live.amount.isna().sum())
    assert stats["amount"]["missing_rate"] == pytest.approx(live.amount.isna().mean())
    assert stats["amount"]["mean"] == pytest.approx(amount.mean())
    assert stats["amount"]["std"] == pytest.approx(amount.std())
    assert stats["amount"]["min"] == pytest.approx(amount.min())
    assert stats["amount"]["max"] == pytest.approx(amount.max())
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert stats["amount"]["quantiles"][f"p{int(q * 100):02d}"] == pytest.approx(amount.quantile(q))
    assert stats["n"]["mean"] == pytest.approx(live.n.mean())
    assert stats["vip"]["mean"] == pytest.approx(live.vip.mean())
    top = {t["value"]: t["count"] for t in stats["city"]["top"]}
    assert top == live.city.value_counts().to_dict()


def test_monitor_matches_pandas(loaded) -> None:
    store, now, frame = loaded
    (result,) = store.materialize(now - dt.timedelta(days=5), now + dt.timedelta(seconds=1), ["cust_stats"])
    report = monitor(store, ["cust_stats"], now=now)
    (view,) = report["views"]
    live, expired = _expected(frame, now)
    latest_ts = frame.event_timestamp.max()
    assert view["online"]["entities"] == frame.customer_id.nunique() == result.rows_written
    assert view["online"]["freshness_seconds"] == pytest.approx((now - latest_ts).total_seconds())
    assert view["online"]["expired"] == expired
    assert view["materialization"]["runs"] == 1
    assert view["materialization"]["rows_written_total"] == result.rows_written
    assert view["materialization"]["last_run"]["rows_read"] == len(frame)
    _check_features(view, live)


def test_monitor_over_http_and_cli(loaded) -> None:
    store, now, frame = loaded
    project = str(store.ws.settings.project_dir)
    runner = CliRunner()
    out = runner.invoke(main, ["--project", project, "features", "materialize",
                               (now - dt.timedelta(days=5)).isoformat(), (now + dt.timedelta(seconds=1)).isoformat()])
    assert out.exit_code == 0, out.output
    line = [ln for ln in out.output.splitlines() if ln.startswith("cust_stats") and " .. " in ln][-1]
    assert f"{len(frame):,}" in line and f"{frame.customer_id.nunique():,}" in line
    live, expired = _expected(frame, dt.datetime.now(dt.UTC))
    with TestClient(create_app(store.ws), headers=auth_headers(store.ws)) as http:
        body = http.get("/api/v1/features/monitor", params={"views": "cust_stats"}).json()
    (view,) = body["views"]
    assert view["online"]["entities"] == frame.customer_id.nunique()
    _check_features(view, live)
    cli = runner.invoke(main, ["--project", project, "features", "monitor", "--views", "cust_stats", "--json"])
    assert cli.exit_code == 0, cli.output
    _check_features(json.loads(cli.output)["views"][0], live)
    text = runner.invoke(main, ["--project", project, "features", "monitor"])
    assert "cust_stats v1" in text.output and "freshness" in text.output
    bad = runner.invoke(main, ["--project", project, "features", "materialize", "tomorrow", "now"])
    assert bad.exit_code == 1 and "not a timestamp" in bad.output


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0 s"), (0.5, "0.5 s"), (3, "3 s"), (9.96, "10 s"), (45, "45 s"), (60, "1 min"),
    (303, "5 min 3 s"), (3600, "1 h"), (3 * 3600 + 12 * 60 + 7, "3 h 12 min"), (86400, "1 d"),
    (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"), (-303, "-5 min 3 s"),
])
def test_durations_read_like_people_write_them(seconds, text) -> None:
    from shipyard.features.timeutil import format_duration

    assert format_duration(seconds) == text


def test_monitor_cli_prints_readable_durations(loaded) -> None:
    from shipyard.features.timeutil import format_duration

    store, now, _frame = loaded
    store.materialize(now - dt.timedelta(days=5), now + dt.timedelta(seconds=1), ["cust_stats"])
    project = str(store.ws.settings.project_dir)
    runner = CliRunner()
    report = json.loads(runner.invoke(main, ["--project", project, "features", "monitor", "--views", "cust_stats",
                                             "--json"]).output)["views"][0]
    text = runner.invoke(main, ["--project", project, "features", "monitor", "--views", "cust_stats"]).output
    line = text.splitlines()[0]
    assert f"(ttl {format_duration(report['ttl_seconds'])})" in line
    fresh = line.split("freshness ")[1].split(" (ttl")[0]
    # the printed freshness is the JSON figure (a moment earlier) in readable units, never raw seconds
    assert fresh.split()[-1] in ("s", "min", "h", "d") and not fresh.endswith("0s")
    assert fresh.split()[1] == format_duration(report["online"]["freshness_seconds"]).split()[1]
