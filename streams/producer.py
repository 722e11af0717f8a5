"""Small Kafka clients for the CLI: publish a replay file, tail output topics."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.inputs import INPUT_TOPICS, KEY_FIELD
from streams.connection import client_options, start_client
from streams.core.timeutil import parse_instant
from streams.errors import UserFacingError
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
    try:
        for rec in records:
            topic, value = rec["topic"], rec["value"]
            if rate:
                delay = started + n / rate - time.monotonic()
            elif realtime and (at := _occurred_at(value)) is not None:
                if absolute:
                    delay = at - time.time()
                else:
                    if t0 is None:
                        t0, w0 = at, time.monotonic()
                    delay = w0 + (at - t0) / speed - time.monotonic()
            else:
                delay = 0
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
    except UserFacingError:
        # a bad line of the source: what was sent before it is delivered before it is reported
        await asyncio.gather(*pending)
        raise
    await asyncio.gather(*pending)
    return n


def _occurred_at(value: Any) -> float | None:
    """A value's occurred_at in seconds since the epoch, or None (none, or not a valid instant: the worker
    dead-letters such a value, so it goes out at once)."""
    if not isinstance(value, dict) or not isinstance(value.get("occurred_at"), str):
        return None
    try:
        return parse_instant(value["occurred_at"]) / 1e6
    except ValueError:
        return None


def _replay_record(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the record of a replay-file line, "") or (None, why it is not one)."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return None, f"not valid JSON ({e})"
    if not isinstance(rec, dict) or not isinstance(rec.get("topic"), str) or "value" not in rec:
        return None, 'not a replay record {"topic": "<input topic>", "value": {...}}'
    if rec["topic"] not in INPUT_TOPICS:
        return None, f"{rec['topic']!r} is not an input topic ({', '.join(INPUT_TOPICS)})"
    return rec, ""


def replay_records(lines: Iterable[bytes], source: str = "standard input") -> Iterator[dict[str, Any]]:
    """The records of a replay file's lines (SPEC section 6), blank lines skipped. A line that is not a record
    raises ``UserFacingError`` naming its line number and how many records came before it."""
    n = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rec, why = _replay_record(line)
        if rec is None:
            raise UserFacingError(f"{source} line {lineno}: {why}; published the {n} events before it, none after")
        yield rec
        n += 1


async def produce_file(settings: Settings, lines: Iterable[bytes], source: str = "standard input",
                       realtime: bool = False, speed: float = 1.0) -> int:
    """Publish a replay file's records in file order; the number published. Stops at the first line that is not
    a record (``UserFacingError``), once everything before it is delivered."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await start_client(producer, settings)
    try:
        return await publish(producer, replay_records(lines, source), realtime=realtime, speed=speed,
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
