"""The replay adapter (SPEC section 6): an event file in, output records out, over the same core as the worker.

Lines are applied in file order under the event-time clock: before each event the clock moves up to its
``occurred_at`` and due deadlines fire; at the end every deadline D with D + grace <= ``until`` fires.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.inputs import INPUT_TOPICS, KEY_FIELD, parse_input
from streams.charter import Charter
from streams.core import Engine, Output, to_us


def describe_error(err: Exception) -> str:
    """A short, field-naming reason for ``dead-letter``."""
    if isinstance(err, ValidationError):
        parts = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        return "; ".join(parts)
    return f"{type(err).__name__}: {err}"


def raw_text(raw: bytes | str | None) -> tuple[str | None, str]:
    """The raw value as UTF-8 text, or base64 when it is not UTF-8."""
    if raw is None or isinstance(raw, str):
        return raw, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(topic: str | None, partition: int | None, offset: int | None, key: Any, raw: bytes | str | None,
                error: str) -> Output:
    text, encoding = raw_text(raw)
    k = key.decode("utf-8", "replace") if isinstance(key, bytes) else (None if key is None else str(key))
    return ("dead-letter", k, {"source_topic": topic, "partition": partition, "offset": offset, "value": text,
                               "value_encoding": encoding, "error": error})


def decode_event(topic: str, value: Any) -> Any:
    """Validate a decoded value of an input topic; raises on anything SPEC section 1 sends to dead-letter."""
    if topic not in INPUT_TOPICS:
        raise ValueError(f"unknown input topic {topic!r}")
    if not isinstance(value, dict):
        raise ValueError(f"a message value must be a JSON object, not {type(value).__name__}")
    return parse_input(topic, value)


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


def stamp(out: Output) -> Output:
    """Add ``emitted_at`` (wall clock) to compensations: the one field that replay and live may not share."""
    if out[0] == "compensation":
        out[2]["emitted_at"] = datetime.now(UTC).isoformat()
    return out


def replay(lines: Iterable[bytes | str], charter: Charter, until: int | None = None) -> Iterator[Output]:
    """Apply replay-file lines in order; yield every output record, dead letters included."""
    engine = Engine(charter)
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
        for o in engine.apply(topic, event, at):
            yield stamp(o)
    for o in engine.finish(until):
        yield stamp(o)


def format_record(out: Output) -> bytes:
    topic, key, value = out
    return orjson.dumps({"topic": topic, "key": key, "value": value})
