"""Input topics (SPEC section 2). Strict: a wrong type, a missing field or an unknown enum value is an error
naming the field; unknown extra fields are ignored."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


_START_MATCH = _RFC3339_START.match


def _text_timestamp(v: object) -> object:
    # Lax datetime parsing would take 1178000000 (or "1178000000") as a Unix time; the spec says RFC 3339 text
    # with an offset. (Runs for every timestamp of every event: the common case first, with bound names.)
    if v.__class__ is str and _START_MATCH(v):
        return v
    if not isinstance(v, str) or not _RFC3339_START.match(v):
        raise ValueError("must be an RFC 3339 string with an offset")
    return v


Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_timestamp), Field(strict=False)]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _text_date(v: object) -> object:
    # a calendar date only: lax parsing would also take a Unix time or a datetime
    if not isinstance(v, str) or not _DATE.fullmatch(v):
        raise ValueError("must be a calendar date YYYY-MM-DD")
    try:
        return date.fromisoformat(v)
    except ValueError as e:
        raise ValueError(f"must be a calendar date YYYY-MM-DD ({e})") from None


CalendarDate = Annotated[date, BeforeValidator(_text_date)]


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    event_id: str
    occurred_at: Timestamp


class _CustomerEvent(_Event):
    customer_id: str


class OrderPlaced(_CustomerEvent):
    type: Literal["order_placed"]
    zone: Literal["unbundled", "non_unbundled"]
    monthly_fee_cents: int = Field(gt=0)
    tv: bool = True
    promised_start: CalendarDate | None = Field(
        None, description="the day the provider promised the service would work, in the charter's time zone")


class LineConfirmed(_CustomerEvent):
    type: Literal["line_confirmed"]


class ServiceActive(_CustomerEvent):
    type: Literal["service_active"]


class OrderCancelled(_CustomerEvent):
    type: Literal["order_cancelled"]


LineActivation = Annotated[
    OrderPlaced | LineConfirmed | ServiceActive | OrderCancelled, Field(discriminator="type")
]


class BoxShipment(_CustomerEvent):
    item: Literal["modem", "tv_decoder"]
    status: Literal["shipped", "delivered", "returned"]


class ServiceStatus(_CustomerEvent):
    service: Literal["internet", "telephony", "tv"]
    status: Literal["down", "up"]
    element_id: str | None = Field(None, description="the network element serving the customer (a DSLAM, for "
                                   "instance); read on the down that opens an outage (SPEC section 10)")


class CallQueue(_Event):
    call_id: str
    queue: str
    customer_id: str | None = None
    type: Literal["queued", "answered", "abandoned"]


class SwitchClaim(_CustomerEvent):
    previous_operator: str
    termination_fee_cents: int = Field(ge=0)
    proof_id: str | None  # required, null when no proof was sent


class _AppointmentEvent(_CustomerEvent):
    appointment_id: str


class AppointmentBooked(_AppointmentEvent):
    type: Literal["booked"]
    slot_start: Timestamp
    slot_end: Timestamp

    @field_validator("slot_end")
    @classmethod
    def _after_start(cls, v: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("slot_start")
        if start is not None and v <= start:
            raise ValueError("slot_end must be after slot_start")
        return v


class AppointmentAttended(_AppointmentEvent):
    type: Literal["attended"]


class AppointmentCancelled(_AppointmentEvent):
    """The provider cancelled; ``occurred_at`` is when the customer was told."""

    type: Literal["cancelled"]


Appointment = Annotated[AppointmentBooked | AppointmentAttended | AppointmentCancelled, Field(discriminator="type")]

InputEvent = (OrderPlaced | LineConfirmed | ServiceActive | OrderCancelled | BoxShipment | ServiceStatus | CallQueue
              | SwitchClaim | AppointmentBooked | AppointmentAttended | AppointmentCancelled)

# topic -> the pydantic type of its values (SPEC section 2)
INPUT_TOPICS: dict[str, object] = {
    "line-activation": LineActivation,
    "box-shipment": BoxShipment,
    "service-status": ServiceStatus,
    "call-queue": CallQueue,
    "switch-claim": SwitchClaim,
    "appointment": Appointment,
}
KEY_FIELD = {t: ("call_id" if t == "call-queue" else "customer_id") for t in INPUT_TOPICS}
_ADAPTERS = {t: TypeAdapter(tp) for t, tp in INPUT_TOPICS.items()}
# pydantic-core's validators directly: the TypeAdapter wrapper costs ~4 % of a replay
_VALIDATE = {t: a.validator.validate_python for t, a in _ADAPTERS.items()}


def parse_input(topic: str, value: object) -> InputEvent:
    """Validate one decoded message value of ``topic``; raises ``pydantic.ValidationError`` or ``KeyError``."""
    return _VALIDATE[topic](value)


def json_schema(topic: str) -> dict:
    return _ADAPTERS[topic].json_schema()


__all__ = ["datetime", "json_schema", "parse_input"]
