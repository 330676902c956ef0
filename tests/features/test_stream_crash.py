"""Stream consumers that survive SIGKILL, on real Redis Streams and NATS JetStream.

A producer publishes about 1,000 events/s, each with its own entity, while `shipyard features
consume` is killed at 10 random points and started again under the same name. After every restart
the events published before the kill must all become visible online (how long that took after the
restarted consumer was up is printed; figures in docs/benchmarks.md), and at the end every event is
online with its own value and none was applied twice: the offline log, which receives exactly the
rows the online store applied, holds no (entity, event time) pair twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.features.online import online_store_of
from tests.features import online_support, test_streams
from tests.features.online_support import NATS_URL, REDIS_URL

embedded_feature_store = online_support.embedded_feature_store
redis_stream = test_streams.redis_stream
nats_subject = test_streams.nats_subject
KILLS = 10
RATE = 1000.0

PRODUCER = """
import asyncio, datetime as dt, os, sys, time
import orjson
kind, url, name, progress, stop, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])

def event(i):
    at = dt.datetime.now(dt.UTC).isoformat()
    return orjson.dumps({"customer_id": i, "event_timestamp": at, "amount": float(i), "n": i, "city": "x",
                         "vip": False, "seen": at})

def report(sent):  # what the server has stored, for the test to read at any moment
    with open(progress + ".tmp", "w") as out:
        out.write(str(sent))
    os.replace(progress + ".tmp", progress)

def pace(began, sent):
    delay = began + sent / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)

sent = 0
if kind == "redis":
    import redis
    client = redis.Redis.from_url(url)
    began = time.perf_counter()
    while not os.path.exists(stop):
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            pipe.xadd(name, {"data": event(sent)})
            sent += 1
        pipe.execute()
        report(sent)
        pace(began, sent)
else:
    import nats

    async def main():
        global sent
        nc = await nats.connect(url)
        js = nc.jetstream()
        began = time.perf_counter()
        while not os.path.exists(stop):
            acks = [await js.publish(name, event(sent + k)) for k in range(50)]  # stored once acknowledged
            sent += len(acks)
            report(sent)
            delay = began + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await nc.close()
    asyncio.run(main())
