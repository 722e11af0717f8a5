"""Fakes of what the live adapter talks to (the batched drain's fetches, the consumer's state, the producers, the
changelog), so its own logic is tested without a broker: the model is Kafka Streams' TopologyTestDriver and Quix
Streams' message stubs. What is Kafka's behaviour (offsets, rebalances, transactions) stays in tests/kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import orjson
from faust.types import TP

from streams.charter import load_charter
from streams.live import Live
from streams.live.progress import Delivered
from streams.settings import Settings

PREFIX = "fake."


def fetched(topic: str, partition: int, offset: int, value: bytes, key: bytes | None = None) -> Delivered:
    """A fetched message as the batched drain hands it over (the real class: its own ack token)."""
    record = SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value)
    return Delivered(TP(topic, partition), record)


class Event:
    def __init__(self, message: Delivered) -> None:
        self.message = message


class View:
    """The consumer's state as the adapter reads it (streams.live.progress.ConsumerView's interface)."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.owned: set[TP] | None = None  # None: every partition is ours
        self.hw: dict[TP, int] = {}
        self.fetched_ms: dict[TP, int] = {}
        self.positions: dict[TP, int | None] = {}  # the consumer's position (default 0; None: being reset)
        self.rejoins = 0  # rebalances asked for
        self.flow: list[tuple[str, TP]] = []  # ("pause" | "resume", tp), in order

    def pause(self, tp: TP) -> None:
        self.flow.append(("pause", tp))

    def resume(self, tp: TP) -> None:
        self.flow.append(("resume", tp))

    def request_rejoin(self) -> None:
        self.rejoins += 1

    def ack(self, message: Delivered) -> None:
        self.log.append(("ack", message.topic, message.offset))

    def highwater(self, tp: TP) -> int | None:
        return self.hw.get(tp)

    def fetched_at_ms(self, tp: TP) -> int | None:
        return self.fetched_ms.get(tp)

    def position(self, tp: TP) -> int | None:
        return self.positions.get(tp, 0)

    def owns(self, tp: TP) -> bool:
        return self.owned is None or tp in self.owned

    def assignment(self) -> set[TP]:
        return set(self.owned or ())


class Delivery:
    """The producer's sends: each is logged when sent and when delivered; ``hold()`` keeps deliveries pending."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.held: asyncio.Event | None = None
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []  # (topic, key, value, partition)

    def hold(self) -> None:
        self.held = asyncio.Event()

    def release(self) -> None:
        assert self.held is not None
        self.held.set()

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None, *_: Any):
        self.log.append(("send", topic, partition))
        self.sent.append((topic, key, value, partition))
        held = self.held

        async def delivered() -> None:
            if held is not None:
                await held.wait()
            self.log.append(("delivered", topic, partition))

        return asyncio.ensure_future(delivered())


class Transactional:
    """A transactional producer whose transactions commit, or fail (``fail = True``) as a fenced one's do."""

    def __init__(self, log: list, transactional_id: str) -> None:
        self.log, self.id = log, transactional_id
        self.fail = False
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True
        self.log.append(("txn-start", self.id))

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> None:
        self.log.append(("txn-send", topic, partition))

    def transaction(self) -> Any:
        producer = self

        class _Txn:
            async def __aenter__(self) -> None:
                producer.log.append(("txn-begin", producer.id))

            async def __aexit__(self, *exc: Any) -> None:
                if producer.fail:
                    from aiokafka.errors import ProducerFenced

                    producer.log.append(("txn-abort", producer.id))
                    raise ProducerFenced()
                producer.log.append(("txn-commit", producer.id))

        return _Txn()


class Driver:
    """A Live worker (a real faust app object, never started) wired to the fakes above."""

    def __init__(self, guarantee: str = "at_least_once", changelog: dict[bytes, bytes] | None = None,
                 **settings: Any) -> None:
        self.log: list = []
        self.settings = Settings(partitions=2, topic_prefix=PREFIX, processing_guarantee=guarantee,
                                 bootstrap_servers="127.0.0.1:1", **settings)
        self.live = Live(self.settings, load_charter("alice-2007"))
        self.view = View(self.log)
        self.live.view = self.view
        self.live.progress.view = self.view
        self.delivery = Delivery(self.log)
        self.live.sink._send = self.delivery.send
        self.changelog = changelog or {}
        self.reading: asyncio.Event | None = None  # set: changelog reads wait until it is set
        self.live.tasks._read = self._read
        self.producers: list[Transactional] = []
        self.live.tasks._txn_factory = self._txn
        self.offsets: dict[TP, int] = {}

    async def _read(self, settings: Settings, tp: Any) -> dict[bytes, bytes]:
        self.log.append(("read-changelog", tp.topic, tp.partition))
        if self.reading is not None:
            await self.reading.wait()
        return dict(self.changelog)

    def _txn(self, transactional_id: str) -> Transactional:
        producer = Transactional(self.log, transactional_id)
        self.producers.append(producer)
        return producer

    def message(self, topic: str, partition: int, value: bytes | dict, key: bytes | None = None) -> Event:
        """The next message of a (spec-named) topic's partition; the consumer is at its end after it."""
        tp = TP(PREFIX + topic, partition)
        offset = self.offsets.get(tp, 0)
        self.offsets[tp] = offset + 1
        self.view.hw[tp] = offset + 1
        self.view.fetched_ms[tp] = 4_000_000_000_000  # far after every event: read up to then
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return Event(fetched(PREFIX + topic, partition, offset, raw, key))

    def tick(self, partition: int) -> Event:
        return self.message("charter-clock", partition, b"")

    def quiet(self, partition: int) -> None:
        """Every customer topic of ``partition`` is read to its end (so a tick may apply what is buffered)."""
        from streams.topics import CUSTOMER_TOPICS

        for topic in CUSTOMER_TOPICS:
            tp = TP(PREFIX + topic, partition)
            self.view.hw.setdefault(tp, self.offsets.get(tp, 0))
            self.view.fetched_ms[tp] = 4_000_000_000_000

    async def run_main(self, events: Iterable[Event], fetch: int = 1) -> None:
        """Deliver the events' messages to the batched path as the drain does, ``fetch`` messages per fetch
        (grouped by topic-partition within a fetch, in order)."""
        events = list(events)
        for i in range(0, len(events), fetch):
            batch: dict[TP, list[Delivered]] = {}
            for event in events[i:i + fetch]:
                batch.setdefault(event.message.tp, []).append(event.message)
            await self.live._batch(batch)
            await asyncio.sleep(0)  # let background flushes run, as the drain's awaits do
        await self.settle()

    async def run_elements(self, events: Iterable[Event]) -> None:
        """Deliver charter-elements messages to the batched path, one fetch each."""
        for event in events:
            await self.live._batch({event.message.tp: [event.message]})
            await asyncio.sleep(0)
        await self.settle()

    def values(self, topic: str) -> list[dict]:
        """The values sent to a (spec-named) topic, in order."""
        return [orjson.loads(v) for t, _, v, _ in self.delivery.sent if t == PREFIX + topic]

    async def settle(self) -> None:
        """Wait for every flush in flight."""
        tasks = self.live.tasks
        for lt in tasks._tasks():
            while lt.flushing is not None and not lt.flushing.done():
                await lt.flushing

    def kinds(self, *wanted: str) -> list:
        return [e for e in self.log if e[0] in wanted]
