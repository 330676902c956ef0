"""NATS JetStream consumer: a durable pull consumer, ack after the online write, dead letters.

    consumer = NatsStreamConsumer(store, "driver_stats", "nats://127.0.0.1:4222", "drivers.events")
    stats = consumer.run(timeout=60)

Message bodies are JSON rows. The JetStream stream holding ``subject`` is used when it exists and
created (named after the subject) when it does not. Malformed messages are published to
``dead.{subject}`` (kept by a ``{STREAM}_DEAD`` stream) as JSON with the reason, then acknowledged;
unacknowledged messages are redelivered to the durable consumer after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

import orjson

from shipyard.errors import StoreUnavailable, require
from shipyard.features.streams.core import ConsumeStats, RunLimits, StreamIngestor, dead_letter_record

log = logging.getLogger(__name__)


def stream_name_for(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


class NatsStreamConsumer:
    def __init__(
        self,
        store: Any,
        view: str,
        url: str,
        subject: str,
        *,
        durable: str = "shipyard",
        stream: str | None = None,
        dead_letter: str | None = None,
        batch_size: int = 1000,
        fetch_timeout: float = 0.2,
        ack_wait: float = 30.0,
        to_offline: bool = True,
    ) -> None:
        require("nats", "streams")
        self.url = url
        self.subject = subject
        self.durable = durable
        self.stream = stream
        self.dead_letter = dead_letter or f"dead.{subject}"
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait
        self.view = view
        self.ingestor = StreamIngestor(store, view, to_offline=to_offline)

    async def _ensure_streams(self, js: Any) -> str:
        from nats.js.errors import NotFoundError

        try:
            name = await js.find_stream_name_by_subject(self.subject)
        except NotFoundError:
            name = self.stream or stream_name_for(self.subject)
            await js.add_stream(name=name, subjects=[self.subject])
        try:
            await js.find_stream_name_by_subject(self.dead_letter)
        except NotFoundError:
            await js.add_stream(name=f"{name}_DEAD", subjects=[self.dead_letter])
        return name

    async def _run(self, max_messages: int | None, timeout: float | None, idle_timeout: float | None,
                   stop: threading.Event | None) -> ConsumeStats:
        import nats
        from nats.errors import NoServersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import ConsumerConfig

        stats = ConsumeStats()
        limits = RunLimits(self.batch_size, max_messages, timeout, idle_timeout)
        try:
            nc = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=3)
        except (NoServersError, OSError) as exc:
            raise StoreUnavailable(f"NATS at {self.url} unreachable ({exc}); check the --source URL",
                                   {"field": "source"}) from exc
        try:
            js = nc.jetstream()
            name = await self._ensure_streams(js)
            sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=name,
                                          config=ConsumerConfig(ack_wait=self.ack_wait, max_ack_pending=-1))
            while not limits.done(stats, stop):
                count = limits.next_count(stats)
                try:
                    msgs = await sub.fetch(count, timeout=self.fetch_timeout)
                except (NatsTimeout, TimeoutError):
                    # nats-py raises its own TimeoutError or, from some versions on, asyncio's
                    continue
                if not msgs:
                    continue
                limits.saw_data()
                by_id = {i: m for i, m in enumerate(msgs)}
                outcome = self.ingestor.process([(i, m.data) for i, m in by_id.items()])
                for letter in outcome.dead:
                    record = {k.decode(): v.decode(errors="replace") for k, v in
                              dead_letter_record(letter, f"nats:{self.subject}", self.view).items()}
                    record["message_id"] = str(by_id[letter.message_id].metadata.sequence.stream)
                    await js.publish(self.dead_letter, orjson.dumps(record))
                if outcome.dead:
                    log.warning("%d message(s) from %s dead-lettered to %s; first: %s", len(outcome.dead),
                                self.subject, self.dead_letter, outcome.dead[0].reason)
                for i in outcome.ack:
                    await by_id[i].ack()
                stats.add(outcome)
            await nc.flush()
        finally:
            await nc.close()
        stats.seconds = limits.elapsed()
        return stats

    def run(
        self,
        *,
        max_messages: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeStats:
        """Consume until ``max_messages``, ``timeout``, ``idle_timeout`` seconds without data, or ``stop``."""
        return asyncio.run(self._run(max_messages, timeout, idle_timeout, stop))
