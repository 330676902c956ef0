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

from shipyard.features.offline.sorted_join import KeyCodes, key_kind, latest_rows
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
    codes = KeyCodes.of(_arrow([k for k, _ in entity], data["kind"]))
    assert codes.offset is None or data["kind"] != "string"
    view_code = codes.view(_arrow([k for k, _, _ in view], data["kind"]))
    got = latest_rows(codes.entity, entity_ts, view_code, view_ts, created, codes.count, ttl, time_ranks=time_ranks)

    rows = [{"k": k, "ts": t, "created": c, "i": i} for i, (k, t, c) in enumerate(view)]
    want = naive_pit([{"k": k, "event_timestamp": t} for k, t in entity], rows, ["k"], "ts", ["i"], ttl,
                     "created" if data["with_created"] else None)
    for j, (chosen, expected) in enumerate(zip(got.tolist(), want, strict=True)):
        if expected["i"] is None or entity[j][0] is None:
            assert chosen == -1, (j, chosen, entity[j])
        else:
            assert chosen == expected["i"], (j, view[chosen] if chosen >= 0 else None, view[expected["i"]])


def test_chunked_keys_nulls_and_no_view_rows() -> None:
    codes = KeyCodes.of(pa.chunked_array([[1, None], [3]], pa.int64()))
    assert codes.entity.tolist() == [0, -1, 2] and codes.count == 3 and codes.offset == 1
    view_code = codes.view(pa.chunked_array([[3, 1], [], [9, None, 2]], pa.int32()))
    assert view_code.tolist() == [2, 0, -1, -1, 1]
    times = np.array([10, 10, 10])
    got = latest_rows(codes.entity, times, view_code, np.array([5, 11, 1, 1, 1]), None, codes.count, None)
    assert got.tolist() == [-1, -1, 0]
    empty = latest_rows(codes.entity, times, np.array([], np.int64), np.array([], np.int64), None, codes.count, 5)
    assert empty.tolist() == [-1, -1, -1]
    nothing = KeyCodes.of(pa.array([None, None], pa.string()))
    assert nothing.entity.tolist() == [-1, -1] and nothing.view(pa.array(["a"])).tolist() == [-1]


def test_key_kinds() -> None:
    assert key_kind(pa.int32()) == "int" and key_kind(pa.large_string()) == "string"
    assert key_kind(pa.uint64()) is None and key_kind(pa.float64()) is None and key_kind(pa.timestamp("us")) is None
