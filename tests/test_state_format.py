"""Stored state rows outlive the code that wrote them (issue 12: versioned rows).

``tests/fixtures/state-v1/`` was written by the code before rows carried a format version (version 1): a
generated scenario (``events.jsonl``) replayed up to ``applied_lines``, then every subscriber, call and window row
exactly as the live worker stores it (``orjson.dumps(record.encode())``) in ``state.json``. A worker upgraded over
such a changelog must go on as if nothing had happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.charter import load_charter
from streams.core import Engine
from streams.core.state import FORMAT_VERSION, Call, StateFormatError, Subscriber, Window
from streams.core.timeutil import to_us
from streams.replay import parse_line

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V1 = FIXTURES / "state-v1"


def _feed(engine: Engine, lines: list[bytes], first_lineno: int) -> list[Any]:
    out: list[Any] = []
    for i, text in enumerate(lines, first_lineno):
        parsed = parse_line(text, i)
        if len(parsed) == 3:
            out.append(parsed)
            continue
        topic, event = parsed
        at = to_us(event.occurred_at)
        out += engine.advance(at)
        out += engine.apply(topic, event, at)
    return out


@pytest.fixture(scope="module")
def v1() -> dict[str, Any]:
    state = orjson.loads((V1 / "state.json").read_bytes())
    state["lines"] = (V1 / "events.jsonl").read_bytes().splitlines()
    return state


def restore(state: dict[str, Any], engine: Engine) -> Engine:
    """Load stored rows the way the live adapter does: ``X.decode(orjson.loads(row))``."""
    engine.clock = state["clock"]
    engine.subscribers = {k: Subscriber.decode(orjson.loads(v)) for k, v in state["subscribers"].items()}
    engine.calls = {k: Call.decode(orjson.loads(v)) for k, v in state["calls"].items()}
    engine.windows = {(q, ws): Window.decode(orjson.loads(v)) for q, ws, v in state["windows"]}
    engine.rebuild_deadlines()
    return engine


def test_the_v1_fixture_holds_every_kind_of_row(v1):
    # the rows that matter for an upgrade: pending deadlines of each kind, open outages, calls, windows
    subs = [Subscriber.decode(orjson.loads(v)) for v in v1["subscribers"].values()]
    calls = [Call.decode(orjson.loads(v)) for v in v1["calls"].values()]
    wins = [Window.decode(orjson.loads(v)) for _, _, v in v1["windows"]]
    assert any(s.alert_due is not None for s in subs)
    assert any(s.late_due is not None for s in subs)
    assert any(s.out_due is not None and s.out_tier > 0 for s in subs)  # an open outage past its first tier
    assert any(s.refund_granted for s in subs)
    assert any(c.breach_due is not None for c in calls) and any(c.status != Call.QUEUED for c in calls)
    assert any(w.closed for w in wins) and any(not w.closed for w in wins)


def _rest_of_the_scenario(v1: dict[str, Any], charter: Any) -> list[Any]:
    """What an engine that never stopped outputs after the fixture's cut."""
    lines, cut = v1["lines"], v1["applied_lines"]
    whole = Engine(charter)
    _feed(whole, lines[:cut], 1)
    return _feed(whole, lines[cut:], cut + 1) + whole.finish()


def test_state_from_v1_rows_continues_the_scenario_exactly(v1):
    charter = load_charter()
    lines, cut = v1["lines"], v1["applied_lines"]
    expected = _rest_of_the_scenario(v1, charter)

    restored = restore(v1, Engine(charter))
    actual = _feed(restored, lines[cut:], cut + 1) + restored.finish()
    assert len(expected) > 50  # the rest of the scenario has plenty to say
    assert actual == expected


def _v1_rows(v1: dict[str, Any]) -> list[tuple[type, list[Any]]]:
    rows: list[tuple[type, list[Any]]] = [(Subscriber, orjson.loads(v)) for v in v1["subscribers"].values()]
    rows += [(Call, orjson.loads(v)) for v in v1["calls"].values()]
    rows += [(Window, orjson.loads(v)) for _, _, v in v1["windows"]]
    return rows


