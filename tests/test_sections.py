"""SPEC section 7: every rule section of a charter is optional, and a charter enforces only the rules it names."""

from __future__ import annotations

import itertools

import pytest
import yaml

from streams.charter import parse_charter
from tests.charter_helpers import (
    SHIPPED_CHARTER_TEXT,
    T0,
    D,
    H,
    Out,
    S,
    active,
    answered,
    cancelled,
    claim,
    confirmed,
    down,
    modem,
    order,
    queued,
    run,
    ts,
    up,
)

RULE_SECTIONS = ("late_activation", "switch_fee_refund", "installation", "outage", "hotline")


def charter_of(*sections: str):
    data = yaml.safe_load(SHIPPED_CHARTER_TEXT)
    for name in RULE_SECTIONS:
        if name not in sections:
            del data[name]
    return parse_charter(yaml.safe_dump(data), "<test>")


def section_of(topic: str, value: dict) -> str:
    """The rule section whose rule emitted this record."""
    if topic == "compensation":
        return value["rule"]  # each rule is named like its section
    return {"sla-alert": "late_activation", "claim-decision": "switch_fee_refund", "billing": "installation",
            "hotline-breach": "hotline", "hotline-kpi": "hotline"}[topic]


# a scenario in which every rule of the Alice charter speaks
SCENARIO = [
    order("A", ts(0), fee=3490), confirmed("A", ts(0)), modem("A", ts(D)), active("A", ts(20 * D)),
    down("A", ts(60 * D)), up("A", ts(60 * D + 80 * H)),
    claim("A", ts(2 * D), 12000), claim("A", ts(3 * D), 5000),
    down("L", ts(D)), up("L", ts(D + 30 * H)),
    order("C", ts(0)), cancelled("C", ts(D)), down("C", ts(2 * D)), up("C", ts(2 * D + 30 * H)),
    queued("K1", ts(5 * D)), answered("K1", ts(5 * D + 200 * S)), queued("K2", ts(5 * D + S)),
    answered("K2", ts(5 * D + 60 * S)),
]
SCENARIO.sort(key=lambda text: yaml.safe_load(text)["value"]["occurred_at"])
FAR = T0 + 400 * D


def _filtered(out: Out, sections: tuple[str, ...]) -> list[str]:
    return sorted(c for r, c in zip(out, out.normalized(), strict=True) if section_of(r.topic, r.value) in sections)


def test_the_scenario_exercises_every_rule():
    out = run(SCENARIO, charter_of(*RULE_SECTIONS), FAR)
    assert {section_of(r.topic, r.value) for r in out} == set(RULE_SECTIONS)


@pytest.mark.parametrize("sections", [
    s for n in range(len(RULE_SECTIONS) + 1) for s in itertools.combinations(RULE_SECTIONS, n)
    # rules 1 and 4 share the first free month: with only one of them it can go to the other (tested below)
    if ("late_activation" in s) == ("outage" in s)
], ids=lambda s: "+".join(s) or "none")
def test_a_charter_enforces_the_rules_it_names_and_only_those(sections: tuple[str, ...]):
    full = run(SCENARIO, charter_of(*RULE_SECTIONS), FAR)
    part = run(SCENARIO, charter_of(*sections), FAR)
    assert sorted(part.normalized()) == _filtered(full, sections)


def test_without_rule_1_the_first_month_goes_to_rule_4():
    # late activation gives the first month under both rules; with rule 4 alone, the outage in the first month
    # cancels it instead of earning 3 days
    lines = [order("A", ts(0), fee=3490), confirmed("A", ts(0)), modem("A", ts(D)), active("A", ts(20 * D)),
             down("A", ts(25 * D)), up("A", ts(25 * D + 30 * H))]
    both = run(lines, charter_of("late_activation", "outage"), FAR).comps()
    assert [(c["rule"], c.get("credit_days")) for c in both] == [("late_activation", None), ("outage", 3)]
    alone = run(lines, charter_of("outage"), FAR).comps()
    assert [(c["rule"], c["credit_days"], c["amount_cents"]) for c in alone] == [("outage", 30, 3490)]


def test_without_rule_3_the_first_month_still_counts_from_service_active():
    lines = [active("A", ts(0)), down("A", ts(29 * D)), up("A", ts(29 * D + 30 * H))]
    out = run(lines, charter_of("outage"), FAR)
    assert out.of("billing") == []
    assert [c["credit_days"] for c in out.comps()] == [30]


def test_a_charter_with_no_rule_section_is_valid_and_says_nothing():
    assert run(SCENARIO, charter_of(), FAR) == []
