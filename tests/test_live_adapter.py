"""The live adapter's own logic, without a broker (tests/live_fakes.py): write ordering, commit points, fencing,
the rebalance generation check, ownership, idleness and read-until."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from faust.types import TP

from streams.live.progress import ConsumerView, ReadProgress
from tests.live_fakes import PREFIX, Driver, View

T0 = "2007-05-02T09:30:00+02:00"


def claim(event_id: str, customer: str = "C1", fee: int = 4900, proof: str | None = "P1") -> dict:
    return {"event_id": event_id, "customer_id": customer, "occurred_at": T0, "previous_operator": "Free",
            "termination_fee_cents": fee, "proof_id": proof}


def run(coro):
    return asyncio.run(coro)


def test_a_flush_delivers_outputs_then_rows_then_acks_the_input():
    async def scenario():
        d = Driver()
        d.quiet(0)
        await d.run_main([d.message("switch-claim", 0, claim("e1")), d.tick(0)])
        return d

    d = run(scenario())
    order = [(kind, topic) for kind, topic, *_ in d.kinds("send", "delivered", "ack")]
    outputs = {PREFIX + "compensation", PREFIX + "claim-decision"}
    changelog = d.live.tasks.subscribers_changelog
    first_row = order.index(("send", changelog))
    assert all(("delivered", t) in order[:first_row] for t in outputs), order
    assert order.index(("delivered", changelog)) < order.index(("ack", PREFIX + "switch-claim")), order


def test_nothing_is_acked_before_its_outputs_are_delivered():
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.delivery.hold()
        await d.live._main_batch(_fetch([d.message("switch-claim", 0, claim("e1")), d.tick(0)]))
        for _ in range(20):
            await asyncio.sleep(0)
        before = d.kinds("ack", "delivered")
        d.delivery.release()
        await d.settle()
        return before, d

    before, d = run(scenario())
    assert [e for e in before if e[1] != PREFIX + "charter-clock"] == []
    assert ("ack", PREFIX + "switch-claim", 0) in d.log


def _fetch(events) -> dict:
    """One fetch's batch, as the drain hands it over (messages grouped by topic-partition, in order)."""
    batch: dict = {}
    for event in events:
        batch.setdefault(event.message.tp, []).append(event.message)
    return batch


def test_a_dead_letter_is_acked_only_after_the_held_input_before_it():
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.delivery.hold()  # the dead letter lands, the claim's flush does not yet
        dead_letter_send = d.delivery.send

        async def dead_letter_delivered_at_once(topic, *args):
            future = await dead_letter_send(topic, *args)
            return asyncio.sleep(0) if topic == PREFIX + "dead-letter" else future

        d.live.sink._send = dead_letter_delivered_at_once
        await d.live._main_batch(_fetch([d.message("switch-claim", 0, claim("e1")),
                                         d.message("switch-claim", 0, b"not json")]))
        for _ in range(20):
            await asyncio.sleep(0)
        before = d.kinds("ack")
        d.delivery.release()
        await d.settle()
        return before, d

    before, d = run(scenario())
    assert ("send", PREFIX + "dead-letter", None) in d.log
    assert before == [], "the dead letter was acked while the valid claim before it was still held"
    acks = [(t, o) for _, t, o in d.kinds("ack") if t == PREFIX + "switch-claim"]
    assert acks == [(PREFIX + "switch-claim", 0), (PREFIX + "switch-claim", 1)]


def test_a_core_failure_is_dead_lettered_in_the_flush_and_acked_in_order(monkeypatch):
    from streams.core import engine

    apply = engine.Engine.apply

    def failing(self, topic, ev, at=None):
        if ev.event_id == "bad":
            raise RuntimeError("boom")
        return apply(self, topic, ev, at)

    monkeypatch.setattr(engine.Engine, "apply", failing)

    async def scenario():
        d = Driver()
        d.quiet(0)
        await d.run_main([d.message("switch-claim", 0, claim("bad")), d.message("switch-claim", 0, claim("e2")),
                          d.tick(0)])
        return d

    d = run(scenario())
    letters = [e for e in d.kinds("send") if e[1] == PREFIX + "dead-letter"]
    assert len(letters) == 1
    acks = [o for _, t, o in d.kinds("ack") if t == PREFIX + "switch-claim"]
    assert acks == [0, 1]


