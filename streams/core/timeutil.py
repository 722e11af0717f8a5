"""Instants are integer microseconds since the Unix epoch: exact, cheap to compare, compact to store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """An aware datetime as microseconds since the epoch (instants compared, not strings: SPEC 1)."""
    return (dt - EPOCH) // _ONE_US


def iso(us: int) -> str:
    """RFC 3339 in UTC, e.g. ``2007-05-11T00:00:00+00:00``."""
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def parse_instant(text: str) -> int:
    """An RFC 3339 text with an offset, as microseconds (used for ``--until``)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return to_us(dt)
