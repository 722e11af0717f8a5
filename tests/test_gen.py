"""The traffic generator: deterministic, valid, realistic enough to exercise every rule of the charter."""

from __future__ import annotations

import collections
import io
import itertools
from datetime import UTC, datetime

import orjson
import pytest

from schemas.inputs import parse_input
from streams.charter import load_charter
from streams.core.timeutil import to_us
from streams.gen import DEFAULT_START, generate, main, write_jsonl
from streams.replay import replay

SUBS, EVENTS = 300, 3000


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return list(generate(SUBS, EVENTS, seed=7))


def _instant(rec: dict) -> int:
    return to_us(datetime.fromisoformat(rec["value"]["occurred_at"].replace("Z", "+00:00")))


def test_deterministic_for_a_seed(records):
    assert list(generate(SUBS, EVENTS, seed=7)) == records
    assert list(generate(SUBS, EVENTS, seed=8)) != records


def test_exact_count_and_every_event_validates(records):
    assert len(records) == EVENTS
    for rec in records:
        assert set(rec) == {"topic", "value"}
        event = parse_input(rec["topic"], rec["value"])
        assert event.occurred_at.utcoffset() is not None


def test_event_ids_unique_per_topic_except_redeliveries(records):
    by_id: dict[tuple[str, str], dict] = {}
    for rec in records:
        key = (rec["topic"], rec["value"]["event_id"])
        if key in by_id:
            assert by_id[key] == rec["value"]  # a duplicate is the same message again
        by_id[key] = rec["value"]
    clean = list(generate(SUBS, EVENTS, seed=7, duplicates=0.0))
    assert len({(r["topic"], r["value"]["event_id"]) for r in clean}) == len(clean)


def test_roughly_in_time_order_and_exactly_without_disorder(records):
    times = [_instant(r) for r in records]
    late = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert 0 < late < 0.02 * len(times)
    ordered = [_instant(r) for r in generate(SUBS, EVENTS, seed=7, disorder=0.0, duplicates=0.0)]
    assert ordered == sorted(ordered)
    assert ordered[0] >= to_us(DEFAULT_START)


def test_offsets_mostly_paris_and_utc(records):
    suffixes = collections.Counter(r["value"]["occurred_at"][19:] for r in records)
    assert suffixes["+02:00"] + suffixes["+00:00"] > 0.8 * len(records)
    assert suffixes["Z"] > 0


def test_content_mix(records):
    kinds = collections.Counter()
    for r in records:
        v = r["value"]
        kinds[r["topic"], v.get("type") or v.get("status") or "claim"] += 1
    for k in [("line-activation", "order_placed"), ("line-activation", "line_confirmed"),
              ("line-activation", "service_active"), ("box-shipment", "shipped"), ("box-shipment", "delivered"),
              ("service-status", "down"), ("service-status", "up"), ("call-queue", "queued"),
              ("call-queue", "answered"), ("call-queue", "abandoned"), ("switch-claim", "claim")]:
        assert kinds[k] > 0, k
    for k in [("appointment", "booked"), ("appointment", "attended"), ("appointment", "cancelled")]:
        assert kinds[k] > 0, k
    orders = [r["value"] for r in records if r["value"].get("type") == "order_placed"]
    assert orders and all("promised_start" in o for o in orders)
    queues = {r["value"]["queue"] for r in records if r["topic"] == "call-queue"}
    assert queues == {"technical", "billing", "sales"}
    fees = {r["value"]["monthly_fee_cents"] for r in records if r["value"].get("type") == "order_placed"}
    assert fees <= {2995, 2999, 3490, 4499} and len(fees) >= 3


def test_mass_outage_is_a_burst_in_one_minute():
    recs = list(generate(2000, 20000, seed=1, duplicates=0.0, disorder=0.0))
    per_minute = collections.Counter(_instant(r) // 60_000_000 for r in recs
                                     if r["topic"] == "service-status" and r["value"]["status"] == "down")
    assert max(per_minute.values()) >= 150
    quiet = list(generate(2000, 20000, seed=1, duplicates=0.0, disorder=0.0, mass_outage=False))
    per_minute = collections.Counter(_instant(r) // 60_000_000 for r in quiet
                                     if r["topic"] == "service-status" and r["value"]["status"] == "down")
    assert max(per_minute.values()) < 20


def test_scale_shrinks_every_duration():
    base = list(generate(100, 800, seed=3))
    scaled = list(generate(100, 800, seed=3, scale=1 / 86400))
    assert [(r["topic"], r["value"]["event_id"]) for r in base] == [(r["topic"], r["value"]["event_id"])
                                                                    for r in scaled]
    t0 = to_us(DEFAULT_START)
    for a, b in zip(base, scaled, strict=True):
        assert abs((_instant(a) - t0) / 86400 - (_instant(b) - t0)) <= 1


