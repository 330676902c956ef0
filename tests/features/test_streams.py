"""Stream consumers against real Redis Streams and NATS JetStream: dead letters, redelivery,
idempotency, and event→online freshness at 5,000 events/s."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import orjson
import pytest

from shipyard.errors import ConfigError, StoreUnavailable
from shipyard.features.online import online_store_of
from shipyard.features.streams import consumer_for, parse_source
from tests.features import online_support
from tests.features.online_support import NATS_URL, REDIS_URL

embedded_feature_store = online_support.embedded_feature_store
RATE = 5000
SECONDS = 2.0


def _event(i: int, customer: int, at: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    at = at or dt.datetime.now(dt.UTC)
    row = {"customer_id": customer, "event_timestamp": at.isoformat(), "amount": float(i), "n": i,
           "city": "x", "vip": False, "seen": at.isoformat()}
    row.update(extra)
    return row


def _mixed_batch() -> list[bytes]:
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    good = [orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i))) for i in range(6)]
    bad = [b"{not json", orjson.dumps(_event(99, 1, base, amount="lots")), orjson.dumps({"customer_id": 3})]
    return good[:3] + bad + good[3:]


def test_parse_source() -> None:
    assert parse_source("redis://127.0.0.1:6379/2/events") == ("redis", "redis://127.0.0.1:6379/2", "events")
    assert parse_source("redis://127.0.0.1:6379/events") == ("redis", "redis://127.0.0.1:6379/0", "events")
    assert parse_source("nats://127.0.0.1:4222/a.b") == ("nats", "nats://127.0.0.1:4222", "a.b")
    with pytest.raises(ConfigError, match="source"):
        parse_source("kafka://x/y")


def test_both_transports_share_the_consumer_base(embedded_feature_store) -> None:
    # no server is contacted when a consumer is made: redis-py connects lazily, NATS on run()
    from shipyard.features.streams import StreamConsumer

    redis_consumer = consumer_for(embedded_feature_store, "redis://127.0.0.1:1/0/events", "cust_stats")
    nats_consumer = consumer_for(embedded_feature_store, "nats://127.0.0.1:1/cust.events", "cust_stats")
    for consumer, name, dead in ((redis_consumer, "events", "events:dead"),
                                 (nats_consumer, "cust.events", "dead.cust.events")):
        assert isinstance(consumer, StreamConsumer)
        assert (consumer.view, consumer.source_name, consumer.dead_letter) == ("cust_stats", name, dead)
        consumer.close()


def _assert_latest(store: Any, expected: dict[int, float]) -> None:
    keys = sorted(expected)
    got = online_store_of(store).read("cust_stats", ["amount"], [(k,) for k in keys])["amount"]
    assert got == [expected[k] for k in keys]


# -- Redis Streams ------------------------------------------------------------------------------
@pytest.fixture
def redis_stream() -> Any:
    if not REDIS_URL:
        pytest.skip("set SHIPYARD_TEST_REDIS_URL to run Redis Streams tests")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    name = f"sytest-{uuid.uuid4().hex[:10]}"
    yield client, name
    client.delete(name, f"{name}:dead")
    client.close()


@pytest.mark.redis
def test_redis_dead_letters_and_keeps_going(embedded_feature_store, redis_stream) -> None:
    client, name = redis_stream
    for body in _mixed_batch():
        client.xadd(name, {"data": body})
    client.xadd(name, {"other": "field"})
    consumer = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats", batch_size=4)
    stats = consumer.run(idle_timeout=2.0, timeout=30)
    assert (stats.messages, stats.written, stats.dead_lettered) == (10, 6, 4)
    _assert_latest(embedded_feature_store, {i: float(i) for i in range(6)})
    dead = client.xrange(f"{name}:dead")
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 4
    assert "not valid JSON" in reasons[0]
    assert "'amount'" in reasons[1] and "float64" in reasons[1]
    assert "join key" in reasons[2] or "'event_timestamp'" in reasons[2]
    assert "'data'" in reasons[3]
    assert dead[1][1][b"payload"] == _mixed_batch()[4]
    assert client.xpending(name, "shipyard")["pending"] == 0


@pytest.mark.redis
def test_redis_redelivers_unacked_and_stays_idempotent(embedded_feature_store, redis_stream, monkeypatch) -> None:
    import redis

    client, name = redis_stream
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(20):
        client.xadd(name, {"data": orjson.dumps(_event(i, i % 5, base + dt.timedelta(seconds=i)))})
    first = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1")
    monkeypatch.setattr(first.client, "xack", lambda *a: (_ for _ in ()).throw(redis.exceptions.ConnectionError("gone")))
    with pytest.raises(StoreUnavailable):
        first.run(idle_timeout=2.0)
    assert client.xpending(name, "shipyard")["pending"] == 20
    again = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1")
    stats = again.run(idle_timeout=2.0)
    assert (stats.messages, stats.written, stats.duplicates) == (20, 0, 20)
    assert client.xpending(name, "shipyard")["pending"] == 0
    assert embedded_feature_store.read_offline("cust_stats").num_rows == 20
    _assert_latest(embedded_feature_store, {k: float(15 + k) for k in range(5)})


PRODUCER = """
import asyncio, datetime as dt, sys, time
import orjson
kind, url, name, total, customers, rate = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])

