"""NATS JetStream consumer: a durable pull consumer, ack after the online write, dead letters.

    consumer = NatsStreamConsumer(store, "driver_stats", "nats://127.0.0.1:4222", "drivers.events")
    consumer.setup()            # once: the streams and the durable consumer
    stats = consumer.run(timeout=60)

Message bodies are JSON rows. JetStream keeps a message only when a stream holds its subject, so the
streams are made by an explicit ``setup()`` (``shipyard features consume --setup``) before anything
is published: the stream for ``subject`` (named after it, or ``stream=``) and ``{STREAM}_DEAD`` for
``dead.{subject}``, where malformed messages go with the reason. ``run()`` never creates a stream; it
refuses to start, naming the setup command, when there is none (a consumer that made its stream on
its first start lost everything published before).

Surviving a crash. The durable consumer (``durable=``, ``--group``; the same name after a restart)
keeps the position and the messages delivered but not acknowledged. A message is acknowledged only
after its row was written; one delivered to a consumer that died is delivered again ``ack_wait``
seconds after its delivery (``--ack-wait``, default 10 s: longer than a batch takes, short enough
for a restart). ``setup()`` and ``run()`` create the durable consumer when missing (delivering from
the stream's start) and apply ``ack_wait`` to an existing one. Redelivered rows are recognised as
duplicates of (entity key, event time) and not applied twice; a row the dead consumer wrote
online but not offline is found missing from the offline log and appended there. That check does
not rely on ``num_delivered``: a server can hand a redelivered message out with a count of 1
(after a delivery to the dead consumer's pending pull request failed), and a durable consumer
deleted and made again delivers everything as new.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import ConfigError, StoreUnavailable, require
from shipyard.features.streams.base import StreamConsumer
from shipyard.features.streams.core import ConsumeStats, RunLimits, dead_letter_record

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore


def stream_name_for(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


class NatsStreamConsumer(StreamConsumer):
    def __init__(
        self,
        store: FeatureStore,
        view: str,
        url: str,
        subject: str,
        *,
        durable: str = "shipyard",
        stream: str | None = None,
        dead_letter: str | None = None,
        batch_size: int = 1000,
        fetch_timeout: float = 0.2,
        ack_wait: float = 10.0,
        to_offline: bool = True,
    ) -> None:
        require("nats", "streams")
        if not ack_wait > 0:
            raise ConfigError(f"ack_wait is {ack_wait}; give the seconds after which an unacknowledged message "
                              "is delivered again (more than a batch takes, e.g. 10)", {"field": "ack_wait"})
        super().__init__(store, view, dead_letter=dead_letter or f"dead.{subject}", batch_size=batch_size,
                         to_offline=to_offline)
        self.url = url
        self.subject = self.source_name = subject
        self.durable = durable
        self.stream = stream
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait

    async def _connect(self) -> Any:
        import nats
        from nats.errors import NoServersError

        try:
            return await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=3)
        except (NoServersError, OSError) as exc:
            raise StoreUnavailable(f"NATS at {self.url} unreachable ({exc}); check the --source URL",
                                   {"field": "source"}) from exc

    async def _find_stream(self, js: Any, subject: str) -> str | None:
        from nats.js.errors import NotFoundError

        try:
            return await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            return None

    async def _durable(self, js: Any, stream: str) -> None:
        """Create the durable consumer (from the stream's start) or apply ``ack_wait`` to it."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        await js.add_consumer(stream, config=ConsumerConfig(
            durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
            deliver_policy=DeliverPolicy.ALL, filter_subject=self.subject, max_ack_pending=-1))

    async def _setup(self, js: Any) -> dict[str, Any]:
        created = []
        name = await self._find_stream(js, self.subject)
        if name is None:
            name = self.stream or stream_name_for(self.subject)
            await js.add_stream(name=name, subjects=[self.subject])
            created.append(name)
        if await self._find_stream(js, self.dead_letter) is None:
            await js.add_stream(name=f"{name}_DEAD", subjects=[self.dead_letter])
            created.append(f"{name}_DEAD")
        await self._durable(js, name)
        return {"stream": name, "subject": self.subject, "dead_letter": self.dead_letter, "durable": self.durable,
                "ack_wait_s": self.ack_wait, "created_streams": created}

    def setup(self) -> dict[str, Any]:
        """Create the subject's stream and the dead-letter stream when missing, and the durable consumer."""

        async def go() -> dict[str, Any]:
            nc = await self._connect()
            try:
                return await self._setup(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    async def _run(self, stats: ConsumeStats, limits: RunLimits, stop: threading.Event | None) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        nc = await self._connect()
        try:
            js = nc.jetstream()
            name = await self._find_stream(js, self.subject)
            missing = [s for s, found in ((self.subject, name),
                                          (self.dead_letter, await self._find_stream(js, self.dead_letter)))
                       if found is None]
            if missing:
                raise ConfigError(
                    f"no JetStream stream holds subject(s) {missing}, so nothing published to them is kept; "
                    f"create the streams once with `shipyard features consume --source {self.url}/{self.subject} "
                    f"--view {self.view} --setup` (or setup() in Python) before publishing", {"field": "source"})
            await self._durable(js, name)
            sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=name)
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
                # counted for the statistics only: a redelivery can come with num_delivered 1 (module doc)
                stats.redelivered += sum(1 for m in msgs if m.metadata.num_delivered > 1)
                published = {i: int(m.metadata.timestamp.timestamp() * 1000) for i, m in by_id.items()}
                outcome = self.ingestor.process([(i, m.data) for i, m in by_id.items()], published)
                for letter in outcome.dead:
                    record = {k.decode(): v.decode(errors="replace") for k, v in
                              dead_letter_record(letter, f"nats:{self.subject}", self.view).items()}
                    record["message_id"] = str(by_id[letter.message_id].metadata.sequence.stream)
                    await js.publish(self.dead_letter, orjson.dumps(record))
                self._log_dead_letters(outcome)
                for i in outcome.ack:
                    await by_id[i].ack()
                stats.add(outcome)
            await nc.flush()
        finally:
            await nc.close()

    def _consume(self, stats: ConsumeStats, limits: RunLimits, stop: threading.Event | None) -> None:
        asyncio.run(self._run(stats, limits, stop))