def test_rows_carry_the_format_version_and_round_trip(v1):
    for cls, old in _v1_rows(v1):
        obj = cls.decode(old)
        row = obj.encode()
        assert row["v"] == FORMAT_VERSION
        again = cls.decode(orjson.loads(orjson.dumps(row)))
        assert [getattr(again, s) for s in cls.__slots__] == [getattr(obj, s) for s in cls.__slots__]
        # a version 1 row holds the same values, in the order of V1_SLOTS
        assert [getattr(obj, s) for s in cls.V1_SLOTS] == old


def test_state_rewritten_in_the_current_format_continues_the_scenario_too(v1):
    current = {**v1,
               "subscribers": {k: orjson.dumps(Subscriber.decode(orjson.loads(v)).encode())
                               for k, v in v1["subscribers"].items()},
               "calls": {k: orjson.dumps(Call.decode(orjson.loads(v)).encode()) for k, v in v1["calls"].items()},
               "windows": [[q, ws, orjson.dumps(Window.decode(orjson.loads(v)).encode())]
                           for q, ws, v in v1["windows"]]}
    lines, cut = v1["lines"], v1["applied_lines"]
    a = restore(v1, Engine(load_charter()))
    b = restore(current, Engine(load_charter()))
    assert _feed(a, lines[cut:], cut + 1) + a.finish() == _feed(b, lines[cut:], cut + 1) + b.finish()


def test_fields_at_their_default_are_left_out():
    assert Subscriber().encode() == {"v": FORMAT_VERSION}
    assert Window(5).encode() == {"v": FORMAT_VERSION, "close_due": 5}
    assert Call("q", 1, "e1").encode() == {"v": FORMAT_VERSION, "queue": "q", "queued_at": 1, "queued_id": "e1"}


@pytest.mark.parametrize("obj", [Subscriber(), Call("q", 1, "e1"), Window(5)], ids=lambda o: type(o).__name__)
def test_defaults_are_what_a_new_record_holds(obj):
    # DEFAULTS is what decode fills in for a field absent from a row: it must be what __init__ sets
    for name, default in type(obj).DEFAULTS.items():
        assert getattr(obj, name) == default, name
    assert set(type(obj).V1_SLOTS) <= set(type(obj).__slots__)  # a field of version 1 is never removed


@pytest.mark.parametrize(("row", "says"), [
    ({"v": FORMAT_VERSION + 1}, "format 3"),
    ({"seen": "\x1f"}, "format None"),
    ({"v": FORMAT_VERSION, "no_such_field": 1}, r"unknown fields \['no_such_field'\]"),
    ([1, 2, 3], "has 3 fields"),
    ("text", "is a str"),
])
def test_unreadable_rows_are_refused_with_a_reason(row, says):
    with pytest.raises(StateFormatError, match=says):
        Subscriber.decode(row)


def test_a_row_without_a_required_field_is_refused():
    with pytest.raises(StateFormatError, match=r"lacks the fields \['close_due'\]"):
        Window.decode({"v": FORMAT_VERSION, "offered": 3})


def test_rows_written_before_dedup_retention_continue_their_scenario_exactly(v1):
    # tests/fixtures/state-v2/: the same scenario and cut, rows written by the code before event ids carried their
    # occurred_at (a plain ``seen`` record): they move into ``ids`` on the subscriber's next event
    v2 = {**orjson.loads((FIXTURES / "state-v2" / "state.json").read_bytes()), "lines": v1["lines"]}
    assert all('"seen"' in row and '"ids"' not in row for row in v2["subscribers"].values())
    charter = load_charter()
    lines, cut = v1["lines"], v1["applied_lines"]
    expected = _rest_of_the_scenario(v1, charter)
    restored = restore(v2, Engine(charter))
    assert _feed(restored, lines[cut:], cut + 1) + restored.finish() == expected
    # and a copy of an event applied before the upgrade is still recognised after it
    again = restore(v2, Engine(charter))
    assert _feed(again, lines[:cut], 1) == []  # every one of them a copy: nothing happens
    assert all(s.ids == " " for s in again.subscribers.values())  # a copy changes nothing, not even the record
    _feed(again, lines[cut:], cut + 1)
    moved = [s for s in again.subscribers.values() if s.ids != " "]
    assert moved and all(s.seen == "\x1f" for s in moved)  # a new event moved the ids, with their instants
