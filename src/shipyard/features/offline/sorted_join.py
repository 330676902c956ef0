"""Point-in-time join for a view with one integer or string join key, in numpy without a SQL join.

Keys become int64 codes shared by entity and view rows (integer keys in a narrow range are their
own codes, offset by the smallest entity key; other keys are looked up by hash). Each view row
becomes one sortable int64, ``code * span + time coordinate``; after one sort of the view, every
entity row finds its latest view row with a single ``searchsorted`` (greatest composite not after
its own) and a check that the row found has the same code. Ties on (key, event time) are ordered
by created time so the last of a run is the one created last. The DuckDB engine uses this for
single-key views and its ASOF JOIN for composite keys; both give the same rows (see engine.py for
the semantics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Composites stay below this so that code * span + coordinate never overflows int64.
_COMPOSITE_LIMIT = 2**62
# Integer keys are their own codes while their range is at most this many times the number of
# entity rows (then the codes stay few); sparser keys are looked up by hash.
_DENSE_KEY_FACTOR = 4


def key_kind(arrow_type: pa.DataType) -> str | None:
    """"int" or "string" for join keys this join handles, None for the others (DuckDB joins those)."""
    # Unsigned keys are left out: their values need not fit the int64 arithmetic used here.
    if pa.types.is_signed_integer(arrow_type):
        return "int"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return None


@dataclass
class KeyCodes:
    """Codes of the entity rows' keys (-1 for null) and how to code view keys the same way."""

    entity: np.ndarray
    count: int
    offset: int | None = None  # integer keys: code = key - offset, for keys in [offset, offset + count)
    values: pa.Array | None = None  # otherwise: code = position of the key in these distinct entity keys

    @classmethod
    def of(cls, entity_key: pa.Array | pa.ChunkedArray) -> KeyCodes:
        if pa.types.is_integer(entity_key.type):
            entity_key = entity_key.cast(pa.int64())
            bounds = pc.min_max(entity_key).as_py()
            low, high = bounds["min"], bounds["max"]
            if low is None:
                return cls(np.full(len(entity_key), -1, np.int64), 0, offset=0)
            if high - low <= _DENSE_KEY_FACTOR * len(entity_key):
                keys, valid = _int64(entity_key)
                return cls(np.where(valid, keys - low, -1), high - low + 1, offset=low)
        values = pc.unique(entity_key).drop_null()
        return cls(_int64(pc.index_in(entity_key, value_set=values).fill_null(-1))[0], len(values), values=values)

    def view(self, view_key: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Codes of view keys; -1 for null keys and keys no entity row has."""
        if self.offset is not None:
            keys, valid = _int64(view_key.cast(pa.int64()))
            inside = (keys >= self.offset) & (keys < self.offset + self.count)
            return np.where(valid & inside, keys - self.offset, -1)
        assert self.values is not None
        if view_key.type != self.values.type:
            view_key = view_key.cast(self.values.type)
        return _int64(pc.index_in(view_key, value_set=self.values).fill_null(-1))[0]


def latest_rows(entity_code: np.ndarray, entity_ts: np.ndarray, view_code: np.ndarray, view_ts: np.ndarray,
                view_created: np.ndarray | None, codes: int, ttl_us: int | None, *,
                time_ranks: bool | None = None) -> np.ndarray:
    """For each entity row, the index of its view row (-1 if none).

    Codes are int64 in [0, codes), -1 for rows that match nothing; times are int64 microseconds.
    The chosen row has the entity row's code and the greatest (event time, created time) with
    event time <= the entity time; it is dropped if its event time is before the entity time
    minus ``ttl_us``. ``time_ranks`` forces (True) or forbids (False) replacing times by their
    rank among the view's times, which otherwise happens only when raw microseconds would overflow
    the composite.
    """
    chosen = np.full(len(entity_ts), -1, dtype=np.int64)
    if len(view_code) == 0 or len(entity_ts) == 0:
        return chosen
    rows: np.ndarray | None = None  # positions of the view rows kept, when some are dropped
    vts = view_ts
    if view_code.min() < 0:
        rows = np.flatnonzero(view_code >= 0)
        if len(rows) == 0:
            return chosen
        view_code, vts = view_code[rows], view_ts[rows]

    tmin, tmax = int(vts.min()), int(vts.max())
    span = tmax - tmin + 1
    if time_ranks is None:
        time_ranks = codes * span >= _COMPOSITE_LIMIT
    if time_ranks:
        times = np.unique(vts)
        span = len(times)
        view_coord = np.searchsorted(times, vts)
        entity_coord = np.searchsorted(times, entity_ts, side="right") - 1  # -1: before every view time
    else:
        view_coord = vts - tmin
        entity_coord = np.minimum(entity_ts, tmax) - tmin  # negative: before every view time
    if codes * span >= _COMPOSITE_LIMIT:
        raise OverflowError(f"{codes} keys x {span} times do not fit an int64 composite; use time_ranks")

    composite = view_code * span
    composite += view_coord
    del view_coord, view_code
    order = _argsort(composite)
    composite = composite[order]
    if view_created is not None:
        _created_last(order, composite, view_created if rows is None else view_created[rows])

    asks = np.flatnonzero((entity_code >= 0) & (entity_coord >= 0))
    query = entity_code[asks] * span + entity_coord[asks]
    # Sorted queries make searchsorted walk the view once instead of jumping around it.
    query_order = np.argsort(query)
    found = np.empty(len(query), dtype=np.int64)
    found[query_order] = np.searchsorted(composite, query[query_order], side="right") - 1
    hit = found >= 0
    # The greatest composite not after the query may belong to a smaller code: then there is none.
    hit[hit] = composite[found[hit]] >= entity_code[asks[hit]] * span
    asks, found = asks[hit], order[found[hit]]
    if rows is not None:
        found = rows[found]
    if ttl_us is not None:
        fresh = view_ts[found] >= entity_ts[asks] - ttl_us
        asks, found = asks[fresh], found[fresh]
    chosen[asks] = found
    return chosen


def _int64(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | bool]:
    """The values as an int64 numpy array (nulls read as 0) and where they are not null."""
    valid: np.ndarray | bool = True
    if values.null_count:
        mask = values.is_valid()
        valid = (mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask).to_numpy(zero_copy_only=False)
        values = values.fill_null(0)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), valid


def _argsort(composite: np.ndarray) -> np.ndarray:
    # Views are usually stored in time order, which leaves the composite in a few long ascending
    # runs; timsort ("stable") merges those in near-linear time but is slower than quicksort on
    # shuffled rows, so count the descents to pick one.
    descents = np.count_nonzero(composite[1:] < composite[:-1])
    return np.argsort(composite, kind="stable" if descents * 64 < len(composite) else "quicksort")


def _created_last(order: np.ndarray, composite: np.ndarray, created: np.ndarray) -> None:
    """Reorder runs of equal composites (same key and event time) by created time, in place."""
    tie = composite[1:] == composite[:-1]
    if not tie.any():
        return
    in_run = np.zeros(len(composite), dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    where = np.flatnonzero(in_run)
    members = order[where]
    # lexsort sorts by its last key first; the composites at ``where`` are already ascending.
    order[where] = members[np.lexsort((created[members], composite[where]))]
