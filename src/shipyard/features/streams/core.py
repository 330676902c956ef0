"""Transport-independent stream ingestion: decode, validate, write online and offline, sort out
what to acknowledge and what to dead-letter.

A message body is one JSON object holding the view's join keys, its timestamp field and every
feature (extra keys are ignored). A message that is not valid JSON or fails validation goes to the
dead-letter destination with the reason, and the consumer carries on. Messages are acknowledged
only after the online write (and the offline append) succeeded, so a crash redelivers them; the
redelivered rows are recognised as duplicates of (entity key, event timestamp) and not applied
again online, and reach the offline log only if the crash came before their offline append
(``write_prepared`` looks them up there, whether or not the transport marked them redelivered).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import InvalidInput
from shipyard.features.definitions import FeatureView
from shipyard.features.push import PushResult, prepare_rows, write_prepared

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore


@dataclass
class DeadLetter:
    message_id: Any
    reason: str
    payload: bytes


@dataclass
class BatchOutcome:
    ack: list[Any] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    result: PushResult | None = None
    # seconds from each written row's event time to the moment it became readable online
    freshness: list[float] = field(default_factory=list)


@dataclass
class ConsumeStats:
    """Counters of one consumer run."""

    messages: int = 0
    written: int = 0
    duplicates: int = 0
    stale: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    # delivered before a crash and read again: own pending entries (Redis), redeliveries (NATS)
    redelivered: int = 0
    # entries taken over from other consumers that left them pending (Redis XAUTOCLAIM)
    claimed: int = 0
    freshness: list[float] = field(default_factory=list)

    def add(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.messages += len(outcome.ack)
        self.dead_lettered += len(outcome.dead)
        if outcome.result is not None:
            self.written += outcome.result.written
            self.duplicates += outcome.result.duplicates
            self.stale += outcome.result.stale
        self.freshness.extend(outcome.freshness)

    def percentile(self, q: float) -> float | None:
        if not self.freshness:
            return None
        ordered = sorted(self.freshness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "written": self.written, "duplicates": self.duplicates, "stale": self.stale,
            "dead_lettered": self.dead_lettered, "batches": self.batches, "seconds": round(self.seconds, 3),
            "redelivered": self.redelivered, "claimed": self.claimed,
            "freshness_p50_s": self.percentile(0.5), "freshness_p99_s": self.percentile(0.99),
        }


@dataclass
class RunLimits:
    """When a consumer run stops, and how many messages to ask for next; shared by every consumer."""

    batch_size: int
    max_messages: int | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    began: float = field(default_factory=time.monotonic)
    last_data: float = 0.0

    def __post_init__(self) -> None:
        self.last_data = self.began

    def saw_data(self) -> None:
        self.last_data = time.monotonic()

    def done(self, stats: ConsumeStats, stop: Any = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        now = time.monotonic()
        if self.timeout is not None and now - self.began >= self.timeout:
            return True
        if self.idle_timeout is not None and now - self.last_data >= self.idle_timeout:
            return True
        return self.max_messages is not None and stats.messages >= self.max_messages

    def next_count(self, stats: ConsumeStats) -> int:
        if self.max_messages is None:
            return self.batch_size
        return max(1, min(self.batch_size, self.max_messages - stats.messages))

    def elapsed(self) -> float:
        return time.monotonic() - self.began


def decode_message(payload: bytes | str | dict[Any, Any]) -> dict[str, Any]:
    """The JSON object in a message body (Redis entries carry it in their ``data`` field)."""
    if isinstance(payload, dict):
        raw = payload.get(b"data", payload.get("data"))
        if raw is None:
            raise InvalidInput("stream entry has no 'data' field; put the JSON row in a field named 'data'",
                               {"field": "data"})
        payload = raw
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"message body is not valid JSON: {exc}", {"field": "data"}) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"message body must be a JSON object, got {type(value).__name__}", {"field": "data"})
    return value


def _raw(payload: Any) -> bytes:
    if isinstance(payload, dict):
        payload = payload.get(b"data", payload.get("data", orjson.dumps({str(k): str(v) for k, v in payload.items()})))
    return payload if isinstance(payload, bytes) else str(payload).encode()


class StreamIngestor:
    """Turns batches of raw messages into online/offline writes for one feature view."""

    def __init__(self, store: FeatureStore, view: str, *, to_offline: bool = True) -> None:
        self.store = store
        found = store.get_view(view)
        if not isinstance(found, FeatureView):
            raise InvalidInput(f"{view!r} is an on-demand feature view; stream into a feature view", {"view": view})
        self.view = found
        self.to_offline = to_offline

    def process(self, messages: Sequence[tuple[Any, Any]],
                published_ms: Mapping[Any, int] | None = None) -> BatchOutcome:
        """Handle ``(message id, payload)`` pairs; raises only when the write itself failed.
        ``published_ms`` maps message ids to the time the transport stored them (ms): where a
        consumer that died had written a row online but not offline, the row is looked for in the
        offline log from then on (see ``write_prepared``)."""
        outcome = BatchOutcome()
        rows: list[dict[str, Any]] = []
        row_ids: list[Any] = []
        payloads: list[Any] = []
        for message_id, payload in messages:
            try:
                rows.append(decode_message(payload))
            except InvalidInput as exc:
                outcome.dead.append(DeadLetter(message_id, exc.message, _raw(payload)))
                continue
            row_ids.append(message_id)
            payloads.append(payload)
        errors: dict[int, InvalidInput] = {}
        good = prepare_rows(self.view, rows, allow_extra=True, errors=errors)
        for index, exc in sorted(errors.items()):
            outcome.dead.append(DeadLetter(row_ids[index], exc.message, _raw(payloads[index])))
        good_ids = [mid for index, mid in enumerate(row_ids) if index not in errors]
        if good.keys:
            published = {i: published_ms[mid] for i, mid in enumerate(good_ids) if mid in published_ms} \
                if published_ms else None
            outcome.result = write_prepared(self.store, self.view, good, to_offline=self.to_offline,
                                            published_ms=published)
            done = outcome.result.details.get("online_at", time.time())
            outcome.freshness = [done - ts.timestamp() for ts in good.event_ts]
        outcome.ack = good_ids + [d.message_id for d in outcome.dead]
        return outcome


def dead_letter_record(letter: DeadLetter, source: str, view: str) -> dict[str, bytes]:
    """The fields written to a dead-letter stream/subject."""
    return {
        b"reason": letter.reason.encode(),
        b"payload": letter.payload,
        b"source": source.encode(),
        b"message_id": str(letter.message_id).encode() if not isinstance(letter.message_id, bytes) else letter.message_id,
        b"view": view.encode(),
        b"at": dt.datetime.now(dt.UTC).isoformat().encode(),
    }
