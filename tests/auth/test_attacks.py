"""The code-execution and forgery routes replayed as an attacker without credentials, an
authenticated viewer and an authenticated modeler, against the server's own app."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.models import save_model
from shipyard.models.mlmodel import file_digests
from shipyard.models.python_model import PythonModel
from tests.conftest import user_token


class Doubler(PythonModel):
    def predict(self, df):  # noqa: ANN001, ANN201
        return np.asarray(df["x"], dtype=float) * 2


class Payload:
    """Unpickling this creates a marker file: code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (os.makedirs, (self.marker,))


def _crafted_archive(tmp_path: Path, marker: Path) -> bytes:
    folder = save_model(Doubler(), tmp_path / "evil", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname="model")
    return buffer.getvalue()


def _as(server_ws, name: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(server_ws, name, role, 'default')}"}


def test_pickle_upload_needs_a_role_that_may_upload_code(client, server_ws, tmp_path):
    marker = tmp_path / "pwned"
    archive = _crafted_archive(tmp_path, marker)
    url = "/api/v1/models/evil/versions/upload?await_validation=true"
    anonymous = client.post(url, content=archive)
    assert anonymous.status_code == 401
    viewer = client.post(url, content=archive, headers=_as(server_ws, "vera", "viewer"))
    assert viewer.status_code == 403 and viewer.json()["error"]["details"]["permission"] == "models:upload_code"
    operator = client.post(url, content=archive, headers=_as(server_ws, "otto", "operator"))
    assert operator.status_code == 403
    assert not marker.exists(), "a refused upload must never be unpacked or loaded"
    assert client.get("/api/v1/models", headers=_as(server_ws, "vera", "viewer")).json() == []
    # a modeler may upload code; the upload is recorded as such
    modeler = client.post(url, content=archive, headers=_as(server_ws, "mia", "modeler"))
    assert modeler.status_code == 201, modeler.text
    record = server_ws.audit.list(actor="mia", limit=1)[0]
    assert record.route == "POST /api/v1/models/{name}/versions/upload" and record.details["code"] is True
    assert record.outcome == "ok"


def test_feature_definitions_never_load_from_an_artifact_path(client, server_ws, tmp_path):
    marker = tmp_path / "pwned-features"
    mia = _as(server_ws, "mia", "modeler")
    run = client.post("/api/v1/runs", json={"experiment": "x"}, headers=mia).json()
    code = f"import os\nos.makedirs({str(marker)!r})\n".encode()
    stored = client.put(f"/api/v1/runs/{run['info']['id']}/artifacts", params={"path": "features/x.py"},
                        content=code, headers=mia)
    assert stored.status_code == 201
    body = json.dumps(stored.json())
    assert str(server_ws.settings.artifact_root) not in body and str(tmp_path) not in body
    stored_at = next(Path(server_ws.settings.artifact_root).rglob("x.py"))
    project = server_ws.settings.project_dir
    attempts = [str(stored_at), str(stored_at.parent), os.path.relpath(stored_at, project), "../", "/etc",
                ".shipyard", str(tmp_path)]
    for path in attempts:
        for route in ("/api/v1/features/plan", "/api/v1/features/apply"):
            assert client.post(route, json={"path": path}).status_code == 401
            assert client.post(route, json={"path": path}, headers=_as(server_ws, "vera", "viewer")).status_code == 403
            refused = client.post(route, json={"path": path}, headers=mia)
            assert refused.status_code == 403, (route, path, refused.text)
            assert "outside the project's folder" in refused.json()["error"]["message"]
    assert not marker.exists()


def test_registering_from_a_server_folder_needs_an_allow_list(client, server_ws, tmp_path):
    folder = save_model(Doubler(), tmp_path / "elsewhere" / "m", input_example=pd.DataFrame({"x": [1.0]}))
    admin = {"Authorization": f"Bearer {user_token(server_ws)}"}
    for source in (str(folder), str(folder) + "/../m", "file://" + str(folder)):
        refused = client.post("/api/v1/models/x/versions", json={"source": source}, headers=admin)
        assert refused.status_code == 403, refused.text
        assert "register_source_roots" in refused.json()["error"]["message"]
    assert client.get("/api/v1/models", headers=admin).json() == []


