"""Read progress of the worker's input partitions: what has reached us, what is still unread, and whether a
partition is ours; and whether the broker can be reached. The ONLY module that touches private attributes of
faust-streaming or aiokafka.

Read against faust-streaming 0.15.3 and aiokafka 0.14.0 (the range pinned in pyproject.toml);
``PRIVATE_ATTRIBUTES`` lists every one, and tests/test_live_private.py fails naming the one that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

log = logging.getLogger("charter.live")

# (owner, attribute): what this module reads or patches. Checked by a test against the installed versions.
PRIVATE_ATTRIBUTES = (
    ("faust.transport.drivers.aiokafka.Consumer", "_thread"),
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "_ensure_consumer"),
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "_create_worker_consumer"),
    ("aiokafka.AIOKafkaConsumer", "_subscription"),
    ("aiokafka.AIOKafkaConsumer", "_isolation_level"),
    ("aiokafka.AIOKafkaConsumer", "_coordinator"),
    ("aiokafka.consumer.group_coordinator.GroupCoordinator", "request_rejoin"),
    ("mode.threads.ServiceThread", "thread_loop"),
    ("aiokafka.consumer.subscription_state.SubscriptionState", "reassignment_in_progress"),
    ("aiokafka.consumer.subscription_state.SubscriptionState", "subscription"),
    ("aiokafka.consumer.subscription_state.Subscription", "assignment"),
    ("aiokafka.consumer.subscription_state.Assignment", "state_value"),
    ("aiokafka.consumer.subscription_state.TopicPartitionState", "has_valid_position"),
    ("aiokafka.consumer.subscription_state.TopicPartitionState", "position"),
    ("aiokafka.client.AIOKafkaClient", "_metadata_update"),
    # the batched drain (use_batched_drain)
    ("faust.transport.consumer.Consumer", "_drain_messages"),
    ("faust.transport.consumer.Consumer", "_wait_next_records"),
    ("faust.transport.consumer.Consumer", "_read_offset"),
    ("faust.transport.consumer.Consumer", "_add_gap"),
    ("faust.transport.consumer.Consumer", "_buffered_partitions"),
    ("faust.transport.consumer.Consumer", "_n_acked"),
    ("faust.transport.consumer.Consumer", "_commit_every"),
    ("faust.transport.drivers.aiokafka.Consumer", "_to_message"),
    ("mode.services.Service", "_stopped"),
)


class ConsumerView:
    """What the worker reads of the consumer's state, through faust's consumer and the aiokafka consumer under it.

    The adapter's other modules depend on this interface only (tests give them a fake)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._aiokafka_consumer: Any = None

    def _aiokafka(self) -> Any:
        if self._aiokafka_consumer is None:
            self._aiokafka_consumer = self._app.consumer._thread._ensure_consumer()
        return self._aiokafka_consumer

    def highwater(self, tp: Any) -> int | None:
        """The high watermark of ``tp`` as of the consumer's last fetch of it (None before one)."""
        return self._aiokafka().highwater(tp)

    def fetched_at_ms(self, tp: Any) -> int | None:
        """When the consumer last fetched ``tp`` (ms since the epoch; None before one)."""
        return self._aiokafka().last_poll_timestamp(tp)

    def position(self, tp: Any) -> int | None:
        """The offset of the next message of ``tp`` the consumer will hand out, in its current assignment (None
        while the assignment is being reset or ``tp`` is not in it).

        Not faust's ``_committed_offset``: faust reads the committed offsets once, right after an assignment, and
        a commit that lands after that read (the revoke's) leaves it behind the position aiokafka resumed from; a
        partition then never looked idle until new input came (tests/kafka/test_live.py's failed-transaction test
        stalled on it)."""
        subscription = self._aiokafka()._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position:
            return None
        return state.position

    async def unread(self, records: Any) -> None:
        """Give back messages the consumer handed out that will not be handled (they came while faust's flow was
        stopped by a rebalance): each partition whose position is still right after them is seeked back to its
        first one.

        faust's answer, its seek to the committed offsets, does not seek a partition with nothing committed (aiokafka
        seeks only to an offset above 0), and the consumer had moved past those messages: they were lost (the
        failed-transaction test lost a claim that way). A partition whose position moved otherwise (a new
        assignment's reset, a seek) is left alone: its messages come again from there."""
        from aiokafka import TopicPartition

        spans = {tp: (rows[0].offset, rows[-1].offset) for tp, rows in records.items() if rows}
        if not spans:
            return
        consumer = self._aiokafka()

        async def seek_back() -> list[Any]:
            done = []
            for tp, (first, last) in spans.items():
                if self.position(tp) == last + 1:
                    consumer.seek(TopicPartition(tp.topic, tp.partition), first)
                    done.append(tp)
            return done

        loop = self._app.consumer._thread.thread_loop
        done = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(seek_back(), loop))
        if done:
            log.info("messages handed out during a rebalance are read again: %s",
                     ", ".join(f"{tp.topic}[{tp.partition}]@{spans[tp][0]}" for tp in done))

    def owns(self, tp: Any) -> bool:
        """``tp`` is assigned to us now and no rebalance is under way.

        Asked of aiokafka's own assignment (a frozenset it keeps; faust's ``consumer.assignment()`` copies it into a
        new set per call, too costly per message). During a rebalance (from aiokafka's join preparation, before the
        revoke, until the new assignment is set) aiokafka still holds the old assignment, and a message from before
        the revoke can still reach an agent: the caller skips it, unacked (after the rebalance faust seeks every
        assigned partition back to its committed offset, so it comes again to whoever owns it then).

        Not a copy kept from faust's ``on_partitions_assigned`` signal: faust sends it at the end of its rebalance
        handling, while the consumer thread already has the new assignment, so the first messages of a new
        assignment may reach the agent before it (the exactly-once crash test failed once on such a version)."""
        consumer = self._aiokafka()
        return not consumer._subscription.reassignment_in_progress and tp in consumer.assignment()

    def pause(self, tp: Any) -> None:
        """Stop fetching ``tp`` until ``resume`` (a rebalance forgets it).

        aiokafka's pause, not faust's ``pause_partitions``: faust 0.15.3 drops the records of a partition it no
        longer counts as active from a batch it already took from aiokafka, whose position has moved past them, so
        they would never come (a skewed-backlog test stalled on that gap; its ``resume_partitions`` also crashed the
        fetcher). aiokafka keeps the position of a paused partition and fetches from it again after the resume."""
        self._in_consumer_thread(self._aiokafka().pause, tp)

    def resume(self, tp: Any) -> None:
        self._in_consumer_thread(self._aiokafka().resume, tp)

    def _in_consumer_thread(self, method: Any, tp: Any) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import IllegalStateError

        def call() -> None:
            # no longer assigned: a rebalance came first, and reset the pause anyway
            with contextlib.suppress(IllegalStateError):
                method(TopicPartition(tp.topic, tp.partition))

        self._app.consumer._thread.thread_loop.call_soon_threadsafe(call)

    def request_rejoin(self) -> None:
        """Ask for a rebalance of the group (as a new member's join would).

        Every member gives its partitions up and faust seeks each assigned partition back to its committed offset:
        the only safe way to read a partition's unacked input again while messages already fetched are still on
        their way to the agents. aiokafka's coordinator lives in faust's consumer thread, hence the thread-safe
        call."""
        consumer = self._aiokafka()
        self._app.consumer._thread.thread_loop.call_soon_threadsafe(consumer._coordinator.request_rejoin)

    def ack(self, message: Any) -> None:
        """Mark a message delivered by the batched drain as processed: faust commits up to it (and every earlier
        message of its topic-partition acked too) at its next commit."""
        self._app.consumer.ack(message)

    def assignment(self) -> set[Any]:
        """faust's view of the current assignment (a copy), for the clock ticks; empty before the consumer starts."""
        try:
            return self._app.consumer.assignment()
        except Exception:  # not started yet
            return set()


