"""SPEC section 10 (prevention): the outage_at_risk alert of the customers' engine, and incidents counted per network
element by ``ElementEngine`` from the element changes the engines report."""

from __future__ import annotations

import orjson
import pytest

from schemas.outputs import OUTPUT_MODELS
from streams.core import ElementChange, ElementEngine, Engine
from streams.core.elements import PENDING_KEY, incident_id
from streams.core.state import StateFormatError, Subscriber
from streams.core.timeutil import iso, to_us
from streams.replay import parse_line
from tests.charter_helpers import (
    ALICE,
    T0,
    D,
    H,
    Knobs,
    S,
    active,
    cancelled,
    charter_with,
    confirmed,
    down,
    inst,
    modem,
    order,
    run,
    ts,
    up,
)

FAR = 400 * D


def risk_alerts(out) -> list[int]:
    return [inst(a["crossed_at"]) for a in out.of("sla-alert", alert="outage_at_risk")]


# ------------------------------------------------------------------------------------------------ outage_at_risk


class TestOutageAtRisk:
    def test_fires_at_start_plus_alert_after(self, k: Knobs):
        out = k.run([down("L", ts(5 * S))], FAR)
        assert risk_alerts(out) == [5 * S + k.risk]
        assert out.of("sla-alert", alert="outage_at_risk")[0]["customer_id"] == "L"

    def test_fires_once_per_outage_however_many_services_go_down(self, k: Knobs):
        out = k.run([down("L", ts(0)), down("L", ts(S), "tv"), up("L", ts(2 * S)),
                     up("L", ts(k.tiers[0] + S), "tv"), down("L", ts(k.tiers[1]))], FAR)
        assert risk_alerts(out) == [k.risk, k.tiers[1] + k.risk]

    @pytest.mark.parametrize(("back", "alerted"), [(-S, False), (0, False), (1, True)],
                             ids=["before", "exactly-at", "just-after"])
    def test_not_when_the_outage_closes_before(self, k: Knobs, back: int, alerted: bool):
        # SPEC 5: an event at exactly the deadline is applied before the deadline fires
        out = k.run([down("L", ts(0)), up("L", ts(k.risk + back))], FAR)
        assert risk_alerts(out) == ([k.risk] if alerted else [])

    def test_not_before_activation(self, k: Knobs):
        out = k.run([order("N", ts(0)), confirmed("N", ts(0)), down("N", ts(S))], FAR)
        assert risk_alerts(out) == []

    def test_after_activation(self, k: Knobs):
        out = k.run([order("N", ts(0)), confirmed("N", ts(0)), modem("N", ts(0)), active("N", ts(0)),
                     down("N", ts(S))], FAR)
        assert risk_alerts(out) == [S + k.risk]

    @pytest.mark.parametrize(("cancel_at", "alerted"), [(0, False), (S, False), (2 * S, True)],
                             ids=["before", "same-instant", "after-start"])
    def test_not_after_a_cancellation(self, k: Knobs, cancel_at: int, alerted: bool):
        out = k.run([cancelled("L", ts(cancel_at)), down("L", ts(S))], FAR)
        assert risk_alerts(out) == ([S + k.risk] if alerted else [])

    def test_a_charter_without_alert_after_has_no_such_alert(self):
        c = charter_with(outage={"alert_after": None})
        assert c.outage.alert_after is None
        assert run([down("L", ts(0))], c, T0 + FAR).of("sla-alert") == []

    def test_grace_delays_the_alert_but_not_the_decision(self):
        # under grace, service back after the alert's instant but before it fired: the alert is still owed
        c = charter_with(grace_seconds=90)
        risk = c.outage.alert_after
        out = run([down("L", ts(0)), up("L", ts(risk + S))], c, T0 + FAR)
        assert risk_alerts(out) == [risk]

    def test_old_rows_without_the_new_fields_decode(self):
        row = Subscriber().encode()
        assert "risk_due" not in row and "out_element" not in row
        sub = Subscriber.decode(row)
        assert sub.risk_due is None and sub.out_element is None


# ------------------------------------------------------------------------------------- element changes (engine)