def test_messages_of_partitions_not_owned_are_skipped_unacked():
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.view.owned = {TP(PREFIX + "charter-clock", 0)}
        await d.run_main([d.message("switch-claim", 0, claim("e1")), d.tick(0)])
        return d

    d = run(scenario())
    assert not [e for e in d.kinds("ack", "send") if e[1] != PREFIX + "charter-clock"]


def test_exactly_once_fences_before_reading_and_writes_in_one_transaction():
    async def scenario():
        d = Driver("exactly_once")
        d.quiet(0)
        await d.run_main([d.message("switch-claim", 0, claim("e1")), d.tick(0)])
        return d

    d = run(scenario())
    kinds = [e[0] for e in d.log if e[0] in ("txn-start", "read-changelog", "txn-begin", "txn-commit")
             or e == ("ack", PREFIX + "switch-claim", 0)]
    assert kinds.index("txn-start") < kinds.index("read-changelog"), "the changelog was read before fencing"
    assert kinds.index("txn-commit") < kinds.index("ack")
    assert not d.kinds("send") or all(e[1] == PREFIX + "charter-clock" for e in d.kinds("send"))


def test_a_failed_transaction_parks_the_partition_and_asks_for_a_rebalance():
    async def scenario():
        d = Driver("exactly_once")
        d.quiet(0)
        await d.run_main([d.tick(0)])  # the task is loaded
        d.producers[0].fail = True
        await d.run_main([d.message("switch-claim", 0, claim("e1"))])  # its transaction fails in the flush
        assert 0 not in d.live.tasks.main, "a task whose transaction failed is kept"
        # a broker outage fails a transaction without fencing: nothing else would bring the rebalance
        assert d.view.rejoins == 1, "no rebalance was asked for: the partition would stay parked"
        await d.run_main([d.message("switch-claim", 0, claim("e2")), d.tick(0)])
        assert len(d.producers) == 1, "a parked partition was loaded again before a rebalance"
        # offset 0 was consumed by the failed task and never acked: acking 1 would let faust commit past it
        parked_acks = [o for _, t, o in d.kinds("ack") if t == PREFIX + "switch-claim"]
        await d.live._on_revoked(d.live.app, [])
        d.offsets.clear()  # after the rebalance the consumer is at the committed offset again: nothing committed
        await d.run_main([d.message("switch-claim", 0, claim("e1")), d.message("switch-claim", 0, claim("e2")),
                          d.tick(0)])
        return parked_acks, d

    parked_acks, d = run(scenario())
    assert ("txn-abort", d.producers[0].id) in d.log and d.producers[0].stopped
    assert parked_acks == []
    assert len(d.producers) == 2, "the partition was not loaded again after the rebalance"
    assert [o for _, t, o in d.kinds("ack") if t == PREFIX + "switch-claim"] == [0, 1]


def test_a_source_flooding_a_waiting_merge_is_paused_until_half_of_it_is_applied():
    """The merge waits on a topic-partition that is behind (line-activation) while another (switch-claim) floods it:
    the flooding one is paused at CHARTER_MAX_BUFFERED events held, resumed once the merge has applied them."""
    waiting = TP(PREFIX + "line-activation", 0)
    flooding = TP(PREFIX + "switch-claim", 0)

    async def scenario():
        d = Driver(max_buffered=10)
        d.quiet(0)
        d.view.hw[waiting] = 3  # three line-activation messages appended, none received: the merge must wait
        await d.run_main([d.message("switch-claim", 0, claim(f"e{i}", customer=f"C{i}")) for i in range(25)])
        held = d.live.tasks.main[0].task.merger.buffered(flooding)
        flow_while_waiting = list(d.view.flow)
        d.view.hw[waiting] = 0  # caught up (nothing there after all)
        await d.run_main([d.tick(0)])
        return d, held, flow_while_waiting

    d, held, flow_while_waiting = run(scenario())
    assert held == 25, "the merge applied claims while an earlier activation could still arrive"
    assert flow_while_waiting == [("pause", flooding)]
    assert d.view.flow == [("pause", flooding), ("resume", flooding)]
    assert d.live.tasks.main[0].task.merger.buffered(flooding) == 0
    assert len([e for e in d.kinds("ack") if e[1] == PREFIX + "switch-claim"]) == 25


