"""The numpy single-key join (sorted_join.latest_rows) against the naive reference, on raw arrays.

Covers what the project-level tests cannot reach cheaply: keys used as offsets, keys looked up by
hash, string keys, times so far apart that they are replaced by their ranks, and nulls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.features.offline.sorted_join import latest_rows, supports
from tests.features.pit_reference import naive_pit

KEYS = {
    "dense": st.integers(-3, 6),
    "sparse": st.sampled_from([-(2**62), -5, 0, 7, 10**15, 2**62]),
    "string": st.sampled_from(["a", "b", "", "ü", "a longer key"]),
}
TIME_SCALES = [1, 3_600_000_000, 2**50]  # microseconds, hours, and spans too wide for raw composites


@st.composite
def arrays(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(KEYS)))
    scale = draw(st.sampled_from(TIME_SCALES))
    times = st.integers(-40, 40).map(lambda t: t * scale)
    key = KEYS[kind] | st.none()
    view = draw(st.lists(st.tuples(KEYS[kind], times, st.integers(0, 3)), max_size=40, unique=True))
    entity = draw(st.lists(st.tuples(key, times), min_size=1, max_size=30))
    ttl = draw(st.sampled_from([None, 0, 5 * scale, 30 * scale]))
    with_created = draw(st.booleans())
    if not with_created:  # without created times, (key, time) pairs must be unique to have one answer
        view = list({(k, t): (k, t, 0) for k, t, _ in view}.values())
    return {"kind": kind, "view": view, "entity": entity, "ttl": ttl, "with_created": with_created}


def _arrow(values: list[Any], kind: str) -> pa.Array:
    return pa.array(values, pa.string() if kind == "string" else pa.int64())


@settings(max_examples=300, deadline=None)
@given(data=arrays(), time_ranks=st.sampled_from([None, True, False]))
def test_latest_rows_matches_naive_reference(data: dict[str, Any], time_ranks: bool | None) -> None:
    view, entity, ttl = data["view"], data["entity"], data["ttl"]
    view_ts = np.array([t for _, t, _ in view], dtype=np.int64)
    entity_ts = np.array([t for _, t in entity], dtype=np.int64)
    created = np.array([c for _, _, c in view], dtype=np.int64) if data["with_created"] else None
    span = int(view_ts.max()) - int(view_ts.min()) + 1 if view else 1
    if time_ranks is False and span * 2**20 >= 2**62:
        time_ranks = None  # raw microseconds cannot be forced when they overflow
    got = latest_rows(_arrow([k for k, _ in entity], data["kind"]), entity_ts,
                      _arrow([k for k, _, _ in view], data["kind"]), view_ts, created, ttl, time_ranks=time_ranks)

    rows = [{"k": k, "ts": t, "created": c, "i": i} for i, (k, t, c) in enumerate(view)]
    want = naive_pit([{"k": k, "event_timestamp": t} for k, t in entity], rows, ["k"], "ts", ["i"], ttl,
                     "created" if data["with_created"] else None)
    for j, (chosen, expected) in enumerate(zip(got.tolist(), want, strict=True)):
        if expected["i"] is None or entity[j][0] is None:
            assert chosen == -1, (j, chosen, entity[j])
        else:
            assert chosen == expected["i"], (j, view[chosen] if chosen >= 0 else None, view[expected["i"]])


def test_chunked_keys_and_no_view_rows() -> None:
    entity_key = pa.chunked_array([[1, 2], [3]], pa.int64())
    view_key = pa.chunked_array([[3, 1], [], [9]], pa.int64())
    got = latest_rows(entity_key, np.array([10, 10, 10]), view_key, np.array([5, 11, 1]), None, None)
    assert got.tolist() == [-1, -1, 0]
    empty = latest_rows(entity_key, np.array([10, 10, 10]), pa.array([], pa.int64()), np.array([], np.int64),
                        None, 5)
    assert empty.tolist() == [-1, -1, -1]


def test_supported_key_types() -> None:
    assert supports(pa.int64(), pa.int32()) and supports(pa.string(), pa.large_string())
    assert not supports(pa.int64(), pa.string()) and not supports(pa.uint64(), pa.uint64())
    assert not supports(pa.float64(), pa.float64()) and not supports(pa.timestamp("us"), pa.timestamp("us"))
