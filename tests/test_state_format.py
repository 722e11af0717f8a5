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
from streams.core.state import Call, Subscriber, Window
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


def test_state_from_v1_rows_continues_the_scenario_exactly(v1):
    charter = load_charter()
    lines, cut = v1["lines"], v1["applied_lines"]

    whole = Engine(charter)
    _feed(whole, lines[:cut], 1)
    expected = _feed(whole, lines[cut:], cut + 1) + whole.finish()

    restored = restore(v1, Engine(charter))
    actual = _feed(restored, lines[cut:], cut + 1) + restored.finish()
    assert len(expected) > 50  # the rest of the scenario has plenty to say
    assert actual == expected
