"""The OpenAPI document is the contract: schemathesis calls every operation it lists.

As an admin, with data the generator cannot guess (a run, a model version and its alias, a scene)
seeded and its names substituted into a share of the cases, every answer must be below 500 and
match the document: a documented status, content type and body schema. Anonymously, every
operation must answer 401 unless it is one of the few declared public. Generation is derandomized
(a fixed seed) and bounded, and failures are collected per operation rather than shrunk, so the
whole document runs in a few minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402

from shipyard.config import load_settings  # noqa: E402
from shipyard.server import create_app  # noqa: E402
from shipyard.workspace import Workspace  # noqa: E402
from tests.conftest import auth_headers, user_token  # noqa: E402

CHECKS = [not_a_server_error, openapi_checks.status_code_conformance, openapi_checks.content_type_conformance,
          openapi_checks.response_schema_conformance]
# cases per operation: schema-conforming, schema-violating, and conforming with seeded names
POSITIVE, NEGATIVE, SEEDED = 8, 5, 8


def _seed(ws: Workspace, root: Path) -> dict[str, str]:
    """A run with an artifact, a registered model version with an alias, a scene; their names."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from shipyard.models import save_model
    from shipyard.serving import apply_scene

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"income": rng.normal(5, 2, 200), "debt": rng.normal(2, 1, 200)})
    y = (X.debt - 0.5 * X.income + rng.normal(0, 1, 200) > -0.5).astype(int)
    with ws.tracking.start_run(experiment="seeded") as run:
        run.log_params({"C": 1.0})
        run.log_metrics({"auc": 0.7})
        ws.tracking.log_bytes(run.id, b"a,b\n1,2\n", "data/sample.csv")
    folder = save_model(LogisticRegression().fit(X, y), root / "model", input_example=X.head(3))
    ws.registry.create_model("credit", requires_approval=False)
    mv = ws.registry.register(folder, "credit", await_validation=True)
    ws.registry.set_alias("credit", "champion", mv.version)
    apply_scene(ws, {"name": "seeded", "inputs": {"income": "double", "debt": "double"},
                     "flow": [{"type": "model", "model": "credit", "ref": "champion", "output": "score"}]})
    user_token(ws, "ana", "viewer", "default")
    return {"run_id": run.id, "experiment": "seeded", "model": "credit", "version": str(mv.version),
            "alias": "champion", "scene": "seeded", "user": "ana"}


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str], dict[str, str]]]:
    root = tmp_path_factory.mktemp("contract")
    ws = Workspace(load_settings(root / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=20))
    headers = auth_headers(ws)
    names = _seed(ws, root)
    app = create_app(ws, follow_interval=0)
    yield app, headers, names
    ws.close()


def _known(path: str, names: dict[str, str]) -> dict[str, str]:
    """Path parameters naming the seeded objects, for the operation at ``path``."""
    values: dict[str, str] = {}
    for param in (p[1:-1] for p in path.split("/") if p.startswith("{")):
        if param == "run_id" and path.startswith("/api/v1/runs/"):
            values[param] = names["run_id"]
        elif param == "name_or_id":
            values[param] = names["experiment"]
        elif param == "name" and "/models/" in path:
            values[param] = names["model"]
        elif param == "version" and "/models/" in path:
            values[param] = names["version"]
        elif param in ("alias", "ref"):
            values[param] = names["alias"]
        elif param == "scene" or (param == "name" and "/scenes/" in path):
            values[param] = names["scene"]
        elif param == "name" and path.startswith("/api/v1/users/"):
            values[param] = names["user"]
    return values


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # deletions last, so the seeded objects are there for every other operation
    return sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def _run(operation: Any, strategy: Any, count: int, send: Any, failures: list[str]) -> None:
    @given(case=strategy)
    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        problem = send(case)
        if problem:
            failures.append(f"{case.method} {case.formatted_path}: {problem}")

    try:
        check()
    except Unsatisfiable:
        pass  # no schema-violating case exists for an operation without parameters or body


def _bound_work(case: Any) -> None:
    """Keep requests that start real work (a load test of the seeded model) small enough to finish fast."""
    if case.path.endswith("/stress-test") and isinstance(case.body, dict):
        count = case.body.get("count")
        case.body["count"] = min(count, 20) if isinstance(count, int) and not isinstance(count, bool) else 20


def _validate(case: Any, response: Any, headers: dict[str, str]) -> str | None:
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (AssertionError, BaseExceptionGroup) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " | ".join(lines[:6])[:500]
    return None


