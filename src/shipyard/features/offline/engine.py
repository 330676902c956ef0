"""The offline engine interface (``shipyard.features.offline.get_engine`` chooses one).

An engine receives the entity rows as an Arrow table with a row number (``__row``), the join keys
and the row timestamp (``__ts``, TIMESTAMP in UTC), plus one ``ViewRequest`` per feature view. It
returns ``__row`` and the requested feature columns, one row per entity row, in ``__row`` order.

The semantics every engine implements, per entity row and view: take the view row with the same
join keys and the greatest event timestamp not after the row's timestamp (the created timestamp
breaks ties); if that timestamp is older than the row's timestamp minus the view's TTL, or no such
row exists, the features are null. Rows identical in keys, event and created timestamps are
duplicates: any one of them may be chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from shipyard.features.definitions import FeatureView

ROW = "__row"
TS = "__ts"


@dataclass
class ViewRequest:
    view: FeatureView
    features: list[str]
    output_names: list[str]


class OfflineEngine(Protocol):
    name: str

    def point_in_time_join(self, entity: pa.Table, requests: list[ViewRequest]) -> pa.Table: ...
