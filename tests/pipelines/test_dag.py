"""Pipeline documents and validation: every problem is refused naming its node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shipyard.errors import InvalidInput
from shipyard.pipelines.components import builtins, component_of, make_component
from shipyard.pipelines.dag import Pipeline, bind, load_pipeline, select, substitute


def _doc(**changes: object) -> dict:
    doc = {
        "name": "p",
        "params": {"target": "bad"},
        "nodes": [
            {"id": "data", "component": "comps.py:make_frame", "params": {"n": 50}, "position": {"x": 10, "y": 20}},
            {"id": "split", "component": "split", "inputs": {"data": "data"}, "params": {"target": "${target}"}},
            {"id": "stats", "component": "comps.py:stats", "inputs": {"data": "split.train"}},
        ],
    }
    doc.update(changes)
    return doc


def _problem(doc: dict, base: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        bind(Pipeline.from_document(doc, base))
    return err.value


def test_valid_document_binds_with_types_defaults_and_order(components_dir: Path) -> None:
    bound = bind(Pipeline.from_document(_doc(), components_dir), {"target": "g"})
    assert bound.order == ["data", "split", "stats"]
    assert bound.nodes["split"].params == {"target": "g", "method": "stratified", "test_size": 0.3, "seed": 0,
                                           "time_column": None, "cutoff": None}
    assert bound.nodes["stats"].inputs == {"data": ("split", "train")}
    assert bound.nodes["data"].params == {"n": 50, "seed": 0}


def test_document_round_trip_keeps_ids_positions_and_edge_ids(components_dir: Path) -> None:
    first = Pipeline.from_document(_doc(), components_dir)
    doc = first.to_document()
    assert doc["nodes"][0]["position"] == {"x": 10, "y": 20}
    assert [e["id"] for e in doc["edges"]] == ["data.None->split.data", "split.train->stats.data"]
    again = Pipeline.from_document(json.loads(json.dumps(doc)), components_dir)
    assert again.to_document() == doc and again.sha256() == first.sha256()
    # an editor may rename edge ids; they are kept as given
    doc["edges"][0]["id"] = "e1"
    assert Pipeline.from_document(doc, components_dir).to_document()["edges"][0]["id"] == "e1"


def test_python_api_builds_the_same_document(components_dir: Path) -> None:
    p = Pipeline("p", params={"target": "bad"}, base_dir=components_dir)
    data = p.add("data", "comps.py:make_frame", n=50, position={"x": 10, "y": 20})
    split = p.add("split", "split", data=data, target="${target}")
    p.add("stats", "comps.py:stats", data=split["train"])
    assert p.to_document() == Pipeline.from_document(_doc(), components_dir).to_document()


@pytest.mark.parametrize(("change", "node", "field", "words"), [
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"}, {"id": "b", "component": "nosuch"}]},
     "b", "component", "unknown component 'nosuch'"),
    ({"nodes": [{"id": "a", "component": "comps.py:missing_fn"}]}, "a", "component", "cannot be loaded"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame", "params": {"rows": 3}}]},
     "a", "params.rows", "has no param 'rows'"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame", "params": {"n": "many"}}]},
     "a", "params.n", "must be int"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "s", "component": "split", "inputs": {"data": "a"}}]}, "s", "params.target", "needs param"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "s", "component": "split", "inputs": {"data": "a"}, "params": {"target": "${nope}"}}]},
     "s", "params", "${nope}"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "s", "component": "split", "inputs": {"data": "a"},
                 "params": {"target": "t", "method": "sideways"}}]}, "s", "params.method", "use one of"),
    ({"nodes": [{"id": "s", "component": "comps.py:stats"}]}, "s", "inputs.data", "is not connected"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "b", "component": "comps.py:stats", "inputs": {"data": "a"}},
                {"id": "c", "component": "bin_woe", "inputs": {"train": "b.mean"}, "params": {"target": "t"}}]},
     "c", "inputs.train", "takes table but b.mean gives json"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "b", "component": "comps.py:stats", "inputs": {"data": "a.nosuch"}}]},
     "b", "edges", "has no output 'nosuch'"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "b", "component": "comps.py:stats", "inputs": {"data": "a", "extra": "a"}}]},
     "b", "inputs.extra", "has no input 'extra'"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame"},
                {"id": "b", "component": "comps.py:total", "inputs": {"data": "zz"}}]}, "b", "edges", "unknown node 'zz'"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame", "timeout_s": -1}]}, "a", "timeout_s", "positive"),
    ({"nodes": [{"id": "a", "component": "comps.py:make_frame", "retries": 1.5}]}, "a", "retries", "whole number"),
])
def test_bad_documents_are_refused_naming_the_node(components_dir: Path, change: dict, node: str, field: str,
                                                   words: str) -> None:
    err = _problem(_doc(**change), components_dir)
    assert err.details["node"] == node and err.details["field"] == field
    assert words in err.message and repr(node) in err.message


def test_a_cycle_is_refused_naming_its_nodes(components_dir: Path) -> None:
    doc = {"name": "c", "nodes": [
        {"id": "a", "component": "comps.py:make_frame"},
        {"id": "b", "component": "comps.py:stats", "inputs": {"data": "c.doubled"}},
        {"id": "c", "component": "comps.py:stats", "inputs": {"data": "b.doubled"}},
    ]}
    err = _problem(doc, components_dir)
    assert "cycle" in err.message and "'b'" in err.message and "'c'" in err.message and "'a'" not in err.message


def test_several_problems_are_all_reported(components_dir: Path) -> None:
    doc = {"name": "m", "nodes": [{"id": "a", "component": "nosuch"}, {"id": "b", "component": "comps.py:stats"}]}
    err = _problem(doc, components_dir)
    assert {p["node"] for p in err.details["problems"]} == {"a", "b"} and "1 more problem" in err.message


def test_structural_mistakes_in_documents(components_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="used twice"):
        Pipeline.from_document({"name": "d", "nodes": [{"id": "a", "component": "split"}] * 2})
    with pytest.raises(InvalidInput, match="unknown key"):
        Pipeline.from_document({"name": "d", "nodes": [], "stages": []})
    with pytest.raises(InvalidInput, match="needs an id"):
        Pipeline.from_document({"name": "d", "nodes": [{"component": "split"}]})
    with pytest.raises(InvalidInput, match="not a parameter"):
        bind(Pipeline.from_document(_doc(), components_dir), {"nope": 1})
    bad_yaml = components_dir / "bad.yaml"
    bad_yaml.write_text("name: [unclosed")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_pipeline(bad_yaml)


def test_yaml_and_python_files_load(components_dir: Path) -> None:
    (components_dir / "p.yaml").write_text(yaml.safe_dump(_doc()))
    (components_dir / "p.py").write_text(
        "from shipyard.pipelines import Pipeline\n"
        "pipeline = Pipeline('p', params={'target': 'bad'})\n"
        "data = pipeline.add('data', 'comps.py:make_frame', n=50, position={'x': 10, 'y': 20})\n"
        "split = pipeline.add('split', 'split', data=data, target='${target}')\n"
        "pipeline.add('stats', 'comps.py:stats', data=split['train'])\n")
    from_yaml, from_py = load_pipeline(components_dir / "p.yaml"), load_pipeline(components_dir / "p.py")
    assert from_yaml.sha256() == from_py.sha256()
    assert from_py.base_dir == components_dir.resolve()


def test_select_from_and_to(components_dir: Path) -> None:
    p = Pipeline.from_document(_doc(), components_dir)
    assert select(p, "split", None) == {"split", "stats"}
    assert select(p, None, "split") == {"data", "split"}
    assert select(p, "split", "split") == {"split"}
    with pytest.raises(InvalidInput, match="'nosuch' is not a node"):
        select(p, "nosuch", None)


def test_substitution_keeps_types_and_interpolates() -> None:
    params = {"n": 3, "name": "x"}
    assert substitute({"a": "${n}", "b": "id-${name}-${n}", "c": ["${n}"]}, params, "node") == \
        {"a": 3, "b": "id-x-3", "c": [3]}


def test_components_are_typed_from_decorators_or_annotations() -> None:
    known = builtins()
    assert {"load_dataset", "split", "profile", "bin_woe", "select_variables", "train_scorecard", "train_model",
            "tune", "evaluate", "rule_mining", "register_model", "materialize_features", "daily_report",
            "load_file"} <= set(known)
    split = known["split"].to_dict()
    assert [p["name"] for p in split["outputs"]] == ["train", "test"]
    assert {"name": "method", "type": "str", "required": False, "default": "stratified",
            "choices": ["stratified", "random", "oot"]} in split["params"]

    import pandas as pd

    def plain(frame: pd.DataFrame, k: int = 3, label: str = "x") -> pd.DataFrame:
        return frame

    comp = component_of(plain)
    assert [(p.name, p.type) for p in comp.inputs] == [("frame", "table")]
    assert [(p.name, p.type) for p in comp.params] == [("k", "int"), ("label", "str")]
    assert [(p.name, p.type) for p in comp.outputs] == [("output", "table")]
    code_a = comp.code_hash

    def plain(frame: pd.DataFrame, k: int = 3, label: str = "y") -> pd.DataFrame:  # noqa: F811 - edited body
        return frame

    assert make_component(plain).code_hash != code_a
    with pytest.raises(InvalidInput, match="args"):
        make_component(lambda *a: a)