def engine_changes(lines: list[str], charter=ALICE) -> list[ElementChange]:
    engine, changes = Engine(charter, report_elements=True), []
    for i, text in enumerate(lines, start=1):
        topic, event = parse_line(text, i)
        engine.advance(to_us(event.occurred_at))
        engine.apply(topic, event)
        changes += engine.take_element_changes()
    assert engine.take_element_changes() == []  # drained
    return changes


def test_engine_reports_an_outage_opened_on_an_element_and_its_end():
    lines = [down("L", ts(0), element="E1"), down("L", ts(S), "tv", element="E2"), up("L", ts(2 * S)),
             up("L", ts(3 * S), "tv"), down("L", ts(4 * S), eid="x", element="E1"), down("L", ts(4 * S), eid="x",
                                                                                          element="E1")]
    tier = ALICE.outage.tiers[0].after
    assert engine_changes(lines) == [
        ElementChange("E1", "L", True, T0, 300, T0 + tier),  # a legacy customer: 3 days of 2995
        ElementChange("E1", "L", False, T0 + 3 * S),  # the element of the down that opened it, not the last one
        ElementChange("E1", "L", True, T0 + 4 * S, 300, T0 + 4 * S + tier),  # its duplicate changes nothing
    ]


def test_an_outage_without_element_and_one_that_would_not_earn():
    lines = [down("A", ts(0)), up("A", ts(S)), order("N", ts(0)), down("N", ts(S), element="E1"),
             active("F", ts(0)), down("F", ts(S), element="E1")]
    tier = ALICE.outage.tiers[0].after
    # N's order is pending: counted, nothing at stake; F is in its first month: the whole month is at stake
    assert engine_changes(lines) == [ElementChange("E1", "N", True, T0 + S, 0, None),
                                     ElementChange("E1", "F", True, T0 + S, 2995, T0 + S + tier)]


def test_no_changes_are_kept_without_an_incident_section():
    c = charter_with(incident=None)
    assert engine_changes([down("L", ts(0), element="E1"), up("L", ts(S))], c) == []


def test_element_change_dict_round_trip():
    c = ElementChange("E1", "C1", True, 12, 300, 99)
    assert ElementChange.from_dict(orjson.loads(orjson.dumps(c.to_dict()))) == c
    assert ElementChange.from_dict(ElementChange("E1", "C1", False, 12).to_dict()).due is None


# ----------------------------------------------------------------------------------------------- ElementEngine

THREE = charter_with(incident={"min_customers": 3})


def opened(cust: str, at: int, element: str = "E1", stake: int = 300, due: int | None = None) -> ElementChange:
    if due is None and stake:
        due = T0 + at + D  # an outage that would earn has a first threshold; one that would not, none
    return ElementChange(element, cust, True, T0 + at, stake, due)


def closed(cust: str, at: int, element: str = "E1") -> ElementChange:
    return ElementChange(element, cust, False, T0 + at)


def incidents(changes: list[ElementChange], charter=THREE) -> list[dict]:
    el = ElementEngine(charter)
    out = el.feed_all(changes) + el.flush()
    for topic, key, value in out:
        assert topic == "incident" and key == value["element_id"]
        OUTPUT_MODELS["incident"].model_validate(value)
    return [v for _t, _k, v in out]


def brief(recs: list[dict]) -> list[tuple]:
    return [(r["element_id"], r["status"], inst(r["crossed_at"]), r["customers"]) for r in recs]


def test_opens_when_the_count_reaches_min_customers():
    recs = incidents([opened("A", 0), opened("B", H, stake=2995, due=T0 + 5 * H), opened("C", 2 * H),
                      opened("D", 3 * H)])
    assert brief(recs) == [("E1", "open", 2 * H, 3)]
    r = recs[0]
    assert r["incident_id"] == incident_id("alice-2007", "E1", T0 + 2 * H)
    assert (r["charter"], r["opened_at"]) == ("alice-2007", iso(T0 + 2 * H))
    assert r["at_stake_cents"] == 300 + 2995 + 300  # the three counted when it opened
    assert inst(r["next_due"]) == 5 * H  # the earliest of their first thresholds