class Delivered:
    """A message of the batched path: what the worker and faust's ``Consumer.ack`` read of it (faust's
    ``ConsumerMessage`` has twenty fields, and building one was 7 % of the worker's profile)."""

    __slots__ = ("__weakref__", "acked", "done", "key", "offset", "partition", "topic", "tp", "value")

    def __init__(self, tp: Any, record: Any) -> None:
        self.tp = tp
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset
        self.key, self.value = record.key, record.value
        self.acked = False
        self.done = False  # as a streams.live.acks.Held: it is its own ack token, one object less per message

    @property
    def event(self) -> Delivered:
        return self

    @property
    def message(self) -> Delivered:
        return self


Batch = dict[Any, list[Any]]  # topic-partition -> its messages of one fetch, in offset order
BatchHandler = Callable[[Batch], Awaitable[None]]


def use_batched_drain(app: Any, topics: Collection[str], handler: BatchHandler, view: ConsumerView,
                      progress: ReadProgress) -> None:
    """The messages of ``topics`` reach ``handler`` once per fetch, grouped by topic-partition, instead of one at a
    time through faust's Conductor and agent streams; the other topics' messages still take faust's path.

    faust's per-message path (``Consumer._drain_messages``: per message ``wait_first`` on two futures, then the
    Conductor, a channel queue and the stream's iteration) capped the worker at a few thousand events/s, whatever
    the work (docs/performance.md). Everything else stays faust's: group membership and the rebalance callbacks,
    the seek to the committed offsets after an assignment, the fetch (``_wait_next_records``, which also waits
    while the flow is stopped), and commits: the handler acks each message it is done with
    (``ConsumerView.ack``, faust's ``Consumer.ack``) and faust's commit timer commits up to the acked offsets.
    What is kept of faust's drain loop, per message: the read offset and the offset gaps (transaction markers,
    compacted records), without which faust would never commit past a gap.

    faust's per-message monitor hooks (``track_message``, the messages-received sensors) are not called for these
    messages; the stream-inbound time its livelock check reads is set once per topic-partition and fetch.
    """
    consumer = app.consumer
    batched = frozenset(topics)
    log_ = logging.getLogger("charter.live")

    async def give_back(records: Any) -> None:
        progress.unreading.update(records)
        try:
            await view.unread(records)
            await consumer.perform_seek()
        except Exception as exc:
            log_.warning("seek after a stopped flow failed: %r", exc)
        finally:
            progress.unreading.difference_update(records)

    async def drain(fetcher: Any) -> None:
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = consumer._read_offset
        to_message = consumer._to_message
        acks_enabled_for = app.topics.acks_enabled_for
        monitor = app.monitor
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await consumer._wait_next_records(1.0)
                # a fetch that returns at once (a backlog) must still let the rest of the event loop run
                await asyncio.sleep(0)
                if records is None or consumer.should_stop:
                    continue
                if not consumer.flow_active:
                    # handed out while a rebalance stopped the flow (of the old assignment, or of the new one before
                    # faust resumes the flow): given back, then faust's seek to the committed offsets
                    await give_back(records)
                    continue
                generation = app.consumer_generation_id
                batch: Batch = {}
                now = time.monotonic()
                for tp, rows in records.items():
                    if app.consumer_generation_id != generation or not consumer.flow_active:
                        # a rebalance began while this fetch was read: none of it is handled
                        batch = {}
                        await give_back(records)
                        break
                    if active is not None and tp not in active and tp not in consumer._buffered_partitions:
                        continue
                    messages = []
                    r = read_offset.get(tp)
                    for record in rows:
                        offset = record.offset
                        if r is not None and offset < r:
                            continue  # already delivered (faust drops these too)
                        if r and offset - r > 1 and acks_enabled_for(tp.topic):
                            await consumer._add_gap(tp, r + 1, offset)
                        r = offset
                        messages.append(Delivered(tp, record) if tp.topic in batched else to_message(tp, record))
                    if not messages:
                        continue
                    monitor.track_tp_end_offset(tp, consumer.highwater(tp))
                    monitor.stream_inbound_time[tp] = now
                    if tp.topic in batched:
                        batch[tp] = messages
                        read_offset[tp] = r
                        continue
                    callback, suspended = consumer.callback, consumer.suspend_flow.wait
                    for message in messages:
                        await consumer.wait_first(callback(message), suspended())
                        read_offset[tp] = message.offset
                if batch:
                    await handler(batch)
                commit_every = consumer._commit_every
                if commit_every is not None and consumer._n_acked >= commit_every:
                    consumer._n_acked = 0
                    await consumer.commit()
        except consumer.consumer_stopped_errors:
            if app.should_stop:
                log_.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise
        except Exception as exc:
            log_.exception("Drain messages raised: %r", exc)
            raise

    consumer._drain_messages = drain


