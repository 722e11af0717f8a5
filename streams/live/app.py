"""The faust app: topics, agents, the clock, and the worker command. Wiring only: the partition tasks' lifecycle is
in tasks.py, writes in sink.py, read progress in progress.py, state rows in changelog.py.

Topology (one consumer group of identical workers):

- The customer-keyed input topics and ``charter-clock``, all co-partitioned, take the batched path (no agent:
  ``_main_batch`` is called once per fetch with its messages grouped by topic-partition,
  progress.use_batched_drain). Each partition number p has one task (engine + merger, streams/core/task.py)
  whose state lives in partition p of the compacted changelog ``{app_id}-subscribers-changelog``; it is stepped
  once per fetch that brought it something. Every worker sends a tick to each ``charter-clock`` partition it owns
  every ``tick_interval``; a tick steps the task of that partition, so deadlines fire on the worker owning the
  subscriber, from its state, with no scan of all subscribers.
- Every other topic takes the batched path too: ``call-queue`` (``_forward_calls``) and the internal repartition
  topics (``_hotline_batch``, ``_elements_batch``). There is no faust agent.
- ``call-queue`` is keyed by call_id but the KPI is per queue and must not depend on partitioning, so
  ``_forward_calls`` validates each call event and repartitions it to ``charter-hotline`` (one partition), tagged
  with its source partition. The clock timer also sends, for every source partition it has fully forwarded, a
  watermark record into ``charter-hotline``; ``hotline`` merges the sources by event time and uses the smallest
  watermark as its wall clock. Hotline state lives in ``{app_id}-hotline-changelog``.

Ordering and lag (SPEC section 5): a source is *idle* when everything appended to it has reached the task; while
any source is not idle the task merges by ``occurred_at`` under event time, and only a fully idle task moves to
the wall clock, taken as the time of the last fetch of its sources (everything appended before it has been read).

Delivery: docs/reliability.md (outputs, then rows, then acks in offset order per topic-partition).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.charter import Charter
from streams.connection import faust_options
from streams.core import to_us
from streams.core.changes import ElementChange
from streams.live.metrics import Metrics
from streams.live.progress import (
    CONNECTIVITY,
    ConsumerView,
    ReadProgress,
    use_batched_drain,
    use_metadata_backoff,
    use_read_committed,
)
from streams.live.sink import Sink
from streams.live.tasks import ELEMENTS, LiveTask, Tasks
from streams.records import INVALID, decode_event, decode_message, describe_error
from streams.settings import Settings
from streams.topics import CALL_TOPIC, CLOCK_TOPIC, CUSTOMER_TOPICS, ELEMENTS_TOPIC, HOTLINE_TOPIC

log = logging.getLogger("charter.live")

RAW = {"key_serializer": "raw", "value_serializer": "raw"}


class Live:
    """The faust app of one worker and its partition tasks."""

    def __init__(self, settings: Settings, charter: Charter) -> None:
        self.settings = settings
        self.charter = charter
        n = settings.partitions
        self.app = app = faust.App(
            settings.app_id,
            **faust_options(settings),
            datadir=str(settings.data_dir),
            topic_partitions=n,
            # topics are created (or checked) by streams/topics.py before the worker starts, never by faust
            topic_allow_declare=False,
            # exactly-once is ours (docs/reliability.md): faust's own transactions do not cover our output topics
            processing_guarantee="at_least_once",
            web_enabled=True,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_router_enabled=settings.web_debug_pages,
            web_tables_enabled=settings.web_debug_pages,
            web_graph_enabled=settings.web_debug_pages,
            web_stats_enabled=settings.web_debug_pages,
            web_metrics_enabled=settings.web_debug_pages,
            consumer_auto_offset_reset=settings.auto_offset_reset,
            broker_session_timeout=settings.session_timeout,
            consumer_group_instance_id=settings.instance_id or None,
            broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
            broker_rebalance_timeout=max(settings.session_timeout * 2, 10.0),
            broker_commit_interval=1.0,
            # there are no faust tables (state is ours); a standby count > 0 keeps faust's own assignor, which
            # co-partitions the agent's topics (without tables it falls back to round robin)
            table_standby_replicas=1,
            producer_acks=-1,
            # a few ms of linger batches the changelog rows and outputs of a flush into few requests
            producer_linger=0.005,
            producer_max_batch_size=256 * 1024,
            # a dead letter carries the raw value (base64 when not UTF-8): room for a large bad message
            producer_max_request_size=16 * 1024 * 1024,
            stream_wait_empty=False,
            # at most this many records per fetch handed to the batched path (faust's default: no limit, so a backlog
            # came as one fetch of every prefetched record, all decoded at once: +340 B of RSS per subscriber left
            # behind in a 1,000,000-subscriber run, docs/performance.md); Kafka's own default is 500
            broker_max_poll_records=settings.max_poll_records,
        )
        t = settings.topic
        self.clock_name, self.hotline_name, self.call_name = t(CLOCK_TOPIC), t(HOTLINE_TOPIC), t(CALL_TOPIC)
        self.customer_names = [t(name) for name in CUSTOMER_TOPICS]
        self.main_topic = app.topic(*self.customer_names, self.clock_name, partitions=n, **RAW)
        self.call_topic = app.topic(self.call_name, partitions=n, **RAW)
        self.hotline_topic = app.topic(self.hotline_name, partitions=1, **RAW)
        self.elements_name = t(ELEMENTS_TOPIC)
        self.elements_topic = app.topic(self.elements_name, partitions=1, **RAW)
        self.clock_topic = app.topic(self.clock_name, partitions=n, **RAW)
        self.eos = settings.processing_guarantee == "exactly_once"
        if self.eos:
            # The same changelog topics, written in our transactions and read with read_committed. (Faust's own
            # table recovery could not read them: it waits for the high watermark, which a read_committed
            # consumer never reaches past a transaction marker.)
            use_read_committed()
        use_metadata_backoff()
        self.view = ConsumerView(app)
        self.progress = ReadProgress(self.view)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(charter, self.registry)
        self.sink = Sink(settings, lambda *args: app.producer.send(*args), self.metrics)
        self.tasks = Tasks(settings, charter, self.sink, exactly_once=self.eos, metrics=self.metrics,
                           lag=self._lag, rejoin=lambda: self.view.request_rejoin())
        self.joined = False  # an assignment was received since the last revoke
        self.paused: set[TP] = set()  # input topic-partitions we paused: their merge buffer is full
        self.hotline_sources = Sources(settings.partitions)
        self.element_sources = Sources(settings.partitions)
        self._unprefixed: dict[str, str] = {}
        self.forwarding: dict[TP, asyncio.Future] = {}  # per call-queue partition: its last forward in flight
        self.forward_failed: set[TP] = set()  # call-queue partitions whose forward failed, until the rebalance

        # no agent: the customer topics and the clock take the batched path, one call per fetch
        for topic in (self.main_topic, self.call_topic, self.hotline_topic, self.elements_topic):
            app.topics.add(topic)
        use_batched_drain(app, [*self.main_topic.topics, self.call_name, self.hotline_name, self.elements_name],
                          self._batch, self.view, self.progress)
        app.timer(settings.tick_interval, name="charter_clock")(self._tick)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_before_shutdown.connect(self._on_shutdown)
        setup_prometheus_sensors(app, pattern="/metrics", registry=self.registry, name_prefix="faust")
        app.page("/healthz")(_page(self._healthz))
        app.page("/ready")(_page(self._ready))

    async def _on_revoked(self, app: faust.App, revoked: Iterable[TP], **kwargs: Any) -> None:
        """Forget every task and every read progress, whatever ``revoked`` lists (tasks.Tasks.revoke)."""
        self.joined = False
        self.paused.clear()  # faust forgets the pauses of revoked partitions itself
        self.forward_failed.clear()
        self.progress.clear()
        self.metrics.forget_partitions()
        await self.tasks.revoke()

    async def _on_assigned(self, app: faust.App, assigned: Iterable[TP], **kwargs: Any) -> None:
        self.joined = True

    async def _on_shutdown(self, app: faust.App, **kwargs: Any) -> None:
        """SIGTERM: the fetcher has stopped; let the flushes in flight land, so their acks are in the commit faust
        makes when its consumer stops (bounded by the session timeout, as a revoke)."""
        log.info("stopping: waiting for the flushes in flight")
        await self.tasks.settle()
        if self.forwarding:
            await asyncio.wait(list(self.forwarding.values()), timeout=self.settings.session_timeout)

    def _lag(self, p: int) -> int:
        """Messages appended to partition ``p``'s input topics (as of the last fetch) that have not reached us."""
        return sum(self.progress.lag(TP(t, p)) for t in self.customer_names)

    # ------------------------------------------------------------ health

    def readiness(self) -> dict[str, Any]:
        """Which assigned partitions are not ready (state not loaded, or catching up): empty when all are."""
        down = CONNECTIVITY.down_for()
        if down is not None:
            return {"broker": f"unreachable for {down:.0f} s"}
        if not self.joined:
            return {"group": "not joined (starting, or rebalancing)"}
        waiting: dict[str, Any] = {}
        for tp in sorted(self.view.assignment()):
            if tp.topic == self.clock_name:
                why = self.tasks.not_ready(tp.partition)
                if why:
                    waiting[str(tp.partition)] = why
            elif tp.topic == self.hotline_name:
                why = self.tasks.not_ready(None)
                if why:
                    waiting["hotline"] = why
            elif tp.topic == self.elements_name and self.tasks.counts_elements:
                why = self.tasks.not_ready(ELEMENTS)
                if why:
                    waiting[ELEMENTS] = why
        return waiting

    def _healthz(self, view: Any) -> Any:
        """The process and its event loop answer."""
        return view.json({"status": "ok"})

    def _ready(self, view: Any) -> Any:
        """200 when every assigned partition has its state loaded and is not catching up, else 503 naming them."""
        waiting = self.readiness()
        if waiting:
            return view.json({"status": "not ready", "partitions": waiting}, status=503)
        return view.json({"status": "ready"})

    def _topic_name(self, topic: str) -> str:
        """The spec's name of one of our (prefixed) topics."""
        name = self._unprefixed.get(topic)
        if name is None:
            name = self._unprefixed[topic] = self.settings.unprefixed(topic)
        return name

    # ------------------------------------------------------------ agents

    async def _batch(self, batch: Mapping[TP, list[Any]]) -> None:
        """One fetch (streams.live.progress.use_batched_drain), by topic.

        A fetch is of one assignment: if a rebalance comes while it is handled (every await here may let one run:
        a changelog read, a delivery), what is left of it is dropped unacked. After the rebalance faust seeks each
        assigned partition back to its committed offset, so those messages come again; pushed into a task of the
        new assignment they would come twice, the second time behind later ones, and the stale read progress
        would let the clock pass them."""
        generation = self.tasks.generation
        main = {}
        for tp, messages in batch.items():
            if self.tasks.generation != generation:
                return
            topic = tp.topic
            if topic == self.call_name:
                await self._forward_calls(tp, messages, generation)
            elif topic == self.hotline_name:
                await self._hotline_batch(tp, messages)
            elif topic == self.elements_name:
                await self._elements_batch(tp, messages)
            else:
                main[tp] = messages
        if main and self.tasks.generation == generation:
            await self._main_batch(main, generation)
        if self.tasks.generation != generation:
            log.info("a rebalance came while a fetch of %d messages was handled: what was left of it is read again "
                     "after it", sum(len(m) for m in batch.values()))

    async def _main_batch(self, batch: Mapping[TP, list[Any]], generation: int | None = None) -> None:
        """One fetch of the customer topics and the clock (streams.live.progress.use_batched_drain): every message
        is pushed into its partition's task, then each partition touched is stepped (and flushed) once. Stops at
        the first sign of a rebalance since ``generation`` (see _batch)."""
        tasks, progress, view = self.tasks, self.progress, self.view
        if generation is None:
            generation = tasks.generation
        touched: dict[int, LiveTask] = {}
        ticked: set[int] = set()
        # Partitions without a task yet are loaded one after the other: loading them together was no faster (the
        # restore is CPU-bound) and held every partition's raw rows at once (+340 B of RSS per subscriber after a
        # 1,000,000-subscriber restore, docs/performance.md).
        for tp, messages in batch.items():
            if not view.owns(tp):
                continue  # delivered after its partition was revoked: the new owner processes it, not us
            p = tp.partition
            lt = tasks.main.get(p) or await tasks.main_task(p, view.ack)
            if tasks.generation != generation:
                return  # a rebalance came while its state was read
            if lt is None:
                continue  # the partition is parked
            touched[p] = lt
            if tp.topic == self.clock_name:
                for message in messages:
                    view.ack(message)
                ticked.add(p)
                continue
            topic = self._topic_name(tp.topic)
            hold, push = lt.acks.hold, lt.task.push
            applied = 0
            for message in messages:
                held = hold(message)
                try:
                    ev = decode_message(topic, message.value)
                except INVALID as e:
                    await self.sink.dead_letter(message, describe_error(e))
                    if tasks.generation != generation:
                        return  # a rebalance came while it was delivered: lt is dropped, and the read progress
                    await tasks.ack(lt, [held])  # once every message before it on its partition is applied
                    continue
                applied += 1
                push(tp, to_us(ev.occurred_at), topic, ev, held)
            progress.received(tp, messages[-1].offset)
            if applied:
                self.metrics.events.labels(topic).inc(applied)
            if lt.task.merger.buffered(tp) >= self.settings.max_buffered and tp not in self.paused:
                self._pause(tp)
        # Stepping and flushing once per fetch and partition, not per event, is where the throughput comes from. A
        # partition whose previous flush is still on its way to the broker is not stepped now: its events wait in
        # its buffers for the next fetch or tick, so batches grow with the load instead of the fetch loop waiting
        # on the broker (a tick steps it anyway, awaiting that flush: the clock must move).
        for p, lt in touched.items():
            if tasks.main.get(p) is lt and (p in ticked or lt.flushing is None or lt.flushing.done()):
                await self._step_main(p, lt)

    async def _step_main(self, p: int, lt: Any) -> None:
        read_until = {tp: self.progress.read_until(tp) for tp in (TP(t, p) for t in self.customer_names)}
        await self.tasks.step(lt, read_until, time.time_ns() // 1000)
        if self.paused:
            low = self.settings.max_buffered // 2
            for tp in [tp for tp in self.paused if tp.partition == p and lt.task.merger.buffered(tp) <= low]:
                self.paused.discard(tp)
                self.view.resume(tp)
                log.info("%s resumed: its merge buffer is down to half", tp)

    def _pause(self, tp: TP) -> None:
        """The merge holds ``max_buffered`` events of ``tp`` while it waits on another of the partition's sources
        (a skewed backlog): fetch no more of it until half of them are applied (Quix Streams pauses the same way)."""
        self.paused.add(tp)
        self.view.pause(tp)
        self.metrics.pauses.inc()
        log.info("%s paused: %d events wait in its merge buffer for another source", tp, self.settings.max_buffered)

    async def _forward_calls(self, tp: TP, messages: list[Any], generation: int) -> None:
        """One fetch of a ``call-queue`` partition: valid calls are sent on to ``charter-hotline`` (invalid ones to
        dead-letter), in order; their deliveries are awaited in the background, after those of the partition's
        previous fetch, and only then are the messages acked (in offset order) and counted as read. A rebalance
        since ``generation`` stops it: the rest is sent again by whoever owns the partition after it."""
        if tp in self.forward_failed or not self.view.owns(tp):
            return  # a delivery of this partition failed: nothing more until the rebalance it asked for
        futures = []
        for message in messages:
            if self.tasks.generation != generation:
                return  # what was sent is acked by nobody: sent again after the rebalance (the hotline dedups)
            try:
                ev = decode_message(CALL_TOPIC, message.value)
            except INVALID as e:
                await self.sink.dead_letter(message, describe_error(e))
                continue
            value = orjson.dumps({"s": tp.partition, "v": orjson.loads(message.value)})
            # queued in the producer here, in offset order: the hotline merges each source partition in order
            futures.append(await self.hotline_topic.send(key=ev.queue.encode(), value=value, partition=0))
        if futures:
            self.metrics.events.labels(CALL_TOPIC).inc(len(futures))
        previous = self.forwarding.get(tp)
        forwarding = asyncio.ensure_future(self._forwarded(tp, messages, futures, previous, generation))
        self.forwarding[tp] = forwarding
        forwarding.add_done_callback(lambda f: self._forward_done(tp, f))

    def _forward_done(self, tp: TP, forwarding: asyncio.Future) -> None:
        if self.forwarding.get(tp) is forwarding:
            del self.forwarding[tp]
        if not forwarding.cancelled():
            forwarding.exception()  # retrieved: _forwarded logged it

    async def _forwarded(self, tp: TP, messages: list[Any], futures: list[Any], previous: asyncio.Future | None,
                         generation: int) -> None:
        try:
            await asyncio.gather(*futures)
            if previous is not None:
                await previous
        except Exception as e:
            if tp not in self.forward_failed:
                log.warning("%s: forwarding calls to the hotline failed (%s): the partition is parked and a "
                            "rebalance asked for", tp, e)
                self.forward_failed.add(tp)
                self.view.request_rejoin()
            raise
        if tp in self.forward_failed or generation != self.tasks.generation:
            # an assignment that is gone: faust forgot its acks, and an ack now would count in the next one's
            # commit ahead of what that one has done (streams/live/acks.py); its read progress is stale too
            return
        for message in messages:
            self.view.ack(message)
        self.progress.received(tp, messages[-1].offset)

    async def _hotline_batch(self, tp: TP, messages: list[Any]) -> None:
        def call(rec: dict) -> tuple[int, str, Any]:
            ev = decode_event(CALL_TOPIC, rec["v"])
            return to_us(ev.occurred_at), CALL_TOPIC, ev

        await self._merged_batch(tp, messages, self.tasks.hotline_task, lambda: self.tasks.hotline,
                                 self.hotline_sources, call)

    async def _elements_batch(self, tp: TP, messages: list[Any]) -> None:
        def change(rec: dict) -> tuple[int, str, Any]:
            c = ElementChange.from_dict(rec["c"])
            return c.at, ELEMENTS_TOPIC, c

        await self._merged_batch(tp, messages, self.tasks.elements_task, lambda: self.tasks.elements,
                                 self.element_sources, change)

    async def _merged_batch(self, tp: TP, messages: list[Any], load: Any, loaded: Any, sources: Sources,
                            item: Any) -> None:
        """One fetch of a one-partition task fed by every input partition through a repartition topic (the hotline,
        the element task): records ``{"s": source partition, ...}`` carry an item, or a watermark ``{"s", "wm"}``
        (µs: nothing of that source before it is still to come). The sources are merged by event time, each read up
        to its last watermark while no record of it came after that watermark; the task steps once per fetch."""
        if not self.view.owns(tp):
            return  # delivered after its partition was revoked
        tasks = self.tasks
        lt: LiveTask | None = loaded()
        if lt is None:
            lt = await load(self.view.ack)
            if lt is None:
                return  # a rebalance came while its state was read, or it is parked
            sources.reset()
        received, push = lt.acks.received, lt.task.push
        watermarks = []
        for message in messages:
            rec = orjson.loads(message.value)
            s = rec["s"]
            held = received(tp, message)
            if "wm" in rec:
                sources.watermark(s, rec["wm"])
                watermarks.append(held)  # acked once the items before it (of any source) are applied and written
            else:
                sources.record(s)
                at, topic, it = item(rec)
                push(s, at, topic, it, held)
        await tasks.ack(lt, watermarks)
        await tasks.step(lt, sources.read_until(), time.time_ns() // 1000)

    # ------------------------------------------------------------ time

    async def _tick(self) -> None:
        """Clock ticks for the partitions this worker owns, and watermarks of the call partitions it forwards."""
        sends = []
        for tp in self.view.assignment():
            if tp.topic == self.clock_name:
                sends.append(self.clock_topic.send(key=None, value=b"", partition=tp.partition))
            elif tp.topic == self.call_name and self.progress.idle(tp):
                fetched = self.view.fetched_at_ms(tp)
                if fetched is not None:
                    wm = orjson.dumps({"s": tp.partition, "wm": fetched * 1000})
                    sends.append(self.hotline_topic.send(key=None, value=wm, partition=0))
        if sends:
            await asyncio.gather(*sends)


class Sources:
    """The source partitions of a repartitioned task and how far each is known to be read (its last watermark, valid
    while no record of it came after it)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.reset()

    def reset(self) -> None:
        self.idle: dict[int, bool] = {s: False for s in range(self.partitions)}
        self.wm: dict[int, int] = {}

    def watermark(self, s: int, wm: int) -> None:
        self.idle[s] = True
        self.wm[s] = wm

    def record(self, s: int) -> None:
        self.idle[s] = False

    def read_until(self) -> dict[int, int | None]:
        return {s: (self.wm.get(s) if idle else None) for s, idle in self.idle.items()}


STOP_MARGIN = 5.0  # seconds a stop may take beyond the session timeout (the flushes in flight wait up to it)


class CharterWorker(faust.Worker):
    """faust's worker, which never hangs on stop: when a stop (SIGTERM, SIGINT) has not finished within
    ``stop_within`` seconds (a broker that is gone makes the final commit and producer flush wait forever), the
    process exits with code 1 and a line saying so. Its flushes in flight had the session timeout to land
    (Live._on_shutdown); what was not committed is read again after the restart."""

    def __init__(self, *args: Any, stop_within: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_within = stop_within

    async def on_stop(self) -> None:
        timer = threading.Timer(self.stop_within, _give_up, args=(self.stop_within,))
        timer.daemon = True
        timer.start()
        await super().on_stop()


def _give_up(after: float) -> None:
    log.error("could not stop cleanly within %.0f s (is the broker reachable?): exiting with code 1; what was "
              "not committed is read again after the restart", after)
    logging.shutdown()
    os._exit(1)


def _page(respond: Any) -> Any:
    """A faust page handler (called as ``get(view, request)``) answering with ``respond(view)``."""

    async def get(view: Any, request: Any) -> Any:
        return respond(view)

    get.__name__ = respond.__name__.strip("_")
    return get


def run_worker(settings: Settings, charter: Charter) -> None:
    """Run one worker until it is stopped (the ``charter worker`` command): topics created or checked first."""
    from streams.logs import logging_config, setup_logging
    from streams.topics import ensure_topics

    setup_logging(settings.log_level, settings.log_format)
    started = time.monotonic()
    log.info("worker starting (%s, %s, charter %s)", settings.bootstrap, settings.processing_guarantee, charter.name)
    ensure_topics(settings)
    live = Live(settings, charter)
    worker = CharterWorker(live.app, loglevel=settings.log_level, quiet=True,
                           logging_config=logging_config(settings.log_level, settings.log_format),
                           stop_within=settings.session_timeout + STOP_MARGIN)
    try:
        worker.execute_from_commandline()
    finally:
        log.info("worker stopped after %.0f s", time.monotonic() - started)
