"""Search filters against a naive Python evaluation of the same runs, on every backend."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.tracking.entities import RunRecord
from shipyard.tracking.search import BoolOp, Comparison, parse_filter

MODELS = ["lgbm", "xgb", "LGBM", "logreg", "lgbm_dart", "scorecard 100%"]

FILTERS = [
    "metrics.auc > 0.7",
    "metrics.auc > 0.7 and params.model = 'lgbm'",
    "metrics.auc >= 0.75 or metrics.ks < 0.2",
    "(metrics.auc > 0.6 or params.model = 'xgb') and tags.stage != 'prod'",
    "params.model like 'lgbm%'",
    "params.model like 'LGBM'",
    "params.model ilike 'lgbm'",
    "params.model not like '%b%'",
    "params.model like 'lgbm_dar_'",
    "params.model in ('xgb', 'logreg')",
    "params.model not in ('xgb', 'logreg')",
    "metrics.ks is null",
    "metrics.ks is not null and metrics.ks <= 0.3",
    "tags.stage = 'prod' and metrics.`val auc` > 0.5",
    'metrics."val auc" < 0.5',
    "params.depth = '6'",
    "params.depth != '6'",
    "attributes.status = 'FAILED'",
    "status != 'FAILED' and metrics.auc < 0.65",
    "name like 'run-1%'",
    "metrics.auc in (0.5, 0.75)",
    "params.model = 'scorecard 100%'",
    "metrics.loss <= -1.5e-1",
]


def _naive(node: Any, record: RunRecord) -> bool:
    """Reference semantics: a missing metric/param/tag never matches a comparison."""
    if isinstance(node, BoolOp):
        results = [_naive(item, record) for item in node.items]
        return all(results) if node.op == "and" else any(results)
    assert isinstance(node, Comparison)
    source = {"metrics": record.metrics, "params": record.params, "tags": record.tags}.get(node.entity)
    actual = getattr(record.info, node.key) if source is None else source.get(node.key)
    if node.op == "is null":
        return actual is None
    if node.op == "is not null":
        return actual is not None
    if actual is None:
        return False
    value = node.value
    if node.op in ("like", "not like", "ilike"):
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in value)
        hit = re.fullmatch(pattern, actual, re.S | (re.I if node.op == "ilike" else 0)) is not None
        return not hit if node.op == "not like" else hit
    ops = {
        "=": lambda a: a == value, "!=": lambda a: a != value, "<": lambda a: a < value,
        "<=": lambda a: a <= value, ">": lambda a: a > value, ">=": lambda a: a >= value,
        "in": lambda a: a in value, "not in": lambda a: a not in value,
    }
    return ops[node.op](actual)


@pytest.fixture
def populated(workspace):
    rng = random.Random(7)
    tracking = workspace.tracking
    for i in range(40):
        run = tracking.start_run(experiment="credit", name=f"run-{i}")
        params = {"model": rng.choice(MODELS)}
        if rng.random() < 0.7:
            params["depth"] = rng.choice([4, 6, 8])
        metrics = {"auc": rng.choice([0.5, 0.62, 0.7, 0.75, 0.81, 0.9]), "loss": round(rng.uniform(-1, 1), 3)}
        if rng.random() < 0.6:
            metrics["ks"] = round(rng.uniform(0.05, 0.5), 3)
        if rng.random() < 0.5:
            metrics["val auc"] = round(rng.random(), 3)
        run.log_batch(metrics=[(k, v, 0) for k, v in metrics.items()], params=params,
                      tags={"stage": rng.choice(["dev", "prod"])} if rng.random() < 0.8 else {})
        run.end(rng.choice(["FINISHED", "FINISHED", "FAILED"]))
    tracking.start_run(experiment="other").end()  # never returned for experiment="credit"
    return tracking


def test_filters_match_naive_reference(populated) -> None:
    everything = populated.search_runs("credit")
    assert len(everything) == 40
    for text in FILTERS:
        expected = sorted(r.id for r in everything if _naive(parse_filter(text), r))
        got = sorted(r.id for r in populated.search_runs("credit", filter=text))
        assert got == expected, text
    # sanity on a hand-written predicate, independent of the parser
    hand = sorted(r.id for r in everything if r.metrics["auc"] > 0.7 and r.params["model"] == "lgbm")
    assert sorted(r.id for r in populated.search_runs("credit", filter="metrics.auc > 0.7 and params.model = 'lgbm'")) == hand
    assert 0 < len(hand) < 40


def test_order_by_and_limits(populated) -> None:
    everything = populated.search_runs("credit")
    ranked = populated.search_runs("credit", order_by=["metrics.ks DESC", "attributes.name ASC"])
    with_ks = sorted((r for r in everything if "ks" in r.metrics), key=lambda r: (-r.metrics["ks"], r.info.name))
    without = sorted((r for r in everything if "ks" not in r.metrics), key=lambda r: r.info.name)
    assert [r.id for r in ranked] == [r.id for r in with_ks + without]  # missing values last
    ascending = populated.search_runs("credit", order_by="metrics.loss")
    assert [r.metrics["loss"] for r in ascending] == sorted(r.metrics["loss"] for r in everything)
    top = populated.search_runs("credit", order_by=["metrics.loss DESC"], max_results=5)
    assert [r.metrics["loss"] for r in top] == sorted((r.metrics["loss"] for r in everything), reverse=True)[:5]
    page2 = populated.search_runs("credit", order_by=["metrics.loss DESC"], max_results=5, offset=5)
    assert [r.metrics["loss"] for r in page2] == sorted((r.metrics["loss"] for r in everything), reverse=True)[5:10]
    assert len(populated.search_runs()) == 41
    assert len(populated.search_runs(["credit", "other"])) == 41


def test_compare_runs_side_by_side(populated) -> None:
    runs = populated.search_runs("credit", order_by=["attributes.name"], max_results=3)
    frame = populated.compare_runs([r.id for r in runs])
    assert list(frame.columns) == [r.id for r in runs]
    assert frame.loc["name"].tolist() == [r.info.name for r in runs]
    assert frame.loc["metrics.auc"].tolist() == [r.metrics["auc"] for r in runs]
    assert frame.loc["params.model"].tolist() == [r.params["model"] for r in runs]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.auc > '0.7'", "compares to numbers"),
        ("params.model = lgbm", "expected a quoted string or a number"),
        ("params.depth = 6", "quote the value"),
        ("params.model > 'a'", "does not apply"),
        ("foo.bar = 1", "unknown field"),
        ("colour = 'red'", "unknown attribute"),
        ("metrics.auc > 0.7 params.x = 'a'", "join conditions"),
        ("(metrics.auc > 0.7", r"expected '\)'"),
        ("params.model = 'lgbm", "unterminated quote"),
        ("metrics.auc >", "filter ended"),
        ("metrics.auc > 0.7; drop table runs", "unexpected character"),
    ],
)
def test_bad_filters_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        parse_filter(text)
    assert info.value.details["field"] == "filter"


def test_bad_order_by_and_limits(sqlite_workspace) -> None:
    tracking = sqlite_workspace.tracking
    with pytest.raises(InvalidInput, match="order_by"):
        tracking.search_runs(order_by=["metrics.auc DESC extra"])
    with pytest.raises(InvalidInput, match="max_results"):
        tracking.search_runs(max_results=0)


def test_injection_attempts_are_plain_values(sqlite_workspace) -> None:
    tracking = sqlite_workspace.tracking
    run = tracking.start_run(experiment="credit")
    run.log_param("model", "x' OR '1'='1")
    run.end()
    assert tracking.search_runs(filter="params.model = 'x'' OR ''1''=''1'")[0].id == run.id
    assert tracking.search_runs(filter="params.model = 'x'") == []