class ReadProgress:
    """Per input topic-partition: the offset after the last message that reached us, and from it, idleness."""

    def __init__(self, view: ConsumerView) -> None:
        self.view = view
        self._next: dict[Any, int] = {}  # tp -> offset after the last message received since the assignment
        # partitions whose handed-out messages are being given back (ConsumerView.unread): the consumer's position
        # is past input that is still to come
        self.unreading: set[Any] = set()

    def received(self, tp: Any, offset: int) -> None:
        self._next[tp] = offset + 1

    def clear(self) -> None:
        """Forget everything (a rebalance: progress kept of a partition that went away would be stale if it came
        back, behind what its other owner committed)."""
        self._next.clear()

    def idle(self, tp: Any) -> bool:
        """Nothing appended to ``tp`` (as of the consumer's last fetch of it) is still unread by us."""
        hw = self.view.highwater(tp)
        if hw is None:
            return False
        if tp in self.unreading:
            return False
        nxt = self._next.get(tp)
        if nxt is None:
            # Nothing received since the assignment: the consumer's position is where this assignment starts
            # (None until aiokafka has reset it: not idle, wait).
            nxt = self.view.position(tp)
            if nxt is None:
                return False
        return nxt >= hw

    def lag(self, tp: Any) -> int:
        """Messages appended to ``tp`` (as of the last fetch) that have not reached us yet."""
        hw = self.view.highwater(tp)
        if hw is None:
            return 0
        nxt = self._next.get(tp)
        if nxt is None:
            nxt = self.view.position(tp) or 0
        return max(0, hw - nxt)

    def read_until(self, tp: Any) -> int | None:
        """The instant (µs) up to which everything appended to ``tp`` has reached us (the consumer's last fetch of
        it, if we are at its high watermark), or None while we are behind."""
        if not self.idle(tp):
            return None
        ms = self.view.fetched_at_ms(tp)
        return None if ms is None else ms * 1000