def test_thresholds_already_passed_are_not_at_stake():
    recs = incidents([opened("A", 0, due=T0 + H), opened("B", H, stake=2995, due=T0 + 2 * H),
                      opened("C", 2 * H, stake=450, due=T0 + 9 * H)])
    # A's threshold passed before the incident opened; B's falls due at that very instant, after it
    assert (recs[0]["at_stake_cents"], inst(recs[0]["next_due"])) == (2995 + 450, 2 * H)
    recs = incidents([opened("A", 0, due=T0 + H), opened("B", 0, stake=0), opened("C", 2 * H, stake=0)])
    assert (recs[0]["at_stake_cents"], recs[0]["next_due"]) == (0, None)


def test_closes_at_zero_with_the_highest_count():
    recs = incidents([opened("A", 0), opened("B", H), opened("C", 2 * H), opened("D", 3 * H), closed("A", 4 * H),
                      closed("B", 5 * H), closed("C", 6 * H), opened("E", 7 * H), closed("D", 8 * H),
                      closed("E", 9 * H)])
    assert brief(recs) == [("E1", "open", 2 * H, 3), ("E1", "closed", 9 * H, 4)]
    assert recs[0]["incident_id"] == recs[1]["incident_id"]
    assert recs[1]["opened_at"] == iso(T0 + 2 * H)
    assert "at_stake_cents" not in recs[1]


def test_a_count_that_never_reached_the_threshold_writes_nothing():
    assert incidents([opened("A", 0), opened("B", H), closed("A", 2 * H), closed("B", 3 * H)]) == []


def test_opening_again_later_is_a_new_incident():
    wave = [opened("A", 0), opened("B", 0), opened("C", 0), closed("A", H), closed("B", H), closed("C", H)]
    later = [ElementChange(c.element_id, c.customer_id, c.opened, c.at + D, c.stake_cents, c.due) for c in wave]
    recs = incidents(wave + later)
    assert brief(recs) == [("E1", "open", 0, 3), ("E1", "closed", H, 3), ("E1", "open", D, 3),
                           ("E1", "closed", D + H, 3)]
    assert recs[0]["incident_id"] != recs[2]["incident_id"]


def test_elements_are_counted_apart():
    changes = [opened(c, 0, "E1") for c in "AB"] + [opened(c, 0, "E2") for c in "CD"] + [opened("E", H, "E1")]
    assert brief(incidents(changes)) == [("E1", "open", H, 3)]


def test_outages_without_element_count_for_none():
    # through replay: 60 customers down at once, none naming an element
    lines = [down(f"C{i:03}", ts(0)) for i in range(60)] + [up(f"C{i:03}", ts(H)) for i in range(60)]
    assert run(lines, ALICE, T0 + FAR).of("incident") == []
    named = [down(f"C{i:03}", ts(0), element="DSLAM-1") for i in range(60)] + [up(f"C{i:03}", ts(H))
                                                                               for i in range(60)]
    assert [(r["status"], r["customers"]) for r in run(named, ALICE, T0 + FAR).of("incident")] == [
        ("open", 50), ("closed", 60)]


@pytest.mark.parametrize("order_", ["as-given", "reversed"])
def test_ties_are_applied_by_customer_id_whatever_their_arrival(order_: str):
    # at 2 h, B goes back and C and D go down: by customer id B's end comes first, so the count reaches 3 (B, C, D
    # would be 4 counted the other way round) only with D
    base = [opened("A", 0), opened("B", H)]
    tie = [closed("B", 2 * H), opened("C", 2 * H), opened("D", 2 * H)]
    tie = tie if order_ == "as-given" else tie[::-1]
    recs = incidents([*base, *tie, closed("A", 3 * H), closed("C", 3 * H), closed("D", 4 * H)])
    assert brief(recs) == [("E1", "open", 2 * H, 3), ("E1", "closed", 4 * H, 3)]


def test_a_customer_s_own_changes_keep_their_order_at_one_instant():
    # A's outage opens and closes at the same instant: it counts, then no longer
    recs = incidents([opened("B", 0), opened("C", 0), opened("A", H), closed("A", H), opened("D", 2 * H),
                      closed("B", 3 * H), closed("C", 3 * H), closed("D", 3 * H)])
    assert brief(recs) == [("E1", "open", H, 3), ("E1", "closed", 3 * H, 3)]


