"""Serving throughput and latency: Shipyard vs `mlflow models serve` vs BentoML vs a bare ASGI app (the ceiling).

Same LightGBM model (300 trees, 30 features), one worker each, single-row JSON requests over
loopback. Shipyard's requests carry a predict-only bearer token; the auth rows compare the same
routes with the check on and off (a public model; the REST permission dependency overridden). Throughput and p50/p99 come from `wrk` (closed loop, 1 thread, --connections); the p99 at
a fixed request rate is measured by `bench_serving_load.py` (an open-loop generator).

The bare app and Shipyard run under the same `uvicorn` command line (it uses httptools and uvloop when
they are installed). Every server serves the same LightGBM booster (MLflow's model is saved from
``clf.booster_``, so both answer the probability of class 1) and each server's answer to the timed
request is checked against ``Booster.predict`` in this process before it is timed: a wrong or missing
answer fails the run. The request bodies differ as each protocol requires (MLflow and Shipyard's
``/invocations``: ``dataframe_split``; Shipyard's predict route: a plain record; BentoML: the record
under ``record``); their sizes and the answers' sizes are printed.

MLflow must be importable here (it is in the dev extra). BentoML runs from its own virtualenv, named
by ``--bentoml-python`` or BENTOML_PYTHON; without one the run stops unless ``--skip-bentoml`` says
to leave BentoML out:

    python3 -m venv VENV && VENV/bin/pip install bentoml lightgbm pandas httptools uvloop
    PYTHONPATH=src python benchmarks/bench_serving.py [--seconds 10] [--connections 32] [--auth-only] \
        (--bentoml-python VENV/bin/python | --skip-bentoml)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES, N_TREES = 30, 300
BOOSTER_FILE = "lightgbm_booster.txt"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def train(work: Path) -> tuple[Path, Path, Path, list[str], list[float], float]:
    import lightgbm as lgb
    import pandas as pd

    from shipyard.models import save_model

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(N_FEATURES)]
    X = pd.DataFrame(rng.normal(size=(5000, N_FEATURES)), columns=names)
    y = (X.iloc[:, :5].sum(axis=1) + rng.normal(size=5000) > 0).astype(int)
    clf = lgb.LGBMClassifier(n_estimators=N_TREES, num_leaves=31, verbose=-1).fit(X, y)
    clf.booster_.save_model(str(work / BOOSTER_FILE))  # what the BentoML service loads
    shipyard_dir = save_model(clf, work / "shipyard_model", input_example=X.head(5))
    import mlflow.lightgbm

    mlflow_dir = work / "mlflow_model"
    # the booster, not the wrapper: MLflow's pyfunc then answers Booster.predict (the probability),
    # the same quantity Shipyard and BentoML answer, so every answer can be checked against one value
    mlflow.lightgbm.save_model(clf.booster_, str(mlflow_dir), input_example=X.head(5))
    # the scikit-learn wrapper as most MLflow users log it: its pyfunc answers the class label
    # (LGBMClassifier.predict), a second MLflow row so the reader sees what the choice moves
    mlflow_clf_dir = work / "mlflow_classifier"
    mlflow.lightgbm.save_model(clf, str(mlflow_clf_dir), input_example=X.head(5))
    return Path(shipyard_dir), mlflow_dir, mlflow_clf_dir, names, X.iloc[0].tolist(), float(clf.predict(X.head(1))[0])


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def wrk(url: str, body: bytes | None, seconds: int, connections: int, work: Path,
        headers: dict[str, str] | None = None) -> dict[str, float]:
    script = work / "request.lua"
    lines = [f'wrk.method = "{"POST" if body is not None else "GET"}"']
    if body is not None:
        lines += [f"wrk.body = {json.dumps(body.decode())}", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": int(errors.group(1)) if errors else 0}


BARE_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"predictions":[0.5]}'})
'''


# The smallest idiomatic BentoML service for the same booster. `async def` answers on the event loop
# like Shipyard's route; a plain `def` hops to a thread pool and measured slower here.
BENTOML_SERVICE = '''
import os

import bentoml
import lightgbm as lgb
import numpy as np


@bentoml.service(workers={workers}, logging={{"access": {{"enabled": False}}}})
class Bench:
    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file=os.environ["BENCH_BOOSTER"])
        self.names = self.booster.feature_name()

    @bentoml.api
    async def predict(self, record: dict[str, float]) -> list[float]:
        row = np.array([[record[n] for n in self.names]], dtype=np.float64)
        return self.booster.predict(row).tolist()
'''


def bentoml_server(python: str, work: Path, workers: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment for `bentoml serve`; a missing or broken environment stops the run."""
    if not Path(python).exists():
        raise SystemExit(f"--bentoml-python {python} does not exist")
    probe = subprocess.run([python, "-c", "import bentoml, lightgbm; print(bentoml.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"--bentoml-python {python} cannot import bentoml and lightgbm: "
                         f"{probe.stderr.strip()[-300:]}")
    (work / "bench_bentoml_service.py").write_text(BENTOML_SERVICE.format(workers=workers))
    # its own virtualenv only: nothing from this process's PYTHONPATH or virtualenv
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"PATH": f"{Path(python).parent}:{os.environ.get('PATH', '')}", "BENTOML_DO_NOT_TRACK": "True",
                "BENCH_BOOSTER": str(work / BOOSTER_FILE), "BENTOML_HOME": str(work / "bentoml_home")})
    print(f"BentoML {probe.stdout.strip()} from {python}", flush=True)
    return [python, "-m", "bentoml", "serve", "bench_bentoml_service:Bench", "--working-dir", str(work)], env


