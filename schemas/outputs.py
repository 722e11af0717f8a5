"""Output topics (SPEC section 3). The core builds plain dicts for speed; tests validate them against these."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Compensation(_Out):
    compensation_id: str = Field(description="pure function of (charter, rule, customer, breach)")
    charter: str
    rule: Literal["late_activation", "switch_fee_refund", "outage", "delayed_repair", "delayed_provision",
                  "missed_appointment"]
    customer_id: str
    amount_cents: int = Field(ge=0)
    currency: str
    crossed_at: AwareDatetime = Field(description="the instant the promise was broken")
    evidence: list[str] = Field(description="event_ids the compensation rests on")
    emitted_at: AwareDatetime = Field(description="wall clock when emitted")
    credit_days: int | None = Field(None, description="outage only: days credited by this record")
    services: list[Literal["internet", "telephony", "tv"]] | None = Field(None, description="outage only")
    day: int | None = Field(None, ge=1, description="per-day rules: 1 for the first day paid, then 2, ...")
    appointment_id: str | None = Field(None, description="missed_appointment only")


class BillingStart(_Out):
    type: Literal["billing_start"]
    customer_id: str
    starts_at: AwareDatetime
    installation_fee_cents: int = Field(ge=0)


class ClaimDecision(_Out):
    customer_id: str
    claim_event_id: str
    decision: Literal["granted", "rejected"]
    reason: Literal["already_refunded", "missing_proof"] | None


class HotlineBreach(_Out):
    call_id: str
    queue: str
    queued_at: AwareDatetime
    crossed_at: AwareDatetime


class HotlineKpi(_Out):
    queue: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    offered: int = Field(gt=0)
    answered: int = Field(ge=0)
    answered_within: int = Field(ge=0)
    abandoned: int = Field(ge=0)
    service_level: float = Field(ge=0, le=1)
    asa_seconds: float | None


class SlaAlert(_Out):
    alert: Literal["activation_at_risk", "outage_at_risk"] = Field(
        description="activation_at_risk: rule 1's alert_after; outage_at_risk: an outage open at start + "
        "outage.alert_after (section 10)")
    customer_id: str
    crossed_at: AwareDatetime


class Incident(BaseModel):
    """A network element with many of its customers out at once (SPEC section 10)."""

    model_config = ConfigDict(extra="allow")  # the contract lists these fields and allows more
    incident_id: str = Field(description="pure function of (charter, element, opening instant)")
    element_id: str
    status: Literal["open", "closed"]
    crossed_at: AwareDatetime = Field(
        description="open: occurred_at of the down that brought the count to min_customers; closed: of the up that "
        "brought it back to 0")
    customers: int = Field(ge=1, description="open: the count then; closed: the highest count while it was open")
    # Beyond the contract's fields, what a network operations centre needs to rank incidents (docs/contract.md).
    charter: str | None = Field(None, description="the charter whose min_customers was reached")
    opened_at: AwareDatetime | None = Field(None, description="the crossed_at of the incident's open record")
    at_stake_cents: int | None = Field(
        None, ge=0, description="open only: what the counted outages would earn at their first outage threshold, "
        "summed over those whose threshold is still ahead, as known when each opened (0: none)")
    next_due: AwareDatetime | None = Field(
        None, description="open only: the earliest of those thresholds still ahead (null: none)")


class DeadLetter(_Out):
    source_topic: str | None
    partition: int | None
    offset: int | None
    value: str | None = Field(description="the raw value: UTF-8 text, or base64 when not UTF-8")
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    error: str


OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "compensation": Compensation,
    "billing": BillingStart,
    "claim-decision": ClaimDecision,
    "hotline-breach": HotlineBreach,
    "hotline-kpi": HotlineKpi,
    "sla-alert": SlaAlert,
    "incident": Incident,
    "dead-letter": DeadLetter,
}
# topic -> the value field its records are keyed by (SPEC section 3); dead-letter keeps the original message's key
OUTPUT_KEY_FIELD: dict[str, str | None] = {
    "compensation": "customer_id",
    "billing": "customer_id",
    "claim-decision": "customer_id",
    "hotline-breach": "call_id",
    "hotline-kpi": "queue",
    "sla-alert": "customer_id",
    "incident": "element_id",
    "dead-letter": None,
}