def test_a_rebalance_during_a_changelog_read_leaves_no_task_behind():
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.reading = asyncio.Event()
        agent = asyncio.ensure_future(d.run_main([d.message("switch-claim", 0, claim("e1"))]))
        while not d.kinds("read-changelog"):
            await asyncio.sleep(0)
        await d.live._on_revoked(d.live.app, [])
        d.reading.set()
        await agent
        return d

    d = run(scenario())
    assert d.live.tasks.main == {}
    assert not d.kinds("ack")


def test_a_fetch_from_before_a_rebalance_is_dropped_after_it_not_pushed_into_the_new_assignment_s_tasks():
    # The fetch brings partitions 0 and 1; a rebalance (revoke, then the same partitions assigned again) comes
    # while partition 0's state is read. Partition 1's messages are of the old assignment: faust seeks back to the
    # committed offsets, so they come again, and handled now they would be applied twice, out of order, with a
    # stale read progress (the exactly-once crash test paid an outage without a service that went down later).
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.quiet(1)
        d.reading = asyncio.Event()
        fetch = d.run_main([d.message("switch-claim", 0, claim("e1")),
                            d.message("switch-claim", 1, claim("e2", customer="C2"))], fetch=2)
        agent = asyncio.ensure_future(fetch)
        while not d.kinds("read-changelog"):
            await asyncio.sleep(0)
        await d.live._on_revoked(d.live.app, [])
        await d.live._on_assigned(d.live.app, [])
        d.reading.set()
        await agent
        return d

    d = run(scenario())
    assert d.live.tasks.main == {}
    assert [e[2] for e in d.kinds("read-changelog")] == [0], "a task was loaded for the stale fetch"
    assert not d.kinds("ack", "send")
    assert d.live.progress._next == {}


def test_calls_fetched_before_a_rebalance_are_neither_forwarded_after_it_nor_acked():
    async def scenario():
        d = Driver()

        class Hotline:
            async def send(self, key, value, partition):
                return await d.delivery.send(PREFIX + "charter-hotline", key, value, partition)

        d.live.hotline_topic = Hotline()
        d.delivery.hold()
        call = {"event_id": "k1-queued", "call_id": "k1", "occurred_at": T0, "queue": "support", "type": "queued"}
        first = d.message("call-queue", 0, call)
        await d.live._batch({first.message.tp: [first.message]})
        await d.live._on_revoked(d.live.app, [])
        d.delivery.release()
        await asyncio.gather(*d.live.forwarding.values())
        return d

    d = run(scenario())
    assert d.kinds("send") and not d.kinds("ack")
    assert d.live.progress._next == {}


def test_a_revoke_waits_for_the_flush_in_flight_and_the_dropped_task_acks_nothing():
    async def scenario():
        d = Driver()
        d.quiet(0)
        d.delivery.hold()
        await d.live._main_batch(_fetch([d.message("switch-claim", 0, claim("e1")), d.tick(0)]))
        revoke = asyncio.ensure_future(d.live._on_revoked(d.live.app, []))
        for _ in range(20):
            await asyncio.sleep(0)
        waiting = not revoke.done()
        d.delivery.release()
        await revoke
        return waiting, d

    waiting, d = run(scenario())
    assert waiting, "the revoke did not wait for the flush in flight"
    assert ("delivered", d.live.tasks.subscribers_changelog, 0) in d.log
    assert [e for e in d.kinds("ack") if e[1] != PREFIX + "charter-clock"] == []


# ------------------------------------------------------------------------------------------------ read progress


def test_a_partition_is_idle_once_read_to_the_high_watermark_of_the_last_fetch():
    view = View([])
    progress = ReadProgress(view)
    tp = TP("t", 0)
    assert not progress.idle(tp), "idle before any fetch"
    view.hw[tp] = 5
    view.positions[tp] = None
    assert not progress.idle(tp), "idle while the consumer's position is being reset"
    view.positions[tp] = 3
    assert not progress.idle(tp), "idle with unread input after the position it starts from"
    view.positions[tp] = 5
    assert progress.idle(tp), "not idle at a position = high watermark (nothing received since the assignment)"
    progress.unreading.add(tp)
    assert not progress.idle(tp), "idle while messages handed out are given back (the position is past them)"
    progress.unreading.discard(tp)
    progress.received(tp, 4)
    assert progress.idle(tp)
    view.hw[tp] = 7
    assert not progress.idle(tp)
    progress.clear()
    assert not progress.idle(tp), "read progress survived a rebalance"


