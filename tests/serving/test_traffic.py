"""Traffic policies: A/B split within binomial bounds, stickiness, whitelist, canary, override."""

from __future__ import annotations

import math

import pytest

from shipyard.errors import InvalidInput
from shipyard.serving.traffic import TrafficPolicy


def policy(**spec):
    spec.setdefault("key", "user_id")
    spec.setdefault("arms", {"b": {}, "c": {}})
    return TrafficPolicy.from_spec(spec, "scene")


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_split_over_10000_keys_is_within_binomial_bounds():
    pol = policy(split={"control": 70, "b": 20, "c": 10})
    n = 10_000
    counts = {"control": 0, "b": 0, "c": 0}
    for i in range(n):
        counts[pol.choose({"user_id": f"user-{i}"})] += 1
    assert within_binomial(counts["control"], n, 0.7)
    assert within_binomial(counts["b"], n, 0.2)
    assert within_binomial(counts["c"], n, 0.1)


def test_assignment_is_sticky_and_independent_of_other_fields():
    pol = policy(split={"control": 50, "b": 50})
    for i in range(500):
        arm = pol.choose({"user_id": i})
        assert all(pol.choose({"user_id": i, "amount": j}) == arm for j in range(5))
    again = policy(split={"control": 50, "b": 50})
    assert [again.choose({"user_id": i}) for i in range(200)] == [pol.choose({"user_id": i}) for i in range(200)]


def test_whitelist_canary_and_override_order():
    pol = policy(split={"control": 100}, whitelist=[{"field": "user_id", "values": ["tester"], "arm": "c"}],
                 canary={"arm": "b", "percent": 10})
    assert pol.choose({"user_id": "tester"}) == "c"
    n = 10_000
    canary = sum(pol.choose({"user_id": f"k{i}"}) == "b" for i in range(n))
    assert within_binomial(canary, n, 0.10)
    assert pol.choose({"user_id": "tester"}, override="b") == "b"
    pol.set_canary(0)
    assert all(pol.choose({"user_id": f"k{i}"}) == "control" for i in range(1000))
    with pytest.raises(InvalidInput, match="unknown arm 'zz'"):
        pol.choose({}, override="zz")


def test_canary_keys_stay_in_canary_as_it_grows():
    pol = policy(canary={"arm": "b", "percent": 5})
    first = {i for i in range(5000) if pol.choose({"user_id": i}) == "b"}
    pol.set_canary(25)
    grown = {i for i in range(5000) if pol.choose({"user_id": i}) == "b"}
    assert first <= grown and within_binomial(len(grown), 5000, 0.25)


@pytest.mark.parametrize(("spec", "message"), [
    ({"split": {"control": 50, "zz": 50}}, "arm 'zz'"),
    ({"split": {"control": 0}}, "more than 0"),
    ({"canary": {"arm": "nope", "percent": 5}}, "arm 'nope'"),
    ({"arms": {"control": {}}}, "control"),
    ({"teleport": 1}, "unknown traffic key"),
    ({"whitelist": [{"field": "x"}]}, "needs field, values and arm"),
])
def test_bad_policies_are_refused(spec, message):
    with pytest.raises(InvalidInput, match=message):
        TrafficPolicy.from_spec({"arms": {"b": {}}, **spec} if "arms" not in spec else spec, "s")
