"""Small Kafka clients for the CLI: publish a replay file, tail output topics."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.inputs import KEY_FIELD
from streams.connection import client_options, start_client
from streams.core.timeutil import parse_instant
from streams.settings import Settings


def record_key(topic: str, value: Any, key: Any = None) -> bytes | None:
    """The message key of a replay record: given, or derived from the value (SPEC section 2)."""
    if key is None and isinstance(value, dict):
        key = value.get(KEY_FIELD.get(topic, "customer_id"))
    return None if key is None else str(key).encode()


async def publish(producer: AIOKafkaProducer, records: Iterable[dict[str, Any]], realtime: bool = False,
                  speed: float = 1.0, prefix: str = "", absolute: bool = False, rate: float | None = None,
                  on_sent: Any = None) -> int:
    """Send replay records in file order.

    ``realtime``: each record waits until its occurred_at, counted from the first record (or, with ``absolute``,
    until the wall clock reaches it), so a live worker sees the events as they happen. ``rate``: instead, publish
    this many records per second.
    """
    n = 0
    t0 = w0 = None
    started = time.monotonic()
    pending = []
    for rec in records:
        topic, value = rec["topic"], rec["value"]
        if rate:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        elif realtime and isinstance(value, dict) and "occurred_at" in value:
            at = parse_instant(value["occurred_at"]) / 1e6
            if absolute:
                delay = at - time.time()
            else:
                if t0 is None:
                    t0, w0 = at, time.monotonic()
                delay = w0 + (at - t0) / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        raw = value if isinstance(value, bytes | bytearray) else orjson.dumps(value)
        pending.append(await producer.send(prefix + topic, raw, key=record_key(topic, value, rec.get("key"))))
        n += 1
        if on_sent is not None:
            on_sent()
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n


def read_replay_file(path: str) -> Iterable[dict[str, Any]]:
    src = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for line in src:
            if line.strip():
                yield orjson.loads(line)
    finally:
        if src is not sys.stdin.buffer:
            src.close()


async def produce_file(settings: Settings, path: str, realtime: bool = False, speed: float = 1.0) -> int:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await start_client(producer, settings)
    try:
        return await publish(producer, read_replay_file(path), realtime=realtime, speed=speed,
                             prefix=settings.topic_prefix)
    finally:
        await producer.stop()


async def tail_topics(settings: Settings, topics: list[str], from_beginning: bool = True,
                      idle_exit: float | None = None) -> None:
    consumer = AIOKafkaConsumer(*[settings.topic(t) for t in topics], **client_options(settings),
                                group_id=None, auto_offset_reset="earliest" if from_beginning else "latest",
                                isolation_level="read_committed", enable_auto_commit=False)
    await start_client(consumer, settings)
    out = sys.stdout.buffer
    last = time.monotonic()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for _tp, msgs in batch.items():
                for m in msgs:
                    try:
                        value = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        value = m.value.decode("utf-8", "replace")
                    key = None if m.key is None else m.key.decode("utf-8", "replace")
                    out.write(orjson.dumps({"topic": settings.unprefixed(m.topic), "key": key, "value": value}) + b"\n")
                    last = time.monotonic()
            out.flush()
            if idle_exit is not None and time.monotonic() - last > idle_exit:
                return
    finally:
        await consumer.stop()


async def simulate_traffic(settings: Settings, records: Iterable[dict[str, Any]], rate: float | None = None,
                           progress: bool = False) -> int:
    """Publish generated records at their own time (absolute occurred_at), or at ``rate`` events/s."""
    from tqdm import tqdm

    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await start_client(producer, settings)
    bar = tqdm(unit="ev", file=sys.stderr, desc="simulate", disable=not progress)
    try:
        return await publish(producer, records, realtime=rate is None, absolute=True, rate=rate,
                             prefix=settings.topic_prefix, on_sent=bar.update)
    finally:
        bar.close()
        await producer.stop()
