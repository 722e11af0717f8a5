"""The sink: writes what a partition task's flush produced (outputs, then state rows) and says whether it landed.

At-least-once: outputs are sent and their delivery awaited, then the rows, on the app's producer; a crash in
between repeats outputs (same ids), never loses one. Exactly-once: outputs and rows in one transaction of the
task's transactional producer; False when it failed (fenced: a new owner took the partition over). The caller
acks the input only after ``write`` returned True. Dead letters go out on the app's producer in both modes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.core import Output
from streams.live.acks import Held
from streams.live.metrics import Metrics
from streams.records import dead_letter, encode_output
from streams.settings import Settings

log = logging.getLogger("charter.live")

# The app producer's send: (topic, key, value, partition, timestamp, headers) -> a future of the delivery
Send = Callable[..., Awaitable[Awaitable[Any]]]
Row = tuple[bytes, bytes | None]  # a value None is a tombstone


class Batch:
    """What one flush writes: outputs, then state rows; the applied input is acked after (failures dead-lettered)."""

    __slots__ = ("acks", "failed", "out", "rows")

    def __init__(self, out: list[Output], rows: list[Row], acks: list[Held],
                 failed: list[tuple[Held, Exception]]) -> None:
        self.out, self.rows, self.acks, self.failed = out, rows, acks, failed

    def writes(self) -> bool:
        return bool(self.out or self.rows or self.failed)


class Sink:
    """Writes flushes and dead letters to the (prefixed) output topics and the changelogs."""

    def __init__(self, settings: Settings, send: Send, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self._send = send
        self.metrics = metrics

    async def dead_letter(self, message: Any, error: str) -> None:
        """Send an input message that cannot be applied to ``dead-letter``, and await its delivery."""
        topic = self.settings.unprefixed(message.topic)
        out = dead_letter(topic, message.partition, message.offset, message.key, message.value, error)
        key, value = encode_output(out)
        await (await self._send(self.settings.topic(out[0]), key, value, None, None, None))
        if self.metrics is not None:
            self.metrics.dead_letters.labels(topic).inc()

    async def write(self, batch: Batch, changelog: TopicPartition, txn: Any = None) -> bool:
        """Dead letters of core failures, then the outputs, then the rows; True once everything has landed."""
        for held, exc in batch.failed:
            log.error("core failed on %s offset %s: %s: %s", held.tp, held.message.offset,
                      type(exc).__name__, exc, exc_info=exc)
            await self.dead_letter(held.message, f"processing error: {type(exc).__name__}: {exc}")
        if txn is not None:
            return await self._transaction(batch, changelog, txn)
        send, topic = self._send, self.settings.topic
        if batch.out:
            futures = []
            for out in batch.out:
                key, value = encode_output(out)
                futures.append(await send(topic(out[0]), key, value, None, None, None))
            await asyncio.gather(*futures)
        if batch.rows:
            # after the outputs: a state saying "fired" must never be stored before its output is
            name, partition = changelog.topic, changelog.partition
            await asyncio.gather(*[await send(name, key, value, partition, None, None) for key, value in batch.rows])
        return True

    async def _transaction(self, batch: Batch, changelog: TopicPartition, txn: Any) -> bool:
        """Outputs and state rows in one Kafka transaction; False if it failed.

        Offsets are committed by faust afterwards, outside the transaction: input read again after a crash is
        recognised by the committed state (event ids applied, deadlines fired) and produces nothing.
        """
        if not (batch.out or batch.rows):
            return True
        topic = self.settings.topic
        try:
            async with txn.transaction():
                for out in batch.out:
                    key, value = encode_output(out)
                    await txn.send(topic(out[0]), value, key=key)
                for key, value in batch.rows:
                    await txn.send(changelog.topic, value, key=key, partition=changelog.partition)
        except (KafkaError, RuntimeError) as e:
            # Fenced (the partition has a new owner) or the transaction failed: nothing of it is visible to
            # read_committed readers, and the unacked input will be processed again.
            log.warning("%s: transaction failed (%s); the partition's task is dropped", changelog, e)
            return False
        return True
