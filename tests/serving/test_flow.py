"""Decision-flow combinators against hand-computed results, and validation errors naming the step."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import InvalidInput, ModelError
from shipyard.serving import flow as F
from shipyard.serving.scene import compile_scene

X_ROW = {"income": 4.0, "debt": 2.5, "age": 40.0}


def scene(flow, inputs=None, **extra):
    return {"name": "t", "inputs": inputs or {"income": "double", "debt": "double", "age": "double"},
            "flow": flow, **extra}


def run(cs, records, arm="control"):
    rows = [dict(r) for r in records]
    trace = cs.plans[arm].run(rows)
    return rows, trace


def test_serial_features_model_rules(catalog, feature_source, loaded):
    spec = scene([F.features("applicant", {"user_id": "user_id"}, id="feats"),
                  F.model("credit", "champion", output="score", id="m"),
                  F.rules([{"name": "high", "when": "score > 0.7", "then": "reject"},
                           {"name": "mid", "when": "score > 0.4", "then": "review"}], default="approve", id="policy")],
                 inputs={"user_id": "string"})
    cs = compile_scene(spec, 1, models=catalog, features=feature_source)
    rows, trace = run(cs, [{"user_id": "u1"}, {"user_id": "u7"}])
    feats = feature_source.lookup("applicant", [{"user_id": "u1"}, {"user_id": "u7"}])
    expected = loaded["lr_a"].predict_array(np.array([[f["income"], f["debt"], f["age"]] for f in feats]))
    for row, p in zip(rows, expected, strict=True):
        assert row["score"] == pytest.approx(p, abs=1e-12)
        assert row["decision"] == ("reject" if p > 0.7 else "review" if p > 0.4 else "approve")
    assert trace.models == {"credit": 1} and trace.features_s > 0 and trace.model_s > 0
    assert cs.outputs == ["score", "decision", "decision_rule"]


def test_parallel_and_weighted_fusion(catalog, loaded):
    spec = scene([F.fusion(F.model("credit", "champion", output="a"), F.model("credit", "challenger", output="b"),
                           output="fused", method="weighted", weights=[0.25, 0.75], id="fuse"),
                  F.parallel(F.expr("plus", "fused + 1"), F.expr("minus", "fused - 1"))])
    cs = compile_scene(spec, 1, models=catalog)
    rows, trace = run(cs, [X_ROW])
    X = np.array([[4.0, 2.5, 40.0]])
    a, b = loaded["lr_a"].predict_array(X)[0], loaded["lr_b"].predict_array(X)[0]
    assert rows[0]["fused"] == pytest.approx(0.25 * a + 0.75 * b, abs=1e-12)
    assert rows[0]["plus"] - rows[0]["minus"] == pytest.approx(2.0)
    assert trace.models == {"credit": 2}  # last call wins; both versions scored


@pytest.mark.parametrize(("method", "expr", "expected"), [
    ("max", None, max), ("min", None, min), ("mean", None, lambda a, b: (a + b) / 2),
    ("expr", "sqrt(a * b)", lambda a, b: (a * b) ** 0.5),
])
def test_fusion_methods(catalog, loaded, method, expr, expected):
    spec = scene([F.fusion(F.model("credit", "1", output="a"), F.model("credit", "2", output="b"),
                           output="s", method=method if method != "expr" else "mean", expr=expr)])
    cs = compile_scene(spec, 1, models=catalog)
    rows, _ = run(cs, [X_ROW])
    X = np.array([[4.0, 2.5, 40.0]])
    assert rows[0]["s"] == pytest.approx(expected(loaded["lr_a"].predict_array(X)[0],
                                                  loaded["lr_b"].predict_array(X)[0]))


def test_switch_routes_each_row_of_a_batch(catalog, loaded):
    spec = scene([F.switch([("age < 30", F.model("credit", "1", output="score", id="young")),
                            ("age < 50", F.expr("score", "0.5", id="mid"))],
                           default=F.model("credit", "2", output="score", id="old"))])
    cs = compile_scene(spec, 1, models=catalog)
    records = [{"income": 4.0, "debt": 2.5, "age": a} for a in (25.0, 40.0, 60.0, 22.0)]
    rows, _ = run(cs, records)
    X = np.array([[r["income"], r["debt"], r["age"]] for r in records])
    assert rows[0]["score"] == pytest.approx(loaded["lr_a"].predict_array(X[:1])[0])
    assert rows[1]["score"] == 0.5
    assert rows[2]["score"] == pytest.approx(loaded["lr_b"].predict_array(X[2:3])[0])
    assert rows[3]["score"] == pytest.approx(loaded["lr_a"].predict_array(X[3:4])[0])


def test_model_input_mapping_and_python_builder(catalog, loaded):
    spec = scene([F.expr("inc2", "income * 2"), F.model("credit", "1", output="p", inputs={"income": "inc2"})])
    cs = compile_scene(spec, 1, models=catalog)
    rows, _ = run(cs, [X_ROW])
    assert rows[0]["p"] == pytest.approx(loaded["lr_a"].predict_array(np.array([[8.0, 2.5, 40.0]]))[0])


@pytest.mark.parametrize(("flow", "inputs", "message", "step"), [
    ([F.model("nope", id="m")], None, "model nope@champion not found", "m"),
    ([F.model("credit", "v9", id="m")], None, "not found", "m"),
    ([F.features("ghost", {"user_id": "user_id"}, id="f")], {"user_id": "string"}, "does not exist", "f"),
    ([F.features("applicant", {"user_id": "user_id"}, ["zzz"], id="f")], {"user_id": "string"}, "no feature", "f"),
    ([F.model("credit", id="m")], {"income": "string", "debt": "double", "age": "double"}, "type mismatch", "m"),
    ([F.model("credit", id="m")], {"income": "double", "debt": "double"}, "needs input 'age'", "m"),
    ([F.expr("x", "missing_field + 1", id="e")], None, "unknown field", "e"),
    ([F.expr("x", "1", id="dup"), F.expr("y", "2", id="dup")], None, "used twice", "dup"),
    ([F.parallel(F.expr("x", "1", id="p1"), F.expr("y", "x + 1", id="p2"))], None, "unknown field", "p2"),
    ([{"type": "teleport", "id": "w"}], None, "unknown step type", "w"),
    ([F.fusion(output="f", inputs=["income", "debt"], method="weighted", weights=[1.0], id="fu")], None,
     "weights", "fu"),
])
def test_validation_names_the_step(catalog, feature_source, flow, inputs, message, step):
    with pytest.raises(InvalidInput, match=message) as info:
        compile_scene(scene(flow, inputs), 1, models=catalog, features=feature_source)
    assert info.value.details["step"] == step
    assert f"step {step!r}" in info.value.message


def test_sub_scene_cycles_are_rejected(catalog):
    docs = {"a": scene({"type": "scene", "scene": "b", "id": "to_b"}), "b": scene({"type": "scene", "scene": "a"})}
    docs["a"]["name"], docs["b"]["name"] = "a", "b"

    def loader(name, version):
        return 1, docs[name]

    with pytest.raises(InvalidInput, match="cycle: a -> b -> a"):
        compile_scene(docs["a"], 1, models=catalog, scenes=loader)


def test_sub_scene_is_inlined(catalog, loaded):
    inner = scene([F.model("credit", "1", output="score")])
    inner["name"] = "inner"
    outer = scene([{"type": "scene", "scene": "inner", "id": "sub"}, F.expr("double", "score * 2")])
    cs = compile_scene(outer, 1, models=catalog, scenes=lambda n, v: (3, inner))
    rows, _ = run(cs, [X_ROW])
    assert rows[0]["double"] == pytest.approx(2 * rows[0]["score"])


class Exploding:
    input_names = ["income", "debt", "age"]
    signature = None
    has_fast_path = True

    def predict_array(self, X):
        raise RuntimeError("boom")


def test_error_boundary_names_the_failing_step(catalog):
    catalog.add("bad", Exploding(), version=1, aliases=["champion"])
    spec = scene([F.serial(F.expr("a", "1", id="ok"), F.model("bad", output="s", id="scorer"), id="outer")])
    cs = compile_scene(spec, 1, models=catalog)
    with pytest.raises(ModelError, match="step 'scorer' \\(model\\) failed: model 'bad' version 1: RuntimeError: boom") \
            as info:
        run(cs, [X_ROW])
    assert info.value.details["step"] == "scorer" and info.value.details["dependency"] == "model"
    assert info.value.details["model"] == "bad" and info.value.details["version"] == 1
    assert info.value.details["exception"] == "RuntimeError"


def test_arms_override_models_and_validate(catalog):
    spec = scene([F.model("credit", "champion", output="score")],
                 traffic={"split": {"control": 50, "b": 50}, "arms": {"b": {"models": {"credit": "challenger"}}}})
    cs = compile_scene(spec, 1, models=catalog)
    assert cs.plans["control"].models == {"credit": 1} and cs.plans["b"].models == {"credit": 2}
    bad = scene([F.model("credit", output="score")], traffic={"arms": {"b": {"models": {"credit": "v77"}}}})
    with pytest.raises(InvalidInput, match="arm 'b'"):
        compile_scene(bad, 1, models=catalog)


def _unknown_entity_scene(on_missing, **extra):
    return scene([F.features("applicant", {"user_id": "user_id"}, id="feats", on_missing=on_missing,
                             found="known"),
                  F.rules([{"name": "unknown", "when": "not known", "then": "review"},
                           {"name": "rich", "when": "income > 5", "then": "approve"}], default="reject", id="policy")],
                 inputs={"user_id": "string"}, outputs=["decision", "known"], **extra)


def test_features_step_reports_unknown_entities(catalog, feature_source):
    from shipyard.errors import NotFound
    from shipyard.serving import ServingEngine

    # default: scored with null features, and `found` tells the rules the entity was unknown
    cs = compile_scene(_unknown_entity_scene("null"), 1, models=catalog, features=feature_source)
    rows, _ = run(cs, [{"user_id": "u4"}, {"user_id": "nobody"}])  # u4: income 3 + 4 % 5
    assert [(r["known"], r["decision"], r["income"]) for r in rows] == [(True, "approve", 7.0),
                                                                       (False, "review", None)]
    # error: 404 naming the entity field, nothing scored
    cs = compile_scene(_unknown_entity_scene("error"), 1, models=catalog, features=feature_source)
    with pytest.raises(NotFound, match=r"entity \{'user_id': 'nobody'\} has no features in service 'applicant'") as info:
        run(cs, [{"user_id": "nobody"}])
    assert info.value.status == 404 and info.value.details["field"] == "user_id"
    # fallback needs a scene fallback
    with pytest.raises(InvalidInput, match="on_missing: fallback but the scene has no 'fallback'"):
        compile_scene(_unknown_entity_scene("fallback"), 1, models=catalog, features=feature_source)
    spec = _unknown_entity_scene("fallback", fallback={"decision": "manual"})
    engine = ServingEngine(models=catalog, features=feature_source, scenes=lambda n, v: (1, spec))
    engine.install_scene(compile_scene(spec, 1, models=catalog, features=feature_source))
    for _ in range(10):  # more than the breaker's threshold: an unknown entity is not a failure
        body = engine.predict_scene("t", [{"user_id": "nobody"}], single=True)
        assert body["fallback"] is True and body["outputs"] == {"decision": "manual"}
        assert "entity not found at step 'feats'" in body["fallback_reason"]
    known = engine.predict_scene("t", [{"user_id": "u4"}], single=True)
    assert known["fallback"] is False and known["outputs"] == {"decision": "approve", "known": True}
