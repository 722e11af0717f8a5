"""The stream task's merge-by-event-time and clock hand-over (SPEC section 5), without a broker."""

from __future__ import annotations

from streams.charter import load_charter
from streams.core import Engine, to_us
from streams.core.task import Merger, Task
from streams.core.timeutil import parse_instant
from streams.replay import parse_line, replay


def test_merger_pops_in_event_time_order_across_sources():
    m = Merger()
    m.push("a", 3, "a3")
    m.push("a", 5, "a5")
    m.push("b", 1, "b1")
    m.push("b", 4, "b4")
    assert [x for _, x in m.pop_ready({"a": 5, "b": 5})] == ["b1", "a3", "b4", "a5"]


def test_merger_waits_for_a_source_with_unread_input():
    m = Merger()
    m.push("a", 10, "a10")
    # b has unread input and nothing buffered: it might still hold an older record
    assert m.pop_ready({"a": 0, "b": None}) == []
    m.push("b", 5, "b5")
    # b5 goes first; then b is empty and still behind, so a10 must wait again
    assert [x for _, x in m.pop_ready({"a": 0, "b": None})] == ["b5"]
    # read up to 9 only: b could still deliver something stamped 9.5, so a10 waits
    assert m.pop_ready({"a": 0, "b": 9}) == []
    assert [x for _, x in m.pop_ready({"a": 0, "b": 10})] == ["a10"]


def test_a_record_from_the_future_waits_only_for_sources_read_up_to_now():
    m = Merger()
    m.push("a", 1_000_000_000, "far future")
    # b is read up to 99 s while the wall clock says 100 s: recent enough for a record stamped in the future
    assert [x for _, x in m.pop_ready({"a": 0, "b": 99_500_000}, now=100_000_000)] == ["far future"]



LINES = [
    '{"topic": "service-status", "value": {"event_id": "1", "customer_id": "C", "service": "internet", '
    '"status": "down", "occurred_at": "2007-05-10T00:00:00+00:00"}}',
    '{"topic": "service-status", "value": {"event_id": "2", "customer_id": "C", "service": "internet", '
    '"status": "up", "occurred_at": "2007-05-10T23:00:00+00:00"}}',
    '{"topic": "switch-claim", "value": {"event_id": "3", "customer_id": "C", "previous_operator": "X", '
    '"termination_fee_cents": 5000, "proof_id": "p", "occurred_at": "2007-05-12T00:00:00+00:00"}}',
]


def test_backlog_across_topics_gives_replay_outputs_whatever_the_fetch_order():
    """A backlog fetched topic by topic (claims first) is applied in occurred_at order, as replay does."""
    charter = load_charter()
    expected = sorted(str((t, k, {f: v for f, v in val.items() if f != "emitted_at"}))
                      for t, k, val in replay(LINES, charter))
    events = [parse_line(line, i) for i, line in enumerate(LINES, 1)]
    task = Task(Engine(charter))
    # fetch order: the claim (later in event time) arrives first, from another topic-partition
    task.push("switch-claim", parse_instant("2007-05-12T00:00:00+00:00"), *events[2])
    step = task.step({"service-status": None, "switch-claim": 0})
    assert step.out == [] and step.applied == []  # service-status has unread input: wait
    for topic, ev in events[:2]:
        task.push(topic, to_us(ev.occurred_at), topic, ev)
    read = parse_instant("2007-05-12T00:00:00+00:00")
    step = task.step({"service-status": read, "switch-claim": read})
    outs = step.out + task.engine.finish()
    got = sorted(str((t, k, {f: v for f, v in val.items() if f != "emitted_at"})) for t, k, val in outs)
    # applied in claim-last order, the outage (back after 23 h) is unpaid, as in replay
    assert got == expected
    assert not any(t == "compensation" and v["rule"] == "outage" for t, _, v in outs)


def test_wall_clock_fires_only_when_every_source_is_idle():
    charter = load_charter()
    task = Task(Engine(charter))
    topic, ev = parse_line(LINES[0], 1)
    t0 = parse_instant("2007-05-10T00:00:00+00:00")
    task.push("service-status", t0, topic, ev)
    day = 86_400_000_000
    # a source still has unread input: the wall clock (a day later) must not fire the 24 h threshold
    step = task.step({"service-status": t0 + day + 1, "box-shipment": None})
    assert [o for o in step.out if o[0] == "compensation"] == []
    step = task.step({"service-status": t0 + day + 1, "box-shipment": t0 + day + 1})
    assert [o[2]["credit_days"] for o in step.out if o[0] == "compensation"] == [3]


def test_a_core_error_on_one_event_is_reported_and_the_task_goes_on():
    charter = load_charter()
    task = Task(Engine(charter))
    topic, ev = parse_line(LINES[2], 1)
    task.push("switch-claim", 1, "no-such-topic", ev, token="bad")
    task.push("switch-claim", 2, topic, ev, token="good")
    step = task.step({"switch-claim": None})
    assert [t for t, _ in step.failed] == ["bad"]
    assert step.applied == ["bad", "good"]
    assert any(o[0] == "claim-decision" for o in step.out)
