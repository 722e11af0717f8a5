"""Charter files: YAML data validated by pydantic (SPEC sections 7 and 9).

Durations are strings such as ``180s``, ``15m``, ``24h``, ``14d`` and are held as integer microseconds, the
unit of every instant in the core.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from streams.errors import UserFacingError

US = 1_000_000
_UNITS = {"ms": 1_000, "s": US, "m": 60 * US, "h": 3600 * US, "d": 86400 * US, "w": 7 * 86400 * US}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
DEFAULT_CHARTER = "alice-2007"


def parse_duration(value: object) -> int:
    """``'24h'`` -> microseconds. Bare numbers are refused: a unit-less duration is a classic charter typo."""
    if not isinstance(value, str):
        raise ValueError(f"a duration is a string such as '180s', '15m', '24h' or '14d', not {value!r}")
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use a number and one of ms, s, m, h, d, w)")
    us = round(float(m.group(1)) * _UNITS[m.group(2)])
    if us <= 0:
        raise ValueError(f"a duration must be positive: {value!r}")
    return us


Duration = Annotated[int, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LateActivation(_Strict):
    deadline: Duration
    alert_after: Duration


class SwitchFeeRefund(_Strict):
    cap_cents: int = Field(ge=0)


class Installation(_Strict):
    unbundled_fee_cents: int = Field(ge=0)
    other_fee_cents: int = Field(ge=0)


class Tier(_Strict):
    after: Duration
    credit_days: int = Field(gt=0)


class Outage(_Strict):
    tiers: list[Tier] = Field(min_length=1)
    first_month: Duration
    days_per_month: int = Field(gt=0)
    # SPEC section 10: an outage_at_risk sla-alert this long after an outage's start (None: no such alert)
    alert_after: Duration | None = None

    @model_validator(mode="after")
    def _increasing(self) -> Outage:
        for a, b in zip(self.tiers, self.tiers[1:], strict=False):
            if b.after <= a.after or b.credit_days <= a.credit_days:
                raise ValueError("outage.tiers must grow: each tier later and with more credit_days (cumulative)")
        return self


class IncidentSection(_Strict):
    """SPEC section 10: an element with this many customers out at once opens an incident."""

    min_customers: int = Field(ge=1)


class Hotline(_Strict):
    answer_within: Duration
    window: Duration


class DelayedRepair(_Strict):
    after_working_days: int = Field(ge=0)
    per_day_cents: int = Field(ge=0)


class DelayedProvision(_Strict):
    per_day_cents: int = Field(ge=0)


class MissedAppointment(_Strict):
    amount_cents: int = Field(ge=0)
    notice: Duration


def _check_timezone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Europe/London')") from None
    return value


def _holidays(value: str) -> Any:
    country, _, subdiv = value.upper().partition("-")
    try:
        return holidays.country_holidays(country, subdiv=subdiv or None)
    except NotImplementedError as e:
        raise ValueError(f"unknown calendar {value!r} (a country code, and a subdivision after a dash such as "
                         f"'GB-ENG'): {e}") from None


def _check_calendar(value: str | None) -> str | None:
    if value is not None:
        _holidays(value)
    return value


class Charter(_Strict):
    name: str = Field(min_length=1)
    currency: str = Field(min_length=3, max_length=3)
    grace_seconds: float = Field(ge=0)
    default_monthly_fee_cents: int = Field(gt=0)
    # How long (event time after its occurred_at) an event id is remembered to recognise a copy (SPEC 1): bounded,
    # so that a subscriber's state does not grow for as long as the worker runs.
    dedup_retention: Duration = 7 * _UNITS["d"]
    # Every rule section is optional: a charter enforces the rules it names, and only those (SPEC section 7).
    late_activation: LateActivation | None = None
    switch_fee_refund: SwitchFeeRefund | None = None
    installation: Installation | None = None
    outage: Outage | None = None
    hotline: Hotline | None = None
    incident: IncidentSection | None = None
    # Per-day accrual rules (SPEC section 9), counted in local days of `timezone`, working days of `calendar`.
    timezone: Annotated[str | None, AfterValidator(_check_timezone)] = None
    calendar: Annotated[str | None, AfterValidator(_check_calendar)] = None
    delayed_repair: DelayedRepair | None = None
    delayed_provision: DelayedProvision | None = None
    missed_appointment: MissedAppointment | None = None

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ignored_types=(cached_property,))

    @model_validator(mode="after")
    def _local_days_named(self) -> Charter:
        local = [r for r in ("delayed_repair", "delayed_provision") if getattr(self, r) is not None]
        if local and self.timezone is None:
            raise ValueError(f"timezone: required by {' and '.join(local)} (local days are counted in it)")
        if self.delayed_repair is not None and self.calendar is None:
            raise ValueError("calendar: required by delayed_repair (the working days it allows)")
        return self

    @cached_property
    def grace_us(self) -> int:
        return round(self.grace_seconds * US)

    @cached_property
    def tz(self) -> ZoneInfo | None:
        return None if self.timezone is None else ZoneInfo(self.timezone)

    @cached_property
    def holidays(self) -> Any:
        """The public holidays of ``calendar`` (a ``holidays`` mapping: ``date in charter.holidays``), or None."""
        return None if self.calendar is None else _holidays(self.calendar)


class CharterError(UserFacingError, ValueError):
    """A charter file that cannot be used; the message names the setting."""


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid charter {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def parse_charter(text: str, source: str = "<text>") -> Charter:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CharterError(f"invalid charter {source}: not YAML: {e}") from e
    if not isinstance(data, dict):
        raise CharterError(f"invalid charter {source}: expected a mapping of settings")
    # YAML reads "180" as an int and 0 as int for a float setting; strict mode would refuse an int grace.
    if isinstance(data.get("grace_seconds"), int) and not isinstance(data.get("grace_seconds"), bool):
        data["grace_seconds"] = float(data["grace_seconds"])
    try:
        return Charter.model_validate(data)
    except ValidationError as e:
        raise CharterError(_describe(e, source)) from None


def load_charter(ref: str | Path | None = None) -> Charter:
    """Load a shipped charter by name (default ``alice-2007``) or any charter file by path."""
    ref = DEFAULT_CHARTER if ref is None else ref
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise CharterError(f"charter file not found: {path}")
        return parse_charter(path.read_text(encoding="utf-8"), str(path))
    shipped = resources.files("streams") / "charters" / f"{ref}.yaml"
    if not shipped.is_file():
        raise CharterError(f"no shipped charter named {ref!r} and no such file")
    return parse_charter(shipped.read_text(encoding="utf-8"), f"{ref} (shipped)")