def test_replay_of_a_generated_file_exercises_every_output(records):
    lines = [orjson.dumps(r) for r in records]
    seen = collections.Counter()
    for topic, _key, value in replay(lines, load_charter()):
        assert topic != "dead-letter", value
        seen[topic] += 1
        if topic == "compensation":
            seen[value["rule"]] += 1
        if topic == "claim-decision":
            seen[value["decision"]] += 1
    for what in ["compensation", "late_activation", "switch_fee_refund", "outage", "billing", "claim-decision",
                 "granted", "rejected", "hotline-breach", "hotline-kpi", "sla-alert"]:
        assert seen[what] > 0, (what, seen)


def test_write_jsonl_and_command_line(tmp_path, capsysbinary):
    recs = list(generate(20, 100, seed=2))
    buf = io.BytesIO()
    assert write_jsonl(buf, recs) == 100
    assert [orjson.loads(x) for x in buf.getvalue().splitlines()] == recs
    path = tmp_path / "g.jsonl"
    assert write_jsonl(path, iter(recs)) == 100
    assert path.read_bytes() == buf.getvalue()
    assert main(["--subscribers", "20", "--events", "100", "--seed", "2"]) == 0
    assert capsysbinary.readouterr().out == buf.getvalue()
    assert main(["--subscribers", "20", "--events", "100", "--seed", "2", "--scale", str(1 / 86400),
                 "--start", "2008-01-01T00:00:00Z", "-o", str(path)]) == 0
    first = orjson.loads(path.read_bytes().splitlines()[0])
    assert datetime.fromisoformat(first["value"]["occurred_at"]) >= datetime(2008, 1, 1, tzinfo=UTC)


def test_without_an_event_count_it_stops_at_the_horizon():
    recs = list(generate(200, seed=4, days=10))
    assert 1000 < len(recs) < 4000
    assert max(_instant(r) for r in recs) <= to_us(DEFAULT_START) + (10 * 86400 + 1) * 1_000_000


def test_seconds_scaled_traffic_against_the_seconds_charter():
    """Days become seconds; the shipped alice-2007-seconds charter scales the hotline by 1/60 instead."""
    recs = list(generate(SUBS, EVENTS, seed=7, scale=1 / 86400, hotline_scale=1 / 60))
    seen = collections.Counter()
    for topic, _key, value in replay([orjson.dumps(r) for r in recs], load_charter("alice-2007-seconds")):
        seen[value["rule"] if topic == "compensation" else topic] += 1
    for what in ["late_activation", "switch_fee_refund", "outage", "billing", "claim-decision", "hotline-breach",
                 "hotline-kpi", "sla-alert"]:
        assert seen[what] > 0, (what, seen)


def test_per_day_additions_leave_the_other_events_as_they_were():
    """Promised starts and appointments have their own random stream: without them the file is what the generator
    wrote before they existed, and with them every other event is unchanged but for promised_start."""
    plain = list(generate(SUBS, seed=7, days=20, per_day=False))
    full = list(generate(SUBS, seed=7, days=20))
    others = []
    for r in full:
        if r["topic"] == "appointment":
            continue
        others.append({**r, "value": {k: v for k, v in r["value"].items() if k != "promised_start"}})
    assert others == plain
    assert len(full) > len(plain)
    # so Alice's outputs are the same with or without them
    alice = load_charter()

    def outputs(recs: list[dict]) -> list[tuple]:
        return [(t, k, {f: x for f, x in v.items() if f != "emitted_at"})
                for t, k, v in replay([orjson.dumps(r) for r in recs], alice)]

    assert outputs(full) == outputs(plain)


def test_replay_of_a_generated_file_exercises_every_per_day_rule(records):
    seen = collections.Counter()
    for topic, _key, value in replay([orjson.dumps(r) for r in records], load_charter("ofcom-2026")):
        assert topic == "compensation", value
        seen[value["rule"]] += 1
    assert seen["delayed_repair"] > 0 and seen["delayed_provision"] > 0 and seen["missed_appointment"] > 0, seen


def test_an_element_failure_is_an_incident_opened_and_closed():
    """SPEC section 10: the failing DSLAMs' customers all go down with their element_id, then come back."""
    recs = list(generate(2000, 20000, seed=1))
    named = [r for r in recs if r["topic"] == "service-status" and "element_id" in r["value"]]
    assert named and all(r["value"]["element_id"].startswith("E") for r in named)
    per_element = collections.Counter(r["value"]["element_id"] for r in named if r["value"]["status"] == "down")
    assert all(n >= 60 for n in per_element.values())  # whole elements fail
    incidents = [v for topic, _key, v in replay([orjson.dumps(r) for r in recs], load_charter())
                 if topic == "incident"]
    opened = {v["incident_id"] for v in incidents if v["status"] == "open"}
    closed = {v["incident_id"] for v in incidents if v["status"] == "closed"}
    assert opened and closed and closed <= opened
    assert all(v["customers"] == 50 for v in incidents if v["status"] == "open")