def test_registering_from_an_allowed_server_folder(server_ws, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    allowed = tmp_path / "drop"
    folder = save_model(Doubler(), allowed / "m", input_example=pd.DataFrame({"x": [1.0]}))
    ws = Workspace(replace(server_ws.settings, register_source_roots=[str(allowed)]))
    admin = {"Authorization": f"Bearer {user_token(ws)}"}
    with TestClient(create_app(ws, follow_interval=0)) as http:
        made = http.post("/api/v1/models/x/versions", json={"source": str(folder)}, headers=admin)
        assert made.status_code == 201, made.text
        # a link inside the allowed folder that points out of it is followed, then refused
        (allowed / "link").symlink_to(tmp_path)
        escaped = http.post("/api/v1/models/x/versions", json={"source": str(allowed / "link" / "drop" / "m")},
                            headers=admin)
        assert escaped.status_code == 201  # resolves back inside the allowed folder
        outside = save_model(Doubler(), tmp_path / "out" / "m", input_example=pd.DataFrame({"x": [1.0]}))
        (allowed / "out").symlink_to(outside.parent)
        assert http.post("/api/v1/models/x/versions", json={"source": str(allowed / "out" / "m")},
                         headers=admin).status_code == 403
    ws.close()


def test_the_acting_user_is_never_taken_from_a_header_or_the_body(client, server_ws, tmp_path):
    folder = save_model(Doubler(), tmp_path / "m", input_example=pd.DataFrame({"x": [1.0]}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname="model")
    _as(server_ws, "mia", "reviewer")  # mia may register and review, but never her own version
    mia = {**_as(server_ws, "mia", "modeler"), "X-Shipyard-User": "bob"}
    made = client.post("/api/v1/models/credit/versions/upload?await_validation=true", content=buffer.getvalue(),
                       headers=mia)
    assert made.status_code == 201 and made.json()["created_by"] == "mia"
    # a reviewer field in the body is refused, and a header does not make mia someone else
    forged = client.post("/api/v1/models/credit/versions/1/approve", json={"reviewer": "bob"}, headers=mia)
    assert forged.status_code == 400 and "reviewer" in forged.text
    own = client.post("/api/v1/models/credit/versions/1/approve", json={}, headers=mia)
    assert own.status_code == 403 and "cannot also approve" in own.json()["error"]["message"]
    bob = _as(server_ws, "bob", "reviewer")
    approved = client.post("/api/v1/models/credit/versions/1/approve", json={"comment": "ok"}, headers=bob)
    assert approved.status_code == 200 and approved.json()["approved_by"] == "bob"


@pytest.mark.parametrize("role,allowed", [("modeler", False), ("reviewer", False), ("operator", True),
                                          ("admin", True)])
def test_moving_a_production_alias_needs_release(client, server_ws, tmp_path, role, allowed):
    folder = save_model(Doubler(), tmp_path / "m", input_example=pd.DataFrame({"x": [1.0]}))
    server_ws.registry.create_model("credit", requires_approval=False, actor="mia")
    server_ws.registry.register(folder, "credit", actor="mia", await_validation=True)
    response = client.put("/api/v1/models/credit/aliases/champion", json={"version": 1},
                          headers=_as(server_ws, f"u-{role}", role))
    assert (response.status_code == 200) is allowed, response.text
    assert server_ws.registry.list_aliases("credit") == ({"champion": 1} if allowed else {})


def test_pipeline_components_never_load_from_the_state_folder(client, server_ws, tmp_path):
    marker = tmp_path / "pwned-pipeline"
    mia = _as(server_ws, "mia", "modeler")
    run = client.post("/api/v1/runs", json={"experiment": "x"}, headers=mia).json()
    code = f"import os\nos.makedirs({str(marker)!r})\ndef step():\n    return 1\n".encode()
    assert client.put(f"/api/v1/runs/{run['info']['id']}/artifacts", params={"path": "evil.py"}, content=code,
                      headers=mia).status_code == 201
    stored = next(Path(server_ws.settings.artifact_root).rglob("evil.py"))
    project = server_ws.settings.project_dir
    for module in (os.path.relpath(stored, project), str(stored), "../evil.py"):
        document = {"name": "p", "nodes": [{"id": "a", "component": f"{module}:step"}]}
        for route in ("/api/v1/pipelines/validate", "/api/v1/pipelines"):
            refused = client.post(route, json={"document": document}, headers=mia)
            assert refused.status_code == 403, (route, module, refused.text)
    assert not marker.exists()


def test_project_paths_stay_in_the_project_and_out_of_its_state_folder(tmp_path):
    from shipyard.auth.paths import project_path
    from shipyard.config import load_settings

    settings = load_settings(tmp_path / "p")
    (settings.state_dir / "artifacts").mkdir(parents=True)
    (settings.project_dir / "features").mkdir()
    (settings.project_dir / "features" / "link").symlink_to(settings.state_dir / "artifacts")
    assert project_path(settings, "features") == (settings.project_dir / "features").resolve()
    assert project_path(settings, None) == settings.project_dir.resolve()
    for bad in (".shipyard", ".shipyard/artifacts/x.py", "features/link/x.py", "features/../../x", "/etc/passwd",
                str(tmp_path), "file:///etc"):
        assert project_path(settings, bad) is None, bad


def test_the_default_project_never_reaches_a_hosted_projects_artifacts(client, server_ws, tmp_path):
    # hosted projects keep their artifacts under <artifact_root>/projects/<name>, inside the default
    # project's artifact root: a modeler of the default project must not copy one out by its key
    admin = {"Authorization": f"Bearer {user_token(server_ws)}"}
    assert client.post("/api/v1/projects", json={"name": "other"}, headers=admin).status_code == 201
    folder = save_model(Doubler(), tmp_path / "secret", input_example=pd.DataFrame({"x": [1.0]}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname="model")
    made = client.post("/api/v1/models/secret/versions/upload", content=buffer.getvalue(),
                       headers={**admin, "X-Shipyard-Project": "other"})
    assert made.status_code == 201, made.text
    mia = _as(server_ws, "mia", "modeler")
    for source in ("artifacts:/projects/other/models/secret/1", "artifacts:/./projects/other/models/secret/1",
                   "artifacts://projects/other/models/secret/1", "artifacts:/projects"):
        refused = client.post("/api/v1/models/copied/versions", json={"source": source}, headers=mia)
        assert refused.status_code == 403, (source, refused.text)
        assert refused.json()["error"]["details"]["field"] == "source"
    assert client.get("/api/v1/models", headers=mia).json() == []


def test_the_default_project_never_loads_code_from_a_hosted_projects_folder(tmp_path):
    from shipyard.auth.paths import project_path
    from shipyard.config import load_settings, project_settings

    settings = load_settings(tmp_path / "p")
    hosted = project_settings(settings, "other")
    (hosted.project_dir / "features").mkdir(parents=True)
    (hosted.project_dir / ".shipyard").mkdir()
    for bad in ("projects", "projects/other", "projects/other/features", "projects/other/.shipyard",
                "./projects/other/features", "features/../projects/other"):
        assert project_path(settings, bad) is None, bad
    # the hosted project itself reads its own folder
    assert project_path(hosted, "features") == (hosted.project_dir / "features").resolve()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_json_body_past_max_request_bytes_is_refused_before_it_is_read_whole(server_ws, chunked):
    # FastAPI reads a JSON body whole before any permission check: without a cap an anonymous
    # client made the server hold (and parse) hundreds of megabytes
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    ws = Workspace(replace(server_ws.settings, max_request_bytes=1000), principal=server_ws.principal)
    def body():  # sent without a length
        for _ in range(100):
            yield b" " * 500

    with TestClient(create_app(ws, follow_interval=0)) as http:
        content = body() if chunked else b" " * 50_000
        for headers in ({}, {"Authorization": f"Bearer {user_token(ws)}"}):
            r = http.post("/api/v1/runs/search", content=content, headers={**headers, "content-type": "application/json"})
            assert r.status_code == 413, r.text
            assert r.json()["error"]["code"] == "payload_too_large" and "max_request_bytes" in r.json()["error"]["message"]
            content = body() if chunked else content
        small = http.post("/api/v1/runs/search", json={}, headers={"Authorization": f"Bearer {user_token(ws)}"})
        assert small.status_code == 200
    ws.close()


def _serve(project: Path, *flags: str):
    import subprocess
    import sys
    import time

    import httpx

    from tests.serving.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PROMETHEUS_", "FORWARDED_"))}
    log = (project / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "--project", str(project), "server", "--port",
                             str(port), *flags], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError((project / "server.log").read_text())


@pytest.mark.parametrize("flags, seen", [((), "127.0.0.1"), (("--forwarded-allow-ips", "127.0.0.1"), "10.9.9.9")])
def test_a_forwarded_for_header_is_trusted_only_from_a_proxy_the_admin_named(tmp_path, flags, seen):
    # the audit log's "from where" and the per-client sign-in limit read the client address; a
    # client must not choose it by sending X-Forwarded-For unless the admin named a proxy
    import subprocess
    import sys

    import httpx

    subprocess.run([sys.executable, "-m", "shipyard.cli", "init", str(tmp_path / "p")], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")})
    project = tmp_path / "p"
    token = json.loads((project / ".shipyard" / "credentials").read_text())["token"]
    proc, url = _serve(project, *flags)
    try:
        r = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": "not-it-at-all"},
                       headers={"X-Forwarded-For": "10.9.9.9"})
        assert r.status_code == 401
        records = httpx.get(f"{url}/api/v1/audit", params={"limit": 5},
                            headers={"Authorization": f"Bearer {token}"}).json()
        records = records if isinstance(records, list) else records["records"]
        login = next(rec for rec in records if rec["route"] == "POST /api/v1/auth/login")
        assert login["client"] == seen
    finally:
        proc.terminate()
        proc.wait(30)


def test_prediction_errors_never_show_where_the_package_lives(client, server_ws, tmp_path):
    # the prediction routes write their own error bodies (fast path included): they must be
    # rewritten like every other response, or a failing load names the artifact folder
    admin = {"Authorization": f"Bearer {user_token(server_ws)}"}
    folder = save_model(Doubler(), tmp_path / "m", input_example=pd.DataFrame({"x": [1.0]}))
    server_ws.registry.create_model("doubler", requires_approval=False)
    mv = server_ws.registry.register(folder, "doubler", await_validation=True)
    assert mv.status == "validated", mv.status_reason
    # changed in the artifact store after validation: the load in the server refuses it
    stored = server_ws.artifacts.local_path(mv.artifact_path) / "python_model.pkl"
    stored.write_bytes(stored.read_bytes() + b"tampered")
    # changed after saving, before registering: validation fails, and serving refuses the version
    (folder / "python_model.pkl").write_bytes((folder / "python_model.pkl").read_bytes() + b"tampered")
    assert server_ws.registry.register(folder, "doubler", await_validation=True).status == "failed"
    for route, body in (("invocations", {"dataframe_records": [{"x": 1.0}]}), ("predict", {"x": 1.0})):
        r = client.post(f"/v1/models/doubler/1/{route}", json=body, headers=admin)
        assert r.status_code >= 400 and r.json()["error"]["code"] == "integrity_error", r.text
        assert str(tmp_path) not in r.text and server_ws.settings.artifact_root not in r.text, r.text
        assert "models/doubler/1" in r.json()["error"]["message"]
        r = client.post(f"/v1/models/doubler/2/{route}", json=body, headers=admin)
        assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "failed", r.text
        assert str(tmp_path) not in r.text and server_ws.settings.artifact_root not in r.text, r.text


class Snoop:
    """Unpickling this runs ``exec``: it tries to read ``targets`` and prints what it got (or why not)
    on stdout, which the validation process sends to the version's validation log."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets

    def __reduce__(self):  # noqa: ANN204
        code = (
            "import json\n"
            "seen = {}\n"
            f"for path in {self.targets!r}:\n"
            "    try:\n"
            "        seen[path] = open(path).read()\n"
            "    except OSError as exc:\n"
            "        seen[path] = 'refused: ' + type(exc).__name__\n"
            "print('SNOOPED ' + json.dumps(seen), flush=True)\n"
        )
        return (exec, (code,))


def test_uploaded_model_code_never_reads_the_projects_credentials_or_secret_key(tmp_path):
    """A modeler's pickle, validated by the real validation subprocess, reads neither the admin's
    token (.shipyard/credentials) nor the secrets key (.shipyard/secret.key)."""
    from fastapi.testclient import TestClient

    from shipyard.auth.bootstrap import ensure_first_admin
    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.models.confine import landlock_abi
    from shipyard.secrets.keys import load_keyring
    from shipyard.server import create_app
    from shipyard.workspace import Workspace

    project = tmp_path / "project"
    ws = Workspace(load_settings(project, validation_subprocess=True, validation_timing_calls=5), principal=SERVER)
    try:
        credentials = ensure_first_admin(ws.auth, project)
        assert credentials is not None
        admin_token = json.loads(credentials.read_text())["token"]
        key_file = ws.settings.state_dir / "secret.key"
        load_keyring(ws.settings.state_dir)  # the key file `shipyard secrets` creates on first use
        key = key_file.read_text().strip()
        folder = save_model(Doubler(), tmp_path / "evil", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
        (folder / "python_model.pkl").write_bytes(pickle.dumps(Snoop([str(credentials), str(key_file)])))
        record = json.loads((folder / "shipyard.json").read_text())
        record["files"] = file_digests(folder)  # the attacker's package is self-consistent
        (folder / "shipyard.json").write_text(json.dumps(record))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(folder, arcname="model")
        with TestClient(create_app(ws, follow_interval=0), raise_server_exceptions=False) as http:
            made = http.post("/api/v1/models/evil/versions/upload?await_validation=true", content=buffer.getvalue(),
                             headers=_as(ws, "mia", "modeler"))
            assert made.status_code == 201, made.text
            shown = http.get("/api/v1/models/evil/versions/1", headers=_as(ws, "mia", "modeler")).text
        version = ws.registry.get_version("evil", 1)
        log = (ws.settings.state_dir / "logs" / "validation-evil-1.log").read_text()
    finally:
        ws.close()
    for text in (made.text, shown, log, version.status_reason, json.dumps(version.validation)):
        assert admin_token not in text and key not in text
    assert version.status == "failed"
    if landlock_abi() > 0:  # confined: the code ran and was refused both files
        assert version.validation["confinement"].startswith("landlock")
        snooped = json.loads(log.split("SNOOPED ", 1)[1].splitlines()[0])
        assert snooped == {str(credentials): "refused: PermissionError", str(key_file): "refused: PermissionError"}
    else:  # no Landlock: code-running packages are refused before anything is loaded
        assert "allow_unconfined_validation" in version.status_reason
        assert "SNOOPED" not in log


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("SHIPYARD_TEST_REDIS_URL"), reason="set SHIPYARD_TEST_REDIS_URL")
@pytest.mark.parametrize("hosted_name", ["row", "seen", "meta"])
def test_a_hosted_project_named_like_a_redis_key_kind_shares_no_key_with_the_default_project(tmp_path, hosted_name):
    """The default project's per-view key patterns (``<prefix>row:<view>:*``) never reach a hosted
    project's keys, whatever the project is called."""
    import datetime as dt
    import uuid

    from shipyard.config import load_settings, project_settings
    from shipyard.features.online.redis_store import RedisOnlineStore

    base = f"sytest-{uuid.uuid4().hex[:8]}:"
    url = os.environ["SHIPYARD_TEST_REDIS_URL"] + f"?prefix={base}"
    root = load_settings(tmp_path / "project", online_store=url)
    default = RedisOnlineStore(root.online_store)
    hosted = RedisOnlineStore(project_settings(root, hosted_name).online_store)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        hosted.write_batch("x", [(2,)], [{"f": 2.0}], [when])
        default.write_batch("row", [(1,)], [{"f": 1.0}], [when])
        # the default project's view "row" sees only its own row...
        assert [key for key, _, _ in default.scan("row")] == [(1,)]
        # ...and deleting it (rows and dedupe sets) leaves the hosted project's rows alone
        default.delete_view("row")
        assert [(key, row) for key, _, row in hosted.scan("x")] == [((2,), {"f": 2.0})]
    finally:
        hosted.delete_prefix()
        default.delete_prefix()
        hosted.close()
        default.close()


def test_the_state_folder_and_sqlite_metadata_are_the_owners_only(tmp_path):
    import stat

    from shipyard.config import init_project, load_settings
    from shipyard.workspace import Workspace

    previous = os.umask(0o022)  # a common umask: files world-readable unless made otherwise
    try:
        root = init_project(tmp_path / "init")
        assert stat.S_IMODE((root / ".shipyard").stat().st_mode) == 0o700
        ws = Workspace(load_settings(tmp_path / "plain"))
        try:
            ws.registry.list_models()  # writes through the WAL
            state = ws.settings.state_dir
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            files = [state / name for name in ("shipyard.db", "shipyard.db-wal", "shipyard.db-shm")]
            assert files[0].exists()
            for file in (f for f in files if f.exists()):
                assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file.name
        finally:
            ws.close()
    finally:
        os.umask(previous)


def test_making_a_missing_model_or_scene_public_is_refused(client, server_ws):
    admin = _as(server_ws, "ada", "admin")
    for kind in ("model", "scene"):
        refused = client.put(f"/api/v1/public/{kind}/nope", json={"public": True}, headers=admin)
        assert refused.status_code == 404, refused.text
        assert "nope" in refused.json()["error"]["message"]
        allowed = client.put(f"/api/v1/public/{kind}/nope?allow_missing=true", json={"public": True}, headers=admin)
        assert allowed.status_code == 200, allowed.text
        # taking it back needs nothing to exist
        assert client.put(f"/api/v1/public/{kind}/nope", json={"public": False}, headers=admin).status_code == 200
    assert server_ws.auth.public_set() == frozenset()
