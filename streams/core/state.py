"""Per-key state of the core, with a compact, versioned encoding for changelogs.

Every piece of state, pending deadlines included, is plain data here: the live worker stores the encoded form in
changelogged Faust tables and rebuilds its deadline heap from it when a partition is assigned.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from streams.core.deadlines import K_ALERT, K_APPOINTMENT, K_LATE, K_OUTAGE, K_PROVISION, K_REPAIR, K_RISK

# Service bit masks: the set of services down is one small int.
SERVICE_BIT = {"internet": 1, "telephony": 2, "tv": 4}
SERVICES = tuple(SERVICE_BIT)

# Topic codes prefixed to event ids in the de-duplication record: an event_id is unique in its topic only.
TOPIC_CODE = {"line-activation": "L", "box-shipment": "B", "service-status": "S", "switch-claim": "W",
              "call-queue": "Q", "appointment": "A"}
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


class Ids:
    """Event ids applied for one subscriber, each with its ``occurred_at``, kept for the charter's
    ``dedup_retention`` of event time (SPEC 1) and then forgotten, so the record stays bounded over years.

    One string ``" <code><id>~<hex occurred_at> <code><id>~<hex> ... "``, entries sorted by ``occurred_at`` so the
    expired ones are always a prefix (pruning cuts it off without parsing the rest). The instant is microseconds in
    13 hex digits (until the year 2112), fixed width so that instants compare as text: the engine checks the newest
    and the oldest entry on every event without parsing a number. The separators are printable:
    orjson writes a control character as six bytes (``\\u001f``), and these strings are most of a subscriber's
    row. ``key`` is delimited on both sides (a space before, ``~`` after) so one id never matches inside another.
    """

    __slots__ = ()
    EMPTY = " "

    @staticmethod
    def key(topic: str, event_id: str) -> str:
        if " " in event_id or "~" in event_id or event_id.startswith(ESC):
            event_id = ESC + event_id.encode("utf-8", "surrogatepass").hex()  # keeps the delimiters unambiguous
        return f" {TOPIC_CODE[topic]}{event_id}~"

    @staticmethod
    def add(ids: str, key: str, at: int) -> str:
        """``ids`` with ``key`` applied at ``at``, kept in ``occurred_at`` order."""
        entry = f"{key[1:]}{at:013x} "
        if ids == " ":
            return " " + entry
        j = ids.rfind("~")
        if at >= int(ids[j + 1:-1], 16):
            return ids + entry  # the common case: events of a key arrive in time order
        entries = ids[1:-1].split(" ")  # an older event: insert it in place (rare, so a plain rebuild)
        i = len(entries)
        while i and int(entries[i - 1][entries[i - 1].rfind("~") + 1:], 16) > at:
            i -= 1
        entries.insert(i, entry[:-1])
        return " " + " ".join(entries) + " "

    @staticmethod
    def prune(ids: str, before: int) -> str:
        """``ids`` without the entries whose ``occurred_at`` < ``before`` (an expired prefix)."""
        pos, n = 0, len(ids)
        while pos < n - 1:
            j = ids.find("~", pos + 1)
            k = ids.find(" ", j)
            if int(ids[j + 1:k], 16) >= before:
                break
            pos = k
        return ids if pos == 0 else ids[pos:]

    @staticmethod
    def oldest(ids: str) -> int | None:
        """The ``occurred_at`` of the oldest entry (None when empty)."""
        if ids == " ":
            return None
        j = ids.find("~")
        return int(ids[j + 1:ids.find(" ", j)], 16)

    @staticmethod
    def newest(ids: str) -> int | None:
        """The ``occurred_at`` of the newest entry (None when empty)."""
        if ids == " ":
            return None
        return int(ids[ids.rfind("~") + 1:-1], 16)

    @staticmethod
    def from_seen(seen: str, at: int) -> str:
        """Entries for the ids of a legacy ``seen`` record (no instants), all stamped ``at``: rows written before
        ``dedup_retention`` existed keep their ids for one retention counted from the first event after the
        upgrade (the instant they were applied is not in those rows)."""
        out = [" "]
        for token in seen.split(SEP):
            if not token:
                continue
            code, event_id = token[0], token[1:]
            if event_id.startswith(ESC):
                event_id = bytes.fromhex(event_id[1:]).decode("utf-8", "surrogatepass")
            if " " in event_id or "~" in event_id or event_id.startswith(ESC):
                event_id = ESC + event_id.encode("utf-8", "surrogatepass").hex()
            out.append(f"{code}{event_id}~{at:013x} ")
        return "".join(out)


FORMAT_VERSION = 2
"""The row format written by ``encode``. Version 1 (before rows carried one) was the list of slot values in slot
order; version 2 is a mapping ``{"v": 2, name: value, ...}`` that leaves out every field equal to its default."""


class StateFormatError(ValueError):
    """A stored row this code cannot read (written by a newer version, or damaged)."""


class _Record:
    """Slots-only state with a versioned, named encoding (``encode``/``decode``; docs/design.md says how to evolve it).

    ``DEFAULTS`` gives the value of a field absent from a row; a field without a default is always written.
    ``V1_SLOTS`` is the field order of version 1 rows: frozen, those rows stay in changelogs until rewritten.
    """

    __slots__ = ()
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    V1_SLOTS: ClassVar[tuple[str, ...]] = ()

    def encode(self) -> dict[str, Any]:
        defaults, missing = self.DEFAULTS, _MISSING
        row: dict[str, Any] = {"v": FORMAT_VERSION}
        for name in self.__slots__:
            value = getattr(self, name)
            default = defaults.get(name, missing)
            if value is not default and value != default:
                row[name] = value
        return row

    @classmethod
    def decode(cls, data: list[Any] | dict[str, Any]) -> Any:
        if isinstance(data, dict):
            if data.get("v") != FORMAT_VERSION:
                raise StateFormatError(f"{cls.__name__} row of format {data.get('v')!r}: this version of "
                                       f"charter-streams reads formats 1 to {FORMAT_VERSION}")
            values = {**cls.DEFAULTS, **data}
        elif isinstance(data, list):
            if len(data) != len(cls.V1_SLOTS):
                raise StateFormatError(f"{cls.__name__} row of format 1 has {len(data)} fields, "
                                       f"not {len(cls.V1_SLOTS)}")
            values = {**cls.DEFAULTS, **dict(zip(cls.V1_SLOTS, data, strict=True)), "v": 1}
        else:
            raise StateFormatError(f"{cls.__name__} row is a {type(data).__name__}, not a list or a mapping")
        if len(values) != len(cls.__slots__) + 1:  # every slot and "v", nothing else
            unknown = sorted(set(values) - cls._SLOT_SET - {"v"})
            if unknown:
                raise StateFormatError(f"{cls.__name__} row has unknown fields {unknown} (written by a newer "
                                       "version?)")
            raise StateFormatError(f"{cls.__name__} row lacks the fields {sorted(cls._SLOT_SET - set(values))}")
        obj = cls.__new__(cls)
        for name in cls.__slots__:
            setattr(obj, name, values[name])
        return obj

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._SLOT_SET = frozenset(cls.__slots__)


_MISSING = object()


class Subscriber(_Record):
    """Everything the charter rules need to know about one customer."""

    __slots__ = (
        # de-duplication: ``seen`` is the record of rows written before dedup_retention (ids without instants,
        # moved into ``ids`` by the first event after the upgrade); ``ids`` the current one (``Ids``);
        # ``forgot_before``: set when the row bound (``bounded_row``) forgot ids younger than the retention
        "seen", "ids", "forgot_before",
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
        # rule 4: services down (bit mask), the open outage, the next tier and its deadline; the start of the
        # latest outage ever opened (what stops a forgotten copy of an old `down` from paying an outage twice)
        "down", "out_start", "out_start_id", "out_services", "out_tier", "out_due", "out_last",
        # rule 6 (the open outage above): the next local midnight owing a day, and that day's number
        "rep_due", "rep_day",
        # rule 7: the next local midnight owing a day and its number; the order that promised (None: no promise yet)
        "prov_due", "prov_day", "prov_id",
        # rule 8: appointment id -> Appt list, or APPT_DONE once decided (None: no appointment)
        "appts",
        # SPEC 10 (the open outage above): the outage_at_risk deadline, and the element of the down that opened it
        "risk_due", "out_element",
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "seen": SEP, "ids": Ids.EMPTY, "forgot_before": None, "fee": None, "zone": None, "tv": None,
        "order_at": None, "order_id": None, "confirmed_at": None, "confirmed_id": None, "active_at": None,
        "active_id": None, "modem_at": None, "decoder_at": None, "cancelled_at": None, "first_month_given": False,
        "alert_due": None, "late_due": None, "refund_granted": False, "billing_at": None, "down": 0,
        "out_start": None, "out_start_id": None, "out_services": 0, "out_tier": 0, "out_due": None,
        "out_last": None, "rep_due": None, "rep_day": None, "prov_due": None, "prov_day": None, "prov_id": None,
        "appts": None, "risk_due": None, "out_element": None,
    }
    V1_SLOTS = (
        "seen", "fee", "zone", "tv", "order_at", "order_id", "confirmed_at", "confirmed_id", "active_at", "active_id",
        "modem_at", "decoder_at", "cancelled_at", "first_month_given", "alert_due", "late_due", "refund_granted",
        "billing_at", "down", "out_start", "out_start_id", "out_services", "out_tier", "out_due",
    )

    def __init__(self) -> None:
        self.seen = Seen.EMPTY
        self.ids = Ids.EMPTY
        self.forgot_before = None
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
        self.out_last = None
        self.rep_due = self.rep_day = None
        self.prov_due = self.prov_day = self.prov_id = None
        self.appts = None
        self.risk_due = self.out_element = None

    def deadlines(self, key: str) -> list[tuple[int, int, Any]]:
        """Heap entries ``(due, kind, key)`` of every armed deadline, to rebuild a heap from stored state."""
        out: list[tuple[int, int, Any]] = []
        if self.alert_due is not None:
            out.append((self.alert_due, K_ALERT, key))
        if self.late_due is not None:
            out.append((self.late_due, K_LATE, key))
        if self.out_due is not None:
            out.append((self.out_due, K_OUTAGE, key))
        if self.rep_due is not None:
            out.append((self.rep_due, K_REPAIR, key))
        if self.prov_due is not None:
            out.append((self.prov_due, K_PROVISION, key))
        if self.risk_due is not None:
            out.append((self.risk_due, K_RISK, key))
        if self.appts:
            for appt_id, a in self.appts.items():
                if a != APPT_DONE and a[APPT_DUE] is not None:
                    out.append((a[APPT_DUE], K_APPOINTMENT, (key, appt_id)))
        return out


# One appointment (rule 8), a list so that it is stored as is: slot (None until booked), the booked event, the
# earliest cancelled and attended occurred_at (None: none yet) and the cancelled event, the armed deadline.
APPT_START, APPT_END, APPT_BOOKED_ID, APPT_CANCEL_AT, APPT_CANCEL_ID, APPT_ATTEND_AT, APPT_DUE = range(7)
APPT_DONE = 0  # decided (owed and paid, or nothing owed): later events of the appointment change nothing


def new_appt() -> list[Any]:
    return [None] * 7


class Call(_Record):
    """One hotline call (rule 5). Kept after it settles so a repeated ``queued`` cannot open it again."""

    __slots__ = ("breach_due", "queue", "queued_at", "queued_id", "seen", "settled_at", "status")
    DEFAULTS: ClassVar[dict[str, Any]] = {"breach_due": None, "seen": SEP, "settled_at": None, "status": 0}
    V1_SLOTS = ("breach_due", "queue", "queued_at", "queued_id", "seen", "settled_at", "status")

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
    DEFAULTS: ClassVar[dict[str, Any]] = {"abandoned": 0, "answered": 0, "closed": False, "offered": 0, "wait_us": 0,
                                          "within": 0}
    V1_SLOTS = ("abandoned", "answered", "close_due", "closed", "offered", "wait_us", "within")

    def __init__(self, close_due: int) -> None:
        self.offered = self.answered = self.within = self.abandoned = self.wait_us = 0
        self.close_due = close_due
        self.closed = False



def bounded_row(sub: Subscriber, max_bytes: int) -> tuple[bytes, int]:
    """The changelog row of ``sub`` (``orjson.dumps(sub.encode())``), made to fit in ``max_bytes`` if it can be.

    A row above the bound would be refused by the broker (its ``max.message.bytes``) and stall the partition, so
    the oldest history a decision can do without goes first: the legacy ``seen`` record, then the oldest event ids
    (``forgot_before`` moves up: copies of those events are no longer recognised), then decided appointments.
    ``sub`` itself is pruned, so the worker's memory and its stored row agree. Returns the row and how many entries
    were dropped (0: the row already fit); a row that still does not fit is returned as it is, never an error.
    """
    row = orjson.dumps(sub.encode())
    dropped = 0
    while len(row) > max_bytes:
        excess = len(row) - max_bytes
        if sub.seen != Seen.EMPTY:
            dropped += sub.seen.count(SEP) - 1
            sub.seen = Seen.EMPTY
        elif sub.ids != Ids.EMPTY:
            ids, pos, cut = sub.ids, 0, 0
            while pos < len(ids) - 1 and pos < excess:  # whole entries covering at least the excess, oldest first
                pos = ids.find(" ", ids.find("~", pos + 1))
                cut += 1
            last = int(ids[ids.rfind("~", 0, pos) + 1:pos], 16)
            sub.ids = ids[pos:]
            sub.forgot_before = max(last + 1, sub.forgot_before or last + 1)  # a copy of those is a new event
            dropped += cut
        elif sub.appts and any(a == APPT_DONE for a in sub.appts.values()):
            done = [k for k, a in sub.appts.items() if a == APPT_DONE]
            for k in done:
                del sub.appts[k]
            dropped += len(done)
        else:
            break  # nothing left that may go: the row is what the rules need
        row = orjson.dumps(sub.encode())
    return row, dropped
