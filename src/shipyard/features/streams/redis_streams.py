"""Redis Streams consumer: a consumer group, XACK after the online write, a dead-letter stream, and
pending entries of dead consumers claimed.

    consumer = RedisStreamConsumer(store, "driver_stats", "redis://127.0.0.1:6379/0", "driver-events")
    stats = consumer.run(timeout=60)

Each entry carries the JSON row in its ``data`` field (``XADD driver-events * data '{...}'``).

Surviving a crash. An entry is acknowledged only after its row was written, so an entry delivered
to a consumer that dies stays pending, owned by that consumer's name:

- the consumer name is stable — ``consumer=`` (``--consumer``), by default the host name — so a
  consumer restarted under its name first re-reads its own pending entries, at once;
- entries pending for another consumer longer than ``claim_idle_s`` (default 30 s: longer than a
  batch ever takes) are taken over with ``XAUTOCLAIM`` at start and every ``claim_every_s`` while
  running, so the entries of a consumer that never comes back (a pod with a new name) are written.

Redelivered rows are recognised as duplicates of (entity key, event time), so nothing is applied
twice; one the dead consumer wrote online but not offline is appended to the offline log then
(also when a recreated group delivers it again as new). ``setup()`` (``shipyard features consume --setup``) creates the stream and the group
at the stream's start; ``run()`` does the same when the group is missing, which loses nothing since
a Redis stream keeps its entries whether or not a group reads it. Malformed entries are copied to
``{stream}:dead`` with the reason and acknowledged.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from shipyard.errors import StoreUnavailable, require
from shipyard.features.streams.base import StreamConsumer
from shipyard.features.streams.core import ConsumeStats, RunLimits, dead_letter_record

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore

log = logging.getLogger(__name__)


def default_consumer_name() -> str:
    """The host name: the same after a restart on the same machine (set one per consumer process
    when a host runs several consumers of one stream and group)."""
    return socket.gethostname()


class RedisStreamConsumer(StreamConsumer):
    def __init__(
        self,
        store: FeatureStore,
        view: str,
        url: str,
        stream: str,
        *,
        group: str = "shipyard",
        consumer: str | None = None,
        dead_letter: str | None = None,
        batch_size: int = 1000,
        block_ms: int = 200,
        claim_idle_s: float = 30.0,
        claim_every_s: float = 1.0,
        to_offline: bool = True,
    ) -> None:
        super().__init__(store, view, dead_letter=dead_letter or f"{stream}:dead", batch_size=batch_size,
                         to_offline=to_offline)
        redis = require("redis", "streams")
        self.client = redis.Redis.from_url(url)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._response_error = redis.exceptions.ResponseError
        self.stream = self.source_name = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.block_ms = block_ms
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.claim_every_s = claim_every_s

    def setup(self) -> dict[str, Any]:
        """Create the stream (if missing) and the consumer group at its first entry."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            created = True
        except self._response_error as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            created = False
        return {"stream": self.stream, "group": self.group, "group_created": created,
                "dead_letter": self.dead_letter}

    def ensure_group(self) -> None:
        self.setup()

    def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]], stats: ConsumeStats) -> None:
        # an entry id starts with the time it was added (ms): how far back its first write can be
        outcome = self.ingestor.process(entries, {mid: int(mid.split(b"-")[0]) for mid, _ in entries})
        if outcome.dead:
            pipe = self.client.pipeline(transaction=False)
            for letter in outcome.dead:
                pipe.xadd(self.dead_letter, dead_letter_record(letter, f"redis:{self.stream}", self.view))
            pipe.execute()
            self._log_dead_letters(outcome)
        if outcome.ack:
            self.client.xack(self.stream, self.group, *outcome.ack)
        stats.add(outcome)

    def claim(self, stats: ConsumeStats) -> int:
        """Take over and write the entries pending for other consumers longer than ``claim_idle_s``."""
        claimed, start = 0, "0-0"
        while True:
            reply = self.client.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms,
                                           start_id=start, count=self.batch_size)
            start, entries = reply[0], reply[1]
            gone = reply[2] if len(reply) > 2 else []
            if gone:  # trimmed from the stream while pending: nothing left to write
                self.client.xack(self.stream, self.group, *gone)
            if entries:
                claimed += len(entries)
                stats.claimed += len(entries)
                self._handle(entries, stats)
            if start in (b"0-0", "0-0"):
                break
        if claimed:
            log.warning("claimed %d entries of %s left pending by other consumers of group %s", claimed,
                        self.stream, self.group)
        return claimed

    def _consume(self, stats: ConsumeStats, limits: RunLimits, stop: threading.Event | None) -> None:
        try:
            self.setup()
            if self.claim(stats):
                limits.saw_data()
            next_claim = time.monotonic() + self.claim_every_s
            cursor = "0"  # own pending entries first (delivered before a crash), then new ones
            while not limits.done(stats, stop):
                if time.monotonic() >= next_claim:
                    if self.claim(stats):
                        limits.saw_data()
                    next_claim = time.monotonic() + self.claim_every_s
                count = limits.next_count(stats)
                reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: cursor}, count=count,
                                               block=None if cursor == "0" else self.block_ms)
                entries = reply[0][1] if reply else []
                if cursor == "0":
                    if not entries:
                        cursor = ">"
                        continue
                    stats.redelivered += len(entries)
                if not entries:
                    continue
                limits.saw_data()
                self._handle(entries, stats)
        except self._errors as exc:
            raise StoreUnavailable(f"Redis stream {self.stream!r} unreachable ({exc}); check the --source URL",
                                   {"field": "source"}) from exc

    def close(self) -> None:
        self.client.close()