print(sent)
"""


class Run:
    """The producer, the consumer processes, and what is visible online."""

    def __init__(self, store: Any, kind: str, source: str, name: str, tmp: Path, extra: list[str]) -> None:
        self.store, self.kind, self.source, self.name, self.tmp = store, kind, source, name, tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        self.cmd = [sys.executable, "-m", "shipyard.cli", "--project", str(store.ws.settings.project_dir), "features",
                    "consume", "--source", source, "--view", "cust_stats", "--batch-size", "200", *extra]
        self.progress, self.stop = tmp / "published", tmp / "stop"
        self.online = online_store_of(store)
        self.seen: set[int] = set()
        self.consumer: subprocess.Popen[str] | None = None
        self.log: Path | None = None

    def published(self) -> int:
        try:
            return int(self.progress.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def start_producer(self, url: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", PRODUCER, self.kind, url, self.name, str(self.progress),
                                 str(self.stop), str(RATE)], env=self.env, stdout=subprocess.PIPE, text=True)

    def start_consumer(self, k: int) -> float:
        """Start a consumer; returns the moment it said it was consuming."""
        self.log = self.tmp / f"consumer-{k}.log"
        with self.log.open("w") as err:
            self.consumer = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 180
        while "consuming" not in self.log.read_text():
            assert self.consumer.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.01)
        return time.monotonic()

    def pending(self) -> list[int]:
        """The events delivered to the (killed) consumer and not acknowledged."""
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            ids = [p["message_id"] for p in client.xpending_range(self.name, "shipyard", "-", "+", 100_000)]
            events = [json.loads(client.xrange(self.name, i, i)[0][1][b"data"])["customer_id"] for i in ids]
            client.close()
            return events

        async def info() -> Any:
            import nats

            from shipyard.features.streams.nats_jetstream import stream_name_for

            nc = await nats.connect(NATS_URL)
            try:
                return await nc.jetstream().consumer_info(stream_name_for(self.name), "shipyard")
            finally:
                await nc.close()

        found = asyncio.run(info())  # event i is stream message i + 1
        return list(range(found.ack_floor.stream_seq, found.delivered.stream_seq))

    def wait_visible(self, upto: int | list[int], guard_s: float = 180.0) -> None:
        """Until the events (0..upto-1, or those listed) are all online, each with its own value
        (a hang guard, not a timing)."""
        deadline = time.monotonic() + guard_s
        wanted = range(upto) if isinstance(upto, int) else upto
        while True:
            missing = [i for i in wanted if i not in self.seen]
            if not missing:
                return
            got = self.online.read("cust_stats", ["amount"], [(i,) for i in missing])["amount"]
            for i, amount in zip(missing, got, strict=True):
                if amount is not None:
                    assert amount == float(i)
                    self.seen.add(i)
            assert time.monotonic() < deadline, f"{len(missing)} events of {upto} never became visible"
            time.sleep(0.05)


def crash_loop(store: Any, kind: str, source: str, url: str, name: str, tmp: Path, extra: list[str]) -> None:
    run = Run(store, kind, source, name, tmp, extra)
    made = subprocess.run([*run.cmd, "--setup"], env=run.env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr
    producer = run.start_producer(url)
    rng = random.Random(41 if kind == "redis" else 43)
    pending_lags, caught_up, left, before_kill, pending = [], [], [], 0, []
    try:
        for k in range(KILLS + 1):
            ready = run.start_consumer(k)
            run.wait_visible(pending)  # what the killed consumer held unacknowledged ...
            pending_lags.append(time.monotonic() - ready)
            run.wait_visible(before_kill)  # ... and everything published before the kill
            caught_up.append(time.monotonic() - ready)
            if k == KILLS:
                break
            time.sleep(rng.uniform(0.2, 1.5))
            before_kill = run.published()
            run.consumer.send_signal(signal.SIGKILL)
            run.consumer.wait()
            pending = run.pending()
            left.append(len(pending))
        run.stop.touch()
        total = int(producer.communicate(timeout=60)[0].strip())
        run.wait_visible(total)
        run.consumer.send_signal(signal.SIGTERM)
        out, _ = run.consumer.communicate(timeout=60)
    finally:
        run.stop.touch()
        for proc in (producer, run.consumer):
            if proc is not None and proc.poll() is None:
                proc.kill()
    last = json.loads(out)
    offline = store.read_offline("cust_stats").to_pandas()
    pairs = offline[["customer_id", "event_timestamp"]]
    print(f"{kind}: {total} events, {KILLS} kills leaving {left} unacknowledged; after each restart those were "
          f"online within {', '.join(f'{x:.2f}' for x in pending_lags[1:])} s (max {max(pending_lags[1:]):.2f} s) "
          f"of the consumer being up, and the backlog within max {max(caught_up[1:]):.2f} s; last run {last}")
    assert len(run.seen) == total and sum(left) > 0
    assert not pairs.duplicated().any(), "a redelivered event was applied twice"
    assert sorted(offline["customer_id"]) == list(range(total)), "the offline log lost or repeated rows"
    assert "stopped by SIGTERM" in run.log.read_text()


@pytest.mark.slow
@pytest.mark.redis
def test_redis_consumer_killed_ten_times_loses_and_repeats_nothing(embedded_feature_store, redis_stream,
                                                                     tmp_path) -> None:
    _client, name = redis_stream
    crash_loop(embedded_feature_store, "redis", f"{REDIS_URL}/{name}", REDIS_URL, name, tmp_path,
               ["--consumer", "c1"])


@pytest.mark.slow
@pytest.mark.nats
def test_nats_consumer_killed_ten_times_loses_and_repeats_nothing(embedded_feature_store, nats_subject,
                                                                    tmp_path) -> None:
    crash_loop(embedded_feature_store, "nats", f"{NATS_URL}/{nats_subject}", NATS_URL, nats_subject, tmp_path,
               ["--ack-wait", "2"])