def test_every_operation_answers_as_documented_for_an_admin(contract) -> None:
    app, headers, names = contract
    operations = _operations(app)
    assert len(operations) >= 100, "the document lists every API operation"
    failures: list[str] = []

    def send(case: Any) -> str | None:
        _bound_work(case)
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # the app raised past its error handlers: a 500
            return f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return _validate(case, response, headers)

    for op in operations:
        _run(op, op.as_strategy(generation_mode=GenerationMode.POSITIVE), POSITIVE, send, failures)
        _run(op, op.as_strategy(generation_mode=GenerationMode.NEGATIVE), NEGATIVE, send, failures)
        known = _known(op.path, names)
        if known:
            seeded = op.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=known)
            _run(op, seeded, SEEDED, send, failures)
    assert not failures, f"{len(failures)} answers break the contract:\n" + "\n".join(failures[:30])


def test_every_operation_refuses_anonymous_callers(contract) -> None:
    from shipyard.auth.http import api_routes, declared_check

    app, _headers, names = contract
    public = {(path, method) for path, methods, route in api_routes(app)
              for method in methods if (check := declared_check(route)) is not None and check.public}
    failures: list[str] = []
    seen: list[str] = []

    def send(case: Any) -> str | None:
        response = case.call()
        label = (case.operation.path, case.method.upper())
        if label in public or not case.operation.path.startswith(("/api/v1/", "/v1/")):
            return _validate(case, response, {})
        if response.status_code != 401:
            return f"anonymous call answered {response.status_code}, not 401: {response.text[:200]}"
        challenge = response.headers.get("www-authenticate")
        if (challenge[0] if isinstance(challenge, list) and challenge else challenge) != "Bearer":
            return "a 401 without 'WWW-Authenticate: Bearer'"
        return _validate(case, response, {})

    for op in _operations(app):
        seen.append(op.path)
        strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=_known(op.path, names))
        _run(op, st.one_of(strategy), 2, send, failures)
    assert {"/api/v1/models/{name}/versions", "/v1/scenes/{scene}/predict"} <= set(seen)
    assert not failures, f"{len(failures)} anonymous answers break the contract:\n" + "\n".join(failures[:30])


# -- the answers schemathesis once found to be 5xx, pinned ----------------------------------------
@pytest.fixture(scope="module")
def client(contract):
    from fastapi.testclient import TestClient

    app, headers, names = contract
    with TestClient(app, headers=headers, raise_server_exceptions=False) as c:
        yield c, names