def test_read_until_is_the_last_fetch_time_only_while_idle():
    view = View([])
    progress = ReadProgress(view)
    tp = TP("t", 0)
    view.hw[tp] = 1
    view.fetched_ms[tp] = 1_700_000_000_123
    assert progress.read_until(tp) is None
    progress.received(tp, 0)
    assert progress.read_until(tp) == 1_700_000_000_123_000


class _Subscription:
    reassignment_in_progress = False


class _KafkaConsumer:
    def __init__(self, assigned: set) -> None:
        self._subscription = _Subscription()
        self._assigned = frozenset(assigned)

    def assignment(self) -> frozenset:
        return self._assigned


class _App:
    """faust's app as ConsumerView reads it: app.consumer._thread._ensure_consumer() is the aiokafka consumer."""

    def __init__(self, kafka: _KafkaConsumer) -> None:
        thread = type("Thread", (), {"_ensure_consumer": lambda _self: kafka})()
        self.consumer = type("Consumer", (), {"_thread": thread, "_committed_offset": {}})()


@pytest.mark.parametrize(("assigned", "rebalancing", "owned"), [(True, False, True), (False, False, False),
                                                                 (True, True, False)])
def test_a_partition_is_ours_only_while_assigned_and_no_rebalance_is_under_way(assigned, rebalancing, owned):
    tp = TP("t", 0)
    kafka = _KafkaConsumer({tp} if assigned else set())
    kafka._subscription.reassignment_in_progress = rebalancing
    assert ConsumerView(_App(kafka)).owns(tp) is owned


def down(event_id: str, customer: str, at: str, element: str | None, status: str = "down") -> dict:
    return {"event_id": event_id, "customer_id": customer, "occurred_at": at, "service": "internet",
            "status": status, "element_id": element}


