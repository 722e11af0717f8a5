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

from schemas.inputs import KEY_FIELD
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
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = parse_line(line, lineno)
        if len(parsed) == 3:
            yield parsed  # dead letter
            continue
        topic, event = parsed
        at = to_us(event.occurred_at)
        for o in engine.advance(at):
            yield stamp(o)
        yield from elements.advance(at)
        for o in engine.apply(topic, event, at):
            yield stamp(o)
        if engine.element_changes:
            yield from elements.feed_all(engine.take_element_changes())
    for o in engine.finish(until):
        yield stamp(o)
    yield from elements.flush()


def format_record(out: Output) -> bytes:
    topic, key, value = out
    return orjson.dumps({"topic": topic, "key": key, "value": value})
