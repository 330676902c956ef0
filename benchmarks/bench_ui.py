"""Web UI: every page's API calls and the time until the page is interactive, with 10,000 runs,
1,000 model versions and 200 feature views in the metadata store.

The store is the demo's project plus rows written straight into the metadata tables (10,000 runs
with params, tags and metrics; 1,000 versions over 20 models, some waiting for approval) and 200
feature views applied from a generated definitions file. The app `shipyard server` runs is served
on loopback; headless chromium (Debian's, through Playwright) loads each page as a fresh navigation
and reads the browser's own timings:

- "interactive": from navigation start to the app's ``sy:ready`` mark, set once the page's data is
  drawn and its controls work (the median of the loads; the first load, with an empty cache, is
  shown apart);
- "slowest API": the longest /api/v1 call the page made (Resource Timing, loopback included).

Goals: every API call under 200 ms, every page interactive under 1 s. The last column is the
slowest page load over the goal (below 1 is met). A second table compares the UI's runs page with
a server-rendered version of the same table (one HTML response per page, as htmx-style server
rendering would send), on bytes and time to interactive, for docs/ui.md.

    PYTHONPATH=src python benchmarks/bench_ui.py [--loads 5] [--runs 10000]

(SHIPYARD_CHROMIUM names the browser when ``chromium`` is not on PATH.)
"""

from __future__ import annotations

import argparse
import gzip
import html
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SHIPYARD_CHROMIUM") or shutil.which("chromium") or "chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
PASSWORD = "bench password"
API_GOAL_MS = 200.0
PAGE_GOAL_MS = 1000.0


# -- the metadata store ------------------------------------------------------------------------------
def _bulk_runs(ws: Any, count: int) -> list[str]:
    import sqlalchemy as sa

    from shipyard.store.schema import run_latest_metrics, run_metrics, run_params, run_tags, runs

    experiment = ws.tracking.get_or_create_experiment("bench").id
    rng = random.Random(7)
    now = int(time.time() * 1000)
    ids = [uuid.uuid4().hex for _ in range(count)]
    rows, params, tags, metrics, latest = [], [], [], [], []
    for i, run_id in enumerate(ids):
        start = now - (count - i) * 60_000
        rows.append({"id": run_id, "experiment_id": experiment, "name": f"run-{i:05d}",
                     "status": "FINISHED" if i % 17 else "FAILED", "start_time": start, "end_time": start + 30_000,
                     "parent_run_id": None, "user": rng.choice(["ana", "mo", "li"]), "source_name": "bench.py",
                     "source_git_commit": None, "artifact_uri": f"artifacts:/runs/{run_id}/artifacts",
                     "lifecycle": "active"})
        params += [{"run_id": run_id, "key": "model", "value": rng.choice(["xgb", "lgbm", "scorecard"])},
                   {"run_id": run_id, "key": "max_depth", "value": str(rng.randint(2, 8))},
                   {"run_id": run_id, "key": "learning_rate", "value": str(rng.choice([0.01, 0.05, 0.1]))}]
        tags.append({"run_id": run_id, "key": "team", "value": rng.choice(["risk", "fraud"])})
        for key in ("test_auc", "test_ks", "train_loss"):
            value = rng.random()
            for step in range(3):
                metrics.append({"run_id": run_id, "key": key, "value": value * (1 + step / 10), "step": step,
                                "timestamp": start + step})
            latest.append({"run_id": run_id, "key": key, "value": value * 1.2, "step": 2, "timestamp": start + 2})
    with ws.store.begin() as conn:
        for table, values in ((runs, rows), (run_params, params), (run_tags, tags), (run_metrics, metrics),
                              (run_latest_metrics, latest)):
            for chunk in range(0, len(values), 5000):
                conn.execute(sa.insert(table), values[chunk:chunk + 5000])
    return ids


