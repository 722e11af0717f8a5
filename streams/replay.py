"""The replay adapter (SPEC section 6): an event file in, output records out, over the same core as the worker.

Lines are applied in file order under the event-time clock: before each event the clock moves up to its
``occurred_at`` and due deadlines fire; at the end every deadline D with D + grace <= ``until`` fires.
The element changes of the customers' engine go, in the same order, to one ``ElementEngine`` (SPEC section 10).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.inputs import _VALIDATE, KEY_FIELD
from streams.charter import Charter
from streams.core import ElementEngine, Engine, Output, to_us
from streams.records import dead_letter, decode_event, describe_error, stamp


def parse_line(line: bytes | str, lineno: int) -> tuple[str, Any] | Output:
    """One replay line -> (topic, event), or a dead-letter record whose offset is the line number."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return dead_letter(None, None, lineno, None, line.rstrip(b"\r\n" if isinstance(line, bytes) else "\r\n"),
                           f"not valid JSON: {e}")
    if not isinstance(rec, dict) or "value" not in rec or not isinstance(rec.get("topic"), str):
        return dead_letter(None, None, lineno, None, line.strip(),
                           'a replay line is {"topic": "<input topic>", "value": {...}}')
    topic, value = rec["topic"], rec["value"]
    try:
        return topic, decode_event(topic, value)
    except (ValidationError, ValueError) as e:
        key = rec.get("key")
        if key is None and isinstance(value, dict):
            key = value.get(KEY_FIELD.get(topic, "customer_id"))
        return dead_letter(topic, None, lineno, key, orjson.dumps(value), describe_error(e))


def replay(lines: Iterable[bytes | str], charter: Charter, until: int | None = None) -> Iterator[Output]:
    """Apply replay-file lines in order; yield every output record, dead letters included."""
    engine, elements = Engine(charter, report_elements=True), ElementEngine(charter)
    advance, apply = engine.advance, engine.apply
    loads, validators = orjson.loads, _VALIDATE
    # occurred_at -> microseconds: to_us is a real part of an event's cost, so it runs once per day of text and
    # offset: tail -> (the date text, the instant of 00:00:00 of that date and tail); see _day_us
    days: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(lines, start=1):
        # the common case inline: a valid line of a known topic (anything else takes parse_line, the reference)
        try:
            rec = loads(line)
            value = rec["value"]
            if value.__class__ is not dict:
                raise ValueError
            topic = rec["topic"]
            event = validators[topic](value)
        except Exception:
            if not line.strip():
                continue
            parsed = parse_line(line, lineno)
            if len(parsed) == 3:
                yield parsed  # dead letter
                continue
            topic, event = parsed
            value = None
        dt = event.occurred_at
        if value is None:
            at = to_us(dt)
        else:
            text = value["occurred_at"]
            tail = text[19:]
            hit = days.get(tail)
            if hit is not None and hit[0] == text[:10] and text[16:17] == ":":
                at = hit[1] + ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1_000_000
            else:
                at = _day_us(days, text, tail, dt)
        for o in advance(at):
            yield stamp(o)
        if elements.pending:
            yield from elements.advance(at)
        for o in apply(topic, event, at):
            yield stamp(o) if o[0] == "compensation" else o
        if engine.element_changes:
            yield from elements.feed_all(engine.take_element_changes())
    for o in engine.finish(until):
        yield stamp(o)
    yield from elements.flush()


def _day_us(days: dict[str, tuple[str, int]], text: str, tail: str, dt: Any) -> int:
    """``to_us(dt)``, and remember the instant of 00:00:00 of its date and ``tail`` for the texts that differ from
    ``text`` only in the separator and the time up to the seconds (``text[10:19]``). A validated timestamp matches
    ``YYYY-MM-DD?HH:MM`` (``_RFC3339_START``), so when ``text[16]`` is ``:`` the two characters after it are the
    seconds and ``text[19:]`` (fraction and offset) decides the rest: two such texts with the same date and tail
    differ by their hours, minutes and seconds alone, which ``dt`` holds as written."""
    at = to_us(dt)
    if text[16:17] == ":":
        if len(days) >= 64:  # tails are offsets (and fractions, when events carry them): keep it small
            days.clear()
        days[tail] = (text[:10], at - ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1_000_000)
    return at


def format_record(out: Output) -> bytes:
    topic, key, value = out
    return orjson.dumps({"topic": topic, "key": key, "value": value})
