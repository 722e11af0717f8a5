"""State that lives for years (issue 12, section 1): event ids are forgotten after the charter's
``dedup_retention``, a forgotten copy never pays a breach twice, and a row never outgrows its bound.

The long test replays a customer whose box flaps down/up every 5 minutes for two years of event time
(``streams.gen.Flapping``, reusable for a live test), checks the encoded row size as it goes, and compares every
output with what the charter dictates, computed here from the scenario alone.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
import pytest

from schemas.inputs import SwitchClaim
from streams.charter import Charter, CharterError
from streams.core import Engine
from streams.core.state import Ids, Subscriber, bounded_row
from streams.core.timeutil import iso, to_us
from streams.gen import Flapping
from streams.live.changelog import subscriber_rows
from streams.records import decode_event
from tests.charter_helpers import T0, D, H, M, S, call, charter_with, claim, down, run, ts, up

NAMESPACE = uuid.UUID("6f1c1f0e-2f54-4d0a-9a43-5c0a7d0c2007")  # SPEC 3: compensation ids are UUIDv5 of the breach


def expected_outage_compensations(charter: Charter, customer_id: str, outages: list[tuple[int, str, int]],
                                  services: list[str]) -> list[dict[str, Any]]:
    """What rule 4 owes a legacy customer (no order seen: default fee, no first month) for outages ``(start,
    opening event id, length)``, each paid once: tier by tier while the outage is still open after it."""
    fee, dpm = charter.default_monthly_fee_cents, charter.outage.days_per_month
    out = []
    for start, event_id, length in outages:
        paid = 0
        for tier, t in enumerate(charter.outage.tiers):
            if length <= t.after:  # back at exactly the threshold: unpaid
                break
            days = t.credit_days - paid
            paid = t.credit_days
            breach = f"{start}\x1f{event_id}\x1f{tier}"
            out.append({
                "compensation_id": str(uuid.uuid5(NAMESPACE, f"{charter.name}\x1foutage\x1f{customer_id}\x1f{breach}")),
                "rule": "outage", "customer_id": customer_id, "crossed_at": iso(start + t.after),
                "credit_days": days, "amount_cents": (2 * fee * days + dpm) // (2 * dpm), "evidence": [event_id],
                "services": services, "charter": charter.name, "currency": charter.currency})
    return out


def replay_checking_rows(charter: Charter, records: list[dict[str, Any]], customer_id: str, every: int = 997
                         ) -> tuple[list[tuple[str, str, dict[str, Any]]], list[int]]:
    """Replay ``records`` through the engine; the encoded size of the customer's row every ``every`` events."""
    engine = Engine(charter)
    out: list[tuple[str, str, dict[str, Any]]] = []
    sizes: list[int] = []
    for i, rec in enumerate(records):
        event = decode_event(rec["topic"], rec["value"])
        at = to_us(event.occurred_at)
        out += engine.advance(at)
        out += engine.apply(rec["topic"], event, at)
        if i % every == 0:
            sizes.append(len(orjson.dumps(engine.subscribers[customer_id].encode())))
    out += engine.finish()
    sizes.append(len(orjson.dumps(engine.subscribers[customer_id].encode())))
    return out, sizes


@pytest.fixture(scope="module")
def flapping() -> Flapping:
    return Flapping("FLAP-1", days=730)


def test_a_customer_flapping_for_two_years_keeps_a_small_row_and_is_paid_exactly_what_is_owed(flapping):
    charter = charter_with(dedup_retention="1h")
    out, sizes = replay_checking_rows(charter, flapping.records, "FLAP-1")
    assert len(flapping.records) > 400_000 and len(sizes) > 400  # 2 years of 5-minute flaps, sampled all along
    assert max(sizes) < 2048, max(sizes)
    comps = [v for topic, _, v in out if topic == "compensation"]
    for c in comps:
        c.pop("emitted_at", None)
    expected = expected_outage_compensations(charter, "FLAP-1", flapping.outages, ["internet"])
    assert len(expected) == 1 + 2 + 3  # 25 h, 80 h and 200 h outages cross 1, 2 and 3 tiers; 23.5 h none
    assert comps == expected
    # and one early warning per outage still open at its start + alert_after (SPEC 10), none for the copies
    risk = charter.outage.alert_after
    alerts = [v for topic, _, v in out if topic == "sla-alert"]
    assert alerts == [{"alert": "outage_at_risk", "customer_id": "FLAP-1", "crossed_at": iso(start + risk)}
                      for start, _, length in flapping.outages if risk is not None and length > risk]
    assert len(alerts) == 4
    assert {topic for topic, _, _ in out} == {"compensation", "sla-alert"}


