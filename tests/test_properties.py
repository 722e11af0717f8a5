"""Property tests on generated event files (SPEC sections 1, 3, 5, 8), under both shipped charters.

The strategy writes realistic stories for a few customers (orders, some with a promised start date, confirmations,
deliveries, activations, cancellations, outages of several services, switch claims, engineer appointments) and
hotline calls on two queues, with durations drawn around every threshold of the charters (Alice's tiers and
deadlines; local midnights, the 24 h appointment notice and slot ends for ofcom-2026), timestamps spread over days
around an anchor (May 2007, the end of British Summer Time 2026 or Christmas 2026) and written with random UTC
offsets, then lays them out in a file either in event-time order or with some events arriving late.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.charter import Charter, parse_charter
from streams.core import ElementEngine, Engine
from streams.core.state import Call, Subscriber, Window
from streams.core.timeutil import EPOCH, to_us
from streams.replay import format_record, parse_line
from tests.charter_helpers import ALICE, OFCOM, T0, D, H, M, Rec, S, canon, charter_with, run, ts

GRACE = charter_with(grace_seconds=90)
OFCOM_GRACE = parse_charter(
    (Path(__file__).resolve().parents[1] / "streams" / "charters" / "ofcom-2026.yaml").read_text()
    .replace("grace_seconds: 0", "grace_seconds: 90"), "<ofcom with grace>")
CHARTERS = st.sampled_from([ALICE, GRACE, OFCOM, OFCOM_GRACE])
LONDON = ZoneInfo("Europe/London")
# story anchors, as offsets from T0: May 2007; the week British Summer Time 2026 ends; Christmas 2026
ANCHORS = [0, to_us(datetime(2026, 10, 20, tzinfo=LONDON)) - T0, to_us(datetime(2026, 12, 20, tzinfo=LONDON)) - T0]
OFFSETS = st.sampled_from(["+00:00", "Z", "+02:00", "-05:00", "+05:30", "+00:07", "-09:30", "+14:00"])
CUSTOMERS = ["A", "B", "C"]
QUEUES = ["technical", "billing"]
# modest by default (the whole file runs in seconds); HYPOTHESIS_PROFILE=explore raises it
EXAMPLES = settings(max_examples=max(200, settings.default.max_examples))


@dataclass(frozen=True)
class Ev:
    at: int  # µs since T0
    topic: str
    value: dict  # without occurred_at
    part: str  # the key that decides a split: customer, or queue for call-queue events
    tz: str

    def line(self) -> str:
        return json.dumps({"topic": self.topic, "value": {**self.value, "occurred_at": ts(self.at, self.tz)}})


def _near(*anchors: int) -> st.SearchStrategy[int]:
    """A duration: exactly a threshold, one µs or one second either side, or anything up to twice the largest."""
    exact = [a + d for a in anchors for d in (0, 1, -1, S, -S) if a + d >= 0]
    return st.one_of(st.sampled_from(exact), st.integers(0, 2 * max(anchors)))


ACTIVATION = _near(10 * D, 14 * D)
OUTAGE = _near(24 * H, 72 * H, 168 * H)
WAIT = _near(180 * S, 15 * M + 180 * S)
NOTICE = 24 * H
EDGE = st.sampled_from([0, 0, 1, -1, S, -S])  # on a threshold, or just either side of it


def local_midnight(off: int, days: int) -> int:
    """The London midnight starting the ``days``-th day after the local day of T0 + ``off``, as an offset."""
    local = (EPOCH + timedelta(microseconds=T0 + off)).astimezone(LONDON).date() + timedelta(days=days)
    return to_us(datetime(local.year, local.month, local.day, tzinfo=LONDON)) - T0


def promised_date(off: int) -> str:
    return (EPOCH + timedelta(microseconds=T0 + off)).astimezone(LONDON).date().isoformat()


@st.composite
def customer_events(draw, cust: str, anchor: int = 0) -> list[Ev]:
    evs: list[Ev] = []
    n = 0

    def add(at: int, topic: str, **value) -> None:
        nonlocal n
        n += 1
        evs.append(Ev(at, topic, {"event_id": f"{cust}{n}", "customer_id": cust, **value}, cust, draw(OFFSETS)))

    base = anchor + draw(st.integers(0, 3 * D // S)) * S
    if draw(st.booleans()):  # a new subscriber (else a legacy one, active before the processor was deployed)
        tv = draw(st.sampled_from([True, False, None]))
        extra = {} if tv is None else {"tv": tv}
        if draw(st.booleans()):  # rule 7: a promised start some days after the order
            extra["promised_start"] = promised_date(base + draw(st.integers(-1, 12)) * D)
        add(base, "line-activation", type="order_placed", zone=draw(st.sampled_from(["unbundled", "non_unbundled"])),
            monthly_fee_cents=draw(st.sampled_from([2995, 2985, 3490, 15])), **extra)
    if draw(st.booleans()):
        confirm = base + draw(st.sampled_from([0, S, H]))
        add(confirm, "line-activation", type="line_confirmed")
        for item in ("modem", "tv_decoder"):
            if draw(st.booleans()):
                add(confirm + draw(ACTIVATION) - D, "box-shipment", item=item,
                    status=draw(st.sampled_from(["delivered", "delivered", "shipped", "returned"])))
        if draw(st.booleans()):  # active a while after, or just around a local midnight
            if draw(st.booleans()):
                at = confirm + draw(ACTIVATION)
            else:
                at = local_midnight(confirm, draw(st.integers(0, 16)))
            add(at + draw(EDGE), "line-activation", type="service_active")
        if draw(st.integers(0, 4)) == 0:
            add(confirm + draw(ACTIVATION), "line-activation", type="order_cancelled")
    # outages: services go down and come back; the instants of downs are distinct per customer (see
    # test_rules.test_distinct_outage_compensations_have_distinct_ids for what equal instants do)
    used: set[int] = set()
    for _ in range(draw(st.integers(0, 3))):
        start = base + draw(st.integers(0, 20 * D // S)) * S + draw(st.sampled_from([0, 0, 1, 500_000]))
        while start in used:
            start += 1
        used.add(start)
        service = draw(st.sampled_from(["internet", "telephony", "tv"]))
        add(start, "service-status", service=service, status="down")
        if draw(st.integers(0, 5)):  # back after a tier-ish length, or around a local midnight some days later
            by_midnight = draw(st.booleans())
            end = local_midnight(start, draw(st.integers(1, 9))) if by_midnight else start + draw(OUTAGE)
            add(max(start, end + draw(EDGE)), "service-status", service=service, status="up")
    for _ in range(draw(st.integers(0, 2))):
        add(base + draw(st.integers(0, 20 * D // S)) * S, "switch-claim", previous_operator="Free",
            termination_fee_cents=draw(st.sampled_from([0, 5000, 9900, 12000])),
            proof_id=draw(st.sampled_from([None, "", "LR-1"])))
    for i in range(draw(st.integers(0, 2))):  # rule 8: engineer appointments
        appt = f"{cust}-AP{i}"
        slot = base + draw(st.integers(1, 8 * D // H)) * H
        end = slot + 4 * H
        add(base + draw(st.integers(0, 12)) * H, "appointment", appointment_id=appt, type="booked",
            slot_start=ts(slot), slot_end=ts(end))
        for kind in ("cancelled", "attended"):
            if draw(st.booleans()):
                at = draw(st.sampled_from([slot - NOTICE, slot, end, end + H, slot - 3 * D])) + draw(EDGE)
                add(max(base, at), "appointment", appointment_id=appt, type=kind)
    return evs


@st.composite
def call_events(draw, anchor: int = 0) -> list[Ev]:
    evs: list[Ev] = []
    for i in range(draw(st.integers(0, 6))):
        call_id, queue = f"K{i}", draw(st.sampled_from(QUEUES))
        q = anchor + draw(st.integers(0, 3 * H // S)) * S + draw(st.sampled_from([0, 1, 250_000]))
        value = {"call_id": call_id, "queue": queue}
        evs.append(Ev(q, "call-queue", {**value, "event_id": f"{call_id}q", "type": "queued"}, queue, draw(OFFSETS)))
        outcome = draw(st.sampled_from(["answered", "answered", "abandoned", None]))
        if outcome:
            evs.append(Ev(q + draw(WAIT), "call-queue", {**value, "event_id": f"{call_id}s", "type": outcome}, queue,
                          draw(OFFSETS)))
    return evs


@st.composite
def stories(draw) -> list[Ev]:
    evs: list[Ev] = []
    anchor = draw(st.sampled_from(ANCHORS))  # one for the whole file: the clock is shared
    for cust in CUSTOMERS[: draw(st.integers(1, len(CUSTOMERS)))]:
        evs += draw(customer_events(cust, anchor))
    evs += draw(call_events(anchor))
    return evs


@st.composite
def in_time_order(draw) -> list[Ev]:
    """Events in occurred_at order (ties in any order), some repeated right after themselves."""
    evs = draw(stories())
    evs = sorted(draw(st.permutations(evs)), key=lambda e: e.at)
    out: list[Ev] = []
    for e in evs:
        out.append(e)
        if draw(st.integers(0, 6)) == 0:
            out.append(e)
    return out


@st.composite
def with_late_arrivals(draw) -> list[Ev]:
    """Events mostly in occurred_at order, some arriving up to a few days late."""
    evs = draw(stories())
    delays = [draw(st.sampled_from([0, 0, 0, 0, M, 2 * H, 2 * D])) for _ in evs]
    return [e for _, e in sorted(zip((e.at + d for e, d in zip(evs, delays, strict=True)), evs, strict=True),
                                 key=lambda p: p[0])]


def lines_of(evs: list[Ev]) -> list[str]:
    return [e.line() for e in evs]


def far_until(evs: list[Ev]) -> int:
    return T0 + max((e.at for e in evs), default=0) + 40 * D  # past every Alice deadline; 40 ofcom days


# ---------------------------------------------------------------------------------------------------- (a) split


@EXAMPLES
@given(evs=in_time_order(), charter=CHARTERS)
def test_split_by_customer_and_queue_gives_the_union(evs: list[Ev], charter: Charter):
    until = far_until(evs)
    whole = Counter(run(lines_of(evs), charter, until).normalized())
    parts: dict[str, list[Ev]] = {}
    for e in evs:
        parts.setdefault(e.part, []).append(e)
    union: Counter = Counter()
    for part in parts.values():
        union += Counter(run(lines_of(part), charter, until).normalized())
    assert union == whole


# ----------------------------------------------------------------------------------------------- (b) repetition


@EXAMPLES
@given(evs=with_late_arrivals(), charter=CHARTERS, data=st.data())
def test_repeating_a_line_changes_nothing(evs: list[Ev], charter: Charter, data):
    lines = lines_of(evs)
    if not lines:
        return
    i = data.draw(st.integers(0, len(lines) - 1), label="line repeated")
    j = data.draw(st.sampled_from([*sorted({i + 1, len(lines)}), data.draw(st.integers(i + 1, len(lines)))]),
                  label="copy inserted before line")
    repeated = [*lines[:j], lines[i], *lines[j:]]
    until = data.draw(st.sampled_from([None, far_until(evs)]), label="until")
    # a copy is recognised within the charter's dedup_retention; these stories span weeks, so remember them all
    # (forgetting is tested in test_bounded_state.py)
    charter = charter.model_copy(update={"dedup_retention": 365 * D})
    assert run(repeated, charter, until).normalized() == run(lines, charter, until).normalized()


# ----------------------------------------------------------------------------------------------------- (c) ids


@EXAMPLES
@given(evs=with_late_arrivals(), charter=CHARTERS)
def test_compensation_ids_are_reproducible_and_distinct(evs: list[Ev], charter: Charter):
    lines, until = lines_of(evs), far_until(evs)
    first, second = run(lines, charter, until), run(lines, charter, until)
    assert first.normalized() == second.normalized()
    ids = [c["compensation_id"] for c in first.comps()]
    assert ids == [c["compensation_id"] for c in second.comps()]
    assert len(set(ids)) == len(ids), [c for c in first.comps() if ids.count(c["compensation_id"]) > 1]


# ---------------------------------------------------------------------------------------- (d) state round trip


def roundtrip(engine: Engine) -> Engine:
    """Every piece of state through its changelog encoding (orjson), into a fresh engine."""
    blob = orjson.dumps({
        "clock": engine.clock,
        "subscribers": {k: s.encode() for k, s in engine.subscribers.items()},
        "calls": {k: c.encode() for k, c in engine.calls.items()},
        "windows": [[q, start, w.encode()] for (q, start), w in engine.windows.items()],
    })
    data = orjson.loads(blob)
    fresh = Engine(engine.charter)
    fresh.clock = data["clock"]
    fresh.subscribers = {k: Subscriber.decode(v) for k, v in data["subscribers"].items()}
    fresh.calls = {k: Call.decode(v) for k, v in data["calls"].items()}
    fresh.windows = {(q, start): Window.decode(v) for q, start, v in data["windows"]}
    fresh.rebuild_deadlines()
    return fresh


def replay_with_restarts(lines: list[str], charter: Charter, until: int | None, restarts: set[int]) -> list[str]:
    """The replay loop, restarting from encoded state before the events whose index is in ``restarts``."""
    engine = Engine(charter)
    out = []
    for i, text in enumerate(lines):
        if i in restarts:
            engine = roundtrip(engine)
        topic, event = parse_line(text, i + 1)
        out += engine.advance(to_us(event.occurred_at))
        out += engine.apply(topic, event)
    if len(lines) in restarts:
        engine = roundtrip(engine)
    out += engine.finish(until)
    wire = [orjson.loads(format_record(o)) for o in out]
    return [canon(Rec(w["topic"], w["key"], w["value"])) for w in wire]


@EXAMPLES
@given(evs=with_late_arrivals(), charter=CHARTERS, data=st.data())
def test_state_round_trip_mid_stream(evs: list[Ev], charter: Charter, data):
    lines = lines_of(evs)
    until = data.draw(st.sampled_from([None, far_until(evs)]), label="until")
    expected = run(lines, charter, until).normalized()
    cut = data.draw(st.integers(0, len(lines)), label="restart before line")
    assert replay_with_restarts(lines, charter, until, {cut}) == expected
    assert replay_with_restarts(lines, charter, until, set(range(len(lines) + 1))) == expected


def test_round_trip_restores_pending_deadlines():
    # a direct check that the restart really goes through the encoded state: deadlines armed before the cut fire
    lines = [json.dumps({"topic": t, "value": v}) for t, v in [
        ("line-activation", {"event_id": "1", "customer_id": "A", "type": "line_confirmed", "occurred_at": ts(0)}),
        ("service-status", {"event_id": "2", "customer_id": "A", "service": "tv", "status": "down",
                            "occurred_at": ts(S)}),
        ("call-queue", {"event_id": "3", "call_id": "K", "queue": "q", "type": "queued", "occurred_at": ts(S)}),
    ]]
    restarted = replay_with_restarts(lines, ALICE, T0 + 30 * D, {3})
    # sla-alert: activation_at_risk and outage_at_risk (armed at the down, before the cut)
    assert Counter(json.loads(r)["topic"] for r in restarted) == {
        "sla-alert": 2, "compensation": 4, "hotline-breach": 1, "hotline-kpi": 1}
    assert restarted == run(lines, ALICE, T0 + 30 * D).normalized()


# ------------------------------------------------------------------------------------ (e) incidents over partitions

ELEMENTS = [None, "E1", "E2"]


@st.composite
def element_outages(draw) -> list[Ev]:
    """Outages of up to 8 customers on two network elements, on the hour so that many coincide, in event-time
    order (ties in any order, some lines repeated)."""
    evs: list[Ev] = []
    for c in range(draw(st.integers(1, 8))):
        cust, n = f"C{c}", 0
        used: set[int] = set()
        for _ in range(draw(st.integers(0, 3))):
            start = draw(st.integers(0, 48)) * H
            if start in used:
                continue
            used.add(start)
            service = draw(st.sampled_from(["internet", "tv"]))
            element = draw(st.sampled_from(ELEMENTS))
            n += 1
            value = {"event_id": f"{cust}-{n}", "customer_id": cust, "service": service, "status": "down"}
            if element is not None:
                value["element_id"] = element
            evs.append(Ev(start, "service-status", value, cust, "+00:00"))
            length = draw(st.sampled_from([0, H, 2 * H, 5 * H, 30 * H, None]))
            if length is not None:
                n += 1
                evs.append(Ev(start + length, "service-status", {"event_id": f"{cust}-{n}", "customer_id": cust,
                                                                 "service": service, "status": "up"}, cust,
                              draw(OFFSETS)))
    evs = sorted(draw(st.permutations(evs)), key=lambda e: e.at)
    return [x for e in evs for x in ([e, e] if draw(st.integers(0, 8)) == 0 else [e])]


def engine_changes(evs: list[Ev], charter: Charter) -> list:
    """The element changes one partition's engine reports for its events, in the order made."""
    engine, changes = Engine(charter, report_elements=True), []
    for i, text in enumerate(lines_of(evs), start=1):
        topic, event = parse_line(text, i)
        engine.advance(to_us(event.occurred_at))
        engine.apply(topic, event)
        changes += engine.take_element_changes()
    engine.finish()
    return changes


@EXAMPLES
@given(evs=element_outages(), parts=st.integers(1, 4), threshold=st.integers(1, 4), data=st.data())
def test_incidents_do_not_depend_on_partitioning(evs: list[Ev], parts: int, threshold: int, data):
    """SPEC 10: customers split over partitions, each partition's element changes merged in event time (equal
    instants interleaved in any order, as a live merge may), give the incidents of one replay of the whole file."""
    charter = charter_with(incident={"min_customers": threshold})
    whole = run(lines_of(evs), charter).of("incident")
    split: dict[int, list[Ev]] = {}
    for e in evs:
        split.setdefault(int(e.part[1:]) % parts, []).append(e)
    streams = [engine_changes(part, charter) for part in split.values()]
    elements = ElementEngine(charter)
    out = []
    while any(streams):
        now = min(s[0].at for s in streams if s)
        ready = [i for i, s in enumerate(streams) if s and s[0].at == now]
        out += elements.feed(streams[data.draw(st.sampled_from(ready), label="next partition")].pop(0))
    out += elements.flush()
    assert [json.loads(format_record(o))["value"] for o in out] == whole