def _bulk_versions(ws: Any, count: int, models: int = 20) -> None:
    """``count`` versions over ``models`` models, copies of the demo's first XGBoost version's row."""
    import sqlalchemy as sa

    from shipyard.store.schema import model_aliases, model_versions, registered_models

    with ws.store.read() as conn:
        template = dict(conn.execute(sa.select(model_versions).where(
            model_versions.c.name == "credit_xgb", model_versions.c.version == 1)).mappings().one())
    now = int(time.time() * 1000)
    per_model = count // models
    names, rows, aliases = [], [], []
    for m in range(models):
        name = f"bench_model_{m:02d}"
        names.append({"name": name, "description": "benchmark", "requires_approval": True, "tags": {},
                      "created_at": now, "updated_at": now, "created_by": "bench"})
        for v in range(1, per_model + 1):
            approved = v % 5 != 0
            rows.append({**template, "name": name, "version": v, "created_at": now - (per_model - v) * 1000,
                         "approved_by": "rita" if approved else None, "approved_at": now if approved else None,
                         "status": "validated", "created_by": "mo"})
        aliases.append({"name": name, "alias": "champion", "version": per_model - 1, "updated_at": now,
                        "updated_by": "otto"})
    with ws.store.begin() as conn:
        conn.execute(sa.insert(registered_models), names)
        conn.execute(sa.insert(model_versions), rows)
        conn.execute(sa.insert(model_aliases), aliases)


def _feature_views(ws: Any, project: Path, count: int) -> None:
    """``count`` more views next to the demo's definitions (apply takes the whole folder)."""
    fields = ["duration_in_month", "credit_amount", "age_in_years", "present_residence_since"]
    lines = ["from datetime import timedelta", "from credit import applicant",
             "from shipyard.features import FeatureView, Field, FileSource, Int64"]
    for i in range(count):
        lines.append(f"bench_view_{i:03d} = FeatureView('bench_view_{i:03d}', entities=[applicant], "
                     f"fields=[Field(n, Int64) for n in {fields!r}], source=FileSource('data/applicant_profile.parquet'), "
                     "timestamp_field='event_timestamp', ttl=timedelta(days=365))")
    (project / "features" / "bench_views.py").write_text("\n".join(lines) + "\n")
    ws.features.apply(project / "features", check_sources=False)


def build(folder: Path, runs: int, versions: int, views: int) -> tuple[Path, dict[str, Any]]:
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.demo.run import run_demo
    from shipyard.workspace import Workspace

    project = folder / "demo"
    started = time.perf_counter()
    run_demo(project, say=lambda _line: None)
    ws = Workspace(load_settings(project), principal=SERVER)
    try:
        ws.auth.create_user("ana", password=PASSWORD, roles={"*": "admin"}, actor="bench")
        run_ids = _bulk_runs(ws, runs)
        _bulk_versions(ws, versions)
        _feature_views(ws, project, views)
        facts = {"run": run_ids[-1], "compare": run_ids[-2:], "view": "bench_view_100",
                 "runs": ws.tracking.count_runs_matching(), "versions": ws.registry.search_versions(limit=1)[1],
                 "views": len(ws.features.list_views())}
    finally:
        ws.close()
    print(f"store built in {time.perf_counter() - started:.0f} s: {facts['runs']} runs, {facts['versions']} model "
          f"versions, {facts['views']} feature views")
    return project, facts


# -- a server-rendered runs page, the alternative the UI was measured against ---------------------------
def ssr_runs_page(ws: Any, offset: int, limit: int, order: str, css: str) -> str:
    """The runs table as a server would render it (what htmx-style pages send for every page)."""
    found = ws.tracking.search_runs(order_by=[order], max_results=limit, offset=offset)
    total = ws.tracking.count_runs_matching()
    metrics = sorted({k for r in found for k in r.metrics})
    params = sorted({k for r in found for k in r.params})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["Run", "Status", "User", "Started", *metrics, *params])
    body = []
    for r in found:
        cells = [r.info.name, r.info.status, r.info.user, time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.info.start_time / 1000))]
        cells += [f"{r.metrics[k]:.4g}" if k in r.metrics else "–" for k in metrics]
        cells += [r.params.get(k, "–") for k in params]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Runs</title><link rel=stylesheet href='{css}'>"
            f"</head><body><main><h1>Experiments and runs</h1><form><input name=filter aria-label=Filter>"
            f"<button>Apply</button></form><div class=table-wrap><table><thead><tr>{head}</tr></thead><tbody>"
            f"{''.join(body)}</tbody></table></div><nav class=pager><a href='?offset={offset + limit}'>Next</a> "
            f"{offset + 1}–{offset + len(found)} of {total}</nav></main></body></html>")


