"""One home for what both adapters write and read around the core: validated input events, dead-letter records
and the wall-clock ``emitted_at`` of compensations."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.inputs import INPUT_TOPICS, parse_input
from streams.core import Output
from streams.topics import DEAD_LETTER_TOPIC

# What makes a message invalid (SPEC section 1): it goes to dead-letter, the worker goes on.
INVALID = (orjson.JSONDecodeError, ValidationError, ValueError, TypeError)


def decode_event(topic: str, value: Any) -> Any:
    """Validate a decoded value of an input topic; raises on anything SPEC section 1 sends to dead-letter."""
    if topic not in INPUT_TOPICS:
        raise ValueError(f"unknown input topic {topic!r}")
    if not isinstance(value, dict):
        raise ValueError(f"a message value must be a JSON object, not {type(value).__name__}")
    return parse_input(topic, value)


def decode_message(topic: str, raw: bytes | str | None) -> Any:
    """A raw message value of an input topic, parsed and validated; raises one of ``INVALID``."""
    return decode_event(topic, orjson.loads(raw))


def describe_error(err: Exception) -> str:
    """A short, field-naming reason for ``dead-letter``."""
    if isinstance(err, orjson.JSONDecodeError):
        return f"not valid JSON: {err}"
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
    """The ``dead-letter`` record of an invalid message: where it came from, its raw value and the reason."""
    text, encoding = raw_text(raw)
    k = key.decode("utf-8", "replace") if isinstance(key, bytes) else (None if key is None else str(key))
    return (DEAD_LETTER_TOPIC, k, {"source_topic": topic, "partition": partition, "offset": offset, "value": text,
                                   "value_encoding": encoding, "error": error})


def stamp(out: Output) -> Output:
    """Add ``emitted_at`` (wall clock) to compensations: the one field that replay and live may not share."""
    if out[0] == "compensation":
        out[2]["emitted_at"] = datetime.now(UTC).isoformat()
    return out


def encode_output(out: Output) -> tuple[bytes | None, bytes]:
    """An output record as a Kafka message's key and value, stamped."""
    _, key, value = stamp(out)
    return (None if key is None else key.encode()), orjson.dumps(value)