def use_read_committed() -> None:
    """Exactly-once: faust's consumer reads with read_committed (inputs, and changelogs during recovery).

    Faust only does this in its own exactly_once mode, whose transactions cannot cover our output topics
    (docs/reliability.md), so the isolation level is set on the consumer it creates.
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


# ------------------------------------------------------------------------------------------------ the broker gone

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0  # seconds between two metadata attempts of a client that cannot reach a broker
REPORT_EVERY = 30.0  # seconds between two "still unreachable" lines


class Connectivity:
    """Whether the worker's Kafka clients reach a broker: since when they do not, and a line at a sane interval."""

    def __init__(self) -> None:
        self.down_since: float | None = None  # time.monotonic() of the first failure of the current outage
        self._reported = 0.0
        self._lock = threading.Lock()  # faust's consumer has its own thread and event loop

    def failed(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.down_since is None:
                self.down_since = self._reported = now
                log.warning("Kafka unreachable: waiting for the broker (retrying with backoff up to %.0f s)",
                            BACKOFF_MAX)
            elif now - self._reported >= REPORT_EVERY:
                self._reported = now
                log.warning("Kafka still unreachable after %.0f s", now - self.down_since)

    def reached(self) -> None:
        with self._lock:
            if self.down_since is not None:
                log.warning("Kafka reachable again after %.0f s", time.monotonic() - self.down_since)
                self.down_since = None

    def down_for(self) -> float | None:
        """Seconds since the broker became unreachable, or None while it is reachable."""
        since = self.down_since
        return None if since is None else time.monotonic() - since


CONNECTIVITY = Connectivity()


def use_metadata_backoff() -> None:
    """aiokafka clients back off after a failed metadata update.

    When no broker answers, aiokafka 0.14's producer sender asks for a metadata update at once whenever a
    partition's leader is unknown, and a refused connection fails at once, so the update loop spins (a worker cut
    off from its broker burnt a whole core and logged two errors a millisecond). Here each failed update waits, from
    0.1 s doubling to 5 s, before it reports its failure; the first success resets it. It also feeds CONNECTIVITY.
    """
    from aiokafka.client import AIOKafkaClient

    if getattr(AIOKafkaClient, "_charter_backoff", False):
        return
    update = AIOKafkaClient._metadata_update

    async def metadata_update_with_backoff(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        ok = await update(self, cluster_metadata, topics)
        if ok:
            self._charter_failures = 0
            CONNECTIVITY.reached()
            return ok
        failures = getattr(self, "_charter_failures", 0) + 1
        self._charter_failures = failures
        CONNECTIVITY.failed()
        await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (failures - 1)))
        return ok

    AIOKafkaClient._metadata_update = metadata_update_with_backoff
    AIOKafkaClient._charter_backoff = True
