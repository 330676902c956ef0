"""Point-in-time join for a view with one integer or string join key, in numpy without a SQL join.

Each view row becomes one sortable int64, ``key code * span + time coordinate``; after one sort of
the view, every entity row finds its latest view row with a single ``searchsorted`` (greatest
composite not after its own) and a check that the row found has the same key. Ties on
(key, event time) are ordered by created time so the last of a run is the one created last.
The DuckDB engine uses this for single-key views and its ASOF JOIN for composite keys; both give
the same rows (see engine.py for the semantics).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Composites stay below this so that key code * span + coordinate never overflows int64.
_COMPOSITE_LIMIT = 2**62
# Integer keys are used as codes directly (offset by the smallest entity key) while their range
# is at most this many times the number of entity rows; sparser keys go through a hash lookup.
_DENSE_KEY_FACTOR = 4


def supports(entity_key: pa.DataType, view_key: pa.DataType) -> bool:
    """Whether a view key of type ``view_key`` joins entity keys of type ``entity_key`` here."""
    # Unsigned keys stay with DuckDB: their values need not fit the int64 arithmetic used here.
    if pa.types.is_signed_integer(entity_key) and pa.types.is_signed_integer(view_key):
        return True
    strings = (pa.types.is_string, pa.types.is_large_string)
    return any(f(entity_key) for f in strings) and any(f(view_key) for f in strings)


def latest_rows(entity_key: pa.Array | pa.ChunkedArray, entity_ts: np.ndarray,
                view_key: pa.Array | pa.ChunkedArray, view_ts: np.ndarray, view_created: np.ndarray | None,
                ttl_us: int | None, *, time_ranks: bool | None = None) -> np.ndarray:
    """For each entity row, the index of its view row (-1 if none).

    ``entity_ts``, ``view_ts`` and ``view_created`` are int64 microseconds (view rows without an
    event time or a key must be left out beforehand). The chosen row has the entity row's key and
    the greatest (event time, created time) with event time <= the entity time; it is dropped if
    its event time is before the entity time minus ``ttl_us``. ``time_ranks`` forces (True) or
    forbids (False) replacing times by their rank among the view's times, which otherwise happens
    only when raw microseconds would overflow the composite.
    """
    n = len(entity_ts)
    chosen = np.full(n, -1, dtype=np.int64)
    ent_code, view_code, n_codes = _key_codes(entity_key, view_key)
    rows = np.flatnonzero(view_code >= 0)  # view rows whose key some entity row has
    if len(rows) == 0 or n == 0:
        return chosen
    if len(rows) < len(view_code):
        view_code, vts = view_code[rows], view_ts[rows]
    else:
        rows, vts = None, view_ts

    tmin, tmax = int(vts.min()), int(vts.max())
    span = tmax - tmin + 1
    if time_ranks is None:
        time_ranks = n_codes * span >= _COMPOSITE_LIMIT
    if time_ranks:
        times = np.unique(vts)
        span = len(times)
        view_coord = np.searchsorted(times, vts)
        ent_coord = np.searchsorted(times, entity_ts, side="right") - 1  # -1: before every view time
    else:
        view_coord = vts - tmin
        ent_coord = np.minimum(entity_ts, tmax) - tmin  # negative: before every view time
    if n_codes * span >= _COMPOSITE_LIMIT:
        raise OverflowError("too many distinct keys and times for an int64 composite")

    composite = view_code * span + view_coord
    del view_coord
    order = _argsort(composite)
    composite = composite[order]
    if view_created is not None:
        created = view_created if rows is None else view_created[rows]
        _created_last(order, composite, created)

    asks = np.flatnonzero((ent_code >= 0) & (ent_coord >= 0))
    query = ent_code[asks] * span + ent_coord[asks]
    # Sorted queries make searchsorted walk the view once instead of jumping around it.
    query_order = np.argsort(query)
    found = np.empty(len(query), dtype=np.int64)
    found[query_order] = np.searchsorted(composite, query[query_order], side="right") - 1
    hit = found >= 0
    # The greatest composite not after the query may belong to a smaller key: then there is none.
    hit[hit] = composite[found[hit]] >= ent_code[asks[hit]] * span
    asks, found = asks[hit], order[found[hit]]
    if rows is not None:
        found = rows[found]
    if ttl_us is not None:
        fresh = view_ts[found] >= entity_ts[asks] - ttl_us
        asks, found = asks[fresh], found[fresh]
    chosen[asks] = found
    return chosen


def _key_codes(entity_key: pa.Array | pa.ChunkedArray, view_key: pa.Array | pa.ChunkedArray
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """int64 codes for both sides (-1: null, or a view key no entity row has) and the number of codes."""
    if pa.types.is_integer(entity_key.type):
        entity_key, view_key = entity_key.cast(pa.int64()), view_key.cast(pa.int64())
        bounds = pc.min_max(entity_key).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is None:
            return np.full(len(entity_key), -1, np.int64), np.full(len(view_key), -1, np.int64), 0
        if high - low <= _DENSE_KEY_FACTOR * len(entity_key):
            # Codes are the keys minus the smallest entity key: no hashing at all.
            ent, ent_valid = _int64(entity_key)
            view, view_valid = _int64(view_key)
            ent = np.where(ent_valid, ent - low, -1)
            view = np.where(view_valid & (view >= low) & (view <= high), view - low, -1)
            return ent, view, high - low + 1
    elif view_key.type != entity_key.type:
        view_key = view_key.cast(entity_key.type)
    values = pc.unique(entity_key).drop_null()
    ent = pc.index_in(entity_key, value_set=values).fill_null(-1)
    view = pc.index_in(view_key, value_set=values).fill_null(-1)
    return _int64(ent)[0], _int64(view)[0], len(values)


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
    # lexsort: last key first; the composites at ``where`` are already ascending.
    order[where] = members[np.lexsort((created[members], composite[where]))]
