"""``shipyard demo``: the whole lifecycle on the bundled German credit data, on embedded defaults.

features as code → point-in-time training set → data-quality report → binning/WOE → scorecard and
XGBoost, tracked → model report → registry (validate, approve, alias) → online store → a scene
(features → scorecard + XGBoost → fusion → rules) → a served prediction over HTTP.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.auth.bootstrap import ensure_first_admin
from shipyard.config import init_project
from shipyard.workspace import Workspace, connect

Say = Callable[[str], None]

REVIEWER = "reviewer"
CLIENT_APP = "demo-app"


def _copy_definitions(project: Path) -> None:
    target = project / "features"
    target.mkdir(parents=True, exist_ok=True)
    source = resources.files("shipyard.demo").joinpath("features")
    for name in ("credit.py", "_data.py"):
        with resources.as_file(source.joinpath(name)) as src:
            shutil.copyfile(src, target / name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scene_document(factor: float, offset: float) -> dict[str, Any]:
    """credit_apply: features → scorecard points + XGBoost PD → fused PD → approve/review/reject."""
    return {
        "name": "credit_apply",
        "description": "Credit application decision from the scorecard and the gradient-boosted model.",
        "inputs": {"applicant_id": "long"},
        "outputs": ["decision", "pd", "points", "pd_xgb"],
        "flow": [
            # an applicant the store does not know is sent to review (flagged), not scored on nulls
            {"type": "features", "service": "credit_scoring", "entity": {"applicant_id": "applicant_id"},
             "on_missing": "fallback"},
            {"type": "parallel", "steps": [
                {"type": "model", "model": "credit_scorecard", "ref": "champion", "output": "points"},
                {"type": "model", "model": "credit_xgb", "ref": "champion", "output": "pd_xgb"},
            ]},
            {"type": "expr", "id": "points_to_pd", "output": "pd_card",
             "expr": f"1 / (1 + exp((points - {offset!r}) / {factor!r}))"},
            {"type": "fusion", "id": "fuse", "inputs": ["pd_card", "pd_xgb"], "method": "weighted",
             "weights": [0.5, 0.5], "output": "pd"},
            {"type": "rules", "id": "policy", "output": "decision", "default": "approve", "rules": [
                {"name": "high_risk", "when": "pd > 0.5", "then": "reject"},
                {"name": "grey_zone", "when": "pd > 0.3", "then": "review"},
            ]},
        ],
        "fallback": {"decision": "review"},
        "limits": {"timeout_ms": 1000},
    }


def default_demo_path() -> Path:
    """Where ``shipyard demo`` writes its project unless told: ``shipyard/demo`` in the user's data
    folder (``$XDG_DATA_HOME``, else ``~/.local/share``; ``%LOCALAPPDATA%`` on Windows), never the
    current folder, which may be a source checkout."""
    base = os.environ.get("XDG_DATA_HOME") or os.environ.get("LOCALAPPDATA")
    return (Path(base) if base else Path.home() / ".local" / "share") / "shipyard" / "demo"


def run_demo(directory: str | Path | None = None, say: Say = print) -> dict[str, Any]:
    """Run every step in the project at ``directory`` (default ``default_demo_path()``); returns
    the numbers it printed (used by the tests)."""
    if directory is None:
        directory = default_demo_path()
    from sklearn.model_selection import train_test_split

    from shipyard.data.profile import profile
    from shipyard.models.log_model import log_model
    from shipyard.risk.binning import Binner
    from shipyard.risk.metrics import auc, ks
    from shipyard.risk.report import ModelReport
    from shipyard.risk.scorecard import Scorecard
    from shipyard.risk.selection import select_variables

    project = init_project(directory)
    _copy_definitions(project)
    first = connect(project)
    ensure_first_admin(first.auth, project)
    first.close()
    # the first admin acts from here on (its token in .shipyard/credentials, as after `shipyard init`)
    ws = connect(project)
    reports = project / "reports"
    reports.mkdir(exist_ok=True)
    out: dict[str, Any] = {"project": str(project)}
    say(f"[1/9] project {project} (metadata {ws.settings.metadata_url})")

    plan = ws.features.apply(project / "features")
    say(f"[2/9] features applied: {len(plan.changes)} change(s); views {[v.name for v in ws.features.list_views()]}")

    apps = pd.read_parquet(project / "data" / "applications.parquet")
    train_set = ws.features.get_training_set(apps, service="credit_scoring")
    feature_cols = [c for c in train_set.columns if c not in ("applicant_id", "event_timestamp", "bad")]
    out["training_rows"] = len(train_set)
    say(f"[3/9] point-in-time training set: {len(train_set)} rows × {len(feature_cols)} features")

    quality = profile(train_set[feature_cols + ["bad"]], target="bad")
    quality.write(reports, stem="data_quality")
    say(f"      data-quality report → {reports / 'data_quality.html'}")

    train, test = train_test_split(train_set, test_size=0.3, random_state=7, stratify=train_set["bad"])
    X_train, y_train = train[feature_cols], train["bad"].to_numpy()
    X_test, y_test = test[feature_cols], test["bad"].to_numpy()

    with ws.tracking.start_run(experiment="german_credit", name="scorecard") as run:
        binner = Binner(method="optimal", max_bins=6, min_bin_share=0.05).fit(X_train, y_train)
        selection = select_variables(X_train, y_train, binner=binner, min_iv=0.02, stepwise=None)
        chosen = list(selection.selected)
        card = Scorecard(binner=Binner(method="optimal", max_bins=6, min_bin_share=0.05, columns=chosen))
        card.fit(X_train[chosen], y_train)
        points = card.predict_score(X_test[chosen])
        risk = -points  # points grow with creditworthiness
        card_ks, card_auc = ks(y_test, risk).statistic, auc(y_test, risk)
        run.log_params({"method": "optimal", "max_bins": 6, "variables": len(chosen)})
        run.log_metrics({"test_ks": card_ks, "test_auc": card_auc})
        report = ModelReport.from_frames(
            train.assign(points=card.predict_score(X_train[chosen])), test=test.assign(points=points),
            target="bad", score="points", higher_is_bad=False, model_name="credit_scorecard")
        written = report.write(reports, stem="scorecard_report")
        for path in written.values():
            run.log_artifact(path, "reports")
        card_logged = log_model(card, "model", input_example=X_test[chosen].head(5),
                                registered_model_name="credit_scorecard", await_validation=True)
    out.update(scorecard_ks=card_ks, scorecard_auc=card_auc, scorecard_variables=chosen)
    say(f"[4/9] scorecard on {len(chosen)} variables: test KS {card_ks:.3f}, AUC {card_auc:.3f} "
        f"(run {run.id[:8]}); model report → {reports / 'scorecard_report.html'}")

    xgb_logged, xgb_ks, xgb_auc = _train_xgboost(ws, X_train, y_train, X_test, y_test)
    out.update(xgb_ks=xgb_ks, xgb_auc=xgb_auc)
    say(f"[5/9] XGBoost on the WOE of all {len(feature_cols)} features: test KS {xgb_ks:.3f}, AUC {xgb_auc:.3f}")

    registry = ws.registry
    # four eyes: a second person, signed in with their own token, approves what the admin registered
    reviewer = Workspace(ws.settings, token=_token_of(ws, REVIEWER, "reviewer", "person"))
    for logged in (card_logged, xgb_logged):
        mv = logged.registered_version
        reviewer.registry.approve(mv.name, mv.version, comment="demo review")
        registry.set_alias(mv.name, "champion", mv.version)
        p50 = mv.validation.get("latency_ms", {}).get("p50") if isinstance(mv.validation, dict) else None
        say(f"[6/9] {mv.name} v{mv.version}: {mv.status}, registered by {ws.user}, approved by {REVIEWER}, "
            "alias champion"
            + (f" (single-row p50 {p50:.3f} ms)" if p50 else ""))

    loaded = registry.load("credit_scorecard", "champion")
    head = X_test[chosen].head(20)
    same = np.allclose(np.asarray(loaded.predict(head)), card.predict_score(head))
    out["registry_matches_in_process"] = bool(same)
    say(f"      registry scorecard scores 20 test rows identically to the in-process one: {same}")

    # -- the same modelling as a cached, re-runnable pipeline (shipyard.demo.pipeline) ----------
    from shipyard.demo.pipeline import run_credit_pipeline

    out["pipeline"] = run_credit_pipeline(ws, project, say=say)
    # ------------------------------------------------------------------------------------------

    start = apps["event_timestamp"].min() - pd.Timedelta(days=400)
    end = pd.Timestamp.now(tz="UTC")
    written_rows = ws.features.materialize(start, end)
    out["materialized"] = written_rows
    say(f"[7/9] online store materialized: {_rows(written_rows)} rows")

    from shipyard.serving import apply_scene

    scene = apply_scene(ws, scene_document(card.factor_, card.offset_))
    say(f"[8/9] scene credit_apply v{scene.version} applied")

    applicant = int(test["applicant_id"].iloc[0])
    # the client application calls with a predict-only token of its own service account
    app_token = _token_of(ws, CLIENT_APP, "predictor", "service", scopes=["predict"])
    response = _serve_once(ws, {"applicant_id": applicant}, app_token)
    out["response"] = response
    say(f"[9/9] POST /v1/scenes/credit_apply/predict {{\"applicant_id\": {applicant}}} "
        f"(as service account {CLIENT_APP!r}, predict scope)")
    say("      → " + _short(response))
    reviewer.close()

    # monitoring: the scene serves the test applicants, then its daily report is built
    from shipyard.monitoring.demo import daily_report_step

    out["daily_report"] = daily_report_step(ws, "credit_apply", train, test, feature_cols, reports, say)
    # -- the web UI: a one-time link that signs the first admin in on this project -------------
    from shipyard.ui import announce_login_link

    out["login_link"] = announce_login_link(ws, say)
    ws.close()
    return out


def _token_of(ws: Workspace, name: str, role: str, kind: str, scopes: list[str] | None = None) -> str:
    """A fresh token of a demo user holding ``role`` (the user is created on the first run)."""
    from shipyard.errors import NotFound

    try:
        ws.auth.get_user(name)
    except NotFound:
        ws.auth.create_user(name, kind=kind, roles={"default": role}, actor=ws.user)
    return ws.auth.create_token(name, name="shipyard demo", scopes=scopes, expires_in_days=1, actor=ws.user).token


def _train_xgboost(ws: Workspace, X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame,
                   y_test: np.ndarray) -> tuple[Any, float, float]:
    """XGBoost on the WOE of every feature (categorical ones included), tracked and registered as
    ``credit_xgb``; returns the logged model and its test KS and AUC."""
    from shipyard.demo.xgb_model import BINNING, PARAMS, fit_woe_xgboost, log_woe_xgboost
    from shipyard.risk.metrics import auc, ks

    with ws.tracking.start_run(experiment="german_credit", name="xgboost") as run:
        model = fit_woe_xgboost(X_train, y_train)
        pd_xgb = model.run(X_test)
        xgb_ks, xgb_auc = ks(y_test, pd_xgb).statistic, auc(y_test, pd_xgb)
        run.log_params({**PARAMS, **{f"binning_{k}": v for k, v in BINNING.items()}, "features": X_train.shape[1]})
        run.log_metrics({"test_ks": xgb_ks, "test_auc": xgb_auc})
        logged = log_woe_xgboost(model, X_test.head(5), registered_model_name="credit_xgb", await_validation=True)
    return logged, xgb_ks, xgb_auc


def _rows(result: Any) -> int:
    total = 0
    for item in result or []:
        total += int(item.rows_written)
    return total


def _short(response: dict[str, Any]) -> str:
    keep = {k: response[k] for k in ("outputs", "prediction", "predictions", "scene", "version", "arm",
                                     "latency_ms") if k in response}
    return str(keep or response)


def _serve_once(ws: Workspace, record: dict[str, Any], token: str) -> dict[str, Any]:
    """Start the server on a free loopback port, send one request, stop it."""
    import httpx
    import uvicorn

    from shipyard.auth.principal import SERVER
    from shipyard.server import create_app

    port = _free_port()
    served = Workspace(ws.settings, principal=SERVER)
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/scenes/credit_apply/predict", json=record, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"prediction failed with HTTP {response.status_code}: {body}")
        return body
    finally:
        server.should_exit = True
        thread.join(10)
        served.close()