def test_an_instant_is_applied_once_the_clock_passes_it():
    el = ElementEngine(charter_with(incident={"min_customers": 1}))
    assert el.feed(opened("A", 0)) == []  # another change at this instant may still come
    assert el.advance(T0) == []
    assert [v["status"] for _t, _k, v in el.advance(T0 + 1)] == ["open"]


def test_no_incident_section_no_incident():
    assert incidents([opened(c, 0) for c in "ABCDEF"], charter_with(incident=None)) == []


def test_state_rows_round_trip_mid_stream():
    changes = [opened("A", 0), opened("B", H), opened("C", 2 * H), opened("D", 2 * H), closed("A", 3 * H),
               closed("B", 3 * H), opened("Z", 3 * H, "E2"), closed("C", 4 * H), closed("D", 5 * H),
               closed("Z", 5 * H, "E2")]
    expected = incidents(changes)
    for cut in range(len(changes) + 1):
        el = ElementEngine(THREE)
        out = el.feed_all(changes[:cut])
        fresh = ElementEngine(THREE)
        fresh.load(orjson.loads(orjson.dumps(list(el.rows()))))
        out += fresh.feed_all(changes[cut:]) + fresh.flush()
        assert [v for _t, _k, v in out] == expected, cut


def test_dirty_rows_say_what_to_write_and_what_to_delete():
    el = ElementEngine(THREE)
    el.feed_all([opened("A", 0), opened("B", 0, "E2")])
    assert set(el.take_dirty()) == {PENDING_KEY}  # held at the open instant: only the pending row changed
    el.feed(closed("A", H))
    dirty = el.take_dirty()
    assert set(dirty) == {PENDING_KEY, "E1", "E2"} and dirty[PENDING_KEY]["changes"][0]["opened"] is False
    el.flush()
    dirty = el.take_dirty()
    # nobody is out on E1 any more: its row keeps only when A's outage closed, to recognise a repeat
    assert dirty == {PENDING_KEY: None, "E1": {"v": 1, "open": {}, "closed": {"A": T0 + H}}}
    assert dict(el.rows())["E2"] == {"v": 1, "open": {"B": [300, T0 + D]}}
    week = 7 * 24 * H
    el.feed_all([opened("C", H + week + 1), closed("C", H + week + 2)])  # a week later: A's close is forgotten
    el.flush()
    assert el.take_dirty()["E1"] == {"v": 1, "open": {}, "closed": {"C": T0 + H + week + 2}}


def test_changes_sent_again_after_a_crash_change_nothing():
    """At-least-once: a partition task that crashed after forwarding its changes but before its rows landed sends
    them again; the element engine must count each outage once, and open no second incident."""
    first = [opened("A", 0), opened("B", 0), opened("C", 1), closed("A", H), closed("B", H), closed("C", H + 1)]
    expected = incidents(first)
    assert [v["status"] for v in expected] == ["open", "closed"]
    assert incidents(first + first) == expected
    assert incidents(first[:3] + first + first[3:]) == expected


def test_a_row_of_an_unknown_format_is_refused():
    with pytest.raises(StateFormatError, match="format 2"):
        ElementEngine(THREE).load([("E1", {"v": 2, "open": {}})])
    with pytest.raises(StateFormatError, match="unknown"):
        ElementEngine(THREE).load([("E1", {"v": 1, "open": {}, "colour": "red"})])


def test_the_demo_prints_an_incident_on_one_line():
    from streams.demo import format_incident

    recs = incidents([opened("A", 0), opened("B", 0), opened("C", 0), closed("A", H), closed("B", H),
                      closed("C", H)])
    lines = [format_incident(v) for v in recs]
    assert lines[0].startswith("INCIDENT open") and "E1" in lines[0] and "3 customers" in lines[0]
    assert "9.00 at stake" in lines[0] and iso(T0 + D) in lines[0]
    assert lines[1].startswith("INCIDENT closed") and "at most 3 customers" in lines[1]


def test_an_engine_keeps_changes_only_for_a_caller_that_asked():
    # the live worker drains nothing until it forwards changes: an engine it builds keeps none
    engine = Engine(ALICE)
    topic, event = parse_line(down("L", ts(0), element="E1"), 1)
    engine.apply(topic, event)
    assert engine.element_changes == [] and engine.subscribers["L"].out_element is None