OPEN_APP = '''
"""The platform app with access checks off, for measuring what they cost."""
from shipyard.auth.http import RequestContext, api_routes, declared_check
from shipyard.auth.principal import Principal
from shipyard.server import app_factory


def app():
    built = app_factory()
    guard = built.state.access_guard
    ws = guard.projects.root
    ws.auth.set_public("default", "model", "bench", True, actor="bench")
    admin = Principal(name="admin", kind="person", roles={"*": frozenset({"admin"})})

    async def open_context():
        yield RequestContext(principal=admin, project="default", ws=ws, client="", request_id="", guard=guard)

    for _path, _methods, route in api_routes(built):
        check = declared_check(route)
        if check is not None:
            built.dependency_overrides[check] = open_context
    return built
'''


def token_check_us(project: Path, headers: dict[str, str], calls: int = 200_000) -> float:
    """Microseconds of one cached bearer-token check of a prediction, in-process."""
    from shipyard.auth.guard import AccessGuard
    from shipyard.auth.projects import ProjectWorkspaces
    from shipyard.workspace import connect

    guard = AccessGuard(ProjectWorkspaces(connect(project)))
    header = headers["Authorization"]
    guard.check_prediction(header, None, None, "model", "bench")
    start = time.perf_counter()
    for _ in range(calls):
        guard.check_prediction(header, None, None, "model", "bench")
    return 1e6 * (time.perf_counter() - start) / calls