@pytest.mark.parametrize(("url", "field"), [
    ("/api/v1/scenes/seeded?version=-164822501404487741397715124224", "version"),
    ("/api/v1/scenes/seeded?version=2147483648", "version"),
    ("/api/v1/features/services/any?version=54789874707111045264954097664", "version"),
    ("/api/v1/features/views/any?version=0", "version"),
    ("/api/v1/models/credit/versions/54789874707111045264954097664", "version"),
    ("/api/v1/models/credit/versions/2147483648", "version"),
    ("/api/v1/monitoring/trend?scene=seeded&days=4400000000000000000000", "days"),
])
def test_integers_outside_the_database_range_are_400(client, url, field) -> None:
    c, _names = client
    response = c.get(url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["message"]


def test_lone_surrogates_are_refused_naming_the_field(client) -> None:
    c, names = client
    before = c.get("/api/v1/models/credit/versions").json()
    body = '{"source": "runs:/x/model", "tags": {"team": "risk\\ud800"}}'
    response = c.post("/api/v1/models/credit/versions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "tags.team" in response.json()["error"]["message"]
    assert "surrogate" in response.json()["error"]["message"]
    response = c.post("/api/v1/experiments", content='{"name": "\\udc00x"}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and "'name'" in response.json()["error"]["message"]
    # a surrogate pair is valid Unicode (U+1F600) and is accepted
    response = c.post("/api/v1/experiments", content='{"name": "smile \\ud83d\\ude00"}',
                      headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "smile \U0001F600"
    assert c.get("/api/v1/models/credit/versions").json() == before


def test_an_artifact_cannot_replace_a_folder_of_artifacts(client) -> None:
    c, _names = client
    run = c.post("/api/v1/runs", json={"experiment": "clash"}).json()["info"]["id"]
    assert c.put(f"/api/v1/runs/{run}/artifacts", params={"path": "data/sample.csv"}, content=b"a,b\n1,2\n").is_success
    for path, existing in (("data", "data/sample.csv"), ("data/sample.csv/inner.txt", "data/sample.csv")):
        response = c.put(f"/api/v1/runs/{run}/artifacts", params={"path": path}, content=b"x")
        assert response.status_code == 409, response.text
        assert response.json()["error"]["details"]["existing"] == existing
    listed = c.get(f"/api/v1/runs/{run}/artifacts").json()["artifacts"]
    assert [a["path"] for a in listed] == ["data/sample.csv"]
    assert c.get(f"/api/v1/runs/{run}/artifacts/download", params={"path": "data/sample.csv"}).content == b"a,b\n1,2\n"


def _with_lone_surrogate(value: Any) -> tuple[Any, bool]:
    """``value`` with its first text (a value or a key) turned into one holding a lone surrogate."""
    if isinstance(value, str):
        return value + "\ud800", True
    if isinstance(value, dict):
        for key, item in value.items():
            changed, done = _with_lone_surrogate(item)
            if done:
                return {**value, key: changed}, True
        if value:
            key = next(iter(value))
            return {**{k: v for k, v in value.items() if k != key}, key + "\udfff": value[key]}, True
    if isinstance(value, list):
        for i, item in enumerate(value):
            changed, done = _with_lone_surrogate(item)
            if done:
                return [*value[:i], changed, *value[i + 1:]], True
    return value, False


def test_every_json_body_refuses_lone_surrogates(contract) -> None:
    """A JSON body with a lone UTF-16 surrogate anywhere is a 400 on every operation, never a 5xx."""
    import json

    from fastapi.testclient import TestClient

    app, headers, names = contract
    failures: list[str] = []
    checked = 0
    with TestClient(app, headers=headers, raise_server_exceptions=False) as http:
        for op in _operations(app):
            content = (op.definition.raw.get("requestBody") or {}).get("content", {})
            if "application/json" not in content:
                continue
            strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=_known(op.path, names),
                                      media_type="application/json")
            cases: list[Any] = []
            _run(op, strategy, 3, cases.append, failures)
            for case in cases:
                body, changed = _with_lone_surrogate(case.body)
                if not changed:
                    continue
                checked += 1
                text = json.dumps(body)  # ASCII with \\ud800 escapes, as any JSON encoder sends it
                response = http.request(case.method, case.formatted_path, params=case.query, content=text,
                                        headers={"content-type": "application/json"})
                if response.status_code != 400:
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")
                break
    assert checked >= 40
    assert not failures, "\n".join(failures[:20])


def _integer_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    if schema.get("type") == "integer":
        return schema
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        if option.get("type") == "integer":
            return option
    return None


def test_every_integer_parameter_is_bounded_and_a_huge_one_is_a_400(contract) -> None:
    """Integer query and path parameters publish a range, and a value past any database integer is a 400."""
    from fastapi.testclient import TestClient

    app, headers, names = contract
    spec = app.openapi()
    unbounded: list[str] = []
    answers: list[str] = []
    checked = 0
    with TestClient(app, headers=headers, raise_server_exceptions=False) as http:
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for param in operation.get("parameters", []):
                    schema = _integer_schema(param.get("schema", {}))
                    if schema is None:
                        continue
                    label = f"{method.upper()} {path} {param['in']} {param['name']}"
                    if "maximum" not in schema or schema["maximum"] > 2**63 - 1:
                        unbounded.append(label)
                    known = _known(path, names)
                    url = path
                    for key in (p[1:-1] for p in path.split("/") if p.startswith("{")):
                        value = str(10**30) if key == param["name"] else known.get(key, "x")
                        url = url.replace("{" + key + "}", value)
                    query = {param["name"]: str(10**30)} if param["in"] == "query" else {}
                    for other in operation.get("parameters", []):
                        if other["in"] == "query" and other.get("required") and other["name"] not in query:
                            query[other["name"]] = names["scene"]
                    response = http.request(method.upper(), url, params=query)
                    checked += 1
                    if response.status_code != 400:
                        answers.append(f"{label}: {response.status_code} {response.text[:150]}")
    assert checked >= 10
    assert not unbounded, unbounded
    assert not answers, answers


def test_a_body_that_is_not_json_is_refused_saying_so(client) -> None:
    c, _names = client
    response = c.post("/api/v1/experiments", content="{garbage", headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "not valid JSON" in error["message"] and error["details"]["problems"][0]["field"] == "", error
    for media, body in (("text/plain", "name=x"), ("application/xml", "<name>x</name>")):
        response = c.post("/api/v1/experiments", content=body, headers={"content-type": media})
        assert response.status_code == 400, response.text
        message = response.json()["error"]["message"]
        assert "Content-Type: application/json" in message and media in message, message
