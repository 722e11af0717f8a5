"""Builders for replay lines and helpers to run them through ``streams.replay.replay`` (the `charter replay` path).

Instants in tests are written as microsecond offsets from ``T0`` (2007-05-01T00:00:00Z, a multiple of 15 minutes
since the epoch) with the units below, e.g. ``ts(14 * D)`` or ``ts(24 * H + S, tz="+02:00")``.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import yaml

from schemas.outputs import OUTPUT_MODELS
from streams.charter import Charter, load_charter, parse_charter
from streams.core.timeutil import EPOCH, parse_instant, to_us
from streams.replay import format_record, replay

US = 1
MS = 1_000
S = 1_000_000
M = 60 * S
H = 60 * M
D = 24 * H

T0_DT = datetime(2007, 5, 1, tzinfo=UTC)
T0 = to_us(T0_DT)

TESTS_DIR = Path(__file__).resolve().parent
SCALED_CHARTER_PATH = TESTS_DIR / "charters" / "alice-2007-scaled.yaml"
SHIPPED_CHARTER_TEXT = (TESTS_DIR.parent / "streams" / "charters" / "alice-2007.yaml").read_text(encoding="utf-8")

ALICE = load_charter()
OFCOM = load_charter("ofcom-2026")


def scaled_charter() -> Charter:
    return load_charter(SCALED_CHARTER_PATH)


def charter_with(**overrides: Any) -> Charter:
    """The shipped charter with some settings replaced (nested dicts are merged one level deep)."""
    data = yaml.safe_load(SHIPPED_CHARTER_TEXT)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return parse_charter(yaml.safe_dump(data), "<test>")


# ---------------------------------------------------------------------------------------------------------- time


def _tz(tz: str) -> timezone:
    if tz in ("Z", "z"):
        return UTC
    sign = -1 if tz[0] == "-" else 1
    hh, mm = tz[1:].split(":")
    return timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))


def ts(off: int = 0, tz: str = "+00:00") -> str:
    """RFC 3339 text of the instant T0 + ``off`` microseconds, written with the UTC offset ``tz``."""
    dt = (EPOCH + timedelta(microseconds=T0 + off)).astimezone(_tz(tz))
    text = dt.isoformat()
    return text.replace("+00:00", "Z") if tz == "Z" else text


def inst(text: str) -> int:
    """RFC 3339 text -> microseconds offset from T0 (so assertions read like the builders)."""
    return parse_instant(text) - T0


def until(off: int) -> int:
    """A ``--until`` instant for ``replay``, T0 + ``off``."""
    return T0 + off


# ----------------------------------------------------------------------------------------------------- builders

_ids = itertools.count(1)


def _eid(eid: str | None) -> str:
    return f"e{next(_ids)}" if eid is None else eid


def line(topic: str, value: dict[str, Any], key: str | None = None) -> str:
    rec: dict[str, Any] = {"topic": topic, "value": value}
    if key is not None:
        rec["key"] = key
    return json.dumps(rec)


def _la(typ: str, cust: str, at: str, eid: str | None, **fields: Any) -> str:
    return line("line-activation", {"event_id": _eid(eid), "customer_id": cust, "type": typ, "occurred_at": at,
                                    **fields})


def order(cust: str, at: str, *, zone: str = "unbundled", fee: int = 2995, tv: bool | None = True,
          eid: str | None = None, promised: str | None = None) -> str:
    fields: dict[str, Any] = {"zone": zone, "monthly_fee_cents": fee}
    if tv is not None:  # None: the field is left out (default true)
        fields["tv"] = tv
    if promised is not None:
        fields["promised_start"] = promised
    return _la("order_placed", cust, at, eid, **fields)


def confirmed(cust: str, at: str, eid: str | None = None) -> str:
    return _la("line_confirmed", cust, at, eid)


def active(cust: str, at: str, eid: str | None = None) -> str:
    return _la("service_active", cust, at, eid)


def cancelled(cust: str, at: str, eid: str | None = None) -> str:
    return _la("order_cancelled", cust, at, eid)


def box(cust: str, at: str, item: str = "modem", status: str = "delivered", eid: str | None = None) -> str:
    return line("box-shipment", {"event_id": _eid(eid), "customer_id": cust, "item": item, "status": status,
                                 "occurred_at": at})


def modem(cust: str, at: str, eid: str | None = None) -> str:
    return box(cust, at, "modem", "delivered", eid)


def decoder(cust: str, at: str, eid: str | None = None) -> str:
    return box(cust, at, "tv_decoder", "delivered", eid)


def status(cust: str, at: str, service: str, st: str, eid: str | None = None, element: str | None = None) -> str:
    value = {"event_id": _eid(eid), "customer_id": cust, "service": service, "status": st, "occurred_at": at}
    if element is not None:
        value["element_id"] = element
    return line("service-status", value)


def down(cust: str, at: str, service: str = "internet", eid: str | None = None, element: str | None = None) -> str:
    return status(cust, at, service, "down", eid, element)


def up(cust: str, at: str, service: str = "internet", eid: str | None = None, element: str | None = None) -> str:
    return status(cust, at, service, "up", eid, element)


def call(call_id: str, at: str, typ: str, queue: str = "technical", customer: str | None = None,
         eid: str | None = None) -> str:
    value: dict[str, Any] = {"event_id": _eid(eid), "call_id": call_id, "queue": queue, "type": typ,
                             "occurred_at": at}
    if customer is not None:
        value["customer_id"] = customer
    return line("call-queue", value)


def queued(call_id: str, at: str, queue: str = "technical", eid: str | None = None) -> str:
    return call(call_id, at, "queued", queue, eid=eid)


def answered(call_id: str, at: str, queue: str = "technical", eid: str | None = None) -> str:
    return call(call_id, at, "answered", queue, eid=eid)


def abandoned(call_id: str, at: str, queue: str = "technical", eid: str | None = None) -> str:
    return call(call_id, at, "abandoned", queue, eid=eid)


def claim(cust: str, at: str, fee: int, proof: str | None = "PROOF-1", operator: str = "France Telecom",
          eid: str | None = None) -> str:
    return line("switch-claim", {"event_id": _eid(eid), "customer_id": cust, "previous_operator": operator,
                                 "termination_fee_cents": fee, "proof_id": proof, "occurred_at": at})


def appointment(cust: str, appt: str, at: str, typ: str, eid: str | None = None, **fields: Any) -> str:
    return line("appointment", {"event_id": _eid(eid), "customer_id": cust, "appointment_id": appt, "type": typ,
                                "occurred_at": at, **fields})


def booked(cust: str, appt: str, at: str, start: str, end: str, eid: str | None = None) -> str:
    return appointment(cust, appt, at, "booked", eid, slot_start=start, slot_end=end)


def attended(cust: str, appt: str, at: str, eid: str | None = None) -> str:
    return appointment(cust, appt, at, "attended", eid)


def appt_cancelled(cust: str, appt: str, at: str, eid: str | None = None) -> str:
    return appointment(cust, appt, at, "cancelled", eid)


def tick(at: str, cust: str = "~clock") -> str:
    """An event that only moves the replay clock (a shipment for a bystander customer)."""
    return box(cust, at, "modem", "shipped")


def event_id_of(text: str) -> str:
    return json.loads(text)["value"]["event_id"]


# ------------------------------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class Rec:
    topic: str
    key: str | None
    value: dict[str, Any]


class Out(list):
    """The output records of one replay, with filters."""

    def of(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        return [r.value for r in self if r.topic == topic and all(r.value.get(k) == v for k, v in match.items())]

    def comps(self, rule: str | None = None, customer: str | None = None) -> list[dict[str, Any]]:
        m: dict[str, Any] = {}
        if rule is not None:
            m["rule"] = rule
        if customer is not None:
            m["customer_id"] = customer
        return self.of("compensation", **m)

    def topics(self) -> Counter:
        return Counter(r.topic for r in self)

    def normalized(self) -> list[str]:
        """Records as canonical JSON without ``emitted_at`` (the one field runs may not share)."""
        return [canon(r) for r in self]


def canon(r: Rec) -> str:
    value = {k: v for k, v in r.value.items() if k != "emitted_at"}
    return json.dumps({"topic": r.topic, "key": r.key, "value": value}, sort_keys=True)


def run(lines: list[str | bytes], charter: Charter = ALICE, until_at: int | None = None) -> Out:
    """Replay ``lines`` (``until_at`` an absolute instant in µs); every record is checked against its model and
    the wire format of ``charter replay``."""
    out = Out()
    for rec in replay(lines, charter, until_at):
        wire = orjson.loads(format_record(rec))
        assert set(wire) == {"topic", "key", "value"}
        topic, key, value = wire["topic"], wire["key"], wire["value"]
        OUTPUT_MODELS[topic].model_validate(value)
        out.append(Rec(topic, key, value))
    return out


@dataclass(frozen=True)
class Knobs:
    """A charter's settings in µs, so that one scenario can be written for the real and the scaled charter."""

    charter: Charter

    @property
    def deadline(self) -> int:
        return self.charter.late_activation.deadline

    @property
    def alert(self) -> int:
        return self.charter.late_activation.alert_after

    @property
    def tiers(self) -> list[int]:
        return [t.after for t in self.charter.outage.tiers]

    @property
    def risk(self) -> int:
        """outage.alert_after (SPEC section 10)."""
        return self.charter.outage.alert_after

    @property
    def first_month(self) -> int:
        return self.charter.outage.first_month

    @property
    def answer(self) -> int:
        return self.charter.hotline.answer_within

    @property
    def window(self) -> int:
        return self.charter.hotline.window

    @property
    def name(self) -> str:
        return self.charter.name

    def run(self, lines: list[str | bytes], until_off: int | None = None) -> Out:
        """Replay under this charter; ``until_off`` is the ``--until`` instant as an offset from T0."""
        return run(lines, self.charter, None if until_off is None else T0 + until_off)
