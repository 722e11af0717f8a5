"""SPEC section 9, clause by clause: the shipped ``ofcom-2026`` charter, local days of its time zone (daylight saving
included), working days of its calendar, and rules 6 (delayed repair), 7 (delayed provision) and 8 (missed
appointment), through ``streams.replay.replay`` (the `charter replay` path).

Instants are written as London wall times (``lt("2026-10-19 10:00")``); 2026-10-25 ends British Summer Time (a
25-hour Sunday), 2026-03-29 starts it (a 23-hour Sunday), and Christmas 2026 has Boxing Day on a Saturday with its
substitute bank holiday on Monday 28 December.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.charter import CharterError, load_charter, parse_charter
from streams.core.localdays import LocalDays
from streams.core.timeutil import parse_instant, to_us
from tests.charter_helpers import (
    OFCOM,
    SHIPPED_CHARTER_TEXT,
    active,
    answered,
    appt_cancelled,
    attended,
    booked,
    cancelled,
    claim,
    confirmed,
    down,
    line,
    order,
    queued,
    run,
    tick,
    up,
)

LONDON = ZoneInfo("Europe/London")
OFCOM_TEXT = (Path(__file__).resolve().parents[1] / "streams" / "charters" / "ofcom-2026.yaml").read_text()


def lt(text: str) -> str:
    """A London wall time ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` as RFC 3339 with the offset in force then."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).isoformat()


def us(text: str) -> int:
    return parse_instant(lt(text))


def until(text: str) -> int:
    return us(text)


def ofcom_with(**overrides) -> object:
    data = yaml.safe_load(OFCOM_TEXT)
    for k, v in overrides.items():
        if v is None:
            data.pop(k, None)
        elif isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return parse_charter(yaml.safe_dump(data), "<test>")


def in_order(lines: list[str]) -> list[str]:
    """Lines sorted by occurred_at (a replay file applies them in file order)."""
    return sorted(lines, key=lambda text: parse_instant(json.loads(text)["value"]["occurred_at"]))


def days_paid(out, rule: str, customer: str | None = None) -> list[tuple[int, int]]:
    """(day, crossed_at in µs) of every compensation of ``rule``."""
    return [(c["day"], parse_instant(c["crossed_at"])) for c in out.comps(rule, customer)]


# ============================================================================================== the charter file


def test_shipped_ofcom_charter_has_the_spec_values():
    c = load_charter("ofcom-2026")
    assert (c.name, c.currency, c.grace_us, c.default_monthly_fee_cents) == ("ofcom-2026", "GBP", 0, 3000)
    assert (c.timezone, c.calendar) == ("Europe/London", "GB-ENG")
    assert (c.delayed_repair.after_working_days, c.delayed_repair.per_day_cents) == (2, 1034)
    assert c.delayed_provision.per_day_cents == 646
    assert (c.missed_appointment.amount_cents, c.missed_appointment.notice) == (3231, 24 * 3600 * 10**6)
    # no Alice rule (SPEC 7: a charter enforces only the rules it names)
    assert (c.late_activation, c.switch_fee_refund, c.installation, c.outage, c.hotline) == (None,) * 5


def test_shipped_ofcom_file_is_the_spec_text():
    spec = Path(__file__).resolve().parents[1].parent / "shared" / "SPEC.md"
    if not spec.is_file():
        pytest.skip("SPEC.md not beside the repository")
    block = spec.read_text(encoding="utf-8").split("is the second shipped charter, `ofcom-2026`:")[1]
    block = block.split("```yaml")[1].split("```")[0]
    assert yaml.safe_load(block) == yaml.safe_load(OFCOM_TEXT)


@pytest.mark.parametrize(("override", "named"), [
    ({"timezone": "Europe/Londres"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"timezone": 1}, "timezone"),
    ({"calendar": "XX"}, "calendar"),
    ({"calendar": "GB-XYZ"}, "calendar"),
    ({"timezone": None}, "timezone"),  # required by the per-day rules
    ({"calendar": None}, "calendar"),  # required by delayed_repair
    ({"delayed_repair": {"after_working_days": -1}}, "delayed_repair.after_working_days"),
    ({"delayed_repair": {"per_day_cents": "10.34"}}, "delayed_repair.per_day_cents"),
    ({"missed_appointment": {"notice": "1 day"}}, "missed_appointment.notice"),
    ({"delayed_provision": {"per_day": 646}}, "delayed_provision.per_day"),
])
def test_a_bad_setting_is_a_charter_error_naming_it(override, named):
    with pytest.raises(CharterError) as e:
        ofcom_with(**override)
    assert f"{named}:" in str(e.value), str(e.value)


def test_without_a_repair_rule_no_calendar_is_needed_and_without_local_rules_no_time_zone():
    assert ofcom_with(delayed_repair=None, calendar=None).delayed_provision is not None
    c = ofcom_with(delayed_repair=None, delayed_provision=None, calendar=None, timezone=None)
    assert c.missed_appointment is not None


def test_calendar_codes_are_case_insensitive_and_other_countries_work():
    assert ofcom_with(calendar="gb-eng").holidays is not None
    assert date(2026, 7, 14) in ofcom_with(calendar="FR").holidays


def test_cli_names_an_unknown_calendar(tmp_path: Path):
    from click.testing import CliRunner

    from streams.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(OFCOM_TEXT.replace("GB-ENG", "UK-ENGLAND"), encoding="utf-8")
    events = tmp_path / "e.jsonl"
    events.write_text(down("A", lt("2026-10-19 10:00")) + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["replay", "--charter", str(bad), str(events)])
    assert res.exit_code != 0
    assert "calendar" in res.output and "UK-ENGLAND" in res.output and "Traceback" not in res.output


# ================================================================================================ local days


def test_local_midnights_across_daylight_saving():
    days = LocalDays(LONDON)
    o = date(2026, 10, 24).toordinal()
    assert [days.midnight(o + i) for i in range(3)] == [parse_instant("2026-10-23T23:00:00Z"),
                                                        parse_instant("2026-10-24T23:00:00Z"),
                                                        parse_instant("2026-10-26T00:00:00Z")]  # 25-hour Sunday
    o = date(2026, 3, 29).toordinal()
    assert days.midnight(o + 1) - days.midnight(o) == 23 * 3600 * 10**6
    assert days.day_of(parse_instant("2026-10-25T23:59:59.999999Z")) == date(2026, 10, 25).toordinal()
    assert days.day_of(parse_instant("2026-10-24T23:00:00Z")) == date(2026, 10, 25).toordinal()
    assert days.day_of(parse_instant("2026-10-24T22:59:59.999999Z")) == date(2026, 10, 24).toordinal()


def test_a_midnight_skipped_by_daylight_saving_is_the_first_instant_of_the_day():
    # Chile moved its clocks from 24:00 to 01:00 on 2022-09-11: that day starts at the change
    days = LocalDays(ZoneInfo("America/Santiago"))
    sunday = date(2022, 9, 11).toordinal()
    assert days.midnight(sunday) == parse_instant("2022-09-11T04:00:00Z")
    assert days.day_of(parse_instant("2022-09-11T03:59:59Z")) == sunday - 1
    assert days.day_of(parse_instant("2022-09-11T04:00:00Z")) == sunday


def test_working_days_follow_the_calendar():
    days = LocalDays(LONDON, holidays.country_holidays("GB", subdiv="ENG"))
    wed = date(2026, 12, 23).toordinal()
    working = [date.fromordinal(d).isoformat() for d in range(wed, wed + 10) if days.is_working(d)]
    # 25 Dec, Boxing Day on Saturday 26 (substitute Monday 28), 1 Jan
    assert working == ["2026-12-23", "2026-12-24", "2026-12-29", "2026-12-30", "2026-12-31"]
    assert date.fromordinal(days.after_working_days(wed, 2)) == date(2026, 12, 30)
    assert date.fromordinal(days.after_working_days(wed, 0)) == date(2026, 12, 24)


# ============================================================================================ rule 6: delayed repair


@pytest.mark.parametrize(("fixed", "paid"), [
    ("2026-11-04 23:59", 0),  # Wednesday, the second allowed working day
    ("2026-11-05 00:00", 0),  # exactly at the midnight that ends them: applied before it fires
    ("2026-11-05 00:00:00.000001", 1),
    ("2026-11-05 09:00", 1),  # the SPEC's example: Thursday 09:00 earns 1 day
    ("2026-11-09 08:00", 5),  # next Monday 08:00: Thursday, Friday, Saturday, Sunday, Monday
])
def test_spec_example_monday_fault(fixed: str, paid: int):
    out = run([down("A", lt("2026-11-02 10:00")), up("A", lt(fixed))], OFCOM, until("2027-01-31 00:00"))
    midnights = [us(f"2026-11-{5 + k:02d} 00:00") for k in range(paid)]
    assert days_paid(out, "delayed_repair") == [(k + 1, m) for k, m in enumerate(midnights)]
    assert {c["amount_cents"] for c in out.comps()} <= {1034}
    assert all(c["currency"] == "GBP" and c["charter"] == "ofcom-2026" for c in out.comps())


def test_each_day_fires_when_its_midnight_passes_not_at_the_end():
    lines = [down("A", lt("2026-11-02 10:00")), tick(lt("2026-11-05 00:00")), claim("~m", lt("2026-11-05 00:00:01"),
                                                                                   0, None),
             up("A", lt("2026-11-06 12:00"))]
    out = run(lines, OFCOM)
    topics = [(r.topic, r.value.get("day")) for r in out]
    # no claim-decision under ofcom (no switch_fee_refund rule): the day 1 record comes while the file is read
    assert topics == [("compensation", 1), ("compensation", 2)]


def test_the_start_day_never_counts_and_weekends_are_not_working_days():
    # Friday 10:00: allowed Monday and Tuesday, first day paid at Wednesday's midnight
    out = run([down("A", lt("2026-11-06 10:00")), up("A", lt("2026-11-12 10:00"))], OFCOM)
    assert days_paid(out, "delayed_repair") == [(1, us("2026-11-11 00:00")), (2, us("2026-11-12 00:00"))]
    # Saturday: the same two working days
    out = run([down("B", lt("2026-11-07 10:00")), up("B", lt("2026-11-11 00:00:01"))], OFCOM)
    assert days_paid(out, "delayed_repair") == [(1, us("2026-11-11 00:00"))]


def test_the_start_day_is_the_local_date_not_the_utc_date():
    # Monday 00:30 BST is Sunday 23:30 UTC: the outage starts on Monday, allowed Tuesday and Wednesday
    out = run([down("A", lt("2026-10-19 00:30")), up("A", lt("2026-10-22 00:00:01"))], OFCOM)
    assert days_paid(out, "delayed_repair") == [(1, us("2026-10-22 00:00"))]
    assert out.comps()[0]["crossed_at"] == "2026-10-21T23:00:00+00:00"


def test_christmas_bank_holidays_are_not_working_days():
    # Wednesday 23 Dec: allowed Thursday 24 and Tuesday 29 (25, 26 + substitute 28 are holidays)
    lines = in_order([down("A", lt("2026-12-23 10:00")), up("A", lt("2026-12-30 09:00")),
                      down("B", lt("2026-12-23 10:00")), up("B", lt("2026-12-29 23:59")),
                      down("C", lt("2026-12-31 10:00")), up("C", lt("2027-01-06 00:00:01"))])  # 1 Jan: Mon 4, Tue 5
    out = run(lines, OFCOM)
    assert days_paid(out, "delayed_repair", "A") == [(1, us("2026-12-30 00:00"))]
    assert days_paid(out, "delayed_repair", "B") == []
    assert days_paid(out, "delayed_repair", "C") == [(1, us("2027-01-06 00:00"))]


def test_the_calendar_is_a_setting():
    # Monday 13 July 2026: 14 July is a holiday in France, not in England
    lines = [down("A", lt("2026-07-13 10:00")), up("A", lt("2026-07-17 12:00"))]
    assert len(run(lines, OFCOM).comps()) == 2  # Thursday 16 and Friday 17
    assert len(run(lines, ofcom_with(calendar="FR")).comps()) == 1  # Friday 17 only


def test_days_across_the_end_of_summer_time():
    # Wednesday 21 Oct: allowed 22, 23; days at the midnights of Sat 24 (BST), Sun 25 (BST), Mon 26 (GMT)
    out = run([down("A", lt("2026-10-21 10:00")), up("A", lt("2026-10-26 08:00"))], OFCOM)
    assert [c["crossed_at"] for c in out.comps()] == ["2026-10-23T23:00:00+00:00", "2026-10-24T23:00:00+00:00",
                                                      "2026-10-26T00:00:00+00:00"]


def test_days_across_the_start_of_summer_time():
    # Wednesday 25 March: days at the midnights of Sat 28, Sun 29 (GMT) and Mon 30 (BST: Sunday 23:00 UTC)
    out = run([down("A", lt("2026-03-25 10:00")), up("A", lt("2026-03-30 00:30"))], OFCOM)
    assert [c["crossed_at"] for c in out.comps()] == ["2026-03-28T00:00:00+00:00", "2026-03-29T00:00:00+00:00",
                                                      "2026-03-29T23:00:00+00:00"]


def test_the_outage_lasts_until_the_last_service_is_back():
    lines = [down("A", lt("2026-11-02 10:00"), "internet"), down("A", lt("2026-11-03 10:00"), "telephony"),
             up("A", lt("2026-11-04 10:00"), "internet"), up("A", lt("2026-11-05 10:00"), "telephony")]
    assert days_paid(run(lines, OFCOM), "delayed_repair") == [(1, us("2026-11-05 00:00"))]


@pytest.mark.parametrize(("cancel", "paid"), [("2026-11-02 09:59:59.999999", 0), ("2026-11-02 10:00", 0),
                                              ("2026-11-02 10:00:00.000001", 1)])
def test_no_repair_days_for_an_outage_starting_at_or_after_a_cancellation(cancel: str, paid: int):
    lines = in_order([order("A", lt("2026-09-01 10:00")), active("A", lt("2026-09-10 10:00")),
                      cancelled("A", lt(cancel)), down("A", lt("2026-11-02 10:00")), up("A", lt("2026-11-05 12:00"))])
    assert len(run(lines, OFCOM).comps()) == paid


def test_no_repair_days_while_the_order_is_pending():
    lines = [order("A", lt("2026-11-01 10:00")), down("A", lt("2026-11-02 10:00")), active("A", lt("2026-11-03 10:00")),
             up("A", lt("2026-11-09 12:00"))]
    assert run(lines, OFCOM).comps() == []


def test_two_outages_get_distinct_ids_and_a_replay_the_same_ones():
    lines = [down("A", lt("2026-11-02 10:00")), up("A", lt("2026-11-06 12:00")),
             down("A", lt("2026-11-09 10:00")), up("A", lt("2026-11-13 12:00"))]
    first, second = run(lines, OFCOM), run(lines, OFCOM)
    ids = [c["compensation_id"] for c in first.comps()]
    assert len(ids) == 4 == len(set(ids))
    assert ids == [c["compensation_id"] for c in second.comps()]
    assert [c["day"] for c in first.comps()] == [1, 2, 1, 2]
    assert first.comps()[0]["evidence"] == [json.loads(lines[0])["value"]["event_id"]]


def test_grace_delays_a_day_but_never_drops_it():
    c = ofcom_with(grace_seconds=600)
    # back 5 minutes after the midnight that owed day 1: within grace, the day is still owed
    out = run([down("A", lt("2026-11-02 10:00")), up("A", lt("2026-11-05 00:05"))], c)
    assert days_paid(out, "delayed_repair") == [(1, us("2026-11-05 00:00"))]


def test_after_working_days_is_a_setting():
    out = run([down("A", lt("2026-11-02 10:00")), up("A", lt("2026-11-03 12:00"))],
              ofcom_with(delayed_repair={"after_working_days": 0}))
    assert days_paid(out, "delayed_repair") == [(1, us("2026-11-03 00:00"))]


def _naive_repair_days(start: datetime, end: datetime) -> list[datetime]:
    """Rule 6 written the slow, obvious way: walk the local calendar one day at a time."""
    cal = holidays.country_holidays("GB", subdiv="ENG")
    d, found = start.astimezone(LONDON).date(), 0
    while found < 2:
        d += timedelta(days=1)
        if d.weekday() < 5 and d not in cal:
            found += 1
    paid = []
    d += timedelta(days=1)
    while True:
        midnight = datetime(d.year, d.month, d.day, tzinfo=LONDON)
        if midnight >= end:
            return paid
        paid.append(midnight)
        d += timedelta(days=1)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(start=st.integers(0, 2 * 365 * 86400), length=st.integers(1, 20 * 86400))
def test_repair_days_match_a_day_by_day_walk_of_the_calendar(start: int, length: int):
    t0 = datetime(2026, 1, 1, tzinfo=LONDON) + timedelta(seconds=start)
    t1 = t0 + timedelta(seconds=length)
    out = run([down("A", t0.isoformat()), up("A", t1.isoformat())], OFCOM)
    assert [parse_instant(c["crossed_at"]) for c in out.comps()] == [to_us(m) for m in _naive_repair_days(t0, t1)]


# ========================================================================================= rule 7: delayed provision


def test_spec_example_promised_1_june_active_3_june_earns_2_days():
    lines = [order("A", lt("2026-05-20 10:00"), promised="2026-06-01"), active("A", lt("2026-06-03 10:00"))]
    out = run(lines, OFCOM, until("2026-12-31 00:00"))
    assert days_paid(out, "delayed_provision") == [(1, us("2026-06-02 00:00")), (2, us("2026-06-03 00:00"))]
    assert [c["amount_cents"] for c in out.comps()] == [646, 646]
    assert out.comps()[0]["crossed_at"] == "2026-06-01T23:00:00+00:00"  # midnight BST
    assert out.comps()[0]["evidence"] == [json.loads(lines[0])["value"]["event_id"]]


@pytest.mark.parametrize(("at", "paid"), [("2026-06-01 23:59:59.999999", 0), ("2026-06-02 00:00", 0),
                                          ("2026-06-02 00:00:00.000001", 1), ("2026-05-25 12:00", 0)])
def test_active_at_the_end_of_the_promised_day_is_in_time(at: str, paid: int):
    lines = in_order([order("A", lt("2026-05-20 10:00"), promised="2026-06-01"), active("A", lt(at))])
    assert len(run(lines, OFCOM, until("2026-12-31 00:00")).comps()) == paid


def test_a_cancellation_stops_the_days():
    lines = [order("A", lt("2026-05-20 10:00"), promised="2026-06-01"), cancelled("A", lt("2026-06-04 00:00"))]
    out = run(lines, OFCOM, until("2026-12-31 00:00"))
    assert [c["day"] for c in out.comps()] == [1, 2]  # 2 June and 3 June; the cancellation at 4 June 00:00 is in time


def test_days_go_on_until_the_service_works_across_the_end_of_summer_time():
    lines = [order("A", lt("2026-10-01 10:00"), promised="2026-10-24"), active("A", lt("2026-10-27 10:00"))]
    out = run(lines, OFCOM)
    assert [c["crossed_at"] for c in out.comps()] == ["2026-10-24T23:00:00+00:00", "2026-10-26T00:00:00+00:00",
                                                      "2026-10-27T00:00:00+00:00"]
    assert [c["day"] for c in out.comps()] == [1, 2, 3]


def test_only_the_first_order_with_a_promised_start_counts():
    lines = [order("A", lt("2026-05-01 10:00")),  # no promise: does not count
             order("A", lt("2026-05-02 10:00"), promised="2026-06-01"),
             order("A", lt("2026-05-03 10:00"), promised="2026-06-10"),  # a later promise changes nothing
             active("A", lt("2026-06-02 10:00"))]
    assert days_paid(run(lines, OFCOM), "delayed_provision") == [(1, us("2026-06-02 00:00"))]


def test_no_promise_no_provision_days_and_ids_are_per_day():
    assert run([order("A", lt("2026-05-01 10:00")), tick(lt("2026-08-01 00:00"))], OFCOM).comps() == []
    lines = [order("A", lt("2026-05-20 10:00"), promised="2026-06-01"), active("A", lt("2026-06-05 10:00"))]
    ids = [c["compensation_id"] for c in run(lines, OFCOM).comps()]
    assert len(set(ids)) == 4


def test_a_promised_start_in_the_past_pays_its_days_at_once():
    lines = [order("A", lt("2026-06-03 10:00"), promised="2026-06-01"), active("A", lt("2026-06-03 12:00"))]
    out = run(lines, OFCOM)
    assert days_paid(out, "delayed_provision") == [(1, us("2026-06-02 00:00")), (2, us("2026-06-03 00:00"))]


# ======================================================================================= rule 8: missed appointment

SLOT = ("2026-11-10 08:00", "2026-11-10 12:00")  # notice 24 h: the cut-off is 2026-11-09 08:00


def _appt(*events: str, customer: str = "A") -> list[dict]:
    lines = [booked(customer, "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1])), *events]
    return run(lines, OFCOM, until("2026-12-31 00:00")).comps("missed_appointment")


@pytest.mark.parametrize(("told", "missed"), [
    ("2026-11-09 07:59:59.999999", False), ("2026-11-09 08:00", False),  # at or before slot_start - notice
    ("2026-11-09 08:00:00.000001", True), ("2026-11-10 11:00", True), ("2026-11-10 12:00", True),
])
def test_cancellation_notice(told: str, missed: bool):
    comps = _appt(appt_cancelled("A", "AP1", lt(told)))
    expected = [(us(told), "AP1", 3231)] if missed else []
    assert [(parse_instant(c["crossed_at"]), c["appointment_id"], c["amount_cents"]) for c in comps] == expected


def test_no_show_is_missed_at_the_end_of_the_slot():
    comps = _appt()
    assert [(parse_instant(c["crossed_at"]), c["amount_cents"], c["appointment_id"]) for c in comps] == [
        (us(SLOT[1]), 3231, "AP1")]


@pytest.mark.parametrize(("came", "missed"), [("2026-11-10 12:00", False), ("2026-11-10 12:00:00.000001", True),
                                              ("2026-11-10 07:00", False)])
def test_attended_by_the_end_of_the_slot_is_kept(came: str, missed: bool):
    comps = _appt(attended("A", "AP1", lt(came)))
    assert [parse_instant(c["crossed_at"]) for c in comps] == ([us(SLOT[1])] if missed else [])


def test_cancelled_after_the_slot_without_a_visit_is_a_no_show():
    comps = _appt(appt_cancelled("A", "AP1", lt("2026-11-10 15:00")))
    assert [parse_instant(c["crossed_at"]) for c in comps] == [us(SLOT[1])]


def test_cancelled_late_after_the_engineer_came_is_not_missed():
    assert _appt(attended("A", "AP1", lt("2026-11-10 08:30")), appt_cancelled("A", "AP1", lt("2026-11-10 09:00"))) \
        == []
    # the other way round: told of the cancellation first, then someone came anyway
    comps = _appt(appt_cancelled("A", "AP1", lt("2026-11-10 08:30")), attended("A", "AP1", lt("2026-11-10 09:00")))
    assert [parse_instant(c["crossed_at"]) for c in comps] == [us("2026-11-10 08:30")]


def test_events_count_whichever_order_they_arrive_in():
    late_booking = [appt_cancelled("A", "AP1", lt("2026-11-09 09:00")),
                    booked("A", "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1]))]
    comps = run(late_booking, OFCOM, until("2026-12-31 00:00")).comps()
    assert [parse_instant(c["crossed_at"]) for c in comps] == [us("2026-11-09 09:00")]
    early_cancel = [appt_cancelled("A", "AP1", lt("2026-11-02 09:00")),
                    booked("A", "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1]))]
    assert run(early_cancel, OFCOM, until("2026-12-31 00:00")).comps() == []


def test_a_second_booking_of_the_same_id_changes_nothing_and_a_duplicate_is_ignored():
    rebook = booked("A", "AP1", lt("2026-11-02 10:00"), lt("2026-11-20 08:00"), lt("2026-11-20 12:00"))
    comps = _appt(rebook, rebook)
    assert [parse_instant(c["crossed_at"]) for c in comps] == [us(SLOT[1])]


def test_missed_appointments_are_owed_once_each_with_distinct_ids():
    lines = [booked("A", "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1])),
             booked("A", "AP2", lt("2026-11-01 10:00"), lt("2026-11-12 08:00"), lt("2026-11-12 12:00")),
             booked("B", "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1])),
             appt_cancelled("A", "AP1", lt("2026-11-10 09:00")), appt_cancelled("A", "AP1", lt("2026-11-10 10:00"))]
    comps = run(lines, OFCOM, until("2026-12-31 00:00")).comps()
    assert sorted((c["customer_id"], c["appointment_id"]) for c in comps) == [("A", "AP1"), ("A", "AP2"),
                                                                             ("B", "AP1")]
    assert len({c["compensation_id"] for c in comps}) == 3


def test_an_appointment_never_booked_is_never_missed():
    lines = [appt_cancelled("A", "AP9", lt("2026-11-10 09:00")), tick(lt("2026-12-01 00:00"))]
    assert run(lines, OFCOM).comps() == []


def test_notice_is_a_setting():
    c = ofcom_with(missed_appointment={"notice": "48h"})
    lines = [booked("A", "AP1", lt("2026-11-01 10:00"), lt(SLOT[0]), lt(SLOT[1])),
             appt_cancelled("A", "AP1", lt("2026-11-09 07:00"))]
    assert len(run(lines, c, until("2026-12-31 00:00")).comps()) == 1
    assert run(lines, OFCOM, until("2026-12-31 00:00")).comps() == []


# =================================================================================================== input topics


@pytest.mark.parametrize(("value", "field"), [
    ({"type": "booked"}, "slot_start"),
    ({"type": "booked", "slot_start": "2026-11-10T08:00:00Z"}, "slot_end"),
    ({"type": "booked", "slot_start": "2026-11-10T08:00:00Z", "slot_end": "2026-11-10T08:00:00Z"}, "slot_end"),
    ({"type": "booked", "slot_start": "2026-11-10T08:00:00Z", "slot_end": "2026-11-10T09:00:00+02:00"}, "slot_end"),
    ({"type": "booked", "slot_start": "tomorrow", "slot_end": "2026-11-10T09:00:00Z"}, "slot_start"),
    ({"type": "visited"}, "type"),
    ({"type": "attended", "appointment_id": None}, "appointment_id"),
])
def test_bad_appointments_are_dead_letters_naming_the_field(value: dict, field: str):
    v = {"event_id": "e1", "customer_id": "A", "appointment_id": "AP1", "occurred_at": "2026-11-01T10:00:00Z", **value}
    out = run([line("appointment", v)], OFCOM)
    assert [r.topic for r in out] == ["dead-letter"]
    assert field in out[0].value["error"]


@pytest.mark.parametrize("promised", ["2026-13-01", "2026-02-30", "1 June", 20260601, "2026-06-01T00:00:00Z", "",
                                      True])
def test_a_promised_start_that_is_not_a_date_is_a_dead_letter_naming_it(promised):
    out = run([order("A", lt("2026-05-20 10:00"), promised=promised)], OFCOM)
    assert [r.topic for r in out] == ["dead-letter"]
    assert "promised_start" in out[0].value["error"]


def test_a_promised_start_is_ignored_by_a_charter_without_the_rule():
    with_promise = [order("A", lt("2026-05-20 10:00"), promised="2026-06-01", eid="o1"),
                    confirmed("A", lt("2026-05-21 10:00"), eid="c1")]
    without = [order("A", lt("2026-05-20 10:00"), eid="o1"), confirmed("A", lt("2026-05-21 10:00"), eid="c1")]
    alice = run(with_promise, load_charter(), until("2026-06-30 00:00"))
    assert alice.normalized() == run(without, load_charter(), until("2026-06-30 00:00")).normalized()
    assert [c["rule"] for c in alice.comps()] == ["late_activation"]


# ==================================================================================================== the charter


def test_ofcom_enforces_no_alice_rule():
    lines = in_order([order("A", lt("2026-05-20 10:00")), confirmed("A", lt("2026-05-20 10:00")),
                      active("A", lt("2026-07-20 10:00")), claim("A", lt("2026-05-21 10:00"), 5000),
                      queued("K", lt("2026-05-21 10:00")), answered("K", lt("2026-05-21 10:30")),
                      down("L", lt("2026-05-21 10:00")), up("L", lt("2026-05-22 12:00"))])
    assert run(lines, OFCOM, until("2026-12-31 00:00")) == []


def test_a_charter_may_have_both_kinds_of_rule():
    both = parse_charter(SHIPPED_CHARTER_TEXT + "\n" + "\n".join(
        ln for ln in OFCOM_TEXT.splitlines()
        if ln.startswith(("timezone", "calendar", "delayed_repair", "missed_appointment"))), "<both>")
    lines = [down("L", lt("2026-11-02 10:00")), up("L", lt("2026-11-06 12:00"))]
    rules = [(c["rule"], c["currency"]) for c in run(lines, both).comps()]
    assert sorted(rules) == [("delayed_repair", "EUR")] * 2 + [("outage", "EUR")] * 2


def test_pending_per_day_deadlines_survive_a_restart_from_stored_rows():
    from tests.test_properties import replay_with_restarts

    lines = in_order([
        down("A", lt("2026-10-21 10:00")), up("A", lt("2026-10-27 08:00")),
        order("B", lt("2026-10-01 10:00"), promised="2026-10-24"), active("B", lt("2026-10-28 10:00")),
        booked("C", "AP1", lt("2026-10-20 10:00"), lt("2026-10-26 08:00"), lt("2026-10-26 12:00")),
        booked("C", "AP2", lt("2026-10-20 10:00"), lt("2026-10-27 08:00"), lt("2026-10-27 12:00")),
        appt_cancelled("C", "AP2", lt("2026-10-27 09:00")),
        tick(lt("2026-10-22 12:00")), tick(lt("2026-10-25 12:00")),
    ])
    expected = run(lines, OFCOM, until("2026-11-30 00:00")).normalized()
    assert len(expected) == 10  # 4 repair days (24-27 Oct), 4 provision days (25-28 Oct), 2 missed appointments
    for cut in range(len(lines) + 1):
        assert replay_with_restarts(lines, OFCOM, until("2026-11-30 00:00"), {cut}) == expected, cut


def test_next_midnight_steps_one_local_day_and_leaves_the_current_day_alone():
    days = LocalDays(LONDON)
    sat = days.midnight(date(2026, 10, 24).toordinal())
    now = parse_instant("2026-11-02T10:00:00Z")
    assert days.day_of(now) == date(2026, 11, 2).toordinal()
    assert days.next_midnight(sat) == parse_instant("2026-10-24T23:00:00Z")
    assert days.next_midnight(days.next_midnight(sat)) == parse_instant("2026-10-26T00:00:00Z")
    assert (days._lo, days._hi) == (days.midnight(date(2026, 11, 2).toordinal()),
                                    days.midnight(date(2026, 11, 3).toordinal()))
