"""Partition tasks: the lifecycle of each partition's core Task in the worker (Kafka Streams' processor verbs).

- load: when a partition's first message arrives, its state is read from its changelog into a fresh engine
  (exactly-once: after starting its transactional producer, which fences the previous owner);
- push / step: input goes into the task's merge buffers; a step applies what may be applied (streams/core/task.py);
- flush: what the steps produced is written by the sink in the background, one flush at a time per task (its
  changelog rows must land in order), and the input it covered is acked after (InOrderAcks);
- forget: a rebalance drops every task; nothing started before it writes or acks after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from streams.charter import Charter
from streams.connection import client_options
from streams.core import ElementEngine, Engine, Output
from streams.core.task import Step, Task
from streams.live.acks import Held, InOrderAcks
from streams.live.changelog import (
    Restore,
    Row,
    element_rows,
    hotline_rows,
    read_changelog,
    restore_elements,
    restore_hotline,
    restore_subscribers,
    subscriber_rows,
)
from streams.live.metrics import Metrics
from streams.live.sink import Batch, Sink
from streams.settings import Settings
from streams.topics import ELEMENTS_TABLE, ELEMENTS_TOPIC, HOTLINE_TABLE, SUBSCRIBERS_TABLE, changelog_name

log = logging.getLogger("charter.live")

# acks one input event: faust's stream.ack (awaited), or ConsumerView.ack of a batched message (returns None)
Ack = Callable[[Any], Awaitable[Any] | None]
ReadChangelog = Callable[[Settings, TopicPartition], Awaitable[dict[bytes, bytes]]]
TxnFactory = Callable[[str], Any]  # transactional id -> a transactional producer, not started
RowsOf = Callable[[Any], list[Row]]  # an engine -> its changed rows
Lag = Callable[[int], int]  # partition number -> input messages appended but not received yet
CATCHING_UP_LAG = 5000
ELEMENTS = "elements"  # the key of the element task (a partition's task: its number; the hotline's: None)
WATERMARK_EVERY_US = 1_000_000  # a partition task tells the element task how far it is at least this often


class LiveTask:
    """A core Task plus what the adapter needs to flush it: pending outputs and messages to ack."""

    def __init__(self, key: int | str | None, engine: Any, changelog: TopicPartition, rows: RowsOf, ack: Ack,
                 txn: Any = None) -> None:
        self.key = key  # its partition number; None: the hotline; ELEMENTS: the element task
        self.task = Task(engine)
        self.changelog = changelog
        self.rows = rows  # the changelog rows of what changed since the last flush
        self.ack = ack
        self.txn = txn  # exactly-once: this partition's transactional producer
        self.out: list[Output] = []
        self.to_ack: list[Held] = []
        self.failed: list[tuple[Held, Exception]] = []
        self.flushing: asyncio.Future | None = None  # the flush in flight, if any
        self.dropped = False  # revoked or failed: it must write and ack nothing more
        self.acks = InOrderAcks()
        # Applying a backlog under event time: from its load until a step reaches the wall clock, and again when its
        # partition falls behind by CATCHING_UP_LAG messages (a backlog, not the usual fetch-to-step delay).
        self.catching_up = True
        self.element_wm: int | None = None  # the last watermark sent to the element task (partition tasks)

    @property
    def name(self) -> str:
        return "hotline" if self.key is None else self.key if isinstance(self.key, str) else f"partition {self.key}"

    def absorb(self, step: Step) -> None:
        self.out += step.out
        self.to_ack += step.applied
        self.failed += step.failed

    def take(self, rows: list[Row]) -> Batch:
        batch = Batch(self.out, rows, self.to_ack, self.failed)
        self.out, self.to_ack, self.failed = [], [], []
        return batch


class Tasks:
    """The worker's partition tasks: one per owned input partition number, and the hotline task."""

    def __init__(self, settings: Settings, charter: Charter, sink: Sink, *, exactly_once: bool,
                 metrics: Metrics | None = None, lag: Lag | None = None, read: ReadChangelog = read_changelog,
                 txn_factory: TxnFactory | None = None, rejoin: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._rejoin = rejoin  # asks the group for a rebalance (ConsumerView.request_rejoin)
        self.metrics = metrics
        self._lag = lag
        self.charter = charter
        self.sink = sink
        self.eos = exactly_once
        self._read = read
        self._txn_factory = txn_factory or self._transactional_producer
        self.main: dict[int, LiveTask] = {}
        self.hotline: LiveTask | None = None
        self.elements: LiveTask | None = None
        self.subscribers_changelog = changelog_name(settings, SUBSCRIBERS_TABLE)
        self.hotline_changelog = changelog_name(settings, HOTLINE_TABLE)
        self.elements_changelog = changelog_name(settings, ELEMENTS_TABLE)
        # SPEC 10: the partition tasks forward their element changes to the element task (charter-elements)
        self.counts_elements = charter.incident is not None
        # Rebalances so far. Whatever was started before one (a changelog read, a batch of forwarded calls) must
        # not leave anything behind after it: a task or read progress from before belongs to an assignment that is
        # gone (tests/kafka/test_live.py::test_a_worker_leaving_after_the_last_event_leaves_no_window_open).
        self.generation = 0
        # Tasks whose flush failed, by key, until the rebalance that fail() asks for
        self.parked: set[int | str | None] = set()
        self._background: set[asyncio.Future] = set()

    def _transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(**client_options(self.settings), transactional_id=transactional_id, acks="all",
                                linger_ms=5, max_request_size=16 * 1024 * 1024)

    # ------------------------------------------------------------ load

    def _tasks(self) -> list[LiveTask]:
        return [*self.main.values(), *(lt for lt in (self.hotline, self.elements) if lt is not None)]

    def _engine(self) -> Engine:
        return Engine(self.charter, track_dirty=True, report_elements=self.counts_elements)

    async def _load(self, key: int | str | None, changelog: TopicPartition, txn_id: str, restore: Restore,
                    rows: RowsOf, ack: Ack, make: Callable[[], Any] | None = None) -> LiveTask | None:
        """A task whose engine holds the stored rows of one state partition, with (exactly-once) its transactional
        producer; None if a rebalance came while it was read.

        Exactly-once: the producer is started first, which fences a previous owner of the partition and aborts
        its open transaction; only then is the changelog read, with read_committed, to its end.
        """
        generation = self.generation
        started = time.monotonic()
        txn = None
        if self.eos:
            txn = self._txn_factory(txn_id)
            await txn.start()
        engine = (make or self._engine)()
        restore(engine, (await self._read(self.settings, changelog)).items())
        if isinstance(engine, Engine):
            engine.rebuild_deadlines()
        if self.metrics is not None:
            self.metrics.load_seconds.observe(time.monotonic() - started)
        lt = LiveTask(key, engine, changelog, rows, ack, txn)
        if generation != self.generation:
            self.drop(lt)  # loaded for an assignment that is gone
            return None
        return lt

    async def main_task(self, p: int, ack: Ack) -> LiveTask | None:
        """Partition ``p``'s task, loaded from its changelog if need be; None if a rebalance came meanwhile or the
        partition is parked."""
        lt = self.main.get(p)
        if lt is None:
            if p in self.parked:
                return None
            lt = await self._load(p, TopicPartition(self.subscribers_changelog, p),
                                  f"{self.settings.app_id}-charter-{p}", restore_subscribers(p),
                                  partial(subscriber_rows, p, max_bytes=self.settings.max_row_bytes), ack)
            if lt is None:
                return None
            self.main[p] = lt
            log.info("partition %d: %d subscribers loaded", p, len(lt.task.engine.subscribers))
        return lt

    async def hotline_task(self, ack: Ack) -> LiveTask | None:
        """The hotline task, loaded from its changelog if need be; None if a rebalance came meanwhile or it is
        parked."""
        if self.hotline is None:
            if None in self.parked:
                return None
            lt = await self._load(None, TopicPartition(self.hotline_changelog, 0), f"{self.settings.app_id}-hotline",
                                  restore_hotline, hotline_rows, ack)
            if lt is None:
                return None
            self.hotline = lt
            engine = lt.task.engine
            log.info("hotline: %d calls, %d windows loaded", len(engine.calls), len(engine.windows))
        return self.hotline

    async def elements_task(self, ack: Ack) -> LiveTask | None:
        """The element task (SPEC 10: incidents), loaded from its changelog if need be; None if a rebalance came
        meanwhile or it is parked."""
        if self.elements is None:
            if ELEMENTS in self.parked:
                return None
            lt = await self._load(ELEMENTS, TopicPartition(self.elements_changelog, 0),
                                  f"{self.settings.app_id}-elements", restore_elements, element_rows, ack,
                                  make=lambda: ElementEngine(self.charter))
            if lt is None:
                return None
            self.elements = lt
            log.info("elements: %d elements with customers out loaded", len(lt.task.engine.elements))
        return self.elements

    # ------------------------------------------------------------ flush

    async def flush(self, lt: LiveTask) -> None:
        """Start writing what the task's steps produced since its last flush (nothing once it is dropped).

        The write runs in the background, so the agent goes on with other partitions and further input while the
        broker acknowledges. A task's flushes still run one at a time and in order, since its changelog rows must
        land in the order they were made: a flush waits here for the previous one, and that one's error is raised
        here, into the agent, before anything after it is acked.
        """
        flushing = lt.flushing
        if flushing is not None:
            # left in lt.flushing while awaited: a revoke meanwhile awaits it too, before the rebalance goes on
            try:
                await flushing
            finally:
                if lt.flushing is flushing:
                    lt.flushing = None
        if lt.dropped:
            return
        batch = lt.take(lt.rows(lt.task.engine))
        if batch.writes():
            lt.flushing = asyncio.ensure_future(self._write(lt, batch))
        else:
            await self.ack(lt, batch.acks)

    async def _write(self, lt: LiveTask, batch: Batch) -> None:
        """Outputs delivered, then state written, then inputs acked: a crash repeats, never loses."""
        if not await self.sink.write(batch, lt.changelog, lt.txn):
            self.fail(lt)
            return
        if self.metrics is not None and batch.out:
            self.metrics.written(batch.out, time.time())
        await self.ack(lt, batch.acks)

    async def ack(self, lt: LiveTask, done: Iterable[Held]) -> None:
        """Ack what is done and every message of its topic-partition received before it (InOrderAcks)."""
        if lt.dropped:
            return  # its partition was revoked: what it did not ack goes to the next owner
        ack = lt.ack
        for held in done:
            for event in lt.acks.done(held):
                acked = ack(event)
                if acked is not None:
                    await acked

    async def step(self, lt: LiveTask, read_until: dict[Any, int | None], now: int) -> None:
        """Apply what may be applied, then flush."""
        lt.absorb(lt.task.step(read_until, now=now))
        if self.counts_elements and isinstance(lt.key, int):
            self._forward_elements(lt)
        if lt.catching_up:
            lt.catching_up = None in read_until.values() or len(lt.task.merger) > 0
        elif isinstance(lt.key, int) and self._lag is not None:
            lt.catching_up = self._lag(lt.key) >= CATCHING_UP_LAG
        if self.metrics is not None:
            subscribers = len(lt.task.engine.subscribers) if isinstance(lt.key, int) else None
            self.metrics.partition_state("hotline" if lt.key is None else lt.key, subscribers, lt.catching_up)
        await self.flush(lt)

    def _forward_elements(self, lt: LiveTask) -> None:
        """A partition task's element changes go, in its flush (the same transaction as its rows), to the element
        task, followed by a watermark: every change of this partition before that instant has been sent. The
        watermark is the engine's clock less the grace, as a deadline's (SPEC 5): an event appended within the
        grace may still come before it. It goes with every flush that has changes, and at least once a second
        (the element task's clock is the smallest of the partitions' watermarks)."""
        engine = lt.task.engine
        p = lt.key
        changes = engine.take_element_changes()
        lt.out += [(ELEMENTS_TOPIC, c.element_id, {"s": p, "c": c.to_dict()}) for c in changes]
        if engine.clock is None:
            return
        wm = engine.clock - self.charter.grace_us
        if changes or lt.element_wm is None or wm - lt.element_wm >= WATERMARK_EVERY_US:
            lt.element_wm = wm
            lt.out.append((ELEMENTS_TOPIC, None, {"s": p, "wm": wm}))

    def _task(self, key: int | str | None) -> LiveTask | None:
        if key is None:
            return self.hotline
        if key == ELEMENTS:
            return self.elements
        return self.main.get(key)

    def not_ready(self, key: int | str | None) -> str | None:
        """Why the task of ``key`` (a partition number; None: the hotline; ELEMENTS) is not ready, or None."""
        if key in self.parked:
            return "parked after a failed transaction (until the rebalance it asked for)"
        lt = self._task(key)
        if lt is None:
            return "state not loaded"
        return "catching up" if lt.catching_up else None

    async def settle(self) -> None:
        """Wait for the flushes in flight (bounded by the session timeout)."""
        flushing = [lt.flushing for lt in self._tasks() if lt.flushing is not None]
        if flushing:
            await asyncio.wait(flushing, timeout=self.settings.session_timeout)

    # ------------------------------------------------------------ forget

    async def revoke(self) -> None:
        """Forget every task, and let the flushes in flight land first (bounded by the session timeout).

        The rebalance protocol is eager (aiokafka): a revoke is of the whole assignment. The next owner reads a
        changelog only after every member has given its partitions up, so no row of ours can arrive after it has
        read (at-least-once has no fencing; docs/reliability.md). Errors of those flushes do not matter here: their
        input was not acked.
        """
        self.generation += 1
        self.parked.clear()
        dropped = self._tasks()
        self.main.clear()
        self.hotline = self.elements = None
        for lt in dropped:
            lt.dropped = True  # an agent awaiting its flush will start no further write for it
        flushing = [lt.flushing for lt in dropped if lt.flushing is not None]
        if flushing:
            await asyncio.wait(flushing, timeout=self.settings.session_timeout)
        for lt in dropped:
            self.drop(lt)

    def drop(self, lt: LiveTask | None) -> None:
        """Forget a task's producer; its unacked input will be processed again by the partition's next owner."""
        if lt is not None and lt.txn is not None:
            stopping = asyncio.ensure_future(lt.txn.stop())
            self._background.add(stopping)
            stopping.add_done_callback(self._background.discard)
            lt.txn = None

    def fail(self, lt: LiveTask) -> None:
        """A flush that did not land (exactly-once: the transaction failed, fenced or not): the task is dropped,
        its partition parked (nothing more of it is applied or acked), and a rebalance asked for.

        Its consumed but unacked input must be read again before anything after it is applied, or the offsets acked
        after it would let faust commit past it (streams/live/acks.py). faust offers no safe way to seek back while
        messages already fetched are still on their way to the agent; a rebalance does it (faust seeks every
        assigned partition back to its committed offset). Fenced, the new owner's join brings one anyway; a
        transaction that failed because the broker went away (tests/kafka/test_broker_restart.py) brings none by
        itself, so it is asked for here (docs/reliability.md).
        """
        log.warning("%s: its flush did not land; the task is dropped, the partition parked and a rebalance asked "
                    "for", lt.name)
        if self.metrics is not None:
            self.metrics.transactions_failed.inc()
        lt.dropped = True
        self.parked.add(lt.key)
        if lt.key is None:
            if self.hotline is lt:
                self.hotline = None
        elif lt.key == ELEMENTS:
            if self.elements is lt:
                self.elements = None
        elif self.main.get(lt.key) is lt:
            del self.main[lt.key]
        self.drop(lt)
        if self._rejoin is not None:
            self._rejoin()
