"""What a customer's engine tells the element counting about one outage (SPEC section 10).

Kept apart from both engines: the per-customer ``Engine`` makes these, ``ElementEngine`` consumes them, and live
forwards them over a Kafka topic between the two, so the record is plain data with a dict form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ElementChange:
    """An outage of ``customer_id`` on network element ``element_id`` opened (``opened``) or closed, at ``at``
    (the occurred_at of the down that opened it or the up that closed it, in microseconds).

    ``stake_cents`` and ``due``: what the outage would earn at its first outage threshold and when that falls due,
    as known when it opened (0 and None when it would earn nothing, and always on a close)."""

    element_id: str
    customer_id: str
    opened: bool
    at: int
    stake_cents: int = 0
    due: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "customer_id": self.customer_id, "opened": self.opened,
                "at": self.at, "stake_cents": self.stake_cents, "due": self.due}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ElementChange:
        return cls(str(d["element_id"]), str(d["customer_id"]), bool(d["opened"]), int(d["at"]),
                   int(d.get("stake_cents", 0)), None if d.get("due") is None else int(d["due"]))