def add_ssr_route(app: Any, ws: Any) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    css = f"/ui/static/{app.state.ui_assets.build}/app.css"

    async def runs_page(request: Request) -> Response:
        offset = int(request.query_params.get("offset", 0))
        text = ssr_runs_page(ws, offset, 25, "attributes.start_time DESC", css)
        body = text.encode()
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(gzip.compress(body, 6), media_type="text/html", headers={"Content-Encoding": "gzip"})
        return Response(body, media_type="text/html")

    app.add_route("/bench/ssr/runs", runs_page)


# -- measuring --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(project: Path) -> tuple[str, Any, Any]:
    import uvicorn

    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(project), principal=SERVER)
    app = create_app(ws, follow_interval=0)
    add_ssr_route(app, ws)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, ws


TIMINGS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const ready = performance.getEntriesByType('mark').filter((m) => m.name.startsWith('sy:ready')).pop();
  const api = performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/v1/'))
    .map((r) => ({url: r.name.split('/api/v1')[1], ms: r.responseEnd - r.startTime}));
  const bytes = performance.getEntriesByType('resource').concat([nav]).reduce((a, r) => a + (r.transferSize || 0), 0);
  return {ready: ready ? ready.startTime : null, dom: nav.domInteractive, api, bytes};
}"""


def pages(facts: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("overview", "/"), ("runs", "/runs"), ("runs, sorted by a metric", "/runs?order=metrics.test_auc%20DESC"),
        ("runs, filtered", "/runs?filter=params.model%20%3D%20'xgb'%20and%20metrics.test_auc%20%3E%200.5"),
        ("run", f"/runs/{facts['run']}"), ("compare", f"/compare?ids={','.join(facts['compare'])}"),
        ("models", "/models"), ("model (50 versions)", "/models/bench_model_07"), ("features", "/features"),
        ("features: services", "/features?tab=services"), ("features: freshness", "/features?tab=health"),
        ("features: lineage", "/features?tab=lineage"), ("feature view", f"/features/views/{facts['view']}"),
        ("scenes", "/scenes"), ("scene", "/scenes/credit_apply"), ("reports", "/reports"),
        ("data", "/data"), ("dataset", "/data/datasets/german_credit"), ("pipelines", "/pipelines"),
        ("pipeline (demo run)", "/pipelines/credit_scorecard"), ("pipeline editor", "/pipelines/new"),
        ("monitoring: series", "/monitoring"), ("monitoring: reports", "/monitoring?tab=reports"),
        ("monitoring: trends", "/monitoring?tab=trends"), ("monitoring: alerts", "/monitoring?tab=alerts"),
        ("admin: users", "/admin"), ("admin: audit", "/admin?tab=audit"),
    ]


def measure(url: str, facts: dict[str, Any], loads: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-ready]", state="attached")
        page.get_by_label("User name").fill("ana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector(".shell")
        client = context.new_cdp_session(page)
        client.send("Network.enable")
        for name, route in pages(facts):
            samples = []
            for i in range(loads + 1):
                if i == 0:  # the first load of each page with an empty cache
                    client.send("Network.clearBrowserCache")
                page.goto("about:blank")
                page.goto(f"{url}/#{route}")
                page.wait_for_selector("body[data-ready]:not([data-ready=login])", state="attached", timeout=30_000)
                samples.append(page.evaluate(TIMINGS))
            warm = samples[1:]
            out.append({
                "page": name, "calls": len(warm[-1]["api"]),
                "api_max": max(max((c["ms"] for c in s["api"]), default=0.0) for s in warm),
                "api_median": statistics.median(max((c["ms"] for c in s["api"]), default=0.0) for s in warm),
                "slowest_call": max(warm[-1]["api"], key=lambda c: c["ms"])["url"] if warm[-1]["api"] else "",
                "first": samples[0]["ready"], "ready": statistics.median(s["ready"] for s in warm),
                "ready_max": max(s["ready"] for s in warm),
            })
        browser.close()
    return out


def measure_choice(url: str, loads: int) -> list[dict[str, Any]]:
    """The runs page as the UI draws it (JSON from the API) and as a server-rendered page."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for label, first, second in (("single-page app (this UI)", "/#/runs", "/#/runs?offset=25"),
                                     ("server-rendered HTML", "/bench/ssr/runs", "/bench/ssr/runs?offset=25")):
            cold, warm, next_bytes = [], [], []
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                page = context.new_page()
                if first.startswith("/#"):
                    page.goto(f"{url}/")
                    page.wait_for_selector("body[data-ready]", state="attached")
                    page.get_by_label("User name").fill("ana")
                    page.get_by_label("Password").fill(PASSWORD)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_selector(".shell")
                client = context.new_cdp_session(page)
                client.send("Network.enable")
                client.send("Network.setCacheDisabled", {"cacheDisabled": True})
                page.goto("about:blank")
                page.goto(f"{url}{first}")
                page.wait_for_selector("table", timeout=30_000)
                t = page.evaluate(TIMINGS)
                cold.append((t["ready"] or t["dom"], t["bytes"]))
                client.send("Network.setCacheDisabled", {"cacheDisabled": False})
                page.goto("about:blank")
                page.goto(f"{url}{first}")
                page.wait_for_selector("table", timeout=30_000)
                t = page.evaluate(TIMINGS)
                warm.append(t["ready"] or t["dom"])
                before = page.evaluate("performance.getEntriesByType('resource').reduce((a, r) => a + r.transferSize, 0)")
                if first.startswith("/#"):
                    page.locator(".pager").get_by_role("button", name="Next").click()
                    page.locator(".pager", has_text="26–50").wait_for()
                    after = page.evaluate("performance.getEntriesByType('resource').reduce((a, r) => a + r.transferSize, 0)")
                    next_bytes.append(after - before)
                else:
                    page.goto(f"{url}{second}")
                    page.wait_for_selector("table")
                    next_bytes.append(page.evaluate(TIMINGS)["bytes"])
                context.close()
            out.append({"approach": label, "cold_ms": statistics.median(c[0] for c in cold),
                        "cold_kb": statistics.median(c[1] for c in cold) / 1024, "warm_ms": statistics.median(warm),
                        "next_kb": statistics.median(next_bytes) / 1024})
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    parser.add_argument("--views", type=int, default=200)
    args = parser.parse_args()
    from shipyard.ui.assets import Assets

    raw, packed = Assets().sizes()
    app_raw, app_packed = Assets().sizes("js/")
    css_raw, css_packed = Assets().sizes("app.css")
    swagger_raw, swagger_packed = Assets().sizes("vendor/swagger-ui/")
    uplot_raw, uplot_packed = Assets().sizes("vendor/uplot/")
    print(f"assets: {raw / 1024:.0f} KB, {packed / 1024:.0f} KB gzip in all; app {app_packed / 1024:.0f} KB + "
          f"CSS {css_packed / 1024:.0f} KB gzip; uPlot {uplot_packed / 1024:.0f} KB; Swagger UI (for /docs only) "
          f"{swagger_packed / 1024:.0f} KB")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        project, facts = build(Path(tmp), args.runs, args.versions, args.views)
        url, server, ws = serve(project)
        try:
            rows = measure(url, facts, args.loads)
            choice = measure_choice(url, args.loads)
        finally:
            server.should_exit = True
            time.sleep(1)
            ws.close()
    print(f"\n{'page':<28}{'calls':>6}{'slowest API ms':>16}{'(median)':>10}{'interactive ms':>16}"
          f"{'(max)':>8}{'first load':>12}{'max/goal':>10}")
    for r in rows:
        ratio = max(r["api_max"] / API_GOAL_MS, r["ready_max"] / PAGE_GOAL_MS)
        print(f"{r['page']:<28}{r['calls']:>6}{r['api_max']:>16.1f}{r['api_median']:>10.1f}{r['ready']:>16.0f}"
              f"{r['ready_max']:>8.0f}{r['first']:>12.0f}{ratio:>10.2f}")
    worst = max(rows, key=lambda r: r["api_max"])
    print(f"slowest call: {worst['slowest_call']} on {worst['page']} ({worst['api_max']:.1f} ms)")
    print(f"\n{'runs page as':<28}{'empty cache: interactive ms':>29}{'KB':>8}{'cached: ms':>12}{'next page KB':>14}")
    for c in choice:
        print(f"{c['approach']:<28}{c['cold_ms']:>29.0f}{c['cold_kb']:>8.1f}{c['warm_ms']:>12.0f}{c['next_kb']:>14.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    ratio = choice[0]["next_kb"] / max(choice[1]["next_kb"], 0.01)
    print(f"next page, single-page app / server-rendered: {ratio:.2f} (bytes)")


if __name__ == "__main__":
    main()
