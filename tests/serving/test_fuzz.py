"""Schemathesis fuzzes the prediction routes from the OpenAPI spec: no input may cause a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from shipyard.server import create_app  # noqa: E402
from shipyard.serving import ServingEngine, apply_scene  # noqa: E402
from shipyard.serving import flow as F  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_app(module_workspace, loaded):
    from tests.serving.conftest import make_catalog

    catalog = make_catalog(loaded)
    ws = module_workspace
    apply_scene(ws, {"name": "fuzz", "inputs": {"income": "double", "debt": "double", "age": "double",
                                                "tag": "string?"},
                     "flow": [F.model("credit", output="score"), F.expr("decision", "score > 0.5")]}, models=catalog)
    engine = ServingEngine(ws, models=catalog)
    return create_app(ws, engine=engine, single_model="credit@champion", follow_interval=0)


def _operations(app):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in loaded.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(("/v1/", "/invocations", "/ping")):
            yield operation


def test_prediction_routes_never_answer_5xx(fuzz_app):
    from hypothesis import given

    operations = list(_operations(fuzz_app))
    assert {op.path for op in operations} >= {"/v1/scenes/{scene}/predict", "/v1/models/{name}/{ref}/predict",
                                               "/v1/models/{name}/{ref}/invocations", "/invocations"}
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            params = case.path_parameters or {}
            if "scene" in params:
                params["scene"] = "fuzz"
            if "name" in params:
                params["name"], params["ref"] = "credit", "champion"
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        check()
    assert not failures, failures[:5]