def event(i):
    at = dt.datetime.now(dt.UTC).isoformat()
    return orjson.dumps({"customer_id": i % customers, "event_timestamp": at, "amount": float(i), "n": i,
                         "city": "x", "vip": False, "seen": at})

def pace(began, sent):
    delay = began + sent / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)

if kind == "redis":
    import redis
    client = redis.Redis.from_url(url)
    began, sent = time.perf_counter(), 0
    while sent < total:
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.xadd(name, {"data": event(sent)})
            sent += 1
        pipe.execute()
        pace(began, sent)
else:
    import nats

    async def main():
        nc = await nats.connect(url)
        began = time.perf_counter()
        for i in range(total):
            await nc.publish(name, event(i))
            if i % 100 == 99:
                await nc.flush()
                delay = began + (i + 1) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await nc.flush()
        await nc.close()
        return began
    began = asyncio.run(main())
print(total / (time.perf_counter() - began))
"""


def _produce(kind: str, url: str, name: str, total: int, customers: int) -> float:
    """Publish ``total`` events at RATE per second from a separate process; returns the achieved rate."""
    done = subprocess.run([sys.executable, "-c", PRODUCER, kind, url, name, str(total), str(customers), str(RATE)],
                          capture_output=True, text=True, timeout=120, check=True)
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.redis
def test_redis_freshness_under_one_second_at_5000_per_second(embedded_feature_store, redis_stream) -> None:
    client, name = redis_stream
    total, customers = int(RATE * SECONDS), 1000
    consumer = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats")
    consumer.ensure_group()
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(stats=consumer.run(max_messages=total, timeout=30)))
    worker.start()
    rate = _produce("redis", REDIS_URL, name, total, customers)
    worker.join(60)
    stats = result["stats"]
    print(f"offered {rate:.0f} events/s;", stats.to_dict())
    assert rate >= 0.9 * RATE
    assert stats.messages == total and stats.dead_lettered == 0
    assert stats.percentile(0.99) < 1.0, stats.to_dict()
    _assert_latest(embedded_feature_store, {c: float(total - customers + c) for c in range(customers)})


# -- NATS JetStream -----------------------------------------------------------------------------
@pytest.fixture
def nats_subject() -> Any:
    if not NATS_URL:
        pytest.skip("set SHIPYARD_TEST_NATS_URL to run NATS JetStream tests")
    subject = f"sytest.{uuid.uuid4().hex[:10]}.events"
    yield subject

    async def cleanup() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        from shipyard.features.streams.nats_jetstream import stream_name_for

        for stream in (stream_name_for(subject), stream_name_for(subject) + "_DEAD"):
            try:
                await js.delete_stream(stream)
            except Exception:  # noqa: BLE001 - already gone
                pass
        await nc.close()

    asyncio.run(cleanup())


async def _publish(subject: str, bodies: list[bytes]) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    for body in bodies:
        await nc.publish(subject, body)
    await nc.flush()
    await nc.close()


async def _streams_for(subject: str) -> list[str]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    found = []
    for subj in (subject, f"dead.{subject}"):
        try:
            found.append(await js.find_stream_name_by_subject(subj))
        except NotFoundError:
            pass
    await nc.close()
    return found


async def _dead_letters(subject: str) -> list[dict[str, Any]]:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"dead.{subject}", durable="check")
    msgs = await sub.fetch(10, timeout=2)
    await nc.close()
    return [orjson.loads(m.data) for m in msgs]


@pytest.mark.nats
def test_nats_dead_letters_and_keeps_going(embedded_feature_store, nats_subject) -> None:
    consumer = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats", batch_size=4)
    consumer.setup()
    asyncio.run(_publish(nats_subject, _mixed_batch()))
    stats = consumer.run(idle_timeout=2.0, timeout=30)
    assert (stats.messages, stats.written, stats.dead_lettered) == (9, 6, 3)
    _assert_latest(embedded_feature_store, {i: float(i) for i in range(6)})
    dead = asyncio.run(_dead_letters(nats_subject))
    assert len(dead) == 3
    assert "not valid JSON" in dead[0]["reason"] and dead[0]["payload"] == "{not json"
    assert "'amount'" in dead[1]["reason"]
    # a second durable run finds nothing left unacknowledged
    again = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats").run(idle_timeout=2.0)
    assert again.messages == 0


@pytest.mark.nats
def test_nats_consumer_on_a_silent_subject_stops_at_its_idle_timeout(embedded_feature_store, nats_subject) -> None:
    # nothing is ever published: every fetch times out, which must count as idle, not crash the run
    consumer = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats")
    consumer.setup()
    stats = consumer.run(idle_timeout=1.5, timeout=30)
    assert (stats.messages, stats.written, stats.dead_lettered) == (0, 0, 0)


@pytest.mark.nats
def test_nats_freshness_under_one_second_at_5000_per_second(embedded_feature_store, nats_subject) -> None:
    total, customers = int(RATE * SECONDS), 1000
    consumer = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats")
    consumer.setup()  # the streams exist before anything is published
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(stats=consumer.run(max_messages=total, timeout=30)))
    worker.start()
    time.sleep(0.3)
    rate = _produce("nats", NATS_URL, nats_subject, total, customers)
    worker.join(60)
    stats = result["stats"]
    print(f"offered {rate:.0f} events/s;", stats.to_dict())
    assert rate >= 0.9 * RATE
    assert stats.messages == total and stats.dead_lettered == 0
    assert stats.percentile(0.99) < 1.0, stats.to_dict()
    _assert_latest(embedded_feature_store, {c: float(total - customers + c) for c in range(customers)})


@pytest.mark.redis
def test_consume_command(embedded_feature_store, redis_stream) -> None:
    import json

    from click.testing import CliRunner

    from shipyard.cli import main

    client, name = redis_stream
    for body in _mixed_batch():
        client.xadd(name, {"data": body})
    project = str(embedded_feature_store.ws.settings.project_dir)
    out = CliRunner().invoke(main, ["--project", project, "features", "consume", "--source", f"{REDIS_URL}/{name}",
                                    "--view", "cust_stats", "--idle-timeout", "2.0", "--group", "cli"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output[out.output.index("{"):])
    assert (stats["messages"], stats["written"], stats["dead_lettered"]) == (9, 6, 3)
    assert client.xlen(f"{name}:dead") == 3


# -- surviving a crash: setup, stable names, claims, stats on stop ---------------------------------
@pytest.mark.nats
def test_nats_run_needs_the_setup_step_and_keeps_what_was_published_after_it(embedded_feature_store,
                                                                             nats_subject) -> None:
    consumer = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats", ack_wait=3)
    with pytest.raises(ConfigError, match="--setup") as info:
        consumer.run(idle_timeout=1.0)
    assert info.value.details["field"] == "source" and asyncio.run(_streams_for(nats_subject)) == []
    made = consumer.setup()
    assert made["created_streams"] == [made["stream"], made["stream"] + "_DEAD"] and made["ack_wait_s"] == 3
    assert consumer.setup()["created_streams"] == []  # again: nothing new
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    asyncio.run(_publish(nats_subject, [orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i))) for i in range(8)]))
    stats = consumer.run(idle_timeout=1.5, timeout=30)  # published before the first run: all there
    assert (stats.messages, stats.written) == (8, 8)
    _assert_latest(embedded_feature_store, {i: float(i) for i in range(8)})


@pytest.mark.nats
def test_nats_redelivers_what_a_dead_consumer_left_unacknowledged_after_ack_wait(embedded_feature_store,
                                                                                  nats_subject) -> None:
    import nats

    consumer = consumer_for(embedded_feature_store, f"{NATS_URL}/{nats_subject}", "cust_stats", ack_wait=1.0)
    consumer.setup()
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    asyncio.run(_publish(nats_subject, [orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i))) for i in range(10)]))

    async def take_without_ack() -> int:  # a consumer that fetches and dies before acknowledging
        from shipyard.features.streams.nats_jetstream import stream_name_for

        nc = await nats.connect(NATS_URL)
        sub = await nc.jetstream().pull_subscribe(nats_subject, durable="shipyard", stream=stream_name_for(nats_subject))
        msgs = await sub.fetch(10, timeout=5)
        await nc.close()
        return len(msgs)

    assert asyncio.run(take_without_ack()) == 10
    stats = consumer.run(idle_timeout=3.0, timeout=30)
    assert (stats.messages, stats.written, stats.redelivered) == (10, 10, 10)
    _assert_latest(embedded_feature_store, {i: float(i) for i in range(10)})


@pytest.mark.redis
def test_redis_claims_entries_a_dead_consumer_left_pending(embedded_feature_store, redis_stream) -> None:
    client, name = redis_stream
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(12):
        client.xadd(name, {"data": orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i)))})
    consumer = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c2",
                            claim_idle_s=0.3)
    assert consumer.setup()["group_created"] is True and consumer.setup()["group_created"] is False
    client.xreadgroup("shipyard", "gone-pod-7f3a", {name: ">"}, count=12)  # delivered, then the pod died
    assert client.xpending(name, "shipyard")["pending"] == 12
    time.sleep(0.4)  # idle longer than claim_idle_s
    stats = consumer.run(idle_timeout=1.0, timeout=30)
    assert (stats.messages, stats.written, stats.claimed) == (12, 12, 12)
    assert client.xpending(name, "shipyard")["pending"] == 0
    _assert_latest(embedded_feature_store, {i: float(i) for i in range(12)})


@pytest.mark.redis
def test_redis_consumer_names_are_stable_and_own_pending_entries_come_first(embedded_feature_store,
                                                                           redis_stream) -> None:
    import socket

    client, name = redis_stream
    consumer = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats")
    assert consumer.consumer == socket.gethostname()
    consumer.setup()
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(5):
        client.xadd(name, {"data": orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i)))})
    client.xreadgroup("shipyard", consumer.consumer, {name: ">"}, count=5)  # this host's consumer died
    again = consumer_for(embedded_feature_store, f"{REDIS_URL}/{name}", "cust_stats")  # long claim_idle
    stats = again.run(idle_timeout=1.0, timeout=30)
    assert (stats.messages, stats.redelivered, stats.claimed) == (5, 5, 0)
    assert client.xpending(name, "shipyard")["pending"] == 0


@pytest.mark.redis
def test_consume_prints_its_stats_when_stopped_by_sigterm(embedded_feature_store, redis_stream) -> None:
    import json
    import os
    import signal

    client, name = redis_stream
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(30):
        client.xadd(name, {"data": orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i)))})
    project = str(embedded_feature_store.ws.settings.project_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    cmd = [sys.executable, "-m", "shipyard.cli", "--project", project, "features", "consume",
           "--source", f"{REDIS_URL}/{name}", "--view", "cust_stats", "--consumer", "cli"]
    setup = subprocess.run([*cmd, "--setup"], env=env, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0 and json.loads(setup.stdout)["group_created"] is True, setup.stderr
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while client.xpending(name, "shipyard")["pending"] or client.xinfo_groups(name)[0]["last-delivered-id"] == b"0-0":
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err
    stats = json.loads(out)
    assert (stats["messages"], stats["written"], stats["redelivered"], stats["claimed"]) == (30, 30, 0, 0)


class Died(BaseException):
    """The process died here (raised past every handler, like a kill)."""


@pytest.mark.redis
def test_redis_rows_written_online_but_not_offline_before_a_crash_reach_the_offline_log_once(
        embedded_feature_store, redis_stream, monkeypatch) -> None:
    client, name = redis_stream
    store = embedded_feature_store
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(15):
        client.xadd(name, {"data": orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i)))})
    real_append = store.offline_append

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise Died

    monkeypatch.setattr(store, "offline_append", die)  # dies after the online write, before the offline one
    with pytest.raises(Died):
        consumer_for(store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1").run(idle_timeout=1.0)
    _assert_latest(store, {i: float(i) for i in range(15)})
    monkeypatch.setattr(store, "offline_append", real_append)
    stats = consumer_for(store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1").run(idle_timeout=1.0)
    assert (stats.messages, stats.redelivered, stats.duplicates) == (15, 15, 15)
    offline = store.read_offline("cust_stats").to_pandas()
    assert sorted(offline["customer_id"]) == list(range(15))


@pytest.mark.nats
@pytest.mark.parametrize("dies", ["before the offline append", "before the ack"])
def test_nats_redelivered_rows_reach_the_offline_log_exactly_once(embedded_feature_store, nats_subject,
                                                                  monkeypatch, dies) -> None:
    from nats.aio.msg import Msg

    store = embedded_feature_store
    consumer = consumer_for(store, f"{NATS_URL}/{nats_subject}", "cust_stats", ack_wait=1.0)
    consumer.setup()
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    asyncio.run(_publish(nats_subject, [orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i))) for i in range(12)]))

    async def die(*_args: Any, **_kwargs: Any) -> None:
        raise Died

    if dies == "before the ack":
        monkeypatch.setattr(Msg, "ack", die)
    else:
        monkeypatch.setattr(store, "offline_append", lambda *a, **k: (_ for _ in ()).throw(Died()))
    with pytest.raises(Died):
        consumer.run(idle_timeout=1.0, timeout=30)
    monkeypatch.undo()
    stats = consumer.run(idle_timeout=3.0, timeout=30)
    assert (stats.messages, stats.redelivered, stats.duplicates) == (12, 12, 12)
    offline = store.read_offline("cust_stats").to_pandas()
    assert sorted(offline["customer_id"]) == list(range(12))  # each row once, whichever step it died at


# A redelivery the transport does not mark as one: a recreated durable consumer or group delivers
# everything again as new (and a NATS server can also hand a redelivered message out with
# num_delivered 1). The offline log must still get each row exactly once.
@pytest.mark.nats
@pytest.mark.parametrize("dies", ["before the offline append", "before the ack"])
def test_nats_rows_delivered_again_as_new_reach_the_offline_log_exactly_once(embedded_feature_store, nats_subject,
                                                                            monkeypatch, dies) -> None:
    import nats
    from nats.aio.msg import Msg

    from shipyard.features.streams.nats_jetstream import stream_name_for

    store = embedded_feature_store
    consumer = consumer_for(store, f"{NATS_URL}/{nats_subject}", "cust_stats", ack_wait=30.0)
    consumer.setup()
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    asyncio.run(_publish(nats_subject, [orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i))) for i in range(12)]))

    async def die(*_args: Any, **_kwargs: Any) -> None:
        raise Died

    if dies == "before the ack":
        monkeypatch.setattr(Msg, "ack", die)
    else:
        monkeypatch.setattr(store, "offline_append", lambda *a, **k: (_ for _ in ()).throw(Died()))
    with pytest.raises(Died):
        consumer.run(idle_timeout=1.0, timeout=30)
    monkeypatch.undo()
    _assert_latest(store, {i: float(i) for i in range(12)})

    async def recreate() -> None:  # the durable consumer goes; the next run makes it again
        nc = await nats.connect(NATS_URL)
        await nc.jetstream().delete_consumer(stream_name_for(nats_subject), "shipyard")
        await nc.close()

    asyncio.run(recreate())
    stats = consumer.run(idle_timeout=1.5, timeout=30)
    assert (stats.messages, stats.redelivered, stats.duplicates) == (12, 0, 12)  # none marked as redelivered
    offline = store.read_offline("cust_stats").to_pandas()
    assert sorted(offline["customer_id"]) == list(range(12))


@pytest.mark.redis
@pytest.mark.parametrize("dies", ["before the offline append", "before the ack"])
def test_redis_rows_delivered_again_as_new_reach_the_offline_log_exactly_once(embedded_feature_store, redis_stream,
                                                                             monkeypatch, dies) -> None:
    client, name = redis_stream
    store = embedded_feature_store
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for i in range(15):
        client.xadd(name, {"data": orjson.dumps(_event(i, i, base + dt.timedelta(seconds=i)))})
    first = consumer_for(store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1")

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise Died

    monkeypatch.setattr(*((first.client, "xack") if dies == "before the ack" else (store, "offline_append")), die)
    with pytest.raises(Died):
        first.run(idle_timeout=1.0)
    monkeypatch.undo()
    _assert_latest(store, {i: float(i) for i in range(15)})
    client.xgroup_destroy(name, "shipyard")  # the group goes; the next run makes it again at the start
    stats = consumer_for(store, f"{REDIS_URL}/{name}", "cust_stats", consumer="c1").run(idle_timeout=1.0)
    assert (stats.messages, stats.redelivered, stats.duplicates) == (15, 0, 15)  # none marked as redelivered
    offline = store.read_offline("cust_stats").to_pandas()
    assert sorted(offline["customer_id"]) == list(range(15))