def answer(label: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[object, int]:
    """One request as the timed ones; its decoded JSON answer and the answer's size in bytes."""
    import httpx

    if body is None:
        response = httpx.get(url, headers=headers, timeout=30)
    else:
        response = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{label}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json(), len(response.content)


def prediction_of(label: str, payload: object) -> float:
    """The single prediction in a server's answer, whatever its envelope."""
    value = payload["predictions"] if isinstance(payload, dict) else payload
    while isinstance(value, list):
        if len(value) != 1:
            raise RuntimeError(f"{label}: expected one prediction, got {payload!r:.300}")
        value = value[0]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RuntimeError(f"{label}: the answer holds no number: {payload!r:.300}")
    return float(value)


def check_answer(label: str, payload: object, expected: float | None) -> None:
    """Fail the run when a server answers something other than the model's prediction."""
    if expected is None:  # the bare app (a constant) and the REST read are checked by their own rules
        if "GET /api/v1/models" in label and "bench" not in json.dumps(payload):
            raise RuntimeError(f"{label}: the model list does not name the model 'bench': {payload!r:.300}")
        return
    got = prediction_of(label, payload)
    if abs(got - expected) > 1e-9:
        raise RuntimeError(f"{label}: answered {got!r}, the model gives {expected!r}")


def uvicorn_stack() -> str:
    """What uvicorn's `auto` settings pick in this environment."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {http}/{loop}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of every server, interleaved")
    parser.add_argument("--auth-only", action="store_true", help="only the auth on/off comparison")
    parser.add_argument("--bentoml-python", default=os.environ.get("BENTOML_PYTHON", ""),
                        help="python of a virtualenv with bentoml, lightgbm and pandas (or BENTOML_PYTHON)")
    parser.add_argument("--skip-bentoml", action="store_true", help="leave BentoML's row out")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    if not args.auth_only:
        if not args.skip_bentoml and not args.bentoml_python:
            sys.exit("BentoML's python is needed (--bentoml-python or BENTOML_PYTHON): python3 -m venv VENV && "
                     "VENV/bin/pip install bentoml lightgbm pandas httptools uvloop; or pass --skip-bentoml")
        if not shutil.which("mlflow", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"):
            sys.exit("`mlflow` is needed beside this python (pip install mlflow) for the anchor row")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    shipyard_dir, mlflow_dir, mlflow_clf_dir, names, row, label_expected = train(work)
    import lightgbm as lgb

    expected = float(lgb.Booster(model_file=str(work / BOOSTER_FILE)).predict(np.array([row]))[0])
    record = dict(zip(names, row, strict=True))
    split = json.dumps({"dataframe_split": {"columns": names, "data": [row]}}).encode()
    plain = json.dumps(record).encode()

    import shipyard as sy
    from shipyard.auth.bootstrap import ensure_first_admin

    project = work / "project"
    ws = sy.connect(project, validation_subprocess=False)
    ensure_first_admin(ws.auth, project)
    mv = ws.registry.register(shipyard_dir, "bench", await_validation=True)
    ws.registry.set_alias("bench", "champion", mv.version, force=True)
    # what a client application uses: a service account with a predict-only token
    ws.auth.create_user("bench-app", kind="service", roles={"default": "predictor"}, actor="bench")
    token = {"Authorization": "Bearer " + ws.auth.create_token("bench-app", scopes=["predict"], actor="bench").token}
    admin = {"Authorization": "Bearer " + ws.auth.create_token("admin", actor="bench").token}
    ws.close()

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "SHIPYARD_PROJECT_DIR": str(project), "SHIPYARD_SERVE_MODEL": "bench@champion"}
    (work / "bare_app.py").write_text(BARE_APP)
    (work / "open_app.py").write_text(OPEN_APP)
    results: dict[str, dict[str, float]] = {}
    factory = ["uvicorn", "shipyard.server:app_factory", "--factory"]
    # label: (command, environment, readiness path, request path, body, headers)
    servers = {
        "bare ASGI (ceiling)": (["uvicorn", "bare_app:app", "--app-dir", str(work)], env, "/", "/", split, {}),
        "Shipyard /invocations": (factory, env, "/ping", "/invocations", split, token),
        "Shipyard /v1/models/.../predict": (factory, env, "/ping", "/v1/models/bench/champion/predict", plain, token),
        # the same route with the model marked public: no token to check (auth off)
        "Shipyard predict, public model": (["uvicorn", "open_app:app", "--factory", "--app-dir", str(work)], env,
                                           "/ping", "/v1/models/bench/champion/predict", plain, {}),
        "Shipyard GET /api/v1/models": (factory, env, "/ping", "/api/v1/models", None, admin),
        # the same route with its permission dependency overridden (FastAPI's dependency_overrides)
        "Shipyard GET /api/v1/models, no auth": (["uvicorn", "open_app:app", "--factory", "--app-dir", str(work)],
                                                 env, "/ping", "/api/v1/models", None, {}),
        "MLflow models serve": (["mlflow", "models", "serve", "-m", str(mlflow_dir), "--env-manager", "local",
                                 "-w", str(args.workers)], env, "/ping", "/invocations", split, {}),
        "MLflow serve, LGBMClassifier": (["mlflow", "models", "serve", "-m", str(mlflow_clf_dir), "--env-manager",
                                          "local", "-w", str(args.workers)], env, "/ping", "/invocations", split, {}),
    }
    if not args.auth_only and not args.skip_bentoml:
        bentoml = bentoml_server(args.bentoml_python, work, args.workers)
        servers["BentoML /predict"] = (bentoml[0], bentoml[1], "/readyz", "/predict",
                                       json.dumps({"record": record}).encode(), {})
    if args.auth_only:
        servers = {k: v for k, v in servers.items() if k.startswith("Shipyard") and "invocations" not in k}
    # what each server must answer: the booster's probability, the wrapper's class label for the
    # second MLflow row; the bare app (a constant) and the REST reads have their own checks
    expect = {label: (None if label.startswith("bare") or body is None
                      else label_expected if label == "MLflow serve, LGBMClassifier" else expected)
              for label, (_c, _e, _r, _p, body, _h) in servers.items()}
    # Every server is started first and stays up; then each round times every server once, in turn,
    # so that other work on a shared machine touches every row alike; the medians over rounds are kept.
    procs: dict[str, tuple[subprocess.Popen, str, bytes | None, dict[str, str]]] = {}
    samples: dict[str, list[dict[str, float]]] = {label: [] for label in servers}
    try:
        for label, (cmd, cmd_env, ready, path, body, headers) in servers.items():
            port = free_port()
            if cmd[0] == "uvicorn":
                cmd = [*cmd, "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
                       "--log-level", "warning", "--no-access-log"]
            elif "bentoml" in cmd:
                cmd = [*cmd, "--host", "127.0.0.1", "--port", str(port)]
            else:
                cmd = [*cmd, "-h", "127.0.0.1", "-p", str(port)]
            procs[label] = (start(cmd, cmd_env, work / f"{port}.log"), f"http://127.0.0.1:{port}{path}", body, headers)
            wait_ready(f"http://127.0.0.1:{port}{ready}")
        sizes: dict[str, tuple[int, int]] = {}
        print(f"all servers up; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
        for label, (_proc, url, body, headers) in procs.items():
            payload, answer_bytes = answer(label, url, body, headers)
            check_answer(label, payload, expect[label])
            sizes[label] = (len(body or b""), answer_bytes)
            wrk(url, body, 2, args.connections, work, headers)  # warm-up
        for round_no in range(args.rounds):
            for label, (proc, url, body, headers) in procs.items():
                before = cpu_seconds(proc.pid)
                sample = wrk(url, body, args.seconds, args.connections, work, headers)
                if sample["non_2xx"]:
                    raise RuntimeError(f"{label}: {sample['non_2xx']} requests failed; see {work}")
                # server CPU per request: less sensitive than req/s to other work on a shared machine
                served = sample["rps"] * args.seconds
                sample["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - before) / served if served else float("nan")
                samples[label].append(sample)
                print(f"round {round_no + 1} {label:34s} {sample}", flush=True)
        for label, (_proc, url, body, headers) in procs.items():
            # the timed answers were counted, not read: the same request once more must still be right
            check_answer(label, answer(label, url, body, headers)[0], expect[label])
    finally:
        for proc, *_ in procs.values():
            stop(proc)
    for label, runs in samples.items():
        results[label] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        results[label]["request_bytes"], results[label]["answer_bytes"] = sizes[label]
    # the ratio to MLflow within each round, so a round's load touches both sides of each ratio alike
    per_round = {label: [run["rps"] / mlf["rps"] for run, mlf in zip(runs, samples["MLflow models serve"],
                                                                     strict=True)]
                 for label, runs in samples.items()} if "MLflow models serve" in samples else {}

    print()
    for on, off in (("Shipyard /v1/models/.../predict", "Shipyard predict, public model"),
                    ("Shipyard GET /api/v1/models", "Shipyard GET /api/v1/models, no auth")):
        a, b = results[on], results[off]
        print(f"auth on vs off, {on}: {a['rps']:.0f} vs {b['rps']:.0f} req/s ({a['rps'] / b['rps']:.3f}); "
              f"CPU {a['cpu_us'] - b['cpu_us']:+.1f} us/request")
    print(f"in-process token check (cached): {token_check_us(project, token):.2f} us")
    if args.auth_only:
        return
    mlflow_rps = results["MLflow models serve"]["rps"]
    ceiling = results["bare ASGI (ceiling)"]["rps"]
    print()
    print(f"LightGBM {N_TREES} trees x {N_FEATURES} features, single-row JSON, {args.workers} worker(s), "
          f"wrk -t1 -c{args.connections} -d{args.seconds}s, median of {args.rounds} interleaved round(s), "
          f"{os.cpu_count()} CPUs, {uvicorn_stack()}, "
          f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"every prediction answer checked: Booster.predict = {expected!r} (the LGBMClassifier row: its "
          f"class label {label_expected!r}); ratios 'vs MLflow' are against the booster row (same answer)")
    bento_rps = results.get("BentoML /predict", {}).get("rps")
    print(f"{'server':34s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs MLflow':>10s} {'of ceiling':>10s}"
          f" {'CPU us/req':>10s} {'req B':>6s} {'ans B':>6s} {'per-round vs MLflow':>22s}"
          + (f" {'vs BentoML':>10s}" if bento_rps else ""))
    for label, res in results.items():
        print(f"{label:34s} {res['rps']:9.0f} {res['p50_ms']:8.2f} {res['p99_ms']:8.2f} "
              f"{res['rps'] / mlflow_rps:9.1f}x {100 * res['rps'] / ceiling:9.0f}% {res['cpu_us']:10.0f}"
              f" {res['request_bytes']:6.0f} {res['answer_bytes']:6.0f} "
              f"{' '.join(f'{r:.1f}x' for r in per_round[label]):>22s}"
              + (f" {res['rps'] / bento_rps:9.1f}x" if bento_rps else ""))


if __name__ == "__main__":
    main()
