"""Per-key state of the core, with a compact list encoding for changelogs.

Every piece of state, pending deadlines included, is plain data here: the live worker stores the encoded form in
changelogged Faust tables and rebuilds its deadline heap from it when a partition is assigned.
"""

from __future__ import annotations

from typing import Any

# Service bit masks: the set of services down is one small int.
SERVICE_BIT = {"internet": 1, "telephony": 2, "tv": 4}
SERVICES = tuple(SERVICE_BIT)

# Topic codes prefixed to event ids in the de-duplication record: an event_id is unique in its topic only.
TOPIC_CODE = {"line-activation": "L", "box-shipment": "B", "service-status": "S", "switch-claim": "W",
              "call-queue": "Q"}
SEP = "\x1f"
ESC = "\x1e"


class Seen:
    """Event ids already applied for one key, as one string ``SEP code id SEP code id SEP ...``.

    A Python set of ids costs ~60 bytes per id plus the set; one string costs ~1 byte per character, which keeps
    a million subscribers' de-duplication record well under the 1 KB per subscriber budget. ``token`` is
    delimited on both sides so one id can never match inside another.
    """

    __slots__ = ()
    EMPTY = SEP

    @staticmethod
    def token(topic: str, event_id: str) -> str:
        if SEP in event_id or event_id.startswith(ESC):
            event_id = ESC + event_id.encode("utf-8", "surrogatepass").hex()  # keeps the delimiter unambiguous
        return f"{SEP}{TOPIC_CODE[topic]}{event_id}{SEP}"


class _Record:
    """Slots-only state whose encoding is the list of its slot values, in slot order."""

    __slots__ = ()

    def encode(self) -> list[Any]:
        return [getattr(self, s) for s in self.__slots__]

    @classmethod
    def decode(cls, data: list[Any]) -> Any:
        obj = cls.__new__(cls)
        for name, value in zip(cls.__slots__, data, strict=True):
            setattr(obj, name, value)
        return obj


class Subscriber(_Record):
    """Everything the Alice rules need to know about one customer."""

    __slots__ = (
        "seen",
        # order (rule 1, 3, 4): fee, zone ("u"/"n"/None), tv flag, when/which order_placed
        "fee", "zone", "tv", "order_at", "order_id",
        # rule 1 milestones: earliest occurred_at of each, with the event that proved it
        "confirmed_at", "confirmed_id", "active_at", "active_id", "modem_at", "decoder_at", "cancelled_at",
        # rule 1 / 4 shared: the first month is given free at most once per customer
        "first_month_given",
        # rule 1 pending deadlines (None once fired or never armed)
        "alert_due", "late_due",
        # rule 2
        "refund_granted",
        # rule 3
        "billing_at",
        # rule 4: services down (bit mask), the open outage, the next tier and its deadline
        "down", "out_start", "out_start_id", "out_services", "out_tier", "out_due",
    )

    def __init__(self) -> None:
        self.seen = Seen.EMPTY
        self.fee = self.zone = self.tv = self.order_at = self.order_id = None
        self.confirmed_at = self.confirmed_id = self.active_at = self.active_id = None
        self.modem_at = self.decoder_at = self.cancelled_at = None
        self.first_month_given = False
        self.alert_due = self.late_due = None
        self.refund_granted = False
        self.billing_at = None
        self.down = 0
        self.out_start = self.out_start_id = None
        self.out_services = 0
        self.out_tier = 0
        self.out_due = None

    def deadlines(self) -> list[tuple[int, int]]:
        """(due, kind) of every armed deadline, to rebuild a heap from stored state."""
        from streams.core.engine import K_ALERT, K_LATE, K_OUTAGE

        out = []
        if self.alert_due is not None:
            out.append((self.alert_due, K_ALERT))
        if self.late_due is not None:
            out.append((self.late_due, K_LATE))
        if self.out_due is not None:
            out.append((self.out_due, K_OUTAGE))
        return out


class Call(_Record):
    """One hotline call (rule 5). Kept after it settles so a repeated ``queued`` cannot open it again."""

    __slots__ = ("breach_due", "queue", "queued_at", "queued_id", "seen", "settled_at", "status")

    QUEUED, ANSWERED, ABANDONED = 0, 1, 2

    def __init__(self, queue: str, queued_at: int, queued_id: str) -> None:
        self.seen = Seen.EMPTY
        self.queue = queue
        self.queued_at = queued_at
        self.queued_id = queued_id
        self.status = Call.QUEUED
        self.settled_at = None
        self.breach_due = None



class Window(_Record):
    """Counts of one queue's 15-minute window of queued times (rule 5), until it closes."""

    __slots__ = ("abandoned", "answered", "close_due", "closed", "offered", "wait_us", "within")

    def __init__(self, close_due: int) -> None:
        self.offered = self.answered = self.within = self.abandoned = self.wait_us = 0
        self.close_due = close_due
        self.closed = False