def test_element_changes_of_every_partition_reach_the_element_task_and_make_one_incident():
    """SPEC 10 live: the customers of one element are on both partitions; each partition task forwards its element
    changes and a watermark (in the flush that stores the customers' state), and the element task, merging both
    partitions by event time, opens one incident at the 50th customer out and closes it at the last one back."""
    minute = "2007-05-02T09:%02d:00+02:00"

    async def scenario():
        d = Driver()
        for p in (0, 1):
            d.quiet(p)
        downs = [d.message("service-status", i % 2, down(f"d{i}", f"C{i:02d}", minute % (i // 17), "E1"))
                 for i in range(50)]
        ups = [d.message("service-status", i % 2, down(f"u{i}", f"C{i:02d}", minute % (30 + i // 17), "E1", "up"))
               for i in range(50)]
        await d.run_main([*downs, *ups, d.tick(0), d.tick(1)])
        forwarded = d.values("charter-elements")
        await d.run_elements([d.message("charter-elements", 0, v) for v in forwarded])
        return d, forwarded

    d, forwarded = run(scenario())
    changes = [v for v in forwarded if "c" in v]
    assert len(changes) == 100 and {v["s"] for v in changes} == {0, 1}
    assert {v["s"] for v in forwarded if "wm" in v} == {0, 1}, "a partition sent no watermark"
    # forwarded before the rows that store the customers' outages: a crash in between repeats, never loses
    sends = [t for k, t, _ in d.kinds("send")]
    assert sends.index(PREFIX + "charter-elements") < sends.index(d.live.tasks.subscribers_changelog)
    incidents = d.values("incident")
    assert [(i["status"], i["customers"], i["crossed_at"]) for i in incidents] == [
        ("open", 50, "2007-05-02T07:02:00+00:00"), ("closed", 50, "2007-05-02T07:32:00+00:00")]
    assert incidents[0]["incident_id"] == incidents[1]["incident_id"]
    assert d.live.tasks.elements_changelog in sends, "the element task stored nothing"


# ------------------------------------------------------------------------------------------------ the batched drain


class _Record:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = b"k", b"v%d" % offset


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


class _Consumer:
    """faust's consumer as use_batched_drain reads it: fetches from a list, then stops the fetcher."""

    consumer_stopped_errors = ()

    def __init__(self, fetches: list[dict], fetcher: _Fetcher, log: list) -> None:
        self.fetches, self.fetcher, self.log = fetches, fetcher, log
        self._stopped = asyncio.Event()
        self._read_offset: dict = {}
        self._buffered_partitions: set = set()
        self._n_acked = 0
        self._commit_every = None
        self.should_stop = False
        self.flow_active = True
        self.suspend_flow = asyncio.Event()
        self.inactive_for: set[int] = set()  # fetches (by number) during which a rebalance stopped the flow
        self._fetched = 0

    async def _wait_next_records(self, timeout: float):
        if not self.fetches:
            self.fetcher._stopped.set()
            return {}, None
        self._fetched += 1
        self.flow_active = self._fetched not in self.inactive_for
        return self.fetches.pop(0), None

    async def perform_seek(self) -> None:
        self.log.append(("seek to committed",))

    def _to_message(self, tp, record):
        from types import SimpleNamespace

        return SimpleNamespace(topic=tp.topic, offset=record.offset)

    async def _add_gap(self, tp, start: int, end: int) -> None:
        self.log.append(("gap", tp.topic, start, end))

    def highwater(self, tp):
        return 100

    async def callback(self, message) -> None:
        self.log.append(("agent", message.topic, message.offset))

    async def wait_first(self, *coros):
        for coro in coros[1:]:
            coro.close()
        await coros[0]


class _DrainApp:
    consumer_generation_id = 1
    should_stop = False

    def __init__(self, consumer: _Consumer) -> None:
        from types import SimpleNamespace

        self.consumer = consumer
        self.topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
        self.monitor = SimpleNamespace(track_tp_end_offset=lambda tp, hw: None, stream_inbound_time={})


def test_the_batched_drain_hands_each_fetch_over_once_and_keeps_other_topics_on_faust_s_path():
    from streams.live.progress import use_batched_drain

    main, other = TP("main", 0), TP("calls", 0)
    log: list = []
    fetcher = _Fetcher()
    consumer = _Consumer([
        {main: [_Record("main", 0, 0), _Record("main", 0, 1)], other: [_Record("calls", 0, 0)]},
        # offset 0 again, below what was read, is dropped (as faust does); 5 after 2 is a gap (transaction markers)
        {main: [_Record("main", 0, 0), _Record("main", 0, 2), _Record("main", 0, 5)]},
    ], fetcher, log)
    app = _DrainApp(consumer)

    async def handler(batch) -> None:
        log.append(("batch", {tp.topic: [m.offset for m in ms] for tp, ms in batch.items()}))

    use_batched_drain(app, ["main"], handler, View([]), ReadProgress(View([])))
    asyncio.run(consumer._drain_messages(fetcher))
    assert log == [
        ("agent", "calls", 0),
        ("batch", {"main": [0, 1]}),
        ("gap", "main", 3, 5),
        ("batch", {"main": [2, 5]}),
    ]
    assert consumer._read_offset[main] == 5
    assert main in app.monitor.stream_inbound_time, "faust's livelock check would report the partition as stuck"


def test_a_fetch_handed_out_while_a_rebalance_stops_the_flow_is_given_back_not_handled():
    """aiokafka can hand out a new assignment's first messages before faust resumes the flow. faust drops them and
    seeks to the committed offsets, which moves no partition without a commit: they were lost. The drain gives them
    back (the consumer seeks to the first of them) and keeps the partition from looking idle meanwhile."""
    from streams.live.progress import use_batched_drain

    main = TP("main", 0)
    log: list = []
    fetcher = _Fetcher()
    consumer = _Consumer([{main: [_Record("main", 0, 0), _Record("main", 0, 1)]},
                          {main: [_Record("main", 0, 0), _Record("main", 0, 1)]}], fetcher, log)
    consumer.inactive_for = {1}
    view = View([])
    progress = ReadProgress(view)
    unreading: list = []

    async def unread(records) -> None:
        unreading.append(set(progress.unreading))
        log.append(("given back", {tp.topic: [r.offset for r in rows] for tp, rows in records.items()}))

    view.unread = unread

    async def handler(batch) -> None:
        log.append(("batch", {tp.topic: [m.offset for m in ms] for tp, ms in batch.items()}))

    use_batched_drain(_DrainApp(consumer), ["main"], handler, view, progress)
    asyncio.run(consumer._drain_messages(fetcher))
    assert log == [("given back", {"main": [0, 1]}), ("seek to committed",), ("batch", {"main": [0, 1]})]
    assert unreading == [{main}], "the partition could look idle while its messages were given back"
    assert not progress.unreading


def test_calls_are_forwarded_in_order_and_acked_only_once_delivered():
    """A fetch of call-queue: valid calls go to charter-hotline tagged with their partition, in offset order, an
    invalid one to dead-letter; nothing is acked before the hotline sends are delivered, then all in order."""

    def call(call_id: str, kind: str = "queued") -> dict:
        return {"event_id": f"{call_id}-{kind}", "call_id": call_id, "occurred_at": T0, "queue": "support",
                "type": kind}

    async def scenario():
        d = Driver()
        sent: list = []

        class Hotline:
            async def send(self, key, value, partition):
                sent.append((key, orjson.loads(value)))
                return await d.delivery.send(PREFIX + "charter-hotline", key, value, partition)

        d.live.hotline_topic = Hotline()
        d.delivery.hold()
        messages = [d.message("call-queue", 1, call("k1")), d.message("call-queue", 1, b"{"),
                    d.message("call-queue", 1, call("k1", "answered"))]
        delivered_at_once = d.delivery.send

        async def dead_letters_at_once(topic, *args):
            future = await delivered_at_once(topic, *args)
            return asyncio.sleep(0) if topic == PREFIX + "dead-letter" else future

        d.live.sink._send = dead_letters_at_once
        await d.live._batch(_fetch(messages))
        for _ in range(20):
            await asyncio.sleep(0)
        before = d.kinds("ack")
        d.delivery.release()
        while d.live.forwarding:
            await asyncio.sleep(0)
        return d, sent, before

    d, sent, before = run(scenario())
    assert [(v["s"], v["v"]["type"]) for _, v in sent] == [(1, "queued"), (1, "answered")]
    assert ("send", PREFIX + "dead-letter", None) in d.log
    assert before == [], "a call was acked before its forward to the hotline was delivered"
    assert [(t, o) for _, t, o in d.kinds("ack")] == [(PREFIX + "call-queue", o) for o in range(3)]
    assert d.live.registry.get_sample_value("charter_events_total", {"topic": "call-queue"}) == 2, "valid ones only"


def test_messages_given_back_are_read_again_from_the_first_unless_the_position_moved_otherwise():
    """ConsumerView.position and .unread over aiokafka's own subscription state (its fetcher, which needs a broker,
    replaced by the subscription's seek it calls): a partition whose position is right after the messages given
    back is seeked to the first of them; one that a new assignment's reset or a seek has moved is left alone."""
    import threading
    from types import SimpleNamespace

    from aiokafka import AIOKafkaConsumer, TopicPartition

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)

    async def make() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", group_id=None)
        consumer.assign([a, b])
        consumer._fetcher = SimpleNamespace(seek_to=consumer._subscription.seek)
        return consumer

    def in_thread(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(5)

    consumer = in_thread(make())
    try:
        view = ConsumerView(SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(thread_loop=loop))))
        view._aiokafka_consumer = consumer
        assert view.position(TP("t", 0)) is None, "a position before aiokafka has reset it"

        async def seek(tp, offset):
            consumer.seek(tp, offset)

        in_thread(seek(a, 5))  # handed out 3 and 4
        in_thread(seek(b, 9))  # reset elsewhere since
        record = SimpleNamespace
        asyncio.run(view.unread({TP("t", 0): [record(offset=3), record(offset=4)],
                                 TP("t", 1): [record(offset=3), record(offset=4)]}))
        assert (view.position(TP("t", 0)), view.position(TP("t", 1))) == (3, 9)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
