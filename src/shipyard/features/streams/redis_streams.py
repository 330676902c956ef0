"""Redis Streams consumer: a consumer group, XACK after the online write, a dead-letter stream.

    consumer = RedisStreamConsumer(store, "driver_stats", "redis://127.0.0.1:6379/0", "driver-events")
    stats = consumer.run(timeout=60)

Each entry carries the JSON row in its ``data`` field (``XADD driver-events * data '{...}'``).
On start the consumer first re-reads its own pending entries (delivered before a crash but never
acknowledged), then new ones. Malformed entries are copied to ``{stream}:dead`` with the reason and
acknowledged.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from typing import Any

from shipyard.errors import StoreUnavailable, require
from shipyard.features.streams.core import ConsumeStats, RunLimits, StreamIngestor, dead_letter_record

log = logging.getLogger(__name__)


class RedisStreamConsumer:
    def __init__(
        self,
        store: Any,
        view: str,
        url: str,
        stream: str,
        *,
        group: str = "shipyard",
        consumer: str | None = None,
        dead_letter: str | None = None,
        batch_size: int = 1000,
        block_ms: int = 200,
        to_offline: bool = True,
    ) -> None:
        redis = require("redis", "streams")
        self.client = redis.Redis.from_url(url)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._response_error = redis.exceptions.ResponseError
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.dead_letter = dead_letter or f"{stream}:dead"
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.ingestor = StreamIngestor(store, view, to_offline=to_offline)
        self.view = view

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except self._response_error as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]], stats: ConsumeStats) -> None:
        outcome = self.ingestor.process(entries)
        if outcome.dead:
            pipe = self.client.pipeline(transaction=False)
            for letter in outcome.dead:
                pipe.xadd(self.dead_letter, dead_letter_record(letter, f"redis:{self.stream}", self.view))
            pipe.execute()
            log.warning("%d message(s) from %s dead-lettered to %s; first: %s", len(outcome.dead), self.stream,
                        self.dead_letter, outcome.dead[0].reason)
        if outcome.ack:
            self.client.xack(self.stream, self.group, *outcome.ack)
        stats.add(outcome)

    def run(
        self,
        *,
        max_messages: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeStats:
        """Consume until ``max_messages`` were handled, ``timeout`` seconds passed, the stream stayed
        empty for ``idle_timeout`` seconds, or ``stop`` was set."""
        stats = ConsumeStats()
        limits = RunLimits(self.batch_size, max_messages, timeout, idle_timeout)
        try:
            self.ensure_group()
            cursor = "0"  # own pending entries first, then new ones
            while not limits.done(stats, stop):
                count = limits.next_count(stats)
                reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: cursor}, count=count,
                                               block=None if cursor == "0" else self.block_ms)
                entries = reply[0][1] if reply else []
                if cursor == "0" and not entries:
                    cursor = ">"
                    continue
                if not entries:
                    continue
                limits.saw_data()
                self._handle(entries, stats)
        except self._errors as exc:
            raise StoreUnavailable(f"Redis stream {self.stream!r} unreachable ({exc}); check the --source URL",
                                   {"field": "source"}) from exc
        stats.seconds = limits.elapsed()
        return stats

    def close(self) -> None:
        self.client.close()
