"""State changelogs: the row formats of both state tables (written and read here only) and the bulk reader.

- ``{app_id}-subscribers-changelog``, one partition per input partition p: key ``p<SEP>customer_id``, value a
  ``Subscriber`` row (streams/core/state.py encodes it).
- ``{app_id}-hotline-changelog``, one partition: calls (``c<SEP>call_id``) and KPI windows
  (``w<SEP>queue<SEP>window start``).
- ``{app_id}-elements-changelog``, one partition: the element task's rows (SPEC 10), ``e<SEP>element_id`` (and the
  changes held at the latest instant under the empty element id); a row that is gone is a tombstone.

A worker taking a partition reads its changelog to the end, straight into the core's objects; faust tables would
hold every subscriber a second time and restore one record at a time (5x slower, docs/performance.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.connection import client_options
from streams.core import ElementEngine, Engine
from streams.core.state import Call, Subscriber, Window, bounded_row
from streams.settings import Settings

log = logging.getLogger("charter.live")

SEP = b"\x1f"
Row = tuple[bytes, bytes | None]  # a value None is a tombstone
Restore = Callable[[Any, Iterable[Row]], None]


def _prefix(p: int) -> bytes:
    return b"%d" % p + SEP


def subscriber_rows(p: int, engine: Engine, max_bytes: int = Settings.model_fields["max_row_bytes"].default
                    ) -> list[Row]:
    """The rows of the subscribers of partition ``p`` that changed since the last call (and forget they did).

    A row is at most ``max_bytes`` (CHARTER_MAX_ROW_BYTES): a larger one would be refused by the broker and stop
    the partition, so its oldest history is dropped instead (``bounded_row``), with a warning."""
    prefix = _prefix(p)
    subscribers = engine.subscribers
    rows = []
    for k in engine.dirty_subscribers:
        value, dropped = bounded_row(subscribers[k], max_bytes)
        if dropped:
            log.warning("partition %d: subscriber %s: state row above CHARTER_MAX_ROW_BYTES=%d, %d oldest history "
                        "entries dropped (now %d bytes)", p, k, max_bytes, dropped, len(value))
        rows.append((prefix + k.encode(), value))
    engine.dirty_subscribers.clear()
    return rows


def restore_subscribers(p: int) -> Restore:
    """Puts partition ``p``'s subscriber rows into an engine."""
    prefix = _prefix(p)
    n = len(prefix)

    def restore(engine: Engine, rows: Iterable[Row]) -> None:
        for key, value in rows:
            if key.startswith(prefix):
                engine.subscribers[key[n:].decode()] = Subscriber.decode(orjson.loads(value))

    return restore


def _row(record: Call | Window | None) -> bytes | None:
    return None if record is None else orjson.dumps(record.encode())  # None: dropped, a tombstone


def hotline_rows(engine: Engine) -> list[Row]:
    """The rows of the calls and windows that changed since the last call (and forget they did); a call or window
    the core dropped (one retention after it could change) is a tombstone, which compaction removes."""
    rows = [(b"c" + SEP + k.encode(), _row(engine.calls.get(k))) for k in engine.dirty_calls]
    rows += [(b"w" + SEP + q.encode() + SEP + b"%d" % ws, _row(engine.windows.get((q, ws))))
             for q, ws in engine.dirty_windows]
    engine.dirty_calls.clear()
    engine.dirty_windows.clear()
    return rows


def restore_hotline(engine: Engine, rows: Iterable[Row]) -> None:
    """Puts the hotline changelog's rows (calls and windows) into an engine."""
    for key, value in rows:
        if value is None:
            continue  # a tombstone not compacted yet: dropped
        kind, _, rest = key.partition(SEP)
        if kind == b"c":
            engine.calls[rest.decode()] = Call.decode(orjson.loads(value))
        elif kind == b"w":
            queue, _, ws = rest.rpartition(SEP)
            engine.windows[(queue.decode(), int(ws))] = Window.decode(orjson.loads(value))


def element_rows(engine: ElementEngine) -> list[Row]:
    """The element task's rows that changed since the last call (None: deleted, a tombstone)."""
    return [(b"e" + SEP + key.encode(), None if row is None else orjson.dumps(row))
            for key, row in engine.take_dirty().items()]


def restore_elements(engine: ElementEngine, rows: Iterable[Row]) -> None:
    """Puts the elements changelog's rows into an element engine."""
    engine.load((key.partition(SEP)[2].decode(), orjson.loads(value)) for key, value in rows
                if value is not None and key.startswith(b"e" + SEP))


async def read_changelog(settings: Settings, tp: TopicPartition) -> dict[bytes, bytes]:
    """Every committed row of one changelog partition (last value per key), read to its end with read_committed."""
    # 8 MiB per fetch, not aiokafka's 1 MiB: a partition of 125,000 rows is read in ~4 round trips instead of ~30
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    rows: dict[bytes, bytes] = {}
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset under read_committed
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for m in batch.get(tp, ()):
                rows[m.key] = m.value
    finally:
        await consumer.stop()
    return rows