def test_the_flapping_scenario_holds_the_noise_it_promises(flapping):
    ids = [r["value"]["event_id"] for r in flapping.records]
    long_downs = {event_id for _, event_id, _ in flapping.outages}
    copied = [i for i in set(ids) if ids.count(i) > 1] if len(ids) < 1000 else None
    copies = len(ids) - len(set(ids))
    # per long outage: the flap before it once more (within), its down and up again (late); and late short pairs
    assert copies >= 3 * len(flapping.outages) + 2 * 20
    assert all(ids.count(d) == 2 for d in long_downs)
    assert copied is None


def test_with_the_default_retention_the_row_holds_a_week_of_ids():
    # 30 days of flapping under the default 7 d: the row grows for a week, then stays level
    f = Flapping("FLAP-2", days=30, long_outages=[(2, 30 * 3600)], late_every=0)
    charter = charter_with()
    out, sizes = replay_checking_rows(charter, f.records, "FLAP-2", every=501)
    second_half = sizes[len(sizes) // 2:]
    assert max(second_half) < 1.02 * min(second_half)  # level once a week is held (about 4,000 ids)
    assert max(sizes) < 128 * 1024
    comps = [v for topic, _, v in out if topic == "compensation"]
    for c in comps:
        c.pop("emitted_at", None)
    assert comps == expected_outage_compensations(charter, "FLAP-2", f.outages, ["internet"])


# ------------------------------------------------------------------------------------ retention, one event at a time


def test_a_copy_is_recognised_within_the_retention_and_applied_as_new_after_it():
    charter = charter_with(dedup_retention="1h")
    first = claim("A", ts(0), 0, proof=None, eid="w1")
    within = [first, down("A", ts(30 * M), eid="s1"), first]
    after = [first, down("A", ts(H + S), eid="s1"), first]  # the latest event is over an hour after the claim
    def decisions(lines: list[str]) -> list[str]:
        return [r.value["reason"] for r in run(lines, charter, T0 + 2 * H) if r.topic == "claim-decision"]

    assert decisions(within) == ["missing_proof"]
    assert decisions(after) == ["missing_proof", "missing_proof"]


def test_retention_is_counted_on_the_customer_s_own_event_time_not_the_clock():
    # other customers' events move the replay clock weeks ahead; the copy is still within A's own hour
    charter = charter_with(dedup_retention="1h")
    first = claim("A", ts(0), 0, proof=None, eid="w1")
    lines = [first, down("B", ts(30 * D), eid="b1"), first]
    assert [r.value["reason"] for r in run(lines, charter, T0 + 31 * D) if r.topic == "claim-decision"] == [
        "missing_proof"]


def test_a_forgotten_copy_of_a_paid_outage_does_not_pay_it_again():
    charter = charter_with(dedup_retention="1d")
    paid = [down("A", ts(0), eid="d1"), up("A", ts(30 * H), eid="u1")]
    later = [down("A", ts(10 * D), eid="d2"), up("A", ts(10 * D + M), eid="u2")]
    copies = [down("A", ts(0), eid="d1"), up("A", ts(30 * H), eid="u1")]
    once = [c["compensation_id"] for c in run(paid + later, charter, T0 + 20 * D).comps()]
    assert len(once) == 1
    assert [c["compensation_id"] for c in run(paid + later + copies, charter, T0 + 20 * D).comps()] == once


def test_a_late_outage_never_paid_before_is_still_paid_within_the_retention():
    # out of order but within the memory: an ordinary late arrival, paid as usual
    charter = charter_with(dedup_retention="7d")
    lines = [down("A", ts(3 * D + 12 * H), eid="d2"), up("A", ts(3 * D + 12 * H + M), eid="u2"),
             down("A", ts(2 * D), eid="d1"), up("A", ts(2 * D + 30 * H), eid="u1")]
    assert [c["crossed_at"] for c in run(lines, charter, T0 + 20 * D).comps()] == [ts(3 * D)]


def test_ids_stay_sorted_by_occurred_at_and_expire_as_a_prefix():
    ids = Ids.EMPTY
    for at, eid in [(5, "a"), (9, "b"), (7, "c d"), (1, "e~f")]:
        ids = Ids.add(ids, Ids.key("switch-claim", eid), at)
    assert [Ids.key("switch-claim", e) in ids for e in ("a", "b", "c d", "e~f", "c")] == [True] * 4 + [False]
    assert Ids.oldest(ids) == 1 and Ids.newest(ids) == 9
    kept = Ids.prune(ids, 6)
    assert [Ids.key("switch-claim", e) in kept for e in ("a", "b", "c d", "e~f")] == [False, True, True, False]


# ----------------------------------------------------------------------------------------------------- row bound


def _claim(i: int) -> SwitchClaim:
    return decode_event("switch-claim", {"event_id": f"claim-{i:06d}", "occurred_at": ts(i * S), "customer_id": "A",
                                         "previous_operator": "Free", "termination_fee_cents": 0, "proof_id": None})


def _big_subscriber(n: int) -> tuple[Engine, Subscriber]:
    engine = Engine(charter_with(dedup_retention="365d"))
    for i in range(n):
        engine.apply("switch-claim", _claim(i))
    return engine, engine.subscribers["A"]


def test_a_row_above_the_bound_loses_its_oldest_ids_first_and_copies_of_them_are_new_events():
    engine, sub = _big_subscriber(400)
    row, dropped = bounded_row(sub, 4096)
    assert len(row) <= 4096 and dropped > 0
    assert orjson.loads(row) == sub.encode()  # the worker's memory is pruned too: it and the row agree
    assert Ids.key("switch-claim", "claim-000399") in sub.ids  # the newest stay
    assert Ids.key("switch-claim", "claim-000000") not in sub.ids
    assert [t for t, _, _ in engine.apply("switch-claim", _claim(0))] == ["claim-decision"]  # no longer recognised
    assert engine.apply("switch-claim", _claim(399)) == []  # still recognised


def test_a_row_that_cannot_shrink_enough_is_written_as_it_is():
    _, sub = _big_subscriber(3)
    row, dropped = bounded_row(sub, 10)  # smaller than any row: everything prunable goes, nothing raises
    assert orjson.loads(row)["v"] == 2 and sub.ids == Ids.EMPTY and dropped == 3


def test_the_changelog_writes_bounded_rows_and_warns(caplog):
    engine, _ = _big_subscriber(400)
    engine.track_dirty = True
    engine.dirty_subscribers.add("A")
    with caplog.at_level(logging.WARNING, logger="charter.live"):
        rows = subscriber_rows(3, engine, max_bytes=4096)
    assert len(rows) == 1 and len(rows[0][1]) <= 4096
    assert "subscriber A" in caplog.text and "CHARTER_MAX_ROW_BYTES" in caplog.text


# --------------------------------------------------------------------------------------------- hotline state


def _hotline_day(day: int, n: int = 3) -> list[str]:
    """``n`` calls on ``day``, each answered within a minute."""
    return [x for i in range(n) for x in (call(f"d{day}-{i}", ts(day * D + i * M), "queued", eid=f"q{day}-{i}"),
                                          call(f"d{day}-{i}", ts(day * D + i * M + 30 * S), "answered",
                                               eid=f"a{day}-{i}"))]


def test_settled_calls_and_closed_windows_are_dropped_a_retention_later():
    charter = charter_with(dedup_retention="1d")
    engine = Engine(charter)
    for line in [x for day in range(10) for x in _hotline_day(day)]:
        rec = orjson.loads(line)
        event = decode_event(rec["topic"], rec["value"])
        at = to_us(event.occurred_at)
        engine.advance(at)
        engine.apply(rec["topic"], event, at)
    engine.finish()
    # the latest event is an answer on day 9 at 00:02:30: a call settled, or a window closed, more than a day
    # before that has gone (day 8's last call was answered at 00:02:30, its window closed at 00:18)
    assert sorted(engine.calls) == ["d8-2", "d9-0", "d9-1", "d9-2"]
    assert sorted(ws for _, ws in engine.windows) == [T0 + 8 * D, T0 + 9 * D]


def test_a_copy_of_a_dropped_call_breaches_and_counts_nothing_again():
    charter = charter_with(dedup_retention="1d")
    late = [call("x", ts(0), "queued", eid="qx")]  # never answered: one breach, one KPI record
    later = [x for day in range(2, 5) for x in _hotline_day(day)]
    base = run(late + later, charter, T0 + 10 * D).normalized()
    assert run(late + later + late, charter, T0 + 10 * D).normalized() == base


def _feed(engine: Engine, lines: list[str]) -> list[Any]:
    out: list[Any] = []
    for line in lines:
        rec = orjson.loads(line)
        event = decode_event(rec["topic"], rec["value"])
        at = to_us(event.occurred_at)
        out += engine.advance(at)
        out += engine.apply(rec["topic"], event, at)
    return out


def test_the_hotline_changelog_writes_tombstones_and_a_restored_worker_goes_on_the_same():
    from streams.live.changelog import hotline_rows, restore_hotline

    charter = charter_with(dedup_retention="1d")
    engine = Engine(charter, track_dirty=True)
    stored: dict[bytes, bytes | None] = {}  # the changelog, compacted: the latest value of each key
    never_answered = call("open", ts(2 * D + 20 * H), "queued", eid="qo")
    for line in [never_answered, *[x for day in range(4) for x in _hotline_day(day)]]:
        _feed(engine, [line])
        stored.update(hotline_rows(engine))
    assert any(v is None for v in stored.values())  # dropped calls and windows are tombstones
    restored = Engine(charter)
    restore_hotline(restored, stored.items())
    restored.clock = engine.clock
    restored.rebuild_deadlines()
    assert set(restored.calls) == set(engine.calls) and set(restored.windows) == set(engine.windows)
    # the rest, with a copy of a call already dropped (queued on day 1) and one still kept (day 3): the worker
    # that never stopped and the restored one drop, ignore and count the same
    # and a new call queued 15 h late: within the day of memory, so it breaches and has its own window
    rest = [call("late", ts(2 * D + 12 * H), "queued", eid="ql"),
            call("d1-0", ts(D), "queued", eid="q1-0"), call("d3-2", ts(3 * D + 2 * M), "queued", eid="q3-2"),
            *[x for day in range(4, 7) for x in _hotline_day(day)], call("d4-0", ts(4 * D), "queued", eid="q4-0"),
            call("open", ts(6 * D + H), "answered", eid="ao")]  # answered days after its breach: changes nothing
    expected = _feed(engine, rest) + engine.finish()
    assert _feed(restored, rest) + restored.finish() == expected
    # days 3 to 6 (the last closes before the answer at 6 d 1 h) and the late call's window; none for a copy
    assert [r[0] for r in expected].count("hotline-kpi") == 5
    assert [r[1] for r in expected if r[0] == "hotline-breach"] == ["late"]


def test_dedup_retention_is_a_duration_with_a_default_of_a_week():
    assert charter_with().dedup_retention == 7 * D
    assert charter_with(dedup_retention="36h").dedup_retention == 36 * H
    with pytest.raises(CharterError, match="dedup_retention"):
        charter_with(dedup_retention="forever")
