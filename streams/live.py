"""The live adapter: a faust-streaming app around the same core as ``charter replay``.

Topology (one consumer group of identical workers):

- ``charter_main`` consumes the four customer-keyed input topics and ``charter-clock``, all co-partitioned. Each
  partition number p has one ``Task`` (engine + merger, streams/core/task.py) whose state lives in the
  compacted changelog topic ``{app_id}-subscribers-changelog`` (partition p), read back by the
  worker that takes the partition. Every worker sends a tick to each ``charter-clock`` partition it owns
  every ``tick_interval``; a tick makes the task of that partition step inside stream iteration, so deadlines
  fire on the worker owning the subscriber, from its state, with no scan of all subscribers.
- ``call-queue`` is keyed by call_id but the KPI is per queue and must not depend on partitioning, so
  ``forward_calls`` validates each call event and repartitions it to ``charter-hotline`` (one partition),
  tagged with its source partition. The same timer sends, for every source partition it has fully
  forwarded, a watermark record into ``charter-hotline``; ``hotline`` merges the sources by event time and uses
  the smallest watermark as its wall clock. Hotline state lives in ``{app_id}-hotline-changelog``.

State: no faust table. Each task's state is loaded, when its partition is taken, by our own bulk changelog reader
straight into the core's objects (``read_changelog``), and the rows a flush changed are written back with one
burst of producer sends. Faust tables would hold every subscriber a second time (its store row beside the core's
object) and restore one record at a time (docs/performance.md measured 5x slower recovery).

Ordering and lag (SPEC section 5): a source is *idle* when everything appended to it has reached the task
(its next offset has reached the high watermark of the last fetch); while any source is not idle the task
merges by ``occurred_at`` under event time, and only a fully idle task moves to the wall clock, taken as the
time of the last fetch of its sources (everything appended before it has been read).

Delivery (at least once, no loss): per partition, outputs are sent and their delivery awaited first, then the
changed states are written to the changelog and awaited, then the applied input messages are acked. A crash can
repeat outputs (same deterministic ids) but never lose one. Exactly-once: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP
from pydantic import ValidationError

from streams.charter import Charter
from streams.core import Engine, Output, to_us
from streams.core.state import Call, Subscriber, Window
from streams.core.task import Step, Task
from streams.replay import dead_letter, decode_event, describe_error
from streams.settings import Settings

log = logging.getLogger("charter.live")

CUSTOMER_TOPICS = ("line-activation", "box-shipment", "service-status", "switch-claim")
CALL_TOPIC = "call-queue"
INPUT_TOPICS = (*CUSTOMER_TOPICS, CALL_TOPIC)
CLOCK_TOPIC = "charter-clock"
HOTLINE_TOPIC = "charter-hotline"
OUTPUT_TOPICS = ("compensation", "billing", "claim-decision", "hotline-breach", "hotline-kpi", "sla-alert",
                 "dead-letter")
SEP = b"\x1f"
RAW = {"key_serializer": "raw", "value_serializer": "raw"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def encode_output(out: Output) -> tuple[bytes | None, bytes]:
    topic, key, value = out
    if topic == "compensation":
        value["emitted_at"] = _now_iso()
    return (None if key is None else key.encode()), orjson.dumps(value)


class _Source:
    """Read progress of one input topic-partition: the offset after the last message that reached us."""

    __slots__ = ("next_offset",)

    def __init__(self) -> None:
        self.next_offset: int | None = None  # None: nothing received since the partition was assigned


class InOrderAcks:
    """Releases the acks of each topic-partition in offset order.

    faust commits a topic-partition up to the first gap in what was acked, except at the head: with committed
    offset c and acked [c + 1] it commits c + 2 (its ``Consumer._new_offset`` takes c as the last processed offset,
    while it is the next to read; faust-streaming issue #606, unfixed in 0.15.3), and with nothing committed yet
    it takes no gap at the head into account at all. So a message acked ahead of an earlier one still held in a
    task's buffers (a dead letter, a watermark) would let the commit pass the held one, which a crash then loses.
    Here a message is acked only once it and every message received before it on its topic-partition are done.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[Any, deque[Held]] = {}  # tp -> its messages not acked yet, in the order received

    def received(self, tp: Any, event: Any) -> Held:
        """Note a message of ``tp`` as received (messages of a topic-partition arrive in offset order)."""
        held = Held(tp, event)
        queue = self._pending.get(tp)
        if queue is None:
            queue = self._pending[tp] = deque()
        queue.append(held)
        return held

    def done(self, held: Held) -> list[Any]:
        """Mark a received message applied (or dead-lettered); returns the events that may be acked now."""
        held.done = True
        queue = self._pending[held.tp]
        out = []
        while queue and queue[0].done:
            out.append(queue.popleft().event)
        return out


class Held:
    """A received message until its ack is released: the token a partition task carries with the event."""

    __slots__ = ("done", "event", "tp")

    def __init__(self, tp: Any, event: Any) -> None:
        self.tp, self.event, self.done = tp, event, False


class Batch:
    """What one flush writes: outputs, then state rows, then the applied input is acked (and failures dead-lettered)."""

    __slots__ = ("acks", "failed", "out", "rows")

    def __init__(self, out: list[Output], rows: list[tuple[bytes, bytes]], acks: list[Any],
                 failed: list[tuple[Any, Exception]]) -> None:
        self.out, self.rows, self.acks, self.failed = out, rows, acks, failed


class LiveTask:
    """A core Task plus what the adapter needs to flush it: pending outputs and messages to ack."""

    def __init__(self, engine: Engine, changelog: TopicPartition, txn: AIOKafkaProducer | None = None) -> None:
        self.task = Task(engine)
        self.changelog = changelog
        self.txn = txn  # exactly-once: this partition's transactional producer
        self.out: list[Output] = []
        self.to_ack: list[Any] = []
        self.failed: list[tuple[Any, Exception]] = []
        self.pushed = 0  # events pushed since the last step
        self.flushing: asyncio.Future | None = None  # the flush in flight, if any
        self.dropped = False  # its partition was revoked: it must write and ack nothing more
        self.acks = InOrderAcks()

    def absorb(self, step: Step) -> None:
        self.out += step.out
        self.to_ack += step.applied
        self.failed += step.failed

    def take(self, rows: list[tuple[bytes, bytes]]) -> Batch:
        batch = Batch(self.out, rows, self.to_ack, self.failed)
        self.out, self.to_ack, self.failed = [], [], []
        return batch


class Live:
    """The faust app and its per-partition tasks."""

    def __init__(self, settings: Settings, charter: Charter) -> None:
        self.settings = settings
        self.charter = charter
        n = settings.partitions
        self.app = app = faust.App(
            settings.app_id,
            broker=settings.broker_url,
            datadir=str(settings.data_dir),
            topic_partitions=n,
            topic_replication_factor=settings.replication_factor,
            # exactly-once is ours (docs/reliability.md): faust's own transactions do not cover our output topics
            processing_guarantee="at_least_once",
            web_enabled=settings.web_port is not None,
            web_port=settings.web_port or 6066,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout,
            consumer_group_instance_id=settings.instance_id or None,
            broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
            broker_rebalance_timeout=max(settings.session_timeout * 2, 10.0),
            broker_commit_interval=1.0,
            # there are no faust tables (state is ours, below); a standby count > 0 keeps faust's own assignor,
            # which co-partitions the agent's topics (without tables it falls back to round robin)
            table_standby_replicas=1,
            producer_acks=-1,
            # a few ms of linger batches the changelog rows and outputs of a flush into few requests
            producer_linger=0.005,
            producer_max_batch_size=256 * 1024,
            # a dead letter carries the raw value (base64 when not UTF-8): room for a large bad message
            producer_max_request_size=16 * 1024 * 1024,
            stream_wait_empty=False,
        )
        t = settings.topic
        self.clock_name, self.hotline_name, self.call_name = t(CLOCK_TOPIC), t(HOTLINE_TOPIC), t(CALL_TOPIC)
        self.customer_names = [t(name) for name in CUSTOMER_TOPICS]
        self.main_topic = app.topic(*self.customer_names, self.clock_name, partitions=n, **RAW)
        self.call_topic = app.topic(self.call_name, partitions=n, **RAW)
        self.hotline_topic = app.topic(self.hotline_name, partitions=1, **RAW)
        self.clock_topic = app.topic(self.clock_name, partitions=n, **RAW)
        self.outputs = {name: app.topic(t(name), **RAW) for name in OUTPUT_TOPICS}
        self.eos = settings.processing_guarantee == "exactly_once"
        self.subscribers_changelog = changelog_name(settings, "subscribers")
        self.hotline_changelog = changelog_name(settings, "hotline")
        if self.eos:
            # The same changelog topics, written in our transactions and read with read_committed. (Faust's own
            # table recovery could not read them: it waits for the high watermark, which a read_committed
            # consumer never reaches past a transaction marker.)
            _read_committed_consumer()
        self.tasks: dict[int, LiveTask] = {}
        self._background: set[asyncio.Future] = set()
        self.hotline_task: LiveTask | None = None
        self.hotline_sources: dict[int, bool] = {}  # source partition -> idle (last record from it was a watermark)
        self.hotline_wm: dict[int, int] = {}
        self.sources: dict[TP, _Source] = {}  # input TPs of main tasks and of the call forwarder
        # Rebalances so far. Whatever an agent started before one (a changelog read, a batch of forwarded calls)
        # must not leave anything behind after it: read progress or a task from before belongs to an assignment
        # that is gone (tests/kafka/test_live.py::test_a_worker_leaving_after_the_last_event_leaves_no_window_open).
        self.generation = 0
        self._consumer_cache: Any = None
        self._unprefixed: dict[str, str] = {}

        app.agent(self.main_topic, name="charter_main")(self._main_agent)
        app.agent(self.call_topic, name="forward_calls")(self._forward_agent)
        app.agent(self.hotline_topic, name="hotline")(self._hotline_agent)
        app.timer(settings.tick_interval, name="charter_clock")(self._tick)
        app.on_partitions_revoked.connect(self._on_revoked)

    # ------------------------------------------------------------ consumer read progress

    def _aiokafka(self) -> Any:
        if self._consumer_cache is None:
            self._consumer_cache = self.app.consumer._thread._ensure_consumer()
        return self._consumer_cache

    def _source(self, tp: TP) -> _Source:
        src = self.sources.get(tp)
        if src is None:
            src = self.sources[tp] = _Source()
        return src

    def _read_until(self, tp: TP) -> int | None:
        """The instant up to which everything appended to ``tp`` has reached us (the consumer's last fetch of it,
        if we are at its high watermark), or None while we are behind."""
        return self._fetched_at_us(tp) if self._idle(tp) else None

    def _owned(self, tp: TP) -> bool:
        """``tp`` is assigned to us now, and no rebalance is under way. Asked of aiokafka's own assignment (a
        frozenset it keeps; faust's ``consumer.assignment()`` copies it into a new set of faust TPs per call, too
        costly per message).

        During a rebalance (from aiokafka's join preparation, before the revoke, until the new assignment is set)
        aiokafka still holds the old assignment; a message from before the revoke can still reach an agent then.
        It is skipped, unacked: after the rebalance faust seeks every assigned partition back to its committed
        offset, so it comes again if the partition is still ours, and goes to the new owner otherwise. Processed
        here, it would load a task from the changelog while the revoked task's last rows may still be in flight.

        Not a copy kept from faust's ``on_partitions_assigned`` signal: faust sends it at the end of its rebalance
        handling, while the consumer thread already has the new assignment, so the first messages of a new
        assignment may reach the agent before it. A version that did so failed the exactly-once crash test once
        (an input event not applied before a deadline fired after a restart), which skipping such messages
        explains; with aiokafka's assignment the check is what it was before that version."""
        consumer = self._aiokafka()
        return not consumer._subscription.reassignment_in_progress and tp in consumer.assignment()

    def _idle(self, tp: TP) -> bool:
        """Nothing appended to ``tp`` (as of the consumer's last fetch of it) is still unread by us."""
        hw = self._aiokafka().highwater(tp)
        if hw is None:
            return False
        nxt = self._source(tp).next_offset
        if nxt is None:
            # Nothing received since assignment: we start at the committed offset. Read it each time, since
            # faust fills it in asynchronously after the assignment (an early read would say 0: not idle, wait).
            nxt = self.app.consumer._committed_offset.get(tp) or 0
        return nxt >= hw

    def _fetched_at_us(self, tp: TP) -> int | None:
        ts = self._aiokafka().last_poll_timestamp(tp)
        return None if ts is None else ts * 1000

    # ------------------------------------------------------------ partition tasks

    async def _load_task(self, changelog: TopicPartition, txn_id: str,
                         restore: Callable[[Engine, Iterable[tuple[bytes, bytes]]], None]) -> LiveTask | None:
        """A task whose engine holds the stored rows of one state partition (``restore`` puts them in), with
        (exactly-once) its transactional producer; None if a rebalance came while it was read.

        Exactly-once: the producer is started first, which fences a previous owner of the partition and aborts
        its open transaction; only then is the changelog read, with read_committed, to its end.
        """
        generation = self.generation
        txn = None
        if self.eos:
            txn = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers or "127.0.0.1:9092",
                                   transactional_id=txn_id, acks="all", linger_ms=5,
                                   max_request_size=16 * 1024 * 1024)
            await txn.start()
        engine = Engine(self.charter, track_dirty=True)
        restore(engine, (await read_changelog(self.settings, changelog)).items())
        engine.rebuild_deadlines()
        lt = LiveTask(engine, changelog, txn)
        if generation != self.generation:
            self._drop(lt)  # loaded for an assignment that is gone
            return None
        return lt

    async def _main_task(self, p: int) -> LiveTask | None:
        """Partition ``p``'s task, loaded from its changelog if need be; None if a rebalance came meanwhile."""
        lt = self.tasks.get(p)
        if lt is None:
            prefix = b"%d" % p + SEP

            def restore(engine: Engine, rows: Iterable[tuple[bytes, bytes]]) -> None:
                for key, value in rows:
                    if key.startswith(prefix):
                        engine.subscribers[key[len(prefix):].decode()] = Subscriber.decode(orjson.loads(value))

            lt = await self._load_task(TopicPartition(self.subscribers_changelog, p),
                                       f"{self.settings.app_id}-charter-{p}", restore)
            if lt is None:
                return None
            self.tasks[p] = lt
            log.info("partition %d: %d subscribers loaded", p, len(lt.task.engine.subscribers))
        return lt

    async def _hotline(self) -> LiveTask | None:
        """The hotline task, loaded from its changelog if need be; None if a rebalance came meanwhile."""
        if self.hotline_task is None:
            lt = await self._load_task(TopicPartition(self.hotline_changelog, 0), f"{self.settings.app_id}-hotline",
                                       _restore_hotline)
            if lt is None:
                return None
            self.hotline_task = lt
            self.hotline_sources = {s: False for s in range(self.settings.partitions)}
            self.hotline_wm = {}
            engine = lt.task.engine
            log.info("hotline: %d calls, %d windows loaded", len(engine.calls), len(engine.windows))
        return self.hotline_task

    async def _on_revoked(self, app: faust.App, revoked: Iterable[TP], **kwargs: Any) -> None:
        """Forget every task and every read progress, whatever ``revoked`` lists.

        The rebalance protocol is eager (aiokafka), so ``revoked`` is our whole assignment anyway; and what was
        kept of a partition that went to another member would be stale when it comes back (read progress behind
        what that member committed: a source never idle again once its input stops).
        """
        self.generation += 1
        dropped = [*self.tasks.values(), *([self.hotline_task] if self.hotline_task is not None else [])]
        self.tasks.clear()
        self.hotline_task = None
        self.sources.clear()
        for lt in dropped:
            lt.dropped = True  # an agent awaiting its flush will start no further write for it
        # Let flushes in flight land before the rebalance goes on: the next owner reads the changelog only after
        # every member has given its partitions up, so no row of ours can arrive after it has read (at-least-once
        # has no fencing; docs/reliability.md). Their errors do not matter here: their input was not acked.
        flushing = [lt.flushing for lt in dropped if lt.flushing is not None]
        if flushing:
            await asyncio.wait(flushing, timeout=self.settings.session_timeout)
        for lt in dropped:
            self._drop(lt)

    def _drop(self, lt: LiveTask | None) -> None:
        """Forget a task; its unacked input will be processed again by the partition's next owner."""
        if lt is not None and lt.txn is not None:
            stopping = asyncio.ensure_future(lt.txn.stop())
            self._background.add(stopping)
            stopping.add_done_callback(self._background.discard)
            lt.txn = None

    # ------------------------------------------------------------ agents

    async def _dead_letter(self, message: Any, error: str) -> None:
        topic = self.settings.unprefixed(message.topic)
        key, value = encode_output(dead_letter(topic, message.partition, message.offset, message.key, message.value,
                                               error))
        await (await self.outputs["dead-letter"].send(key=key, value=value))

    def _topic_name(self, topic: str) -> str:
        """The spec's name of one of our (prefixed) topics."""
        name = self._unprefixed.get(topic)
        if name is None:
            name = self._unprefixed[topic] = self.settings.unprefixed(topic)
        return name

    async def _decode(self, message: Any, topic: str) -> Any:
        """Validated event, or None after sending the message to dead-letter."""
        try:
            return decode_event(topic, orjson.loads(message.value))
        except (orjson.JSONDecodeError, ValidationError, ValueError, TypeError) as e:
            reason = f"not valid JSON: {e}" if isinstance(e, orjson.JSONDecodeError) else describe_error(e)
            await self._dead_letter(message, reason)
            return None

    async def _main_agent(self, stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            tp = message.tp
            if not self._owned(tp):
                continue  # delivered after its partition was revoked: the new owner processes it, not us
            p = message.partition
            lt = self.tasks.get(p) or await self._main_task(p)
            if lt is None:
                continue  # a rebalance came while its state was read: as for a revoked partition
            if message.topic == self.clock_name:
                await stream.ack(event)
                await self._step_main(p, lt, stream)
                continue
            self._source(tp).next_offset = message.offset + 1
            topic = self._topic_name(message.topic)
            held = lt.acks.received(tp, event)
            ev = await self._decode(message, topic)
            if ev is None:
                await self._ack(stream, lt, [held])  # once every message before it on its partition is applied
                continue
            lt.task.push(tp, to_us(ev.occurred_at), topic, ev, held)
            # Events wait in the task's buffers until the next tick (every tick_interval) or until enough have
            # arrived since the last step: stepping and flushing once per batch, not per event, is where the
            # throughput comes from. (Counting what is buffered instead would step on every event while a
            # blocked merge holds many.)
            lt.pushed += 1
            if lt.pushed >= self.settings.flush_every:
                await self._step_main(p, lt, stream)

    async def _step_main(self, p: int, lt: LiveTask, stream: Any) -> None:
        lt.pushed = 0
        read_until = {tp: self._read_until(tp) for tp in (TP(t, p) for t in self.customer_names)}
        lt.absorb(lt.task.step(read_until, now=time.time_ns() // 1000))
        if not await self._flush(lt, stream, self._persist_main(p, lt.task.engine)) and self.tasks.get(p) is lt:
            self.tasks.pop(p)  # fenced: a new owner took the partition over

    def _persist_main(self, p: int, engine: Engine) -> list[tuple[bytes, bytes]]:
        prefix = b"%d" % p + SEP
        rows = [(prefix + k.encode(), orjson.dumps(engine.subscribers[k].encode()))
                for k in engine.dirty_subscribers]
        engine.dirty_subscribers.clear()
        return rows

    async def _flush(self, lt: LiveTask, stream: Any, rows: list[tuple[bytes, bytes]]) -> bool:
        """Start writing what the task's steps produced since its last flush; False if the task was fenced
        (exactly-once: a new owner took the partition over) and must be dropped.

        The write runs in the background, so the agent goes on with other partitions and further input while the
        broker acknowledges (awaited inline, every tick of every partition waited for two round trips). A task's
        flushes still run one at a time and in order, since its changelog rows must land in the order they were
        made: a flush waits here for the previous one, and that one's error is raised here, into the agent, before
        anything after it is acked.
        """
        flushing = lt.flushing
        if flushing is not None:
            # left in lt.flushing while awaited: a revoke meanwhile awaits it too, before the rebalance goes on
            try:
                await flushing
            finally:
                if lt.flushing is flushing:
                    lt.flushing = None
        if lt.dropped or (self.eos and lt.txn is None):
            return False
        batch = lt.take(rows)
        if batch.out or batch.rows or batch.failed:
            lt.flushing = asyncio.ensure_future(self._write(lt, stream, batch))
        else:
            await self._ack(stream, lt, batch.acks)
        return True

    async def _ack(self, stream: Any, lt: LiveTask, done: Iterable[Held]) -> None:
        """Ack what is done and every message of its topic-partition received before it (InOrderAcks)."""
        if lt.dropped:
            return  # its partition was revoked: what it did not ack goes to the next owner
        for held in done:
            for event in lt.acks.done(held):
                await stream.ack(event)

    async def _write(self, lt: LiveTask, stream: Any, batch: Batch) -> None:
        """Outputs delivered, then state written, then inputs acked: a crash repeats, never loses."""
        for held, exc in batch.failed:
            log.exception("core failed on %s", held.tp, exc_info=exc)
            await self._dead_letter(held.event.message, f"processing error: {type(exc).__name__}: {exc}")
        if lt.txn is not None:
            if not await self._write_transaction(lt, batch):
                return
        elif self.eos:
            return  # fenced earlier: never write outside a transaction
        else:
            send = self.app.producer.send
            if batch.out:
                futures = []
                for out in batch.out:
                    key, value = encode_output(out)
                    futures.append(await send(self.settings.topic(out[0]), key, value, None, None, None))
                await asyncio.gather(*futures)
            if batch.rows:
                # after the outputs: a state saying "fired" must never be stored before its output is
                topic, partition = lt.changelog.topic, lt.changelog.partition
                await asyncio.gather(*[await send(topic, key, value, partition, None, None)
                                       for key, value in batch.rows])
        await self._ack(stream, lt, batch.acks)

    async def _write_transaction(self, lt: LiveTask, batch: Batch) -> bool:
        """Exactly-once: outputs and state rows in one Kafka transaction; False if it failed (the task is dropped).
        The caller acks the inputs only after it committed.

        Offsets are committed by faust afterwards, outside the transaction: input read again after a crash is
        recognised by the committed state (event ids applied, deadlines fired) and produces nothing.
        """
        txn, changelog = lt.txn, lt.changelog
        if batch.out or batch.rows:
            try:
                async with txn.transaction():
                    for out in batch.out:
                        key, value = encode_output(out)
                        await txn.send(self.settings.topic(out[0]), value, key=key)
                    for key, value in batch.rows:
                        await txn.send(changelog.topic, value, key=key, partition=changelog.partition)
            except (KafkaError, RuntimeError) as e:
                # Fenced (the partition has a new owner) or the transaction failed: nothing of it is visible to
                # read_committed readers, and the unacked input will be processed again.
                log.warning("%s: transaction failed (%s); the partition's task is dropped", changelog, e)
                self._drop(lt)
                return False
        return True

    async def _forward_agent(self, stream: Any) -> None:
        # In batches: take_events acks a batch only after this body, which awaits every send's delivery.
        async for events in stream.take_events(self.settings.flush_every, within=self.settings.tick_interval / 2):
            generation = self.generation
            futures = []
            for event in events:
                message = event.message
                ev = await self._decode(message, CALL_TOPIC)
                if ev is not None:
                    value = orjson.dumps({"s": message.partition, "v": orjson.loads(message.value)})
                    futures.append(await self.hotline_topic.send(key=ev.queue.encode(), value=value, partition=0))
            await asyncio.gather(*futures)
            if generation != self.generation:
                continue  # a rebalance came meanwhile: this read progress is of an assignment that is gone
            for event in events:
                self._source(event.message.tp).next_offset = event.message.offset + 1

    async def _hotline_agent(self, stream: Any) -> None:
        async for event in stream.noack().events():
            if not self._owned(event.message.tp):
                continue  # delivered after its partition was revoked
            lt = self.hotline_task or await self._hotline()
            if lt is None:
                continue  # a rebalance came while its state was read
            rec = orjson.loads(event.message.value)
            s = rec["s"]
            held = lt.acks.received(event.message.tp, event)
            if "wm" in rec:
                self.hotline_sources[s] = True  # nothing of s after this watermark is in flight
                self.hotline_wm[s] = rec["wm"] * 1000
                # acked once the calls before it (of any source: one partition) are applied and written
                await self._ack(stream, lt, [held])
            else:
                self.hotline_sources[s] = False
                ev = decode_event(CALL_TOPIC, rec["v"])
                lt.task.push(s, to_us(ev.occurred_at), CALL_TOPIC, ev, held)
                lt.pushed += 1
                if lt.pushed < self.settings.flush_every:
                    continue  # stepped at the next watermark record (every tick) or when enough have arrived
            lt.pushed = 0
            # a source is read up to its last watermark only while no record of it came after that watermark
            read_until = {s: (self.hotline_wm.get(s) if idle else None) for s, idle in self.hotline_sources.items()}
            lt.absorb(lt.task.step(read_until, now=time.time_ns() // 1000))
            if not await self._flush(lt, stream, self._persist_hotline(lt.task.engine)) and self.hotline_task is lt:
                self.hotline_task = None

    def _persist_hotline(self, engine: Engine) -> list[tuple[bytes, bytes]]:
        rows = [(b"c" + SEP + k.encode(), orjson.dumps(engine.calls[k].encode())) for k in engine.dirty_calls]
        rows += [(b"w" + SEP + q.encode() + SEP + b"%d" % ws, orjson.dumps(engine.windows[(q, ws)].encode()))
                 for q, ws in engine.dirty_windows]
        engine.dirty_calls.clear()
        engine.dirty_windows.clear()
        return rows

    # ------------------------------------------------------------ time

    async def _tick(self) -> None:
        """Clock ticks for the partitions this worker owns, and watermarks of the call partitions it forwards."""
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # not started yet
            return
        sends = []
        for tp in assignment:
            if tp.topic == self.clock_name:
                sends.append(self.clock_topic.send(key=None, value=b"", partition=tp.partition))
            elif tp.topic == self.call_name and self._idle(tp):
                fetched = self._aiokafka().last_poll_timestamp(tp)
                if fetched is not None:
                    wm = orjson.dumps({"s": tp.partition, "wm": fetched})
                    sends.append(self.hotline_topic.send(key=None, value=wm, partition=0))
        if sends:
            await asyncio.gather(*sends)


def _restore_hotline(engine: Engine, rows: Iterable[tuple[bytes, bytes]]) -> None:
    """Put the hotline changelog's rows (calls ``c<SEP>call_id``, windows ``w<SEP>queue<SEP>start``) into ``engine``."""
    for key, value in rows:
        kind, _, rest = key.partition(SEP)
        if kind == b"c":
            engine.calls[rest.decode()] = Call.decode(orjson.loads(value))
        elif kind == b"w":
            queue, _, ws = rest.rpartition(SEP)
            engine.windows[(queue.decode(), int(ws))] = Window.decode(orjson.loads(value))


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic of a state table (faust's naming: ``{app_id}-{table}-changelog``)."""
    return f"{settings.app_id}-{table}-changelog"


async def read_changelog(settings: Settings, tp: TopicPartition) -> dict[bytes, bytes]:
    """Every committed row of one changelog partition (last value per key), read to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers or "127.0.0.1:9092", group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest")
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


def _read_committed_consumer() -> None:
    """Exactly-once: faust's consumer reads with read_committed (inputs, and changelogs during recovery).

    Faust only does this in its own exactly_once mode, whose transactions cannot cover our output topics
    (/shared/FAUST-NOTES.md), so the isolation level is set on the consumer it creates.
    """
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_charter_read_committed", False):
        return
    create = thread_cls._create_worker_consumer

    def create_read_committed(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._isolation_level = "read_committed"  # read by AIOKafkaConsumer.start() to build its fetcher
        return consumer

    thread_cls._create_worker_consumer = create_read_committed
    thread_cls._charter_read_committed = True


def run_worker(settings: Settings, charter: Charter) -> None:
    """Run one worker until interrupted (the ``charter worker`` command)."""
    from streams.topics import ensure_topics

    ensure_topics(settings)
    live = Live(settings, charter)
    worker = faust.Worker(live.app, loglevel=settings.log_level, quiet=True)
    started = time.monotonic()
    log.info("worker starting (%s)", settings.broker_url)
    worker.execute_from_commandline()
    log.info("worker stopped after %.0f s", time.monotonic() - started)
