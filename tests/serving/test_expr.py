from __future__ import annotations

import pytest

from shipyard.errors import InvalidInput
from shipyard.serving.expr import compile_expression


@pytest.mark.parametrize(("source", "env", "expected"), [
    ("a / max(b, 1)", {"a": 6, "b": 3}, 2.0),
    ("a / max(b, 1)", {"a": 6, "b": 0}, 6.0),
    ("'reject' if score > 0.8 else 'approve'", {"score": 0.9}, "reject"),
    ("score > 0.8", {}, False),                      # missing -> comparisons are false
    ("a + 1", {"a": None}, None),                    # missing propagates through arithmetic
    ("coalesce(a, b, 3)", {"a": None, "b": None}, 3),
    ("isnull(a) or a < 0", {"a": None}, True),
    ("1 < x <= 3", {"x": 3}, True),
    ("grade in ['A', 'B']", {"grade": "B"}, True),
    ("not flag and -x == -2", {"flag": False, "x": 2}, True),
    ("clip(x, 0, 1) + round(2.567, 2)", {"x": 5}, 3.57),
    ("2 ** 10 % 7", {}, 2),
])
def test_expressions_evaluate(source, env, expected):
    assert compile_expression(source)(env) == pytest.approx(expected) if isinstance(expected, float) else \
        compile_expression(source)(env) == expected


@pytest.mark.parametrize(("source", "construct"), [
    ("__import__('os').system('id')", "__import__"),
    ("x.__class__", "Attribute"),
    ("[c for c in x]", "ListComp"),
    ("lambda: 1", "Lambda"),
    ("x[0]", "Subscript"),
    ("open('f')", "open"),
    ("max(x, key=1)", "keyword"),
])
def test_unsafe_constructs_are_refused_naming_the_step(source, construct):
    with pytest.raises(InvalidInput, match=construct) as info:
        compile_expression(source, "my_step")
    assert info.value.details["step"] == "my_step"


def test_names_are_collected_and_syntax_errors_explained():
    assert compile_expression("a + b * coalesce(c, 1)").names == {"a", "b", "c"}
    with pytest.raises(InvalidInput, match="not valid"):
        compile_expression("a +", "s")


def test_huge_exponent_is_refused_at_run_time():
    with pytest.raises(ValueError):
        compile_expression("x ** 100000")({"x": 10})
